"""`zos reflect` end to end through the CLI (in-process): the bundled example with the offline
reflector, exit codes, flags, locks, and synthesis."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES
from tests.fake_openai import FakeOpenAI, Reply
from tests.reflect_world import GUILD, SELF_ID, build_world
from zos_cli.store import locks

LIST_KEYS = ["id", "topic_key", "label", "category", "content", "sources_scope_max", "created_at",
             "strength", "confidence", "importance", "novelty", "valence", "quarantined",
             "layer_run_id", "effective_strength", "confirmation_count", "last_confirmed_at"]


@pytest.fixture
def example(cli):
    result = cli("ingest", str(EXAMPLES / "export"), "--json")
    assert result.exit_code == 0, result.stderr
    return cli


def test_main_job_on_the_bundled_example(example, db):
    result = example("reflect", "--layer", "user", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["errors"] == []
    assert summary["model"] == "offline" and summary["cost_usd"] == 0
    assert summary["insights_created"] == len(summary["targets"]) > 0
    assert summary["tokens_used"] > 0

    listed = example("insights", "list", "--json")
    rows = json.loads(listed.stdout)
    assert len(rows) == summary["insights_created"]
    assert list(rows[0]) == LIST_KEYS
    for row in rows:
        assert row["category"] == "user_reflection" and row["sources_scope_max"] == "public"
        assert row["confidence"] == 1.0 and row["valence"] == {"curiosity": 0.5}
        assert row["layer_run_id"] == summary["layer_run_id"] and row["quarantined"] is False
        assert " messages read, " in row["content"]
    assert db.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0
    meta = json.loads(db.execute("SELECT metadata FROM insights").fetchone()[0])
    assert meta["reflector"] == "offline" and meta["model"] == "offline"
    # tokens are the context read; the ledger spent them
    spent = db.execute("SELECT sum(-amount) FROM salience_ledger WHERE transaction_type = 'spend'"
                       ).fetchone()[0]
    assert spent == pytest.approx(summary["tokens_used"] * 0.001)


def test_cold_start_says_so_and_exits_0(cli):
    result = cli("reflect", "--layer", "user", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["layer_run_id"] is None and summary["targets"] == []
    assert summary["note"] == ("nothing salient for layer user: no users topic has a balance "
                               "of 10 or more")
    assert result.stderr == ""  # a hint: silent when stderr is not a terminal
    assert summary["note"] in cli("--verbose", "reflect", "--layer", "user").stderr


def test_human_summary(example):
    result = example("reflect", "--layer", "channel")
    assert result.exit_code == 0, result.stderr
    assert "status            completed" in result.stdout
    assert "model             offline" in result.stdout


def test_offline_insight_describes_the_data(db, db_path, tmp_path, cli):
    world = build_world(db, tmp_path, users=3, messages_each=12)
    key = world.user_key("alice")
    balance = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()[0]
    result = cli("reflect", "--layer", "user", "--topic", key, "--json")
    assert result.exit_code == 0, result.stderr
    content, importance, novelty, meta = db.execute(
        "SELECT content, importance, novelty, metadata FROM insights").fetchone()
    assert content.startswith("Alice: 12 messages read, from ")
    assert "Channels: #general (" in content and "Replies most to Carol (" in content
    assert "reactions on these messages, mostly" in content
    assert importance == pytest.approx(min(1.0, balance / 100), abs=1e-4) and novelty == 1.0


def test_offline_supersedes_the_previous_offline_insight(db, tmp_path, cli):
    world = build_world(db, tmp_path, users=3, messages_each=12)
    key = world.user_key("alice")
    assert cli("reflect", "--layer", "user", "--topic", key).exit_code == 0
    first = db.execute("SELECT id FROM insights").fetchone()[0]
    later = tmp_path / "later"
    later.mkdir()
    build_world(db, later, users=3, messages_each=2, start_minutes=5000)
    assert cli("reflect", "--layer", "user", "--topic", key).exit_code == 0
    second, supersedes, novelty = db.execute(
        "SELECT id, supersedes, novelty FROM insights WHERE id <> ?", [first]).fetchone()
    assert supersedes == first and novelty == 0.5
    shown = json.loads(cli("insights", "show", second, "--json").stdout)
    assert shown["supersedes_chain"][0]["id"] == first
    assert len(shown["sources"]["messages"]) == 2
    assert [i["id"] for i in shown["sources"]["insights"]] == [first]
    # nothing new: skipped, nothing written
    result = cli("reflect", "--layer", "user", "--topic", key, "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 0 and summary["layer_run_id"] is None
    assert summary["skipped"] == [{"target": key, "reason": "nothing new since its last reflection"}]


def test_max_targets_and_as_of(db, tmp_path, cli):
    build_world(db, tmp_path, users=4, messages_each=12)
    result = cli("reflect", "--layer", "user", "--max-targets", "1", "--as-of",
                 "2024-03-02T00:00:00-05:00", "--json")
    summary = json.loads(result.stdout)
    assert len(summary["targets"]) == 1
    assert summary["as_of"] == "2024-03-02T05:00:00.000000+00:00"
    assert db.execute("SELECT as_of FROM layer_runs").fetchone()[0] == summary["as_of"]


@pytest.mark.parametrize("args, code, message", [
    (["--layer", "user", "--as-of", "yesterday"], 2,
     "Error: --as-of 'yesterday' is not a time: give an ISO-8601 time such as "
     "2024-03-01T12:00:00+00:00, or `now`\n"),
    (["--layer", "user", "--topic", "server:1001:channel:2001"], 2,
     "Error: --topic server:1001:channel:2001 is a channels topic; layer user reflects on "
     "users topics\n"),
    (["--layer", "user", "--topic", "server:1001:user:55"], 1,  # not found
     "Error: no topic server:1001:user:55 in the database: see `zos salience top` for topics\n"),
    (["--layer", "synthesis", "--topic", "server:1001:user:101"], 2,
     "Error: --topic server:1001:user:101 is server-scoped; layer synthesis folds server "
     "insights into global topics (user:<id> or dyad:<a>:<b>)\n"),
    ([], 2, "Error: --layer NAME is required: see `zos reflect --list` for the layers\n"),
    (["--layer", "user", "--concurrency", "0"], 2, "Error: --concurrency must be at least 1\n"),
])
def test_usage_errors(cli, args, code, message):
    result = cli("reflect", *args)
    assert result.exit_code == code
    assert result.stderr == message


def test_second_run_of_the_same_layer_exits_75(cli, db_path):
    with locks.job_lock(db_path, "reflect-user"):
        result = cli("reflect", "--layer", "user")
    assert result.exit_code == 75
    assert result.stderr == (
        f"Error: another `zos reflect --layer user` is already running on {db_path} "
        f"(lock {locks.lock_path(db_path, 'reflect-user')} is held): try again when it finishes\n")


def _model_toml(tmp_path, base_url) -> str:
    path = tmp_path / "zos.toml"
    path.write_text(
        f'[discord]\nself_user_id = "{SELF_ID}"\n'
        '[reflection]\nretry_backoff_seconds = 0.01\nmax_retries = 0\nrepair_attempts = 0\n'
        f'[models.reflection]\nmodel = "openai/fake-model"\napi_base = "{base_url}"\n')
    return str(path)


def test_configured_model_without_its_key_exits_78(db, tmp_path, cli):
    build_world(db, tmp_path, users=2, messages_each=12)
    config = _model_toml(tmp_path, "http://127.0.0.1:9/v1")
    result = cli("--config", config, "reflect", "--layer", "user")
    assert result.exit_code == 78
    assert result.stderr == (
        "Error: model openai/fake-model (profile reflection) needs OPENAI_API_KEY in the "
        "environment: set OPENAI_API_KEY (or choose another model with --model or ZOS_MODEL)\n")
    assert db.execute("SELECT count(*) FROM layer_runs").fetchone()[0] == 0


def test_partial_run_prints_its_summary_then_exits_1(db, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    build_world(db, tmp_path, users=3, messages_each=12)
    with FakeOpenAI() as server:
        server.enqueue(Reply(status=500))
        config = _model_toml(tmp_path, server.base_url)
        result = cli("--config", config, "reflect", "--layer", "user", "--concurrency", "1",
                     "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "partial" and len(summary["errors"]) == 1
    run_id = summary["layer_run_id"]
    assert result.stderr == (
        f"Error: layer run {run_id} partial: 1 of 3 targets failed; see `zos insights calls "
        f"--run {run_id}`\n")
    calls = json.loads(cli("insights", "calls", "--run", run_id, "--json").stdout)
    assert sorted(c["status"] for c in calls) == ["error", "ok", "ok"]
    runs = json.loads(cli("insights", "runs", "--json").stdout)
    assert runs[0]["status"] == "partial" and runs[0]["errors"] == summary["errors"]


def test_model_flag_offline_beats_the_configured_model(db, tmp_path, cli):
    build_world(db, tmp_path, users=2, messages_each=12)
    config = _model_toml(tmp_path, "http://127.0.0.1:9/v1")
    result = cli("--config", config, "reflect", "--layer", "user", "--model", "offline", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "offline"


def test_synthesis_folds_server_insights_into_the_global_topic(db, tmp_path, cli):
    world = build_world(db, tmp_path, users=2, messages_each=12)
    assert cli("reflect", "--layer", "user").exit_code == 0
    server_ids = {r[0]: r[1] for r in db.execute("SELECT topic_key, id FROM insights")}
    none = cli("reflect", "--layer", "synthesis", "--max-targets", "0", "--dry-run", "--json")
    assert json.loads(none.stdout)["targets"] == []
    result = cli("reflect", "--layer", "synthesis", "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 0, result.stderr
    assert sorted(summary["targets"]) == sorted(world.global_key(n) for n in world.ids)
    alice = world.global_key("alice")
    insight_id, scope, sources = db.execute(
        "SELECT id, sources_scope_max, synthesis_source_ids FROM insights WHERE topic_key = ?",
        [alice]).fetchone()
    assert scope == "public"
    assert json.loads(sources) == [server_ids[world.user_key("alice")]]
    provenance = db.execute("SELECT source_type, source_id FROM insight_sources WHERE "
                            "insight_id = ?", [insight_id]).fetchall()
    assert provenance == [("insight", server_ids[world.user_key("alice")])]
    again = json.loads(cli("reflect", "--layer", "synthesis", "--json").stdout)
    assert again["targets"] == [] and again["layer_run_id"] is None


def test_dm_reflection_on_a_global_user_is_dm_scoped(db, tmp_path, cli):
    world = build_world(db, tmp_path, users=2, messages_each=2, dm_with="alice")
    config = tmp_path / "zos.toml"
    config.write_text(f'[discord]\nself_user_id = "{SELF_ID}"\n')
    result = cli("--config", str(config), "reflect", "--layer", "user", "--topic",
                 world.global_key("alice"), "--json")
    assert result.exit_code == 0, result.stderr
    scope, insight_id = db.execute("SELECT sources_scope_max, id FROM insights").fetchone()
    assert scope == "dm"
    sources = [r[0] for r in db.execute(
        "SELECT source_id FROM insight_sources WHERE insight_id = ?", [insight_id])]
    assert sorted(sources, key=int) == world.dm_message_ids
    public = json.loads(cli("insights", "list", "--scope", "public", "--json").stdout)
    assert public == []
    assert len(json.loads(cli("insights", "list", "--scope", "dm", "--json").stdout)) == 1
    assert GUILD not in scope
