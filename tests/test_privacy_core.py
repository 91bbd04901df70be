"""Privacy core at library level: transitive scope, quarantine reasons, byte-level forget/erase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import scan_files
from zos_cli.store import db as database
from zos_cli.privacy import (
    apply_gate_change,
    combine_scopes,
    erase_user,
    forget_dm,
    lift_dm_quarantine,
    quarantine_dm_insights,
    scope_of_sources,
)
from zos_cli.timeutil import now_stored

T = "2024-03-01T12:00:00.000000+00:00"


@pytest.mark.parametrize("scopes,expected", [
    ([], "public"),
    (["public"], "public"),
    (["public", "public"], "public"),
    (["dm"], "dm"),
    (["dm", "dm"], "dm"),
    (["dm", "public"], "derived"),
    (["derived"], "derived"),
    (["public", "derived"], "derived"),
    (["dm", "derived"], "derived"),
])
def test_combine_scopes(scopes, expected):
    assert combine_scopes(scopes) == expected


class World:
    """A tiny store built with plain inserts: a server with a public channel, and a DM."""

    def __init__(self, db):
        self.db = db
        with database.write_transaction(db):
            db.execute("INSERT INTO servers (id, name, created_at, updated_at) VALUES ('1','g',?,?)", [T, T])
            for uid, name in (("10", "ann"), ("11", "bob"), ("12", "cy")):
                db.execute("INSERT INTO users (id, name) VALUES (?, ?)", [uid, name])
            db.execute("INSERT INTO channels (id, server_id, type, updated_at) VALUES ('100','1','text',?)", [T])
            db.execute("INSERT INTO channels (id, type, participant_ids, updated_at) "
                       "VALUES ('900','dm','[\"11\"]',?)", [T])
            db.execute("INSERT INTO layer_runs (id, layer_name, layer_hash, status, started_at, as_of) "
                       "VALUES ('R','user','h','completed',?,?)", [T, T])
        self.n = 0

    def message(self, author, content, *, dm=False):
        self.n += 1
        mid = str(5000 + self.n)
        with database.write_transaction(self.db):
            self.db.execute(
                "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at, "
                "message_type, visibility_scope, ingested_at) VALUES (?,?,?,?,?,?,?,?,?)",
                [mid, "900" if dm else "100", None if dm else "1", author, content, T, "Default",
                 "dm" if dm else "public", T])
        return mid

    def topic(self, key, category="users", group="social", server="1"):
        self.db.execute("INSERT OR IGNORE INTO topics (key, category, budget_group, server_id, is_global, "
                        "created_at) VALUES (?,?,?,?,?,?)", [key, category, group, server, int(server is None), T])

    def insight(self, iid, topic, content, *, messages=(), insights=(), server="1"):
        with database.write_transaction(self.db):
            self.topic(topic, group="social" if server else "global", server=server)
            scope = scope_of_sources(self.db, messages, insights)
            self.db.execute(
                "INSERT INTO insights (id, topic_key, category, content, sources_scope_max, layer_run_id, "
                "confidence, importance, novelty, valence_curiosity, created_at) "
                "VALUES (?,?,?,?,?,?,1,1,1,0.5,?)", [iid, topic, "c", content, scope, "R", T])
            for m in messages:
                self.db.execute("INSERT INTO insight_sources VALUES (?, 'message', ?)", [iid, m])
            for i in insights:
                self.db.execute("INSERT INTO insight_sources VALUES (?, 'insight', ?)", [iid, i])
        return scope

    def quarantined(self):
        return {r[0] for r in self.db.execute("SELECT id FROM insights WHERE quarantined = 1")}


def test_scope_through_mixed_provenance_chains(db):
    w = World(db)
    pub = w.message("10", "public talk")
    dm = w.message("11", "private talk", dm=True)
    assert w.insight("A", "server:1:user:10", "a", messages=[pub]) == "public"
    assert w.insight("B", "user:11", "b", messages=[dm], server=None) == "dm"
    assert w.insight("C", "server:1:user:11", "c", messages=[pub, dm]) == "derived"
    assert w.insight("D", "server:1:user:10", "d", insights=["A"]) == "public"
    assert w.insight("E", "user:11", "e", insights=["B"], server=None) == "dm"
    assert w.insight("F", "server:1:user:10", "f", messages=[pub], insights=["B"]) == "derived"
    assert w.insight("G", "server:1:user:10", "g", insights=["D", "A"]) == "public"
    assert w.insight("H", "server:1:user:10", "h", insights=["G", "F"]) == "derived"  # two hops
    assert w.insight("I", "server:1:user:10", "i") == "public"  # no sources


def test_gate_quarantine_and_restore_with_independent_reasons(db):
    w = World(db)
    dm = w.message("11", "private", dm=True)
    w.insight("U", "server:1:user:11", "u")
    w.insight("Y", "server:1:dyad:10:11", "y")
    w.insight("G", "user:11", "g", messages=[dm], server=None)
    w.insight("O", "server:1:user:10", "other user")
    with database.write_transaction(db):
        assert apply_gate_change(db, "1", "11", has_gate_role=False) == 3
    assert w.quarantined() == {"U", "Y", "G"}
    with database.write_transaction(db):
        quarantine_dm_insights(db, "11")        # G is now held for two reasons
        apply_gate_change(db, "1", "11", has_gate_role=True)
    assert w.quarantined() == {"G"}
    with database.write_transaction(db):
        lift_dm_quarantine(db, "11")
    assert w.quarantined() == set()
    events = [r[0] for r in db.execute("SELECT event_type FROM events WHERE event_type LIKE 'gate%' ORDER BY id")]
    assert events == ["gate_quarantine", "gate_restore"]


def _calls(db, canary):
    with database.write_transaction(db):
        db.execute("INSERT INTO llm_calls (id, layer_run_id, topic_key, prompt, response, status, "
                   "created_at) VALUES ('L1','R','user:11',?,?,'ok',?)",
                   [f"context: {canary} one two", json.dumps({"insights": [canary]}), T])
        db.execute("INSERT INTO llm_cache (cache_key, model_name, response, created_at) "
                   "VALUES ('K1','m',?,?)", [json.dumps({"insights": [canary]}), T])


def test_forget_leaves_no_byte_of_dm_content(db, db_path):
    w = World(db)
    canary = "QZXDMCANARY"
    dms = [w.message("11" if i % 2 else "10", f"{canary} one two {i}", dm=True) for i in range(50)]
    pub = w.message("10", "a public remark")
    w.insight("G", "user:11", f"bob said {canary}", messages=dms[:3], server=None)
    w.insight("S", "server:1:user:11", "synthesis", insights=["G"])   # derived from G
    w.insight("P", "server:1:user:10", "public only", messages=[pub])
    _calls(db, canary)
    assert sum(scan_files(db_path, canary).values()) > 0  # negative control: the scan finds them
    report = forget_dm(db, "11", db_path=db_path)
    assert (report.messages, report.insights, report.llm_calls_scrubbed, report.llm_cache_entries,
            report.channels) == (50, 2, 1, 1, 1)
    assert scan_files(db_path, canary) == {"db": 0, "-wal": 0, "-shm": 0}
    assert {r[0] for r in db.execute("SELECT id FROM insights")} == {"P"}
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    kinds = dict(db.execute("SELECT object_type, count(*) FROM tombstones GROUP BY 1").fetchall())
    assert kinds == {"message": 50, "insight": 2, "llm_call": 1, "llm_cache": 1, "channel": 1}
    assert "QZX" not in json.dumps(db.execute("SELECT * FROM tombstones").fetchall())
    assert db.execute("SELECT count(*) FROM insights_fts WHERE insights_fts MATCH 'bob'").fetchone()[0] == 0


def test_erase_removes_public_content_topics_and_the_user(db, db_path):
    w = World(db)
    canary = "QZXPUBCANARY"
    mine = [w.message("12", f"{canary} public words {i}") for i in range(20)]
    theirs = w.message("10", "ann speaks")
    w.insight("M", "server:1:user:10", f"ann heard {canary}", messages=mine[:2] + [theirs])
    w.insight("C", "server:1:user:12", "about cy")
    w.insight("K", "server:1:user:10", "ann alone", messages=[theirs])
    with database.write_transaction(db):
        db.execute("INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, created_at) "
                   "VALUES ('X1','server:1:user:12','earn',3,?)", [T])
        db.execute("INSERT INTO reactions (message_id, user_id, emoji, is_custom) VALUES (?, '12', 'x', 0)", [theirs])
        db.execute("INSERT INTO mentions (message_id, user_id) VALUES (?, '12')", [theirs])
    assert sum(scan_files(db_path, canary).values()) > 0
    report = erase_user(db, "12", db_path=db_path)
    assert (report.messages, report.insights, report.topics, report.users, report.ledger_rows) == (20, 2, 1, 1, 1)
    assert scan_files(db_path, canary) == {"db": 0, "-wal": 0, "-shm": 0}
    assert {r[0] for r in db.execute("SELECT id FROM insights")} == {"K"}
    assert db.execute("SELECT count(*) FROM reactions").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM mentions").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM users WHERE id = '12'").fetchone()[0] == 0


def test_forget_reports_and_deletes_backups(db, db_path):
    backup = Path(f"{db_path}.backup-v0001-20240101T000000000000Z")
    backup.write_bytes(b"old copy")
    World(db)
    assert forget_dm(db, "11", db_path=db_path).backups == [str(backup)]
    report = forget_dm(db, "11", db_path=db_path, include_backups=True)
    assert report.backups_deleted == [str(backup)] and not backup.exists()
    assert now_stored() > T


def test_forget_scrubs_run_errors_that_quoted_the_dm(db, db_path):
    # A provider's 400 echoed the prompt: the run's recorded error for that target carried it.
    w = World(db)
    canary = "QZXRUNERRORCANARY"
    dm = w.message("11", f"{canary} secret plans", dm=True)
    with database.write_transaction(db):
        db.execute("INSERT INTO layer_runs (id, layer_name, layer_hash, started_at, as_of, status, "
                   "error) VALUES ('R9', 'user', 'h', ?, ?, 'failed', ?)",
                   [T, T, json.dumps([{"target": "user:11", "error": f"400: bad input {canary}"},
                                      {"target": "user:10", "error": "timeout"}])])
        db.execute("INSERT INTO llm_calls (id, layer_run_id, topic_key, prompt, status, error, "
                   "created_at) VALUES ('C9', 'R9', 'user:11', ?, 'error', ?, ?)",
                   [f"context: {canary}", f"400: bad input {canary}", T])
        db.execute("INSERT INTO llm_call_sources (call_id, source_type, source_id) "
                   "VALUES ('C9', 'message', ?)", [dm])
    forget_dm(db, "11", db_path=db_path)
    errors = json.loads(db.execute("SELECT error FROM layer_runs WHERE id = 'R9'").fetchone()[0])
    assert errors[0]["error"].startswith("(error text removed") and errors[1]["error"] == "timeout"
    assert scan_files(db_path, canary) == {"db": 0, "-wal": 0, "-shm": 0}


def test_forget_does_not_call_it_done_while_a_reader_holds_the_wal(db, db_path):
    import sqlite3

    from zos_cli.errors import TemporaryFailure

    db.execute("PRAGMA busy_timeout = 100")  # (10 s in real use)
    w = World(db)
    canary = "QZXREADERCANARY"
    w.message("11", f"{canary} held", dm=True)
    reader = sqlite3.connect(db_path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM messages").fetchone()  # an open snapshot
    try:
        with pytest.raises(TemporaryFailure, match="run the same command again"):
            forget_dm(db, "11", db_path=db_path)
    finally:
        reader.rollback()
        reader.close()
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0  # committed
    forget_dm(db, "11", db_path=db_path)  # again, with no reader: the WAL is emptied
    assert scan_files(db_path, canary) == {"db": 0, "-wal": 0, "-shm": 0}
