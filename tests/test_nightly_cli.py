"""`zos nightly` through the real CLI on a real SQLite file: the whole night offline on the
bundled example, one cost cap carried from step to step (the fake OpenAI server on
127.0.0.1), failing and locked steps, configuration errors before any step, the night's own
lock, dry runs that write nothing, `zos status`, and `reflect --list` in the night's order."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO
from tests.fake_openai import FakeOpenAI, Reply, valid_answer
from tests.reflect_world import SELF_ID, build_world
from zos_cli.config import NIGHTLY_LAYERS
from zos_cli.reflect.layers import SHIPPED_DIR
from zos_cli.store import locks

STEP_KEYS = {"step", "status", "targets", "insights_created", "tokens_used", "cost_usd",
             "errors"}
NIGHT_KEYS = {"started_at", "finished_at", "cost_usd", "errors", "steps"}


def example_config(tmp_path: Path) -> Path:
    """examples/zos.toml, whose `[nightly] layers` are the shipped default."""
    return EXAMPLES / "zos.toml"


def night_layers() -> list[str]:
    return list(NIGHTLY_LAYERS)


def dump(db_path: Path) -> str:
    """Every row of every table, as SQL text (what "nothing written" compares)."""
    with sqlite3.connect(db_path) as conn:
        return "\n".join(conn.iterdump())


def night(cli, config: Path, *args: str):
    result = cli("--config", str(config), "nightly", *args)
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


def steps_of(doc: dict) -> dict[str, dict]:
    return {s["step"]: s for s in doc["steps"]}


@pytest.fixture
def example(cli, tmp_path):
    config = example_config(tmp_path)
    result = cli("--config", str(config), "ingest", str(EXAMPLES / "export"))
    assert result.exit_code == 0, result.stderr
    return config


# ---------------------------------------------------------------- the whole night, offline
def test_the_whole_night_offline_on_the_bundled_example(cli, db, example):
    result, doc = night(cli, example, "--json")
    assert result.exit_code == 0, result.stderr
    assert NIGHT_KEYS <= set(doc) and doc["errors"] == [] and doc["cost_usd"] == 0
    assert [s["step"] for s in doc["steps"]] == ["decay", "analyze", *night_layers()]
    assert all(STEP_KEYS <= set(s) for s in doc["steps"])
    steps = steps_of(doc)
    assert steps["decay"]["status"] == "completed"
    # examples/zos.toml leaves [analysis] off: the step does not run, nothing is fetched.
    assert steps["analyze"]["status"] == "skipped"
    analysis = json.loads(cli("status", "--json").stdout)["analysis"]
    assert analysis["media_analysed"] == analysis["links_analysed"] == 0
    assert all(steps[name]["status"] == "completed" for name in night_layers())
    assert steps["user"]["insights_created"] == steps["user"]["targets"] > 0
    assert steps["synthesis"]["insights_created"] > 0 and steps["self"]["targets"] == 1
    # The layers ran in the night's order, each as its own layer run at the night's clock.
    runs = db.execute("SELECT layer_name, as_of FROM layer_runs ORDER BY started_at").fetchall()
    ran = [name for name in night_layers() if steps[name]["targets"]]
    assert [layer for layer, _ in runs] == ran
    assert {as_of for _, as_of in runs} == {doc["as_of"]}
    assert db.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0
    # The insights are there for `insights list`, as after `zos reflect`.
    listed = json.loads(cli("insights", "list", "--json").stdout)
    assert len(listed) == sum(s["insights_created"] for s in doc["steps"])

    # `zos status` shows the last night and its cost.
    status = json.loads(cli("status", "--json").stdout)["last_nightly"]
    assert status["finished_at"] == doc["finished_at"] and status["cost_usd"] == 0
    assert [(s["step"], s["status"]) for s in status["steps"]] == [
        (s["step"], s["status"]) for s in doc["steps"]]
    human = cli("status").stdout
    assert "last nightly" in human and "cost 0.0000 USD" in human
    assert f"{len(doc['steps']) - 1} completed, 1 skipped" in human

    # A second night finds nothing new and says so, one line with --nl.
    again = cli("--config", str(example), "nightly", "--nl")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("\n") == 1
    second = json.loads(again.stdout)
    assert sum(s["insights_created"] for s in second["steps"]) == 0
    assert steps_of(second)["user"]["note"].startswith("nothing salient for layer user")
    later = json.loads(cli("status", "--json").stdout)["last_nightly"]
    assert later["finished_at"] == second["finished_at"]


def test_the_human_summary_is_a_table_of_steps(cli, example):
    result, _ = night(cli, example)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "zos nightly" in out and "Steps" in out
    for name in ["decay", "analyze", *night_layers()]:
        assert f"│ {name} " in out
    assert "[analysis] media and links are off" in out


def test_make_demo_runs_the_night_offline():
    demo = (REPO / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    assert "$(ZOS_DEMO) nightly" in demo and "reflect --layer" not in demo
    assert "analyze" not in demo and "--config examples/zos.toml" in (REPO / "Makefile").read_text()
    # and it ends with a person's memory card
    assert demo.strip().splitlines()[-1].strip() == "$(ZOS_DEMO) insights about @theo"
    crontab = (EXAMPLES / "crontab").read_text()
    jobs = [line for line in crontab.splitlines() if line and not line.startswith("#")
            and "zos " in line]
    assert len(jobs) == 2 and "poll --once" in jobs[0] and "zos --quiet nightly" in jobs[1]


def test_an_offline_night_imports_no_model_library(tmp_path):
    db = tmp_path / "zos.db"
    config = example_config(tmp_path)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("ZOS_MODEL", None)
    base = [sys.executable, "-m", "zos_cli", "--db", str(db), "--config", str(config)]
    for args in (["init-db"], ["ingest", str(EXAMPLES / "export")]):
        assert subprocess.run(base + args, env=env, capture_output=True).returncode == 0
    probe = ("import sys, json\nfrom zos_cli.cli import main\ntry:\n    main()\n"
             "except SystemExit as exc:\n    code = exc.code\n"
             "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))")
    done = subprocess.run([sys.executable, "-c", probe, *base[3:], "--quiet", "nightly"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    code, modules = json.loads(done.stdout.splitlines()[-1])
    assert code in (0, None), done.stderr
    assert not {"litellm", "openai"} & set(modules)


def test_the_night_analyses_what_analysis_turns_on_before_reflecting(cli, db, tmp_path):
    from tests.analyze_web import THEO, Web, article, config_text, msg, public_export

    with Web() as web:
        url = web.page("/glaze", article("Glaze wiki", "Celadon needs iron oxide.", "Notes."))
        config = tmp_path / "analysis.toml"
        config.write_text(config_text(extra='links = true\n[nightly]\nlayers = ["user"]\n'))
        export = public_export([msg(i, THEO, f"kiln notes {i} {url}") for i in range(12)])
        result = cli("--config", str(config), "ingest", str(export.write(tmp_path / "g.json")))
        assert result.exit_code == 0, result.stderr
        result, doc = night(cli, config, "--json")
        fetched = web.paths()
    assert result.exit_code == 0, result.stderr
    steps = steps_of(doc)
    assert [s["step"] for s in doc["steps"]] == ["decay", "analyze", "user"]
    assert steps["analyze"]["status"] == "completed" and steps["analyze"]["targets"] == 12
    assert "/glaze" in fetched  # (only ever 127.0.0.1: the test's own server)
    # The layer after it read what the analysis found.
    content = db.execute("SELECT content FROM insights").fetchone()[0]
    assert "Glaze wiki" in content


# ---------------------------------------------------------------- one cost cap
@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as fake:
        yield fake


def model_config(tmp_path: Path, server, layers: list[str], **reflection) -> Path:
    settings = {"retry_backoff_seconds": 0.01, "max_retries": 0, "concurrency": 1, **reflection}
    path = tmp_path / "model.toml"
    path.write_text(
        f'[discord]\nself_user_id = "{SELF_ID}"\n'
        "[reflection]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        + f'[models.reflection]\nmodel = "openai/gpt-4o-mini"\napi_base = "{server.base_url}"\n'
        "max_tokens = 400\n"
        f"[nightly]\nlayers = {json.dumps(layers)}\n")
    return path


PROMPT_TOKENS = COMPLETION_TOKENS = 10_000  # what every fake answer says it used


def priced_reply(request: dict) -> Reply:
    return Reply(content=valid_answer(), prompt_tokens=PROMPT_TOKENS,
                 completion_tokens=COMPLETION_TOKENS)


def test_one_cost_cap_for_the_night_each_step_gets_what_is_left(cli, db, tmp_path, server):
    from zos_cli.reflect.llm import ModelChoice, estimate_cost

    build_world(db, tmp_path, users=2, messages_each=12)  # 2 users, 1 dyad, 2 channels
    config = model_config(tmp_path, server, ["user", "dyad", "channel"])
    server.default = priced_reply
    call = estimate_cost(ModelChoice("reflection", "openai/gpt-4o-mini"), PROMPT_TOKENS,
                         COMPLETION_TOKENS)
    assert call > 0.005  # each call costs far more than a target's estimate (~0.0005)
    cap = round(2.5 * call, 6)

    result, doc = night(cli, config, "--max-cost", str(cap), "--json")
    assert result.exit_code == 0, result.stderr
    steps = steps_of(doc)
    # Decay costs nothing: the first layer is given the whole cap. It takes both its
    # targets (each starts while what was spent plus its estimate fits).
    assert steps["decay"]["budget_usd"] == steps["user"]["budget_usd"] == cap
    assert steps["user"]["targets"] == 2 and steps["user"]["cost_usd"] == pytest.approx(2 * call)
    # The dyad layer sees what the user layer left, half a call: its one target fits its
    # estimate, starts, and costs a whole call.
    assert steps["dyad"]["budget_usd"] == pytest.approx(cap - steps["user"]["cost_usd"], abs=1e-6)
    assert steps["dyad"]["targets"] == 1 and steps["dyad"]["status"] == "completed"
    # Nothing is left for the channel layer: skipped, its targets not taken, nothing sent.
    assert steps["channel"]["budget_usd"] == 0
    assert steps["channel"]["status"] == "skipped" and steps["channel"]["targets"] == 0
    assert "--max-cost left 0.000000 USD" in steps["channel"]["note"]
    assert len(server.requests) == 3
    assert doc["cost_usd"] == pytest.approx(3 * call) and doc["max_cost_usd"] == cap
    channel_runs = db.execute("SELECT count(*) FROM layer_runs WHERE layer_name = 'channel'")
    assert channel_runs.fetchone()[0] == 0
    assert json.loads(cli("status", "--json").stdout)["last_nightly"]["cost_usd"] == \
        doc["cost_usd"]


def test_a_dry_run_carries_the_estimates_and_sends_and_writes_nothing(cli, db, db_path,
                                                                      tmp_path, server):
    build_world(db, tmp_path, users=2, messages_each=12)
    config = model_config(tmp_path, server, ["user", "dyad", "channel"])
    before = dump(db_path)
    result, doc = night(cli, config, "--dry-run", "--max-cost", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert server.requests == [] and dump(db_path) == before
    assert doc["dry_run"] is True
    steps = steps_of(doc)
    assert all(steps[name]["cost_usd"] > 0 and steps[name]["targets"] > 0
               for name in ("user", "dyad", "channel"))
    assert steps["dyad"]["budget_usd"] == pytest.approx(1 - steps["user"]["cost_usd"], abs=1e-6)
    assert steps["channel"]["budget_usd"] == pytest.approx(
        1 - steps["user"]["cost_usd"] - steps["dyad"]["cost_usd"], abs=1e-6)
    assert json.loads(cli("status", "--json").stdout)["last_nightly"] is None


def test_a_dry_run_of_the_example_writes_nothing_and_takes_no_lock(cli, db_path, example):
    before = dump(db_path)
    # Far in the future: decay would write rows, the layers would reflect.
    result, doc = night(cli, example, "--dry-run", "--as-of", "2030-01-01", "--json")
    assert result.exit_code == 0, result.stderr
    steps = steps_of(doc)
    assert steps["decay"]["targets"] > 0 and steps["user"]["targets"] > 0
    assert doc["as_of"].startswith("2030-01-01T00:00:00")
    assert dump(db_path) == before
    assert not locks.lock_path(db_path, "nightly").exists()
    assert not locks.lock_path(db_path, "reflect-user").exists()


# ---------------------------------------------------------------- failing and locked steps
def broken_user_layer(folder: Path) -> None:
    """A local `user` layer whose template fails while it renders (found only once the layer
    has a target to render for: the step fails, not the night's check)."""
    layers = folder / "layers"
    layers.mkdir(exist_ok=True)
    spec = (SHIPPED_DIR / "user.toml").read_text()
    (layers / "user.toml").write_text(spec.replace('template = "user.md.j2"',
                                                   'template = "broken.md.j2"'))
    (layers / "broken.md.j2").write_text("{{ 1 // 0 }}\n")


def test_a_failing_step_does_not_stop_the_others(cli, db, tmp_path, example):
    broken_user_layer(tmp_path)  # (the tests run in tmp_path: ./layers is read from there)
    result, doc = night(cli, example, "--json")
    assert result.exit_code == 1
    steps = steps_of(doc)
    assert steps["user"]["status"] == "failed" and steps["user"]["insights_created"] == 0
    assert "template" in steps["user"]["errors"][0]["error"]
    later = [name for name in night_layers() if name != "user"]
    assert all(steps[name]["status"] == "completed" for name in later)
    assert steps["dyad"]["insights_created"] > 0 and steps["channel"]["insights_created"] > 0
    assert [e["step"] for e in doc["errors"]] == ["user"]
    assert "Error: the night ran with user failed" in result.stderr
    ran = {r[0] for r in db.execute("SELECT layer_name FROM layer_runs")}
    assert "user" not in ran and {"dyad", "channel"} <= ran
    status = cli("status").stdout
    assert "1 failed (user)" in status


def test_a_partial_layer_exits_1_and_the_rest_run(cli, db, tmp_path, server):
    build_world(db, tmp_path, users=2, messages_each=12)
    config = model_config(tmp_path, server, ["user", "dyad", "channel"])
    server.enqueue(Reply(status=400, content="no"))  # the first target's one call
    result, doc = night(cli, config, "--json")
    assert result.exit_code == 1
    steps = steps_of(doc)
    assert steps["user"]["status"] == "partial" and steps["user"]["insights_created"] == 1
    assert [e["target"] is not None for e in steps["user"]["errors"]] == [True]
    assert steps["dyad"]["status"] == steps["channel"]["status"] == "completed"
    assert doc["errors"] == [{"step": "user", "error": "partial: 1 of 2 target(s) failed; see "
                                                       "`zos insights runs --layer user`"}]


def test_a_step_whose_lock_is_held_is_locked_and_the_night_goes_on(cli, db_path, example):
    with locks.job_lock(db_path, "reflect-dyad"):
        result, doc = night(cli, example, "--json")
    assert result.exit_code == 75
    steps = steps_of(doc)
    assert steps["dyad"]["status"] == "locked"
    assert "another `zos reflect --layer dyad` is already running" in \
        steps["dyad"]["errors"][0]["error"]
    assert all(s["status"] in ("completed", "skipped") for s in doc["steps"]
               if s["step"] != "dyad")
    assert steps["channel"]["insights_created"] > 0
    assert "Error: the night ran, but not all of it: dyad locked" in result.stderr
    # Released, the next night reflects on the pairs.
    result, doc = night(cli, example, "--json")
    assert result.exit_code == 0 and steps_of(doc)["dyad"]["insights_created"] > 0


def test_locked_is_worse_than_failed(cli, db_path, tmp_path, example):
    broken_user_layer(tmp_path)
    with locks.job_lock(db_path, "salience"):  # the decay's lock
        result, doc = night(cli, example, "--json")
    assert result.exit_code == 75
    steps = steps_of(doc)
    assert (steps["decay"]["status"], steps["user"]["status"]) == ("locked", "failed")
    assert [e["step"] for e in doc["errors"]] == ["decay", "user"]


def test_a_second_night_exits_75_at_once(cli, db_path, example):
    before = dump(db_path)
    with locks.job_lock(db_path, "nightly"):
        result, doc = night(cli, example, "--json")
    assert result.exit_code == 75
    assert "another `zos nightly` is already running" in result.stderr
    assert doc["steps"] == [] and doc["errors"][0]["step"] is None
    assert dump(db_path) == before


# ---------------------------------------------------------------- checked before any step
def _with(example: Path, tmp_path: Path, extra: str) -> Path:
    text = example.read_text()
    head, _, tail = text.partition("[nightly]\n")
    body = tail.split("\n", 1)[1] if tail else ""
    path = tmp_path / "night.toml"
    path.write_text(head + "[nightly]\n" + extra + "\n" + body if tail else text + extra)
    return path


@pytest.mark.parametrize("case", ["unknown layer", "model without key", "broken local layer",
                                  "missing profile"])
def test_a_configuration_error_stops_the_night_before_any_step(cli, db_path, tmp_path, example,
                                                               case):
    layers = json.dumps(night_layers())
    model = '\nmodel = "openai/gpt-4o-mini"'
    extra = {
        "unknown layer": 'layers = ["user", "nosuch", "dyad"]',
        "model without key": f"layers = {layers}\n[models.reflection]{model}",
        "broken local layer": f"layers = {layers}",
        "missing profile": f"layers = {layers}\n[models.summary]{model}",
    }[case]
    if case == "broken local layer":
        (tmp_path / "layers").mkdir()
        (tmp_path / "layers" / "dyad.toml").write_text("name = [unclosed\n")
    config = _with(example, tmp_path, extra)
    before = dump(db_path)
    # In 2030 decay would write rows: that it wrote none shows no step ran.
    result, doc = night(cli, config, "--as-of", "2030-01-01", "--json")
    assert result.exit_code == 78, result.stderr
    assert doc["steps"] == [] and doc["errors"][0]["step"] is None
    assert dump(db_path) == before
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("Error: ")
    assert {"unknown layer": "[nightly] layers names nosuch, which is no layer",
            "model without key": "OPENAI_API_KEY",
            "broken local layer": "layers/dyad.toml",
            "missing profile": "model profile 'reflection'"}[case] in message


def test_bad_nightly_settings_and_flags(cli, tmp_path, example):
    config = _with(example, tmp_path, 'layers = ["user", "user"]')
    result, _ = night(cli, config)
    assert result.exit_code == 78 and "nightly.layers" in result.stderr
    assert "listed more than once" in result.stderr
    config = _with(example, tmp_path, 'layers = ["User Layer"]')
    assert night(cli, config)[0].exit_code == 78
    assert night(cli, example, "--max-cost", "-1")[0].exit_code == 2
    assert night(cli, example, "--as-of", "yesterday")[0].exit_code == 2


def test_an_empty_layer_list_runs_decay_alone(cli, tmp_path, example):
    result, doc = night(cli, _with(example, tmp_path, "layers = []"), "--json")
    assert result.exit_code == 0
    assert [s["step"] for s in doc["steps"]] == ["decay", "analyze"]


# ---------------------------------------------------------------- reflect --list
def test_reflect_list_shows_the_nights_order(cli, tmp_path):
    rows = json.loads(cli("reflect", "--list", "--json").stdout)
    assert [r["name"] for r in rows] == night_layers()
    config = tmp_path / "order.toml"
    config.write_text('[nightly]\nlayers = ["self", "user"]\n')
    rows = json.loads(cli("--config", str(config), "reflect", "--list", "--json").stdout)
    rest = sorted(set(night_layers()) - {"self", "user"})
    assert [r["name"] for r in rows] == ["self", "user", *rest]
