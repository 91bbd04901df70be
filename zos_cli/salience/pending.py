"""Earning what a backfill or a poll stored without earning (`messages.salience_pending`,
migration 0006): the marked messages with their reactions, in snowflake order, as `zos
salience rebuild` replays messages (the same events from the same stored rows), a chunk per
transaction with the chunk's marks cleared in it.

A backfill earns every mark at its end (its own and any left before). A poll earns, at its
end, the marks it made and those a killed or failed poll left, but no mark of a backfill's: one
may be running beside it, still marking, and earning those would break its event order. An
export ingest earns every mark first thing (it holds the ingest lock: no backfill runs). A
reaction read on a marked message is earned with that message. Rebuild clears every mark (it
replays them all)."""

from __future__ import annotations

import logging

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.store.db import self_user_id
from zos_cli.ids import json_ids
from zos_cli.salience.engine import SalienceEngine
from zos_cli.salience.rebuild import apply_item, message_events

CHUNK = 2000  # messages earned per transaction

log = logging.getLogger("zos.salience")


_ALL_MARKED = ("SELECT id FROM messages WHERE salience_pending = 1 "
               "ORDER BY length(id), id LIMIT ?")
_MARKED_AMONG = ("SELECT id FROM messages WHERE salience_pending = 1 "
                 "AND id IN (SELECT value FROM json_each(?)) ORDER BY length(id), id")


def earn_pending(db: sqlite_utils.Database, config, engine: SalienceEngine, reason: str,
                 ids: list[str] | None = None) -> dict:
    """Earn every marked message, or those of `ids` still marked (another job may have earned
    some meanwhile); returns {messages_earned, reactions_earned, ledger_rows_written}."""
    stats = {"messages_replayed": 0, "reactions_replayed": 0, "dm_messages_skipped": 0}
    rows = 0
    ordered = None if ids is None else sorted(set(ids), key=int)
    if ordered == [] or (ordered is None and db.execute(
            "SELECT 1 FROM messages WHERE salience_pending = 1 LIMIT 1").fetchone() is None):
        return {"messages_earned": 0, "reactions_earned": 0, "ledger_rows_written": 0}
    self_id = self_user_id(db, config)
    start = 0
    while True:
        with db_module.write_transaction(db):
            if ordered is None:
                chunk = [r[0] for r in db.execute(_ALL_MARKED, [CHUNK])]
                if not chunk:
                    break
            else:
                if start >= len(ordered):
                    break
                chunk = [r[0] for r in db.execute(
                    _MARKED_AMONG, [json_ids(ordered[start:start + CHUNK])])]
                start += CHUNK
            applied = 0
            for (at, _, _), events in message_events(db, stats, self_id, chunk):
                applied += apply_item(engine, config, at, ("message", events), stats)
            if applied:
                rows += engine.flush(reason)
            db.execute("UPDATE messages SET salience_pending = 0 "
                       "WHERE id IN (SELECT value FROM json_each(?))", [json_ids(chunk)])
    done = {"messages_earned": stats["messages_replayed"],
            "reactions_earned": stats["reactions_replayed"], "ledger_rows_written": rows}
    log.info("earned the pending messages: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
    return done


def poll_leftovers(db: sqlite_utils.Database) -> list[str]:
    """Marked messages no backfill has seen: what a killed or failed poll left."""
    return [r[0] for r in db.execute(
        "SELECT m.id FROM messages m WHERE m.salience_pending = 1 AND NOT EXISTS ("
        "SELECT 1 FROM message_sources s WHERE s.message_id = m.id "
        "AND s.source_type = 'backfill')")]
