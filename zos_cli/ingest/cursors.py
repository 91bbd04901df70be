"""What poll and backfill keep between runs: a cursor per channel (`poll_state`), a backfill
checkpoint per channel (`backfill_state`), and what is stored of a channel's recent messages
(to notice edits, deletions and reaction changes). Writers here expect the caller's
`write_transaction`: a cursor always moves in the same transaction as the rows it covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

from zos_cli.observe.rows import ensure_channel
from zos_cli.records import ChannelRecord
from zos_cli.timeutil import now_stored


# ---------------------------------------------------------------------- poll cursors
def cursor(db: sqlite_utils.Database, channel_id: str) -> str | None:
    row = db.execute("SELECT last_message_id FROM poll_state WHERE channel_id = ?", [channel_id]).fetchone()
    return row[0] if row else None


def newest_stored(db: sqlite_utils.Database, channel_id: str) -> str | None:
    """The newest message id stored for the channel (by an export, a backfill or a poll)."""
    row = db.execute(  # (ids as numbers: the longer is the larger)
        "SELECT id FROM messages WHERE channel_id = ? "
        "ORDER BY created_at DESC, length(id) DESC, id DESC LIMIT 1", [channel_id]).fetchone()
    return row[0] if row else None


def save_cursor(db: sqlite_utils.Database, channel: ChannelRecord, message_id: str | None,
                message_at: str | None) -> None:
    """Advance the channel's cursor (never backwards) and stamp the poll time."""
    ensure_channel(db, channel)
    current = cursor(db, channel.id)
    if message_id is None or (current is not None and int(message_id) <= int(current)):
        message_id, message_at = current, None
    db.execute(
        "INSERT INTO poll_state (channel_id, last_message_id, last_message_at, last_polled_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
        "last_message_id = excluded.last_message_id, "
        "last_message_at = coalesce(excluded.last_message_at, poll_state.last_message_at), "
        "last_polled_at = excluded.last_polled_at",
        [channel.id, message_id, message_at, now_stored()],
    )


def touch_polled(db: sqlite_utils.Database, channel_ids: list[str]) -> None:
    """Channels polled with nothing to write: only their poll time moves."""
    now = now_stored()
    db.conn.executemany("UPDATE poll_state SET last_polled_at = ? WHERE channel_id = ?",
                        [(now, c) for c in channel_ids])


# ---------------------------------------------------------------------- backfill checkpoints
@dataclass
class Checkpoint:
    oldest_message_id: str | None = None
    complete: bool = False


def checkpoint(db: sqlite_utils.Database, channel_id: str) -> Checkpoint:
    row = db.execute("SELECT oldest_message_id, complete FROM backfill_state WHERE channel_id = ?",
                     [channel_id]).fetchone()
    return Checkpoint(row[0], bool(row[1])) if row else Checkpoint()


def save_checkpoint(db: sqlite_utils.Database, channel: ChannelRecord, oldest_id: str | None,
                    complete: bool) -> None:
    ensure_channel(db, channel)
    db.execute(
        "INSERT INTO backfill_state (channel_id, oldest_message_id, complete, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
        "oldest_message_id = coalesce(excluded.oldest_message_id, backfill_state.oldest_message_id), "
        "complete = excluded.complete, updated_at = excluded.updated_at",
        [channel.id, oldest_id, int(complete), now_stored()],
    )


# ---------------------------------------------------------------------- recent changes
@dataclass
class StoredMessage:
    edited_at: str | None
    reactions: dict[tuple[str, str], int]   # per emoji, the count Discord reported


def stored_window(db: sqlite_utils.Database, channel_id: str, oldest: tuple[str, str] | None,
                  newest: tuple[str, str]) -> dict[str, StoredMessage]:
    """Stored, not deleted messages of the channel between `oldest` and `newest` (id, stored
    time; `oldest` None: from the channel's start), with their edit time and, per emoji, the
    count Discord reported when their reactions were last read (`reactions_aggregate`).

    That count, not the number of reactor rows, is what a poll compares: the rows can fall
    short of it for good (a user erased by `zos consent erase` is never written again), and
    comparing them would read the reactors again on every poll."""
    out: dict[str, StoredMessage] = {}
    lo = int(oldest[0]) if oldest else 0
    hi = int(newest[0])
    for mid, edited, aggregate in db.execute(
        "SELECT id, edited_at, reactions_aggregate FROM messages WHERE channel_id = ? "
        "AND created_at >= ? AND created_at <= ? AND deleted_at IS NULL",
        [channel_id, oldest[1] if oldest else "", newest[1]],
    ):
        if lo <= int(mid) <= hi:
            out[mid] = StoredMessage(edited, _counts(aggregate))
    return out


def _counts(aggregate: str | None) -> dict[tuple[str, str], int]:
    return {(r["emoji"], r.get("emoji_id") or ""): int(r["count"])
            for r in json.loads(aggregate or "[]") if r.get("count")}
