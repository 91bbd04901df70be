"""Reconfirmation and fading (issue 19 §3, docs/reflection.md#reconfirmation-and-fading):
effective strength halves per half-life from the writing run's as-of or the last
reconfirmation; reflection confirms only what it was shown; `insights list` sorts by it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.fake_openai import FakeOpenAI, Reply, valid_answer
from tests.reflect_world import build_world
from tests.test_reflect_model import model_config, run
from zos_cli import strength
from zos_cli.config import Config, Insights
from zos_cli.insights.queries import list_insights
from zos_cli.reflect import material
from zos_cli.salience.batch import ensure_topic
from zos_cli.timeutil import parse_time, to_stored

KEY = "server:1:user:2"
RUN_AS_OF = "2024-03-01T00:00:00.000000+00:00"
WALL_CLOCK = "2030-06-01T00:00:00.000000+00:00"   # when the run happened to be made


def days_after(start: str, days: float) -> str:
    return to_stored(parse_time(start) + timedelta(days=days))


def add_run(db, run_id: str, as_of: str) -> None:
    db.execute("INSERT INTO layer_runs (id, layer_name, layer_hash, status, started_at, as_of) "
               "VALUES (?, 'user', 'h', 'completed', ?, ?)", [run_id, WALL_CLOCK, as_of])


def add_insight(db, insight_id: str, *, value: float = 2.0, category: str = "user_reflection",
                run_id: str | None = "RUN1", metadata: dict | None = None,
                created_at: str = WALL_CLOCK, topic: str = KEY) -> None:
    ensure_topic(db, topic, WALL_CLOCK)
    db.execute(
        "INSERT INTO insights (id, topic_key, category, content, sources_scope_max, layer_run_id, "
        "strength, confidence, importance, novelty, valence_joy, created_at, metadata) "
        "VALUES (?, ?, ?, ?, 'public', ?, ?, 0.5, 0.5, 0.5, 0.5, ?, ?)",
        [insight_id, topic, category, f"insight {insight_id}", run_id, value, created_at,
         json.dumps(metadata) if metadata is not None else None])
    db.conn.commit()


def effective(db, insight_id: str, as_of: str, settings: Insights | None = None) -> float:
    rows = {r["id"]: r for r in list_insights(db, as_of=as_of, limit=None, settings=settings)}
    return rows[insight_id]["effective_strength"]


# ---------------------------------------------------------------- the function
def test_the_function_halves_per_half_life_and_never_grows():
    settings = Config().insights
    assert strength.effective_strength(2.0, "user_reflection", RUN_AS_OF,
                                       days_after(RUN_AS_OF, 180), settings) == pytest.approx(1.0)
    assert strength.effective_strength(2.0, "channel_reflection", RUN_AS_OF,
                                       days_after(RUN_AS_OF, 120), settings) == pytest.approx(0.5)
    assert strength.effective_strength(2.0, "synthesis", RUN_AS_OF,
                                       days_after(RUN_AS_OF, 365), settings) == pytest.approx(1.0)
    # A category no table names (a custom layer's) halves in 180 days.
    assert strength.effective_strength(2.0, "custom_reflection", RUN_AS_OF,
                                       days_after(RUN_AS_OF, 180), settings) == pytest.approx(1.0)
    # Asked as of a time before the insight was made: its strength, not more.
    assert strength.effective_strength(2.0, "user_reflection", RUN_AS_OF,
                                       days_after(RUN_AS_OF, -30), settings) == 2.0


def test_half_lives_come_from_config_key_by_key():
    settings = Config.model_validate(
        {"insights": {"half_life_days": {"channel_reflection": 10}}}).insights
    assert settings.half_life("channel_reflection") == 10
    assert settings.half_life("user_reflection") == 180 and settings.half_life("synthesis") == 365
    assert Config().insights.half_life_days == {
        "user_reflection": 180, "dyad_reflection": 180, "channel_reflection": 60,
        "subject_reflection": 120, "emoji_reflection": 90, "self_reflection": 30,
        "synthesis": 365, "reconcile": 180}
    with pytest.raises(ValueError, match="above 0"):
        Config.model_validate({"insights": {"half_life_days": {"user_reflection": 0}}})


# ---------------------------------------------------------------- the clock it counts from
def test_a_user_insight_halves_180_days_after_its_runs_as_of_not_its_created_at(db):
    add_run(db, "RUN1", RUN_AS_OF)
    add_insight(db, "I1")
    assert effective(db, "I1", RUN_AS_OF) == pytest.approx(2.0)
    assert effective(db, "I1", days_after(RUN_AS_OF, 180)) == pytest.approx(1.0)
    assert effective(db, "I1", days_after(RUN_AS_OF, 360)) == pytest.approx(0.5)
    # The config's half-life is the one used.
    halved_fast = Config.model_validate(
        {"insights": {"half_life_days": {"user_reflection": 90}}}).insights
    assert effective(db, "I1", days_after(RUN_AS_OF, 180), halved_fast) == pytest.approx(0.5)


def test_a_confirmation_restarts_the_clock(db):
    add_run(db, "RUN1", RUN_AS_OF)
    add_insight(db, "I1")
    confirmed = days_after(RUN_AS_OF, 100)
    db.execute("UPDATE insights SET confirmation_count = 1, last_confirmed_at = ? WHERE id = 'I1'",
               [confirmed])
    db.conn.commit()
    assert effective(db, "I1", days_after(RUN_AS_OF, 180)) == pytest.approx(
        2.0 * 0.5 ** (80 / 180))
    assert effective(db, "I1", days_after(confirmed, 180)) == pytest.approx(1.0)


def test_without_its_run_row_the_clock_starts_at_the_metadata_as_of_else_created_at(db):
    add_insight(db, "META", run_id=None, metadata={"as_of": RUN_AS_OF})
    add_insight(db, "BARE", run_id=None, metadata=None, created_at=RUN_AS_OF)
    add_insight(db, "BAD", run_id=None, created_at=RUN_AS_OF)
    db.execute("UPDATE insights SET metadata = 'not json' WHERE id = 'BAD'")
    db.conn.commit()
    later = days_after(RUN_AS_OF, 180)
    assert effective(db, "META", later) == pytest.approx(1.0)
    assert effective(db, "BARE", later) == pytest.approx(1.0)
    assert effective(db, "BAD", later) == pytest.approx(1.0)


# ---------------------------------------------------------------- insights list
def test_list_sorts_by_effective_strength_by_default_and_has_the_new_keys(db, cli):
    add_run(db, "RUN_OLD", RUN_AS_OF)
    add_run(db, "RUN_NEW", days_after(RUN_AS_OF, 360))
    # OLD is stronger but two half-lives older; NEW is weaker, fresh; created_at the other way.
    add_insight(db, "OLD", value=3.0, run_id="RUN_OLD", created_at=days_after(WALL_CLOCK, 1))
    add_insight(db, "NEW", value=1.0, run_id="RUN_NEW")
    as_of = days_after(RUN_AS_OF, 360)

    def ids(*args):
        result = cli("insights", "list", "--json", "--as-of", as_of, *args)
        assert result.exit_code == 0, result.stderr
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids() == ids("--sort", "effective") == ["NEW", "OLD"]   # 1.0 beats 0.75
    assert ids("--sort", "strength") == ["OLD", "NEW"]
    assert ids("--sort", "created") == ["OLD", "NEW"]               # newest created first
    # At the old run's own as-of, nothing has faded yet.
    early = json.loads(cli("insights", "list", "--json", "--as-of", RUN_AS_OF).stdout)
    assert [r["id"] for r in early] == ["OLD", "NEW"]

    rows = {r["id"]: r for r in json.loads(
        cli("insights", "list", "--json", "--as-of", as_of).stdout)}
    assert list(rows["OLD"])[-3:] == ["effective_strength", "confirmation_count",
                                      "last_confirmed_at"]
    assert rows["OLD"]["effective_strength"] == pytest.approx(0.75)
    assert rows["OLD"]["strength"] == 3.0            # the stored strength keeps its meaning
    assert rows["OLD"]["confirmation_count"] == 0 and rows["OLD"]["last_confirmed_at"] is None
    shown = json.loads(cli("insights", "show", "OLD", "--json", "--as-of", as_of).stdout)
    assert shown["effective_strength"] == pytest.approx(0.75)

    bad = cli("insights", "list", "--sort", "loudest")
    assert bad.exit_code == 2 and "--sort 'loudest'" in bad.stderr
    assert cli("insights", "list", "--as-of", "soon").exit_code == 2


def test_list_as_of_defaults_to_the_data_clock(db, cli, tmp_path):
    world = build_world(db, tmp_path, users=2, messages_each=3)
    newest = db.execute("SELECT max(created_at) FROM messages").fetchone()[0]
    add_run(db, "RUN1", days_after(newest, -180))
    add_insight(db, "I1", topic=world.user_key("alice"))
    rows = json.loads(cli("insights", "list", "--json").stdout)
    assert rows[0]["effective_strength"] == pytest.approx(1.0)


# ---------------------------------------------------------------- prior insights in context
def test_deep_and_balanced_retrieval_put_the_effectively_strongest_first(db):
    add_run(db, "RUN_OLD", RUN_AS_OF)
    add_run(db, "RUN_NEW", days_after(RUN_AS_OF, 360))
    add_insight(db, "OLD", value=3.0, run_id="RUN_OLD")
    add_insight(db, "NEW", value=1.0, run_id="RUN_NEW", created_at=days_after(WALL_CLOCK, -1))
    target = material.target_from_key(KEY)
    late = days_after(RUN_AS_OF, 360)
    deep = material.prior_insights(db, target, "deep", late)
    assert [r["id"] for r in deep] == ["NEW", "OLD"]
    assert deep[1]["effective_strength"] == pytest.approx(0.75)
    # Balanced alternates newest and strongest: the newest (by created_at) is OLD here, so
    # the strongest slot is NEW's — and at the old run's own as-of, OLD would win both.
    assert [r["id"] for r in material.prior_insights(db, target, "deep", RUN_AS_OF)] == [
        "OLD", "NEW"]
    balanced = material.prior_insights(db, target, "balanced", late)
    assert [r["id"] for r in balanced] == ["OLD", "NEW"]
    assert {r["id"] for r in material.prior_insights(db, target, "recent", late)} == {
        "OLD", "NEW"}


# ---------------------------------------------------------------- reconfirmation by a model
@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as fake:
        yield fake


def test_a_model_run_confirms_only_the_insights_it_was_shown(db, db_path, tmp_path, server):
    world = build_world(db, tmp_path, users=4, messages_each=12)
    config = model_config(server)
    alice, bob = world.user_key("alice"), world.user_key("bob")
    run(db, db_path, config, topic=alice)
    run(db, db_path, config, topic=bob)
    (first,) = [r[0] for r in db.execute("SELECT id FROM insights WHERE topic_key = ?", [alice])]
    (bobs,) = [r[0] for r in db.execute("SELECT id FROM insights WHERE topic_key = ?", [bob])]
    assert db.execute("SELECT confirmation_count, last_confirmed_at FROM insights "
                      "WHERE id = ?", [first]).fetchone() == (0, None)

    later = tmp_path / "later"
    later.mkdir()
    build_world(db, later, users=4, messages_each=2, start_minutes=10_000)
    # bob's insight exists but is not in alice's context; the other id exists nowhere.
    server.enqueue(Reply(content=valid_answer(
        2, confirms=[first, bobs, "01NOTSHOWN0000000000000000"])))
    summary = run(db, db_path, config, topic=alice)
    assert summary["status"] == "completed"
    assert first in server.requests[-1].prompt_text
    as_of = db.execute("SELECT as_of FROM layer_runs WHERE id = ?",
                       [summary["layer_run_id"]]).fetchone()[0]

    # Two new insights both name it: one reflection, one confirmation.
    assert db.execute("SELECT confirmation_count, last_confirmed_at FROM insights WHERE id = ?",
                      [first]).fetchone() == (1, as_of)
    assert db.execute("SELECT confirmation_count, last_confirmed_at FROM insights WHERE id = ?",
                      [bobs]).fetchone() == (0, None)
    new = db.execute("SELECT metadata FROM insights WHERE layer_run_id = ?",
                     [summary["layer_run_id"]]).fetchall()
    assert len(new) == 2 and all(json.loads(m)["confirms"] == [first] for (m,) in new)

    # Its clock now starts at the confirming run's as-of.
    assert effective(db, first, days_after(as_of, 180)) == pytest.approx(
        db.execute("SELECT strength FROM insights WHERE id = ?", [first]).fetchone()[0] / 2)


def test_the_answer_schema_offers_confirms():
    from zos_cli.reflect.schema import InsightOut, output_json_schema, parse_answer

    assert InsightOut.model_fields["confirms"].default_factory() == []
    item = output_json_schema()["properties"]["insights"]["items"]
    assert "confirms" in item["required"] and item["properties"]["confirms"]["type"] == "array"
    answer = parse_answer(json.dumps(valid_answer(confirms=["A", "B"])))
    assert answer.insights[0].confirms == ["A", "B"]


def test_list_reads_the_half_lives_of_the_config_file(db, db_path, tmp_path):
    from tests.conftest import Cli

    add_run(db, "RUN1", RUN_AS_OF)
    add_insight(db, "I1")
    config = tmp_path / "fading.toml"
    config.write_text("[insights.half_life_days]\nuser_reflection = 90\n")
    later = days_after(RUN_AS_OF, 180)
    result = Cli(db_path)("--config", str(config), "insights", "list", "--json", "--as-of", later)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["effective_strength"] == pytest.approx(0.5)
