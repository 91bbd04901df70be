"""The one writer of audit rows: `events` (what happened, with ids and counts, never content)
and `tombstones` (what was deleted: object type, id, time, reason). The caller holds the
write transaction; `db` is a sqlite_utils.Database or a plain sqlite3 connection."""

from __future__ import annotations

import json

from zos_cli.ids import new_id
from zos_cli.timeutil import now_stored


def record_event(db, event_type: str, payload: dict, at: str | None = None, *,
                 event_id: str | None = None) -> str:
    """`event_id`: an id the caller made beforehand (other rows of the same change name it)."""
    event_id = event_id or new_id()
    db.execute(
        "INSERT INTO events (id, event_type, payload, created_at) VALUES (?, ?, ?, ?)",
        [event_id, event_type, json.dumps(payload, sort_keys=True), at or now_stored()],
    )
    return event_id


def record_tombstone(db, object_type: str, object_id: str, reason: str,
                     at: str | None = None) -> str:
    tombstone_id = new_id()
    db.execute(
        "INSERT INTO tombstones (id, object_type, object_id, deleted_at, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [tombstone_id, object_type, object_id, at or now_stored(), reason],
    )
    return tombstone_id


def counts_of(summary: dict) -> dict:
    """A job summary as an event payload: lists (errors, skipped channels) become counts."""
    return {k: (len(v) if isinstance(v, list) else v) for k, v in summary.items()}
