"""`zos salience …`: every subcommand, its JSON keys, exit codes and exact error messages."""

from __future__ import annotations

import json

import pytest

from tests.salience_support import T0, earn_all, msg, run
from zos_cli.store import db as database
from zos_cli.store import locks

TOP_KEYS = ["topic_key", "label", "category", "group", "balance", "last_activity_at"]


@pytest.fixture
def filled(db_path, db, config):
    """Two users talking in a channel of server 1, one message in server 2, a subject."""
    events = [msg(10 + i, "100" if i % 2 else "200", reply_to_author_id="200" if i % 2 else None)
              for i in range(12)]
    events.append(msg(40, "300", server="2", channel="20"))
    run(db, config, events)
    earn_all(db, config, [("server:1:subject:chess", 12.0)])
    return db_path


def test_top_json_rows_have_exactly_the_documented_keys(cli, filled):
    r = cli("salience", "top", "--json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and all(list(row) == TOP_KEYS for row in rows)
    balances = [row["balance"] for row in rows]
    assert balances == sorted(balances, reverse=True)
    assert rows[0]["topic_key"] == "server:1:channel:10"


def test_top_filters_and_nl(cli, filled):
    rows = json.loads(cli("salience", "top", "--json", "--group", "semantic").stdout)
    assert [r["topic_key"] for r in rows] == ["server:1:subject:chess"]
    rows = json.loads(cli("salience", "top", "--json", "--category", "dyads").stdout)
    assert {r["category"] for r in rows} == {"dyads"}
    rows = json.loads(cli("salience", "top", "--json", "--server", "2").stdout)
    assert {r["topic_key"].split(":")[1] for r in rows} == {"2"} and len(rows) == 3
    lines = cli("salience", "top", "--nl", "--limit", "2").stdout.splitlines()
    assert len(lines) == 2 and list(json.loads(lines[0])) == TOP_KEYS
    table = cli("salience", "top", "--limit", "1").stdout
    assert "channel 10 (server 1)" in table and "server:1:channel:10" not in table
    assert "server:1:channel:10" in cli("salience", "top", "--limit", "1", "--keys").stdout


def test_equal_balances_are_ordered_by_last_activity_then_key(cli, tmp_path):
    from tests.exports import Export, message, snowflake, user

    # user 101 speaks first, 108 five minutes later: each topic earns the same 1.0, and the
    # newer activity comes first although its key sorts after.
    first, later = user("101", "alice"), user("108", "bob")
    path = Export(messages=[message(snowflake(0), first, "a"),
                            message(snowflake(5), later, "b")]).write(tmp_path / "g.json")
    assert cli("ingest", str(path)).exit_code == 0
    ones = [r for r in json.loads(cli("salience", "top", "--json", "--limit", "50").stdout)
            if r["balance"] == 1.0]
    assert [r["topic_key"] for r in ones] == [
        "server:1001:user:108", "server:1001:user_in_channel:2001:108",  # newest, then by key
        "server:1001:user:101", "server:1001:user_in_channel:2001:101"]
    # status's top salience orders them the same way
    tied = [r["topic_key"] for r in json.loads(cli("status", "--json").stdout)["top_salience"]
            if r["balance"] == 1.0]
    assert len(tied) >= 2 and tied == [r["topic_key"] for r in ones][:len(tied)]


def test_top_on_an_empty_database_is_an_empty_list(cli):
    r = cli("salience", "top", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_top_rejects_an_unknown_group(cli):
    r = cli("salience", "top", "--group", "vibes")
    assert r.exit_code == 2
    assert r.stderr == ("Error: --group 'vibes' is not a budget group: choose one of social, "
                        "global, spaces, semantic, culture, self\n")


def test_show_json(cli, filled):
    r = cli("salience", "show", "server:1:user:100", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"topic_key", "category", "group", "balance", "cap", "warm", "last_activity_at",
            "related", "sparkline", "history", "ledger_rows"} <= doc.keys()
    assert doc["cap"] == 100.0 and doc["group"] == "social" and doc["warm"] is True
    related = {r["topic_key"] for r in doc["related"]}
    assert related == {"server:1:dyad:100:200", "server:1:user_in_channel:10:100"}
    assert len(doc["sparkline"]) == len(doc["history"]) == 1
    assert doc["label"] == "user 100 (server 1)"   # no users row: the id (docs/labels.md)
    assert {r["label"] for r in doc["related"]} == {"user 100 ↔ user 200 (server 1)",
                                                    "user 100 in channel 10"}
    human = cli("salience", "show", "server:1:user:100").stdout
    assert "balance by day" in human and "user 100 ↔ user 200 (server 1)" in human
    assert "server:1:" not in human
    assert "server:1:dyad:100:200" in cli("salience", "show", "server:1:user:100", "--keys").stdout


def test_show_unknown_and_invalid_keys(cli, filled):
    r = cli("salience", "show", "server:1:user:9")
    assert r.exit_code == 1
    assert r.stderr == ("Error: no topic server:1:user:9 in the database: see `zos salience top` "
                        "for the topics zos knows\n")
    r = cli("salience", "show", "server:1:usr:9")
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: invalid topic key 'server:1:usr:9': unknown kind 'usr' (")


def test_ledger_explains_the_balance(cli, filled, db):
    r = cli("salience", "ledger", "server:1:dyad:100:200", "--json", "--limit", "0")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and set(rows[0]) == {"id", "created_at", "transaction_type", "amount", "reason",
                                     "source_topic", "layer_run_id", "label", "source_label"}
    assert {r["label"] for r in rows} == {"user 100 ↔ user 200 (server 1)"}
    balance = db.execute("SELECT balance FROM topics WHERE key = 'server:1:dyad:100:200'"
                         ).fetchone()[0]
    assert sum(r["amount"] for r in rows) == pytest.approx(balance)
    assert any(r["reason"] == "test: 6 × reply (messages 11..21)" for r in rows)
    assert len(json.loads(cli("salience", "ledger", "server:1:dyad:100:200", "--json",
                              "--limit", "1").stdout)) == 1


def test_decay_dry_run_then_for_real(cli, filled, db):
    r = cli("salience", "decay", "--as-of", "2024-03-20T00:00:00Z", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["dry_run"] is True and plan["rows"] > 0
    assert plan["as_of"] == "2024-03-20T00:00:00.000000+00:00"
    assert db.execute("SELECT count(*) FROM salience_ledger WHERE transaction_type = 'decay'"
                      ).fetchone()[0] == 0
    done = json.loads(cli("salience", "decay", "--as-of", "2024-03-20T00:00:00Z", "--json").stdout)
    assert done["rows"] == plan["rows"] and done["dry_run"] is False
    again = json.loads(cli("salience", "decay", "--as-of", "2024-03-20T09:00:00Z", "--json").stdout)
    assert again["rows"] == 0


def test_decay_defaults_to_the_data_clock(cli, filled):
    # nothing is stored in `messages` here, so the clock is now: everything is long idle
    doc = json.loads(cli("salience", "decay", "--dry-run", "--json").stdout)
    assert doc["as_of"] > "2025" and doc["topics_decayed"] > 0


def test_decay_bad_time_and_held_lock(cli, filled, db_path):
    r = cli("salience", "decay", "--as-of", "soon")
    assert r.exit_code == 2
    assert r.stderr == ("Error: --as-of 'soon' is not a time: give an ISO-8601 time such as "
                        "2024-03-01T12:00:00+00:00, or `now`\n")
    with locks.job_lock(db_path, "salience"):
        r = cli("salience", "decay", "--as-of", "now")
    assert r.exit_code == 75
    assert r.stderr == (f"Error: another `zos salience` is already running on {db_path} "
                        f"(lock {db_path}.salience.lock is held): try again when it finishes\n")


def test_budget_json(cli, filled):
    r = cli("salience", "budget", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["nightly_targets"] == 60 and doc["self_targets"] == 2
    groups = {g["group"]: g for g in doc["groups"]}
    assert set(groups) == {"social", "global", "spaces", "semantic", "culture", "self"}
    assert groups["semantic"]["targets"] == ["server:1:subject:chess"]
    assert groups["semantic"]["target_labels"] == ["subject chess (server 1)"]
    assert set(groups["social"]) == {"group", "share", "base", "demand", "allocated", "targets",
                                     "target_labels"}
    assert isinstance(doc["layers"], list)


def test_check_passes_then_finds_a_tampered_balance(cli, filled, db):
    r = cli("salience", "check", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True
    assert cli("salience", "check").stdout.startswith("OK: ")
    with database.write_transaction(db):
        db.execute("UPDATE topics SET balance = balance + 1 WHERE key = 'server:1:subject:chess'")
    r = cli("salience", "check", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    assert doc["mismatches"] == [{"topic_key": "server:1:subject:chess", "balance": 13.0,
                                  "ledger_sum": 12.0, "difference": 1.0}]
    assert r.stderr == ("Error: 1 topic balance(s) differ from their ledger sum "
                        "(server:1:subject:chess): run `zos salience rebuild` to recompute them\n")


def test_rebuild_refuses_without_yes_when_stdin_is_not_a_terminal(cli, filled):
    r = cli("salience", "rebuild")
    assert r.exit_code == 2
    assert r.stderr == ("Error: rebuild rewrites the whole salience ledger: add --yes to confirm "
                        "(there is no terminal to ask)\n")


def test_rebuild_with_yes_prints_its_summary(cli, filled, db):
    r = cli("salience", "rebuild", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"rebuild_id", "messages_replayed", "reactions_replayed", "dm_messages_skipped",
            "spends_reapplied", "decays_reapplied", "reflection_earns_reapplied",
            "ledger_rows_before", "ledger_rows_after", "seconds"} <= doc.keys()
    # no message is stored in this fixture (events only), so every message earn is gone; the
    # subject earn is a reflection event, replayed with today's subject_mention weight (2.0)
    assert doc["messages_replayed"] == 0 and doc["reflection_earns_reapplied"] == 1
    assert doc["ledger_rows_after"] == 1
    assert db.execute("SELECT key, balance FROM topics WHERE balance <> 0").fetchall() == [
        ("server:1:subject:chess", 2.0)]
    assert json.loads(cli("salience", "check", "--json").stdout)["ok"] is True


def test_missing_database_is_66(tmp_path):
    from tests.conftest import Cli

    r = Cli(tmp_path / "none.db")("salience", "top")
    assert r.exit_code == 66


def test_subject_earn_at_t0_is_listed(cli, filled):
    rows = json.loads(cli("salience", "ledger", "server:1:subject:chess", "--json").stdout)
    assert [(r["transaction_type"], r["amount"], r["created_at"]) for r in rows] == [
        ("earn", 12.0, T0)]


def test_budget_shows_each_layers_next_targets_as_reflect_chooses_them(cli):
    from tests.conftest import EXAMPLES

    cli("ingest", str(EXAMPLES / "export"))
    assert cli("reflect", "--layer", "user").exit_code == 0  # server insights to synthesize
    layers = {entry["layer"]: entry["targets"]
              for entry in json.loads(cli("salience", "budget", "--json").stdout)["layers"]}
    for name in ("synthesis", "channel", "dyad", "user"):
        run = json.loads(cli("reflect", "--layer", name, "--dry-run", "--json").stdout)
        assert layers[name] == run["targets"], name
    assert layers["synthesis"] and all(k.startswith("user:") for k in layers["synthesis"])
