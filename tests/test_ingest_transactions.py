"""Ingest transactions: written a chunk at a time, committed every `--batch-size` messages,
with the salience engine flushed once per transaction (its rows aggregate the whole
transaction), and the same balances whatever the sizes."""

from __future__ import annotations

import re

import pytest

from tests.exports import Export, message, reaction, role, snowflake, emoji, user
from zos_cli.store import db as database
from zos_cli.ingest import run as ingest
from zos_cli.store import migrations
from zos_cli.config import Config

ALICE = user("101", "alice", roles=[role("9", "members")])
BOB = user("102", "bob", roles=[role("9", "members")])
CAROL = user("103", "carol", roles=[role("9", "members")])
PEOPLE = [ALICE, BOB, CAROL]


def busy_export() -> Export:
    messages = []
    for i in range(40):
        author, other = PEOPLE[i % 3], PEOPLE[(i + 1) % 3]
        m = message(snowflake(i), author, f"message {i} <@{other['id']}>", mentions=[other])
        if i % 4 == 0:
            m["reactions"] = [reaction(emoji("👍"), [other])]
        messages.append(m)
    return Export(messages=messages)


def run(tmp_path, name: str, *, batch: int, chunk: int, monkeypatch) -> dict:
    path = tmp_path / f"{name}.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    monkeypatch.setattr(ingest, "WRITE_CHUNK_MESSAGES", chunk)
    export = busy_export().write(tmp_path / "export.json")
    summary = ingest.ingest_exports(db, Config(), [str(export)], batch_messages=batch)
    result = {
        "summary": {k: summary[k] for k in ("messages_new", "reactions_new", "users")},
        "balances": dict(db.execute("SELECT key, round(balance, 9) FROM topics")),
        "activity": dict(db.execute("SELECT key, last_activity_at FROM topics")),
        "earn_reasons": [r[0] for r in db.execute(
            "SELECT reason FROM salience_ledger WHERE transaction_type = 'earn' ORDER BY rowid")],
        "counts": db.execute("SELECT messages_new, reactions_new FROM ingest_log").fetchall(),
        "alice_message_rows": db.execute(
            "SELECT count(*) FROM salience_ledger WHERE topic_key = 'server:1001:user:101' "
            "AND transaction_type = 'earn' AND reason LIKE '%× message%'").fetchone()[0],
    }
    db.close()
    return result


def test_a_transaction_of_several_chunks_flushes_salience_once(tmp_path, monkeypatch):
    per_message = run(tmp_path, "one", batch=1, chunk=1, monkeypatch=monkeypatch)
    chunked = run(tmp_path, "chunked", batch=15, chunk=4, monkeypatch=monkeypatch)
    assert chunked["summary"] == per_message["summary"] == {
        "messages_new": 40, "reactions_new": 10, "users": 3}
    assert chunked["balances"] == pytest.approx(per_message["balances"])
    assert chunked["activity"] == per_message["activity"]
    assert chunked["counts"] == per_message["counts"] == [(40, 10)]
    # Transactions of 15 messages are written in chunks of 4 (4+4+4+4 ≥ 15: messages 0–15,
    # 16–31, 32–39): every topic has one earn row of each kind per transaction, whose own
    # message range lies inside it.
    windows = [(int(snowflake(0)), int(snowflake(15))), (int(snowflake(16)), int(snowflake(31))),
               (int(snowflake(32)), int(snowflake(39)))]
    for reason in chunked["earn_reasons"]:
        lo, _, hi = re.search(r"\(messages? ([\d.]+)\)", reason).group(1).partition("..")
        lo, hi = int(lo), int(hi or lo)
        assert any(start <= lo <= hi <= end for start, end in windows), reason
    # Alice wrote 14 of the messages (every third): one row each alone, one per transaction
    # (a topic's earns of every kind are one row per transaction: "5 × message, 2 × reaction").
    assert (per_message["alice_message_rows"], chunked["alice_message_rows"]) == (14, 3)
    assert len(chunked["earn_reasons"]) < len(per_message["earn_reasons"]) / 3


def test_a_database_busy_midway_says_what_was_committed(tmp_path, monkeypatch):
    # The database is taken by another job during the third transaction (the busy error,
    # raised where SQLite would raise it, from inside the transaction): the two transactions
    # committed stay, and the error carries a summary of exactly them.
    import sqlite3

    from zos_cli.errors import TemporaryFailure

    path = tmp_path / "busy.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    monkeypatch.setattr(ingest, "WRITE_CHUNK_MESSAGES", 5)
    export = busy_export().write(tmp_path / "export.json")

    class TakenDuringTheThirdTransaction:
        written = 0

        def advance(self, n: int) -> None:
            self.written += n
            if self.written > 20:
                raise sqlite3.OperationalError("database is locked")

    with pytest.raises(TemporaryFailure) as raised:
        ingest.ingest_exports(db, Config(), [str(export)], batch_messages=10,
                              progress=TakenDuringTheThirdTransaction())
    summary = raised.value.summary
    assert summary["messages_new"] == 20 == db.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert summary["errors"] == [{"file": None, "error": "the database is busy (database is "
                                  "locked): another job holds it; try again"}]
    # The next run goes on from what was committed.
    again = ingest.ingest_exports(db, Config(), [str(export)])
    assert (again["messages_new"], again["messages_seen"]) == (20, 20)
