"""Following provenance: which DM channels a user is in, and which insights were made
(directly or through other insights) from a set of messages."""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils


def dm_channel_ids(db: sqlite_utils.Database, user_id: str) -> list[str]:
    """DM channels the user takes part in: listed as a participant, or an author there."""
    rows = db.execute(
        """
        SELECT c.id FROM channels c
        WHERE c.type IN ('dm', 'group_dm')
          AND (EXISTS (SELECT 1 FROM json_each(coalesce(c.participant_ids, '[]')) p
                       WHERE p.value = :user)
               OR EXISTS (SELECT 1 FROM messages m WHERE m.channel_id = c.id
                          AND m.author_id = :user))
        ORDER BY c.id
        """,
        {"user": user_id},
    )
    return [r[0] for r in rows]


def dm_message_ids(db: sqlite_utils.Database, channel_ids: Iterable[str]) -> list[str]:
    ids: list[str] = []
    for channel in channel_ids:
        ids.extend(r[0] for r in db.execute(
            "SELECT id FROM messages WHERE channel_id = ?", [channel]))
    return ids


def insights_derived_from(
    db: sqlite_utils.Database, message_ids: Iterable[str], insight_ids: Iterable[str] = ()
) -> set[str]:
    """Every insight whose provenance touches these messages or insights, transitively
    (plus the given insights themselves)."""
    found: set[str] = set(insight_ids)
    frontier = set(found)
    messages = list(message_ids)
    for start in range(0, len(messages), 500):
        chunk = messages[start : start + 500]
        marks = ",".join("?" * len(chunk))
        direct = {r[0] for r in db.execute(
            f"SELECT insight_id FROM insight_sources WHERE source_type = 'message' "
            f"AND source_id IN ({marks})", chunk)}
        frontier |= direct - found
        found |= direct
    while frontier:
        chunk = list(frontier)[:500]
        frontier -= set(chunk)
        marks = ",".join("?" * len(chunk))
        derived = {r[0] for r in db.execute(
            f"SELECT insight_id FROM insight_sources WHERE source_type = 'insight' "
            f"AND source_id IN ({marks})", chunk)}
        new = derived - found
        found |= new
        frontier |= new
    return found
