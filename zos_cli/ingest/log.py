"""`ingest_log`: one row per export file an ingest read (kind `export`) and per channel a
backfill read (kind `api`, path `api:channel:<id>`), with its status and counts.

The one module that inserts and updates the table (privacy purge renames erased DM exports'
paths: its own documented exception). Every function runs inside the caller's
`write_transaction`, so a file's counts commit with the messages they count.
"""

from __future__ import annotations

import json

import sqlite_utils

from zos_cli.timeutil import now_stored

# The writer's per-source counts that have an ingest_log column, in column order.
LOGGED_COUNTS = ("messages_new", "messages_seen", "reactions_new", "users", "channels")

_UPDATE_COUNTS = (
    "UPDATE ingest_log SET messages_new = ?, messages_seen = ?, reactions_new = ?, users = ?, "
    "channels = ? WHERE id = ?"
)


def _participants(dm_participant_ids: list[str] | None) -> str | None:
    return json.dumps(dm_participant_ids) if dm_participant_ids is not None else None


def _warnings(warnings: list[str]) -> str | None:
    return json.dumps(warnings, ensure_ascii=False) if warnings else None


def mark_interrupted(db: sqlite_utils.Database, kind: str, error: str) -> None:
    """Rows of `kind` a killed run left 'running' become 'failed' with `error` (the caller
    holds the ingest lock, so none of them is live)."""
    db.execute("UPDATE ingest_log SET status = 'failed', finished_at = ?, error = ? "
               "WHERE kind = ? AND status = 'running'", [now_stored(), error, kind])


def start_export_file(db: sqlite_utils.Database, *, log_id: str, path: str, size: int,
                      sha256: str | None, dm_participant_ids: list[str] | None,
                      started_at: str, channel_id: str) -> None:
    """An export file about to be written: its row, 'running', with no counts yet."""
    db.execute(
        "INSERT INTO ingest_log (id, kind, path, size, sha256, status, "
        "dm_participant_ids, started_at, channel_id) "
        "VALUES (?, 'export', ?, ?, ?, 'running', ?, ?, ?)",
        [log_id, path, size, sha256, _participants(dm_participant_ids), started_at, channel_id])


def finish_export_file(db: sqlite_utils.Database, *, log_id: str, path: str, size: int,
                       sha256: str | None, status: str, counts: dict[str, int],
                       dm_skipped: int, dm_participant_ids: list[str] | None,
                       error: str | None, started_at: str, channel_id: str | None,
                       warnings: list[str] = (), dm_probable_self_id: str | None = None) -> None:
    """An export file's final row (completed, failed or skipped) with its counts and
    warnings: inserted when the file never started (skipped, unreadable), else the started
    row updated. `dm_probable_self_id`: see schema/0011_ingest_warnings.sql."""
    db.execute(
        "INSERT INTO ingest_log (id, kind, path, size, sha256, status, messages_new, "
        "messages_seen, reactions_new, users, channels, dm_skipped_without_consent, "
        "dm_participant_ids, error, started_at, finished_at, channel_id, warnings, "
        "dm_probable_self_id) "
        "VALUES (?, 'export', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, status = excluded.status, "
        "messages_new = excluded.messages_new, messages_seen = excluded.messages_seen, "
        "reactions_new = excluded.reactions_new, users = excluded.users, "
        "channels = excluded.channels, error = excluded.error, "
        "dm_skipped_without_consent = excluded.dm_skipped_without_consent, "
        "finished_at = excluded.finished_at, warnings = excluded.warnings, "
        "dm_probable_self_id = excluded.dm_probable_self_id",
        [log_id, path, size, sha256, status, *(counts[k] for k in LOGGED_COUNTS), dm_skipped,
         _participants(dm_participant_ids), error, started_at, now_stored(), channel_id,
         _warnings(list(warnings)), dm_probable_self_id])


def record_counts(db: sqlite_utils.Database, counts_by_log_id: dict[str, dict[str, int]]) -> None:
    """The counts so far of these rows (each a dict with at least LOGGED_COUNTS)."""
    db.conn.executemany(_UPDATE_COUNTS, [(*(counts[k] for k in LOGGED_COUNTS), log_id)
                                         for log_id, counts in counts_by_log_id.items()])


def backfill_channel(db: sqlite_utils.Database, *, log_id: str, channel_id: str, status: str,
                     error: str | None = None) -> None:
    """A backfilled channel's row: inserted 'running', then its status, error and finish
    time as the channel ends (the start time stays that of the insert)."""
    now = now_stored()
    db.execute(
        "INSERT INTO ingest_log (id, kind, path, status, error, started_at, finished_at) "
        "VALUES (?, 'api', ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "status = excluded.status, error = excluded.error, finished_at = excluded.finished_at",
        [log_id, f"api:channel:{channel_id}", status, error, now,
         None if status == "running" else now],
    )


def completed_exports_of_size(db: sqlite_utils.Database, size: int) -> list[tuple]:
    """(sha256, dm_skipped_without_consent, dm_participant_ids, id, channel_id,
    dm_probable_self_id) of the completed export ingests of files of this size, newest
    first: what an unchanged file is recognised by, and what its DM still waits for."""
    return db.execute(
        "SELECT sha256, dm_skipped_without_consent, dm_participant_ids, id, channel_id, "
        "dm_probable_self_id FROM ingest_log "
        "WHERE kind = 'export' AND status = 'completed' AND size = ? AND sha256 IS NOT NULL "
        "ORDER BY started_at DESC", [size]).fetchall()
