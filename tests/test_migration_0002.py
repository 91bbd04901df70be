"""Schema 0002: ledger rows carry their topic's integer id, indexed instead of the text key."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from zos_cli.store import db as database
from zos_cli.store import migrations
from zos_cli.salience.queries import check, ledger

T = "2024-03-01T12:00:00.000000+00:00"
KEYS = ["server:1:user:10", "server:1:channel:20", "user:10"]


def _topic(db, key: str) -> None:
    server = key.split(":")[1] if key.startswith("server:") else None
    category = "channels" if ":channel:" in key else "users"
    group = "global" if server is None else ("spaces" if category == "channels" else "social")
    db.execute("INSERT INTO topics (key, category, budget_group, server_id, is_global, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", [key, category, group, server, int(server is None), T])


@pytest.fixture()
def v1_db(tmp_path):
    """A database at schema 1 holding topics and ledger rows written the old way."""
    folder = tmp_path / "v1"
    folder.mkdir()
    shutil.copy(migrations.schema_dir() / "0001_initial.sql", folder)
    path = tmp_path / "zos.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    with database.write_transaction(db):
        db.execute("INSERT INTO servers (id, name, created_at, updated_at) VALUES ('1', 's', ?, ?)",
                   [T, T])
        for key in KEYS:
            _topic(db, key)
        for i, (key, amount) in enumerate([(KEYS[0], 2.5), (KEYS[1], 1.0), (KEYS[0], 0.25),
                                           (KEYS[2], 5.0), (KEYS[1], 3.0)]):
            db.execute("INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, "
                       "reason, created_at) VALUES (?, ?, 'earn', ?, 'old', ?)",
                       [f"L{i}", key, amount, T])
        db.execute("DELETE FROM salience_ledger WHERE id = 'L1'")  # a gap in the rowids
    return db, path


def _ledger(db):
    return db.execute("SELECT rowid, id, topic_key, transaction_type, amount, reason, "
                      "source_topic, layer_run_id, created_at FROM salience_ledger "
                      "ORDER BY rowid").fetchall()


def test_upgrade_keeps_every_row_and_balance_and_fills_topic_ids(v1_db):
    db, path = v1_db
    rows, balances = _ledger(db), db.execute("SELECT key, balance FROM topics").fetchall()
    summary = migrations.apply(db, path)
    assert summary["applied"] == ["0002_ledger_topic_id", "0003_llm_call_sources",
                                  "0004_ingest_log_channel_id", "0005_profile_observed_at",
                                  "0006_salience_pending", "0007_analysis",
                                  "0008_insight_confirmation", "0009_self_concept",
                                  "0010_subjects"]
    assert summary["backup"]
    assert _ledger(db) == rows  # rowids too: the engine and the readers order by them
    assert db.execute("SELECT key, balance FROM topics").fetchall() == balances
    assert db.execute("SELECT count(*) FROM salience_ledger l JOIN topics t "
                      "ON t.id = l.topic_id AND t.key = l.topic_key").fetchone()[0] == len(rows)
    doc = check(db)
    assert doc["ok"] and doc["misfiled_rows"] == [] and doc["ledger_rows"] == 4
    assert [r["id"] for r in ledger(db, KEYS[0])] == ["L2", "L0"]
    plan = db.execute("EXPLAIN QUERY PLAN SELECT * FROM salience_ledger WHERE topic_id = 1 "
                      "ORDER BY created_at").fetchall()
    assert "idx_ledger_topic_created" in str(plan)


def test_writers_that_give_only_the_key_still_work(v1_db):
    db, path = v1_db
    migrations.apply(db, path)
    with database.write_transaction(db):
        _topic(db, "server:1:user:11")  # no id given: the trigger numbers it
        db.execute("INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, "
                   "created_at) VALUES ('N1', 'server:1:user:11', 'earn', 4.0, ?)", [T])
    topic_id, balance = db.execute(
        "SELECT id, balance FROM topics WHERE key = 'server:1:user:11'").fetchone()
    assert topic_id == 1 + len(KEYS) and balance == 4.0
    assert db.execute("SELECT topic_id FROM salience_ledger WHERE id = 'N1'").fetchone()[0] == topic_id
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        with database.write_transaction(db):
            db.execute("INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, "
                       "created_at) VALUES ('N2', 'server:1:user:99', 'earn', 1.0, ?)", [T])
    assert check(db)["ok"]


def test_moving_a_row_to_another_key_moves_its_topic_id_and_deleting_a_topic_cascades(v1_db):
    db, path = v1_db
    migrations.apply(db, path)
    with database.write_transaction(db):
        db.execute("UPDATE salience_ledger SET topic_key = ? WHERE id = 'L3'", [KEYS[0]])
    assert check(db)["ok"]
    with database.write_transaction(db):
        db.execute("DELETE FROM salience_ledger WHERE topic_key = ?", [KEYS[1]])
        db.execute("DELETE FROM topics WHERE key = ?", [KEYS[0]])
    assert db.execute("SELECT id FROM salience_ledger ORDER BY rowid").fetchall() == []
    assert check(db)["ok"]


def test_check_names_a_row_whose_id_and_key_disagree(v1_db):
    db, path = v1_db
    migrations.apply(db, path)
    with database.write_transaction(db):  # only a hand edit can do this
        db.execute("UPDATE salience_ledger SET topic_id = (SELECT id FROM topics WHERE key = ?) "
                   "WHERE id = 'L0'", [KEYS[2]])
    doc = check(db)
    assert doc["ok"] is False
    assert doc["misfiled_rows"] == [{"ledger_id": "L0", "topic_key": KEYS[0], "topic_id": 3}]


def test_salience_check_exits_1_and_says_what_to_do(v1_db):
    from tests.conftest import Cli

    db, path = v1_db
    migrations.apply(db, path)
    with database.write_transaction(db):
        db.execute("UPDATE salience_ledger SET topic_id = 3 WHERE id = 'L0'")
    r = Cli(path)("salience", "check")
    assert r.exit_code == 1
    assert r.stderr == ("Error: 1 ledger row(s) whose topic_id does not name their topic_key "
                        "(L0): run `zos salience rebuild` to write them again\n")
