"""`zos insights about REF`: memory cards (issue 20 §3, docs/insights.md#memory-cards).

The real CLI on a real SQLite file: the bundled example after ingest and an offline user
reflection (what `make demo` shows), and a built world with insights of known strengths and
ages, supersedes chains, open questions, subjects, dyads and ledger rows at known times."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import EXAMPLES, Cli
from tests.reflect_world import GUILD, SELF_ID, build_world
from zos_cli.insights.card_text import estimate_tokens
from zos_cli.salience.batch import ensure_topic
from zos_cli.store import db as database

THEO = "612993005118177290"
TIDEPOOL = "1093876543210987520"
CARD_KEYS = {"ref", "label", "topic_key", "scope", "as_of", "insights", "open_questions",
             "subjects", "closest", "salience"}
SNOWFLAKE_OR_ULID = re.compile(r"\d{15,21}|\b[0-9A-HJKMNP-TV-Z]{26}\b")


def card(cli, *args) -> dict:
    result = cli("insights", "about", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == CARD_KEYS
    return doc


def text(cli, *args) -> str:
    result = cli("insights", "about", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------- the bundled example
@pytest.fixture
def example(db_path):
    cli = Cli(db_path)
    config = str(EXAMPLES / "zos.toml")
    for args in (("ingest", str(EXAMPLES / "export")), ("reflect", "--layer", "user")):
        result = cli("--config", config, *args)
        assert result.exit_code == 0, result.stderr
    return lambda *args: cli("--config", config, *args)


def test_theos_card_on_the_bundled_example_in_three_formats(example):
    key = f"server:{TIDEPOOL}:user:{THEO}"
    doc = card(example, "@theo")
    assert (doc["ref"], doc["label"], doc["topic_key"], doc["scope"]) == (
        "@theo", "Theo (Tidepool Makers)", key, "public")
    listed = json.loads(example("insights", "list", "--topic", key, "--json").stdout)
    assert doc["insights"] == listed and len(listed) == 1
    assert doc["insights"][0]["label"] == "Theo (Tidepool Makers)"
    assert doc["insights"][0]["content"].startswith("Theo: 7 messages read")
    # Closest: the other side of Theo's dyads, strongest first, by name.
    assert [c["label"] for c in doc["closest"]] == [
        "Jun (Tidepool Makers)", "Maren (Tidepool Makers)", "Priya (Tidepool Makers)"]
    assert [c["balance"] for c in doc["closest"]] == sorted(
        (c["balance"] for c in doc["closest"]), reverse=True)
    balance = example("salience", "show", key, "--json")
    assert doc["salience"]["balance"] == pytest.approx(json.loads(balance.stdout)["balance"])
    assert doc["salience"]["trend"]["direction"] == "rising"   # all of it within 30 days
    assert doc["open_questions"] == []   # the offline reflector asks none
    # ... but names Theo's most distinctive term, the kiln, as his insight's subject
    assert [(s["label"], s["topic_key"]) for s in doc["subjects"]] == [
        ("subject kiln (Tidepool Makers)", f"server:{TIDEPOOL}:subject:kiln")]

    md = text(example, "@theo")
    assert md.startswith("# Theo (Tidepool Makers)\n")
    for part in ("## Salience", "## Insights, strongest first", "1. Theo: 7 messages read",
                 "## Closest", "- Jun (Tidepool Makers) · ", "## Open questions\n\nNone."):
        assert part in md

    block = text(example, "@theo", "--format", "prompt")
    assert "What zos remembers about Theo (Tidepool Makers)" in block
    assert "Closest to: Jun, Maren, Priya." in block and "- Theo: 7 messages read" in block
    assert not SNOWFLAKE_OR_ULID.search(block), block
    assert doc["insights"][0]["id"] not in block and key not in block
    assert estimate_tokens(block.rstrip("\n")) <= 400
    for bound in (90, 120, 200):
        small = text(example, "@theo", "--format", "prompt", "--max-tokens", str(bound))
        assert estimate_tokens(small.rstrip("\n")) <= bound
        lines = small.splitlines()
        assert lines.count("BEGIN ZOS NOTES") == 1 and lines[-1] == "END ZOS NOTES"
        assert "Closest to: Jun, Maren, Priya." in lines
    cut = text(example, "@theo", "--format", "prompt", "--max-tokens", "120").splitlines()
    assert [line for line in cut if line.startswith("- Theo: 7 messages read")][0].endswith(" …")
    assert not any(line.startswith("- ") for line in text(
        example, "@theo", "--format", "prompt", "--max-tokens", "90").splitlines())


def test_the_card_takes_a_key_a_channel_and_a_dyad_reference(example):
    by_key = card(example, f"server:{TIDEPOOL}:user:{THEO}")
    assert by_key["label"] == "Theo (Tidepool Makers)"
    channel = card(example, "#general")
    assert channel["label"] == "#general (Tidepool Makers)" and channel["closest"]
    assert all(c["topic_key"].startswith(f"server:{TIDEPOOL}:user:") for c in channel["closest"])
    assert "Most present: " in text(example, "#general", "--format", "prompt")
    assert card(example, "@theo+@jun")["label"] == "Theo ↔ Jun (Tidepool Makers)"


def test_references_that_match_none_or_several_are_exit_2(example, db_path):
    none = example("insights", "about", "@thoe")
    assert none.exit_code == 2 and "the closest is @Theo" in none.stderr
    db = database.open_database(db_path)
    db.execute("UPDATE users SET display_name = 'Theo' WHERE id = ?", ["894455120033614862"])
    db.conn.commit()
    db.close()
    several = example("insights", "about", "@theo")
    assert several.exit_code == 2 and "matches 2 topics" in several.stderr
    assert "Traceback" not in several.stderr + several.stdout
    assert example("insights", "about", "user:1").exit_code == 1   # a key never stored
    assert example("insights", "about", "nonsense").exit_code == 2
    for args, words in ((("--format", "yaml"), "choose md, json or prompt"),
                        (("--max-tokens", "100"), "--max-tokens bounds --format prompt"),
                        (("--format", "prompt", "--max-tokens", "20"), "too small"),
                        (("--scope", "everything"), "choose public, dm or derived"),
                        (("--json", "--format", "md"), "--json prints JSON")):
        result = example("insights", "about", f"server:{TIDEPOOL}:user:{THEO}", *args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.stderr)


# ---------------------------------------------------------------- a built world
T = "2024-06-30T00:00:00.000000+00:00"      # the card's as-of in most tests
T0 = "2024-03-02T00:00:00.000000+00:00"     # 120 days before
QUESTION = "Does Alice fire her own pots?"


def add_run(db, run_id: str, as_of: str) -> None:
    db.execute("INSERT INTO layer_runs (id, layer_name, layer_hash, status, started_at, as_of) "
               "VALUES (?, 'user', 'h', 'completed', ?, ?)", [run_id, as_of, as_of])


def add_insight(db, insight_id: str, topic: str, *, value: float, run: str,
                category: str = "user_reflection", scope: str = "public", quarantined: int = 0,
                supersedes: str | None = None, subject: str | None = None,
                questions: tuple[str, ...] = (), participants: tuple[str, ...] = (),
                channel: str | None = None) -> None:
    ensure_topic(db, topic, T0)
    db.execute(
        "INSERT INTO insights (id, topic_key, category, content, sources_scope_max, layer_run_id, "
        "quarantined, supersedes, subject, open_questions, participants, context_channel, "
        "strength, confidence, importance, novelty, valence_joy, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0.5, 0.5, 0.5, 0.5, ?)",
        [insight_id, topic, category, f"insight {insight_id.lower()} about glazing", scope, run,
         quarantined, supersedes, subject, json.dumps(list(questions)),
         json.dumps(list(participants)), channel, value, "2030-01-01T00:00:00.000000+00:00"])


def ledger(db, key: str, amount: float, at: str) -> None:
    ensure_topic(db, key, T0)
    db.execute("INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
               "created_at) VALUES (lower(hex(randomblob(8))), ?, 'earn', ?, 'test', ?)",
               [key, amount, at])


@pytest.fixture
def world(db, tmp_path, cli):
    w = build_world(db, tmp_path, users=4, messages_each=6)
    alice, bob, carol, dave = (w.ids[n] for n in ("alice", "bob", "carol", "dave"))
    key = w.user_key("alice")
    add_run(db, "RUNOLD", T0)
    add_run(db, "RUNNEW", T)
    # At T: A 2.0 halved twice (60-day half-life, 120 days) = 0.5; B 1.0 and D 0.9 (new);
    # C (1.5 at 120 of 180 days = 0.94) is superseded by D; E (quarantined) supersedes B.
    add_insight(db, "A" * 26, key, value=2.0, run="RUNOLD", category="channel_reflection")
    add_insight(db, "B" * 26, key, value=1.0, run="RUNNEW", subject="kiln", questions=(QUESTION,))
    add_insight(db, "C" * 26, key, value=1.5, run="RUNOLD", questions=("A stale question?",))
    add_insight(db, "D" * 26, key, value=0.9, run="RUNNEW", supersedes="C" * 26,
                questions=(QUESTION.lower(), "Which glaze does she favour?"))
    add_insight(db, "E" * 26, key, value=3.0, run="RUNNEW", supersedes="B" * 26, quarantined=1,
                subject="quarantined_subject", questions=("A quarantined question?",))
    add_insight(db, "F" * 26, key, value=5.0, run="RUNNEW", scope="dm", subject="divorce",
                questions=("A private question?",))
    add_insight(db, "G" * 26, key, value=5.0, run="RUNNEW", scope="derived",
                questions=("A derived question?",))
    subject = f"server:{GUILD}:subject:"
    add_insight(db, "H" * 26, subject + "glaze", value=1.0, run="RUNNEW",
                category="subject_reflection", participants=(alice, bob))
    add_insight(db, "J" * 26, subject + "secrets", value=1.0, run="RUNNEW",
                category="subject_reflection", scope="dm", participants=(alice,))
    add_insight(db, "K" * 26, subject + "pottery", value=1.0, run="RUNNEW",
                category="subject_reflection", participants=(bob, carol))
    for name, amount in (("kiln", 12.0), ("glaze", 20.0), ("divorce", 30.0), ("secrets", 40.0),
                         ("quarantined_subject", 50.0), ("pottery", 60.0)):
        ledger(db, subject + name, amount, T0)
    # Closest: carol's dyad gains 1000 the day before T; dave's 5000 the day after.
    ledger(db, f"server:{GUILD}:dyad:{alice}:{carol}", 1000.0, "2024-06-29T00:00:00.000000+00:00")
    ledger(db, f"server:{GUILD}:dyad:{alice}:{dave}", 5000.0, "2024-07-01T00:00:00.000000+00:00")
    # Trend: +50 ten days before T, -30 twenty days after it.
    ledger(db, key, 50.0, "2024-06-20T00:00:00.000000+00:00")
    ledger(db, key, -30.0, "2024-07-20T00:00:00.000000+00:00")
    db.conn.commit()
    return w


def test_insights_are_the_current_ones_strongest_first_at_the_as_of(world, cli):
    key = world.user_key("alice")
    doc = card(cli, "@alice", "--as-of", T)
    assert [r["id"][0] for r in doc["insights"]] == ["B", "D", "A"]
    assert [r["effective_strength"] for r in doc["insights"]] == pytest.approx([1.0, 0.9, 0.5])
    listed = json.loads(cli("insights", "list", "--topic", key, "--as-of", T, "--scope",
                            "public", "--json").stdout)
    assert doc["insights"] == [r for r in listed if r["id"] != "C" * 26]
    # As of T0 the old ones are at full strength and the new ones not yet faded.
    assert [r["id"][0] for r in card(cli, "@alice", "--as-of", T0)["insights"]] == ["A", "B", "D"]
    assert [r["id"][0] for r in card(cli, "@alice", "--as-of", T, "--limit", "2")["insights"]] \
        == ["B", "D"]


def test_open_questions_of_the_current_insights_once_each(world, cli):
    doc = card(cli, "@alice", "--as-of", T)
    assert doc["open_questions"] == [
        {"question": QUESTION, "insight_id": "B" * 26},
        {"question": "Which glaze does she favour?", "insight_id": "D" * 26}]


def test_subjects_named_by_its_insights_or_made_from_its_messages(world, cli):
    doc = card(cli, "@alice", "--as-of", T)
    # Glaze: made from alice's (and bob's) messages; kiln: named by her insight B. Not
    # pottery (bob and carol's), nor what dm, derived or quarantined insights name.
    assert doc["subjects"] == [
        {"label": "subject glaze (Test Guild)", "topic_key": f"server:{GUILD}:subject:glaze",
         "balance": 20.0},
        {"label": "subject kiln (Test Guild)", "topic_key": f"server:{GUILD}:subject:kiln",
         "balance": 12.0}]
    assert "Linked subjects: glaze, kiln." in text(cli, "@alice", "--as-of", T, "--format",
                                                    "prompt")
    carol = card(cli, "@carol", "--as-of", T)
    assert [s["topic_key"].rsplit(":", 1)[1] for s in carol["subjects"]] == ["pottery"]
    # A pair: subjects made from both sides' messages.
    pair = card(cli, "@alice+@bob", "--as-of", T)
    assert [s["topic_key"].rsplit(":", 1)[1] for s in pair["subjects"]] == ["glaze"]


def test_closest_by_dyad_balance_at_the_as_of(world, cli, db):
    alice = world.ids["alice"]

    def dyad_balance(other: str, at: str) -> float:
        a, b = sorted((alice, world.ids[other]), key=int)
        return db.execute("SELECT coalesce(sum(amount), 0) FROM salience_ledger WHERE "
                          "topic_key = ? AND created_at <= ?",
                          [f"server:{GUILD}:dyad:{a}:{b}", at]).fetchone()[0]

    doc = card(cli, "@alice", "--as-of", T)
    assert (doc["closest"][0]["label"], doc["closest"][0]["topic_key"]) == (
        "Carol (Test Guild)", world.user_key("carol"))
    assert doc["closest"][0]["balance"] == pytest.approx(dyad_balance("carol", T))
    assert world.user_key("dave") in {c["topic_key"] for c in doc["closest"]}
    assert all(c["balance"] == pytest.approx(dyad_balance(
        next(n for n in world.ids if world.user_key(n) == c["topic_key"]), T))
        for c in doc["closest"])
    later = card(cli, "@alice", "--as-of", "2024-07-02")
    assert later["closest"][0]["topic_key"] == world.user_key("dave")
    assert later["closest"][0]["balance"] == pytest.approx(dyad_balance("dave", "2024-07-02"))
    block = text(cli, "@alice", "--as-of", T, "--format", "prompt")
    assert "Closest to: Carol, " in block


def test_someone_known_with_no_topic_yet_has_an_empty_card(world, cli, db):
    db.execute("INSERT INTO users (id, name) VALUES ('190', 'zed')")
    db.execute("INSERT INTO user_server_tracking (user_id, server_id, nickname) "
               "VALUES ('190', ?, 'Zed')", [GUILD])
    db.conn.commit()
    doc = card(cli, "@zed")
    assert (doc["label"], doc["insights"], doc["open_questions"], doc["subjects"],
            doc["closest"]) == ("Zed (Test Guild)", [], [], [], [])
    assert doc["salience"]["balance"] == 0 and doc["salience"]["trend"]["direction"] == "steady"
    assert "None in scope public yet" in text(cli, "@zed")
    assert "- (none yet)" in text(cli, "@zed", "--format", "prompt")


def test_salience_and_its_trend_from_the_ledger_as_of(world, cli, db):
    key = world.user_key("alice")
    before = db.execute("SELECT coalesce(sum(amount), 0) FROM salience_ledger WHERE topic_key = ? "
                        "AND created_at <= '2024-06-01'", [key]).fetchone()[0]
    rising = card(cli, "@alice", "--as-of", T)["salience"]
    assert rising["balance"] == pytest.approx(before + 50)
    assert rising["trend"] == {"days": 30, "since": "2024-05-31T00:00:00.000000+00:00",
                               "balance_then": pytest.approx(before),
                               "change": pytest.approx(50.0), "direction": "rising"}
    falling = card(cli, "@alice", "--as-of", "2024-08-01")["salience"]
    assert falling["balance"] == pytest.approx(before + 20)
    assert (falling["trend"]["change"], falling["trend"]["direction"]) == (
        pytest.approx(-30.0), "falling")
    steady = card(cli, "@alice", "--as-of", "2024-12-01")["salience"]
    assert (steady["trend"]["change"], steady["trend"]["direction"]) == (0.0, "steady")
    # Without --as-of: the data's clock (the newest message), as for insights list.
    newest = db.execute("SELECT max(created_at) FROM messages").fetchone()[0]
    assert card(cli, "@alice")["as_of"] == newest


# ---------------------------------------------------------------- privacy
PRIVATE = ("F" * 26, "G" * 26, "E" * 26, "J" * 26, "A private question?", "A derived question?",
           "A quarantined question?", "divorce", "secrets", "quarantined_subject",
           "insight f", "insight g", "insight e")


def test_a_public_card_never_shows_dm_derived_or_quarantined_insights(world, cli):
    for fmt in ("json", "md", "prompt"):
        out = text(cli, "@alice", "--as-of", T, "--format", fmt)
        assert out.strip()
        for needle in PRIVATE:
            assert needle not in out, (fmt, needle)
    # Quarantined stays out of every scope.
    for scope in ("public", "dm", "derived"):
        out = text(cli, "@alice", "--as-of", T, "--format", "json", "--scope", scope)
        for needle in ("E" * 26, "A quarantined question?", "quarantined_subject"):
            assert needle not in out


def test_scope_widens_the_card_as_insights_list_does(world, cli):
    dm = card(cli, "@alice", "--as-of", T, "--scope", "dm")
    assert [r["id"] for r in dm["insights"]] == ["F" * 26]
    assert dm["open_questions"] == [{"question": "A private question?", "insight_id": "F" * 26}]
    assert {s["topic_key"].rsplit(":", 1)[1] for s in dm["subjects"]} == {"divorce", "secrets"}
    derived = card(cli, "@alice", "--as-of", T, "--scope", "derived")
    assert [r["id"] for r in derived["insights"]] == ["G" * 26]
    block = text(cli, "@alice", "--as-of", T, "--scope", "dm", "--format", "prompt")
    assert "insight f" in block and "keep them private" in block


def test_a_dm_reflection_never_reaches_a_public_card(db, tmp_path, cli):
    """Through the real path: alice's DMs with zos reflected on her global topic (dm scope)."""
    world = build_world(db, tmp_path, users=2, messages_each=2, dm_with="alice",
                        dm_texts=("my secret kiln recipe", "tell me more", "cobalt and ash"))
    config = tmp_path / "zos.toml"
    config.write_text(f'[discord]\nself_user_id = "{SELF_ID}"\n')
    result = cli("--config", str(config), "reflect", "--layer", "user", "--topic",
                 world.global_key("alice"))
    assert result.exit_code == 0, result.stderr
    insight_id, content = db.execute("SELECT id, content FROM insights").fetchone()
    assert db.execute("SELECT sources_scope_max FROM insights").fetchone()[0] == "dm"
    for fmt in ("json", "md", "prompt"):
        out = text(cli, "@alice", "--global", "--format", fmt)
        for needle in (insight_id, content[:40], "secret kiln", "cobalt"):
            assert needle not in out, (fmt, needle)
    widened = card(cli, "@alice", "--global", "--scope", "dm")
    assert [r["id"] for r in widened["insights"]] == [insight_id]
    assert widened["insights"][0]["content"] == content and content[:40] in text(
        cli, "@alice", "--global", "--scope", "dm", "--format", "prompt")


def test_people_the_gate_keeps_out_are_chat_n_on_a_card(db, tmp_path, cli):
    world = build_world(db, tmp_path, users=4, messages_each=6, gated=("dave",))
    gate = tmp_path / "gate.toml"
    gate.write_text(f'[servers."{GUILD}"]\nprivacy_gate_role = "7001"\n')
    doc = json.loads(cli("--config", str(gate), "insights", "about", "@alice", "--json").stdout)
    labels = {c["topic_key"]: c["label"] for c in doc["closest"]}
    assert labels[world.user_key("dave")] == "<chat_1> (Test Guild)"
    block = cli("--config", str(gate), "insights", "about", "@alice", "--format", "prompt").stdout
    assert "<chat_1>" in block and "Dave" not in block
