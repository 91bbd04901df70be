"""Two lower bounds for `zos ingest`, measured on the result of a full ingest (bench_ingest.py
runs them after its timed ingests; they explain how far the throughput target can be reached).

- `store_only`: copy every row the ingest left (messages, sources, reactions, mentions, media
  and link rows, users, topics, ledger …) into a fresh migrated database, in one transaction,
  with the triggers dropped and nothing parsed or computed. Any ingest that stores these rows
  in SQLite pays at least this, whatever language computes them.
- `engine_compute`: the salience engine's arithmetic alone: the stored messages and reactions,
  read beforehand, applied in snowflake order to an engine over a fresh database, folded every
  10,000 messages like an ingest batch, nothing written. CPU seconds of this process.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

# Parents before children (foreign keys are off here, but the order is the ingest's own).
_ORDER = ("servers", "channels", "users", "roles", "user_roles", "user_server_tracking",
          "messages", "message_sources", "reactions", "mentions", "role_mentions",
          "media_analysis", "link_analysis", "topics", "salience_ledger")


def _rows(source: sqlite3.Connection) -> dict[str, tuple[list[str], list[tuple]]]:
    tables = [r[0] for r in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
        f"({', '.join('?' * len(_ORDER))})", _ORDER)]
    found = {}
    for table in tables:
        columns = [f'"{r[1]}"' for r in source.execute(f'PRAGMA table_info("{table}")')]
        rows = source.execute(f'SELECT {", ".join(columns)} FROM "{table}" ORDER BY rowid'
                              ).fetchall()
        if rows:
            found[table] = (columns, rows)
    return found


def store_only(result: Path, target: Path, fresh_db) -> dict:
    """Seconds to insert the rows of `result` into a fresh database; per table and in all."""
    source = sqlite3.connect(result)
    try:
        tables = _rows(source)
    finally:
        source.close()
    db = fresh_db(target)
    conn = db.conn
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                    ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN")
        for table in tables:  # what migrations seed (none today) would clash with the copy
            conn.execute(f'DELETE FROM "{table}"')
        per_table = {}
        started = time.perf_counter()
        for table in (t for t in _ORDER if t in tables):
            columns, rows = tables[table]
            began = time.perf_counter()
            conn.executemany(f'INSERT INTO "{table}" ({", ".join(columns)}) '
                             f'VALUES ({", ".join("?" * len(columns))})', rows)
            per_table[table] = {"rows": len(rows), "seconds": round(time.perf_counter() - began, 2)}
        conn.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        db.close()
    return {"seconds": seconds, "tables": per_table}


def engine_compute(result: Path, target: Path, fresh_db) -> dict:
    """CPU seconds of the salience engine applying the stored history, nothing written."""
    from zos_cli.config import Config
    from zos_cli.store.db import connect
    from zos_cli.salience import SalienceEngine
    from zos_cli.salience.rebuild import message_events

    source = connect(result)
    stats = {"dm_messages_skipped": 0}
    try:
        history = [events for _key, events in message_events(source, stats, None)]
    finally:
        source.close()
    db = fresh_db(target)
    try:
        engine = SalienceEngine(db, Config())
        apply, fold = engine.apply, engine.index.fold_all
        started = time.process_time()
        for n, events in enumerate(history, 1):
            for event in events:
                apply(event)
            if n % 10_000 == 0:
                fold()
        fold()
        seconds = time.process_time() - started
    finally:
        db.close()
    return {"cpu_seconds": seconds, "messages": len(history),
            "events": sum(len(events) for events in history)}
