"""Earning what a backfill stored without earning (`messages.salience_pending`, migration
0006): the marked messages with their reactions, in snowflake order, as `zos salience
rebuild` replays messages (the same events from the same stored rows), a chunk per
transaction with the chunk's marks cleared in it. What a stopped or killed backfill left
marked is earned by the next job under the ingest lock (an export ingest, first thing, or a
backfill, with its own); not by a poll, which may run beside a backfill that is still marking
(a poll's reads of a marked message leave its reactions to be earned with it). Rebuild clears
every mark (it replays them all)."""

from __future__ import annotations

import logging

import sqlite_utils

from zos_cli import db as db_module
from zos_cli.consent import self_user_id
from zos_cli.observe_rows import json_ids
from zos_cli.salience.engine import SalienceEngine
from zos_cli.salience.rebuild import apply_item, message_events

CHUNK = 2000  # messages earned per transaction

log = logging.getLogger("zos.salience")


def earn_pending(db: sqlite_utils.Database, config, engine: SalienceEngine, reason: str) -> dict:
    """Earn every marked message; returns {messages_earned, reactions_earned,
    ledger_rows_written}."""
    stats = {"messages_replayed": 0, "reactions_replayed": 0, "dm_messages_skipped": 0}
    rows = 0
    if db.execute("SELECT 1 FROM messages WHERE salience_pending = 1 LIMIT 1").fetchone() is None:
        return {"messages_earned": 0, "reactions_earned": 0, "ledger_rows_written": 0}
    self_id = self_user_id(db, config)
    while True:
        with db_module.write_transaction(db):
            ids = [r[0] for r in db.execute(
                "SELECT id FROM messages WHERE salience_pending = 1 "
                "ORDER BY length(id), id LIMIT ?", [CHUNK])]
            if not ids:
                break
            applied = 0
            for (at, _, _), events in message_events(db, stats, self_id, ids):
                applied += apply_item(engine, config, at, ("message", events), stats)
            if applied:
                rows += engine.flush(reason)
            db.execute("UPDATE messages SET salience_pending = 0 "
                       "WHERE id IN (SELECT value FROM json_each(?))", [json_ids(ids)])
    done = {"messages_earned": stats["messages_replayed"],
            "reactions_earned": stats["reactions_replayed"], "ledger_rows_written": rows}
    log.info("earned the pending messages: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
    return done

