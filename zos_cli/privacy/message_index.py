"""`messages_fts`, the full-text index of stored messages (docs/subjects.md#the-message-index):
what it may hold, and the query that searches it.

The index holds exactly the messages that may be stored and used. This module is the one
that writes it: the writer's new messages (`add_new`, called by observe/rows.py, which stores
a DM only while its consent holds), a revoked consent's DMs taken out, a new grant's put
back, and a removal ends with the index merged ('optimize'), so that no old segment keeps a
term of what was taken out. Triggers of schema 0010 follow the rarer changes: an edit, a
deletion by Discord (`deleted_at`) or by a purge. SQLite here is older than 3.42 (no FTS5 secure-delete): merging
the index, with `secure_delete` on, is how the removed text leaves the file (checked byte by
byte by tests/test_message_index.py).

Rows are keyed by rowid = CAST(messages.id AS INTEGER) (explicit, so VACUUM keeps it); a row
finds its message again as `messages.id = CAST(rowid AS TEXT)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import sqlite_utils

# A phrase is searched only when it holds a letter or a digit (the tokenizer drops the rest).
_WORDY = re.compile(r"\w", re.UNICODE)
MAX_PHRASE_CHARS = 100


def match_expression(phrases: Iterable[str]) -> str | None:
    """An FTS5 query matching any of `phrases`, each as a phrase (its words in order):
    `"board games" OR "glaze"`. Quotes inside a phrase are doubled, so a phrase can never be
    read as query syntax. None when no phrase has a word (nothing can match)."""
    quoted, seen = [], set()
    for phrase in phrases:
        text = " ".join(str(phrase).replace("_", " ").split())[:MAX_PHRASE_CHARS]
        if not _WORDY.search(text) or text.lower() in seen:
            continue
        seen.add(text.lower())
        quoted.append('"' + text.replace('"', '""') + '"')
    return " OR ".join(quoted) if quoted else None


def add_new(conn, rows: list[tuple]) -> None:
    """Index messages the writer has just inserted: (id, content) pairs, inside its write
    transaction. One statement for the batch: FTS5 (before SQLite 3.44) writes its pending
    terms to a new segment at every statement transaction, which a trigger per stored row
    would open."""
    conn.executemany("INSERT INTO messages_fts (rowid, content) VALUES (CAST(? AS INTEGER), ?)",
                     [row for row in rows if row[1]])


def dm_channels_of(db: sqlite_utils.Database, user_id: str) -> list[tuple[str, list[str]]]:
    """DM channels (id, participants) the user takes part in: listed as a participant, or an
    author there."""
    rows = db.execute(
        "SELECT c.id, c.participant_ids FROM channels c WHERE c.type IN ('dm', 'group_dm') "
        "AND (EXISTS (SELECT 1 FROM json_each(coalesce(c.participant_ids, '[]')) p "
        "             WHERE p.value = :user) "
        "     OR EXISTS (SELECT 1 FROM messages m WHERE m.channel_id = c.id "
        "                AND m.author_id = :user)) ORDER BY c.id", {"user": user_id})
    out = []
    for channel_id, participants in rows:
        try:
            people = json.loads(participants or "[]")
        except ValueError:
            people = []
        out.append((channel_id, [p for p in people if isinstance(p, str)]))
    return out


def remove_channels(db: sqlite_utils.Database, channel_ids: list[str]) -> int:
    """Take the messages of these (DM) channels out of the index, then merge it (the caller
    holds the write transaction and has `secure_delete` on). Returns the rows removed."""
    if not channel_ids:
        return 0
    removed = db.execute(
        "DELETE FROM messages_fts WHERE rowid IN (SELECT CAST(id AS INTEGER) FROM messages "
        "WHERE channel_id IN (SELECT value FROM json_each(?)))",
        [json.dumps(channel_ids)]).rowcount
    if removed:
        optimize(db)
    return removed


def restore_channels(db: sqlite_utils.Database, channel_ids: list[str]) -> int:
    """Put the messages of these channels that belong in the index (not deleted, not empty)
    and are not in it back in (the caller has checked that they may be used). Returns the
    rows added."""
    if not channel_ids:
        return 0
    return db.execute(
        "INSERT INTO messages_fts (rowid, content) SELECT CAST(m.id AS INTEGER), m.content "
        "FROM messages m WHERE m.channel_id IN (SELECT value FROM json_each(?)) "
        "AND m.deleted_at IS NULL AND m.content <> '' AND NOT EXISTS "
        "(SELECT 1 FROM messages_fts f WHERE f.rowid = CAST(m.id AS INTEGER)) "
        "ORDER BY CAST(m.id AS INTEGER)", [json.dumps(channel_ids)]).rowcount


def after_revoke(db: sqlite_utils.Database, user_id: str) -> int:
    """A revoked consent: the user's DM channels may no longer be used (the caller holds the
    write transaction, `secure_delete` on). Returns the rows removed."""
    return remove_channels(db, [c for c, _people in dm_channels_of(db, user_id)])


def optimize(db: sqlite_utils.Database) -> None:
    """Merge every segment of the index into one: what was deleted leaves no old segment
    behind (with `secure_delete` on, the freed pages are zeroed too)."""
    db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
