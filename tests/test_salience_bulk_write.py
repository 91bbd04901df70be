"""The engine's bulk ledger write: rows inserted with the ledger's insert triggers suspended
(db.triggers_suspended), balances then set once per topic. The maintained balance must be
exactly what the trigger would have left, and every other writer still goes through it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import EXAMPLES
from zos_cli.store import db as database
from zos_cli.ids import new_id
from zos_cli.salience.batch import write as write_rows
from zos_cli.salience.batch import write_topics

AT = "2024-03-01T00:00:00.000000+00:00"  # the stored form (timeutil.to_stored)


def write(db, topic_rows: list[tuple], rows: list[list], activity: dict[str, str]) -> None:
    """The engine's two writes: its new topics (numbered 1, 2, … here), then its rows."""
    numbered = [(*t, n) for n, t in enumerate(topic_rows, 1)]
    assert write_topics(db, numbered) == []
    ids = {t[0]: t[-1] for t in numbered}
    ids.update(db.execute("SELECT key, id FROM topics").fetchall())
    topic_id = lambda key: ids.get(key, 404)  # noqa: E731 (404: no such topic)
    rows = sorted(([*r, topic_id(r[1])] for r in rows), key=lambda r: (r[9], r[7], r[8]))
    write_rows(db, rows, activity, topic_id)


ALL_TRIGGERS = ["salience_ledger_ad", "salience_ledger_ai", "salience_ledger_au",
                "salience_ledger_topic_id", "salience_ledger_topic_key_au"]


def ledger_triggers(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'salience_ledger' ORDER BY name")]


def ingest_example(cli) -> None:
    r = cli("ingest", str(EXAMPLES / "export"), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["messages_new"] > 0


def trigger_balances(db) -> dict[str, float]:
    """Each topic's ledger amounts added one by one in insertion order, as the trigger does."""
    out = {key: 0.0 for (key,) in db.execute("SELECT key FROM topics")}
    for key, amount in db.execute("SELECT topic_key, amount FROM salience_ledger ORDER BY rowid"):
        out[key] += amount
    return out


def test_an_ingest_leaves_exactly_the_balances_the_trigger_would(cli, db):
    ingest_example(cli)
    stored = {key: balance for key, balance in db.execute("SELECT key, balance FROM topics")}
    assert len(stored) > 10
    assert stored == trigger_balances(db)  # exact, not approximate
    assert ledger_triggers(db) == ALL_TRIGGERS
    r = cli("salience", "check", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True


def test_other_writers_still_update_the_balance_through_the_trigger(cli, db):
    ingest_example(cli)
    key, before = db.execute(
        "SELECT key, balance FROM topics ORDER BY balance DESC LIMIT 1").fetchone()
    with database.write_transaction(db):
        db.execute("INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
                   "created_at) VALUES (?, ?, 'decay', -1.25, 'a test', ?)",
                   [new_id(), key, AT])
    after = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()[0]
    assert after == before + -1.25


def test_a_failed_bulk_insert_leaves_the_trigger_on(db):
    """A row the database refuses (no such topic) ends the bulk insert; the triggers are back
    and the caller's rollback leaves nothing behind."""
    at = AT
    topic = ("server:1:channel:2", "channels", "spaces", "1", 0, at, None)
    bad = [[None, "server:1:channel:404", "earn", 1.0, "no such topic", None, None, at, 1]]
    with pytest.raises(sqlite3.IntegrityError), database.write_transaction(db):
        write(db, [topic], bad, {})
    assert ledger_triggers(db) == ALL_TRIGGERS
    assert db.execute("SELECT count(*) FROM topics").fetchone()[0] == 0
    with database.write_transaction(db):
        write(db, [topic], [[None, "server:1:channel:2", "earn", 2.5, "ok", None, None, at, 1]],
              {})
    assert db.execute("SELECT balance FROM topics").fetchone()[0] == 2.5
    assert ledger_triggers(db) == ALL_TRIGGERS


def test_many_rows_of_one_topic_add_up_in_insertion_order(db):
    """One UPDATE adds at most 32 amounts; a topic with more rows in one batch takes several
    rounds, still in insertion order, so the balance is bit-for-bit the trigger's."""
    topics = [("server:1:channel:2", "channels", "spaces", "1", 0, AT, None),
              ("server:1:channel:3", "channels", "spaces", "1", 0, AT, None)]
    amounts = [0.1 * (i % 7) + 1e-3 * i for i in range(75)]
    rows = [[None, topics[i % 2][0], "earn", a, "r", None, None, AT, i]
            for i, a in enumerate(amounts)]
    later = "2024-03-02T00:00:00.000000+00:00"
    with database.write_transaction(db):
        write(db, topics, rows, {"server:1:channel:2": later})
    stored = dict(db.execute("SELECT key, balance FROM topics"))
    assert stored == trigger_balances(db)
    assert dict(db.execute("SELECT key, last_activity_at FROM topics")) == {
        "server:1:channel:2": later, "server:1:channel:3": None}
    with database.write_transaction(db):  # an older activity time never moves it back
        write(db, [], [], {"server:1:channel:2": AT})
    assert db.execute("SELECT last_activity_at FROM topics WHERE key = 'server:1:channel:2'"
                      ).fetchone()[0] == later


def test_a_topic_another_writer_made_meanwhile_keeps_its_id(db):
    """The engine numbers its new topics at the flush; one that another writer inserted since
    the engine looked keeps the stored id, and the engine's rows name that id."""
    from zos_cli.config import Config
    from zos_cli.salience import SalienceEngine
    from zos_cli.salience.queries import check

    with database.write_transaction(db):
        db.execute("INSERT INTO servers (id, name, created_at, updated_at) VALUES ('1', 's', ?, ?)",
                   [AT, AT])
        db.execute("INSERT INTO topics (key, category, budget_group, server_id, is_global, "
                   "created_at) VALUES ('server:1:channel:7', 'channels', 'spaces', '1', 0, ?)",
                   [AT])
    engine = SalienceEngine(db, Config())
    engine.earn("server:1:subject:kilns", 3.0, AT)
    engine.earn("server:1:channel:8", 2.0, AT)
    with database.write_transaction(db):  # the other writer (a reflection naming a subject)
        db.execute("INSERT INTO topics (key, category, budget_group, server_id, is_global, "
                   "created_at) VALUES ('server:1:subject:kilns', 'subjects', 'semantic', '1', "
                   "0, ?)", [AT])
    with database.write_transaction(db):
        engine.flush("test")
    ids = dict(db.execute("SELECT key, id FROM topics"))
    assert ids["server:1:subject:kilns"] == 2  # the other writer's (the engine had said 3)
    assert dict(db.execute("SELECT topic_key, topic_id FROM salience_ledger")) == {
        "server:1:subject:kilns": 2, "server:1:channel:8": ids["server:1:channel:8"]}
    doc = check(db)
    assert doc["ok"] and doc["misfiled_rows"] == []
    assert dict(db.execute("SELECT key, balance FROM topics")) == {
        "server:1:channel:7": 0.0, "server:1:subject:kilns": 3.0, "server:1:channel:8": 2.0}


def test_suspended_triggers_are_made_again_before_the_transaction_ends(db):
    """Inside the caller's transaction: gone in the block, back after it — even when the block
    fails — so nothing that commits later can commit them missing."""
    with database.write_transaction(db):
        with database.triggers_suspended(db, "salience_ledger_ai", "salience_ledger_topic_id"):
            assert ledger_triggers(db) == ["salience_ledger_ad", "salience_ledger_au",
                                           "salience_ledger_topic_key_au"]
        assert ledger_triggers(db) == ALL_TRIGGERS
        with pytest.raises(RuntimeError):
            with database.triggers_suspended(db, "salience_ledger_ai"):
                raise RuntimeError("the bulk insert failed")
        assert ledger_triggers(db) == ALL_TRIGGERS  # still in the transaction
    sql = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    assert "UPDATE topics SET balance = balance + NEW.amount" in sql["salience_ledger_ai"]
