"""The model seam (`zos_cli.reflect.llm`) against the fake OpenAI-compatible server, over real
HTTP, with litellm pointed at it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fake_openai import FakeOpenAI, Reply, valid_answer
from zos_cli.config import Config
from zos_cli.errors import ConfigError
from zos_cli.reflect import llm
from zos_cli.reflect.llm import ModelChoice, RetryPolicy
from zos_cli.reflect.schema import output_json_schema

FAST = RetryPolicy(max_retries=2, backoff_seconds=0.01, timeout_seconds=5, repair_attempts=1)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as fake:
        yield fake


def choice_for(server, model="openai/fake-model") -> ModelChoice:
    return ModelChoice("reflection", model, 0.2, 500, server.base_url)


# ---------------------------------------------------------------- resolving the model
def test_no_model_anywhere_is_offline():
    assert llm.resolve_model(Config(), "reflection").offline


def test_profile_model_then_env_then_flag(monkeypatch):
    config = Config.model_validate({"models": {"reflection": {"model": "openai/a",
                                                              "temperature": 0.7,
                                                              "max_tokens": 99}}})
    chosen = llm.resolve_model(config, "reflection")
    assert (chosen.model, chosen.temperature, chosen.max_tokens) == ("openai/a", 0.7, 99)
    monkeypatch.setenv("ZOS_MODEL", "openai/b")
    assert llm.resolve_model(config, "reflection").model == "openai/b"
    assert llm.resolve_model(config, "reflection", "openai/c").model == "openai/c"
    assert llm.resolve_model(config, "reflection", "offline").offline


def test_zos_model_without_profile_uses_defaults(monkeypatch):
    monkeypatch.setenv("ZOS_MODEL", "openai/b")
    chosen = llm.resolve_model(Config(), "reflection")
    assert (chosen.model, chosen.temperature, chosen.max_tokens) == ("openai/b", 0.3, 2000)


def test_profile_missing_while_another_has_a_model_is_a_config_error():
    config = Config.model_validate({"models": {"cheap": {"model": "openai/a"}}})
    with pytest.raises(ConfigError) as err:
        llm.resolve_model(config, "reflection")
    assert err.value.exit_code == 78
    assert "[models.reflection]" in err.value.message and "cheap" in err.value.message


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        llm.check_credentials(ModelChoice("reflection", "anthropic/claude-3-5-haiku-latest"))
    assert err.value.exit_code == 78
    assert err.value.message == (
        "model anthropic/claude-3-5-haiku-latest (profile reflection) needs ANTHROPIC_API_KEY "
        "in the environment: set ANTHROPIC_API_KEY (or choose another model with --model or "
        "ZOS_MODEL)")


def test_key_present_passes(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    llm.check_credentials(ModelChoice("reflection", "openai/fake-model"))


def test_offline_run_never_imports_litellm(tmp_path):
    """A command that calls no model must not pay litellm's import."""
    from tests.conftest import REPO

    script = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from zos_cli.cli import app\n"
        f"db = {str(tmp_path / 'z.db')!r}\n"
        "r = CliRunner().invoke(app, ['--db', db, 'init-db'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(app, ['--db', db, 'ingest', {str(REPO / 'examples' / 'export')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['--db', db, 'reflect', '--layer', 'user', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert json.loads(r.stdout)['insights_created'] > 0, r.stdout\n"
        "r = CliRunner().invoke(app, ['--db', db, 'insights', 'list', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(json.dumps('litellm' in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "false"


# ---------------------------------------------------------------- one reflection over HTTP
def test_request_carries_the_output_schema_and_profile_settings(server):
    outcome = llm.reflect(choice_for(server), "the prompt", topic_key="t", policy=FAST)
    assert outcome.error is None and len(outcome.answer.insights) == 1
    body = server.requests[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == output_json_schema()
    assert body["temperature"] == 0.2 and body["max_tokens"] == 500
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1] == {"role": "user", "content": "the prompt"}
    assert server.requests[0].headers["Authorization"] == "Bearer test"
    (call,) = outcome.calls
    assert call.status == "ok" and call.tokens_input > 0 and call.tokens_output > 0
    assert json.loads(call.prompt)[1]["content"] == "the prompt"
    assert json.loads(call.response) == valid_answer()
    assert (call.model_provider, call.model_name, call.model_profile) == (
        "openai", "fake-model", "reflection")


def test_openai_api_base_environment_is_honoured(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
    outcome = llm.reflect(ModelChoice("reflection", "openai/fake-model"), "p", topic_key="t",
                          policy=FAST)
    assert outcome.error is None and len(server.requests) == 1


def test_429_and_500_are_retried_then_succeed(server):
    server.enqueue(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500))
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert outcome.error is None
    assert [c.status for c in outcome.calls] == ["error", "error", "ok"]
    assert "429" in outcome.calls[0].error and "500" in outcome.calls[1].error
    assert len(server.requests) == 3


def test_retries_are_bounded(server):
    server.enqueue(*[Reply(status=503)] * 10)
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert outcome.answer is None
    assert len(server.requests) == FAST.max_retries + 1 == 3
    assert outcome.error.startswith("model call failed after 3 attempts: ")
    assert all(c.status == "error" for c in outcome.calls)


def test_timeout_is_retried_and_bounded(server):
    policy = RetryPolicy(max_retries=1, backoff_seconds=0.01, timeout_seconds=0.5)
    server.enqueue(Reply(delay=1.5), Reply(delay=1.5))
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=policy)
    assert outcome.answer is None
    assert len(outcome.calls) == 2 and "Timeout" in outcome.calls[0].error


def test_client_errors_are_not_retried(server):
    server.enqueue(Reply(status=400))
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert outcome.answer is None and len(server.requests) == 1


def test_malformed_json_gets_one_repair(server):
    server.enqueue(Reply(content="this is not {json"))
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert outcome.error is None
    assert [c.status for c in outcome.calls] == ["invalid", "ok"]
    repair = server.requests[1].body["messages"]
    assert repair[2] == {"role": "assistant", "content": "this is not {json"}
    assert repair[3]["content"].startswith("That answer is not valid: the answer is not JSON")


def test_schema_breaking_answers_fail_after_the_bounded_repair(server):
    broken = {"insights": [{"content": "x", "confidence": 3, "importance": 0.5,
                            "novelty": 0.5, "valence": {}}]}
    server.enqueue(Reply(content=broken), Reply(content=broken))
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert outcome.answer is None
    assert len(server.requests) == 2
    assert [c.status for c in outcome.calls] == ["invalid", "invalid"]
    assert outcome.error.startswith("invalid answer: insights.0.confidence: ")
    assert "valence" in outcome.error


def test_malformed_http_body_is_a_retried_error(server):
    server.enqueue(Reply(body="{not json at all"))
    outcome = llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert outcome.error is None
    assert [c.status for c in outcome.calls] == ["error", "ok"]


def test_nothing_is_printed_on_stdout_for_model_errors(server, capsys):
    server.enqueue(Reply(status=500))
    llm.reflect(choice_for(server), "p", topic_key="t", policy=FAST)
    assert capsys.readouterr().out == ""


def test_cost_comes_from_litellm_prices(server):
    outcome = llm.reflect(choice_for(server, "openai/gpt-4o-mini"), "p" * 4000, topic_key="t",
                          policy=FAST)
    (call,) = outcome.calls
    expected = (call.tokens_input * 0.15 + call.tokens_output * 0.6) / 1_000_000
    assert call.estimated_cost_usd == pytest.approx(expected)
    assert llm.estimate_cost(choice_for(server, "openai/gpt-4o-mini"), 1000, 0) == \
        pytest.approx(0.00015)
    assert llm.estimate_cost(choice_for(server), 1000, 0) is None  # no price known
