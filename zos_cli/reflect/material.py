"""What a target's reflection reads: which stored messages (or, for synthesis, which
server-scoped insights) belong to a topic, past its high-water mark, newest first.

Each topic kind maps to one SQL filter over `messages`:
- server user: their messages in that server; global user: the stored DM channels they are in
  (each channel asked again whether it may still be stored — consent may be revoked since);
- dyad: replies and mentions between the two (server) or the DM channels both are in (global);
- channel: its messages, and its threads' unless the server keeps threads as topics; thread: its own;
- user_in_channel / dyad_in_channel: the user / dyad filter inside the channel filter;
- subject: the messages of its server that the full-text index (messages_fts) finds for its
  name, its aliases and its key terms (reflect/subjects.py; `board_games` finds "board games");
- emoji: messages using the custom emoji or reacted with it; role: messages mentioning the role;
- self: messages by or mentioning zos's own account (in one server, or anywhere public).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import sqlite_utils

from zos_cli import strength
from zos_cli.config import Config, Insights
from zos_cli.reflect.analyses import SHARED_COLUMNS
from zos_cli.store.db import self_user_id


@dataclass(frozen=True)
class Target:
    """A topic key, parsed into what reflection needs to find its material."""

    key: str
    category: str
    kind: str                      # user, dyad, channel, thread, user_in_channel, …
    server_id: str | None = None
    user_ids: tuple[str, ...] = ()
    channel_id: str | None = None
    name: str | None = None        # subject name
    emoji_id: str | None = None
    role_id: str | None = None
    balance: float = 0.0

    @property
    def is_global(self) -> bool:
        return self.server_id is None


def target_from_key(key: str, balance: float = 0.0) -> Target:
    """Parse a topic key (InvalidTopicKey, exit 2, when it is not one) into a Target."""
    from zos_cli import topics

    t = topics.parse(key)
    ids = t.ids
    fields: dict = {}
    if t.kind in ("user", "dyad"):
        fields["user_ids"] = ids
    elif t.kind in ("channel", "thread"):
        fields["channel_id"] = ids[0]
    elif t.kind == "user_in_channel":
        fields.update(channel_id=ids[0], user_ids=(ids[1],))
    elif t.kind == "dyad_in_channel":
        fields.update(channel_id=ids[0], user_ids=tuple(ids[1:3]))
    elif t.kind == "subject":
        fields["name"] = ids[0]
    elif t.kind == "emoji":
        fields["emoji_id"] = ids[0]
    elif t.kind == "role":
        fields["role_id"] = ids[0]
    return Target(t.key, t.category, t.kind, t.server_id, balance=balance, **fields)


@dataclass(frozen=True)
class Mark:
    at: str
    id: str


def get_mark(db: sqlite_utils.Database, layer: str, topic_key: str) -> Mark | None:
    row = db.execute(
        "SELECT last_item_at, last_item_id FROM reflection_marks "
        "WHERE layer_name = ? AND topic_key = ?",
        [layer, topic_key],
    ).fetchone()
    return Mark(row[0], row[1]) if row else None


def threads_as_topics(db: sqlite_utils.Database, config: Config, server_id: str) -> bool:
    if server_id in config.servers:
        return config.servers[server_id].threads_as_topics
    row = db.execute("SELECT threads_as_topics FROM servers WHERE id = ?", [server_id]).fetchone()
    return bool(row and row[0])


# ---------------------------------------------------------------- DM channels and consent
def dm_channels_with(db: sqlite_utils.Database,
                     user_ids: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Stored DM channels (id, participants) whose participants include all of `user_ids`."""
    rows = db.execute(
        "SELECT id, participant_ids FROM channels WHERE type IN ('dm', 'group_dm')"
    ).fetchall()
    found = []
    for channel_id, participants in rows:
        try:
            people = set(json.loads(participants or "[]"))
        except ValueError:
            continue
        if set(user_ids) <= people:
            found.append((channel_id, sorted(people)))
    return found


def readable_dm_channels(db: sqlite_utils.Database, config: Config,
                         user_ids: tuple[str, ...]) -> list[str]:
    """DM channels with `user_ids` whose messages may still be read: consent was checked
    when they were stored, and is asked again here because it may have been revoked since."""
    from zos_cli.privacy.consent import dm_may_be_stored

    allowed = []
    me = self_user_id(db, config)
    for channel_id, participants in dm_channels_with(db, user_ids):
        if dm_may_be_stored(db, participants, self_id=me):
            allowed.append(channel_id)
    return allowed


# ---------------------------------------------------------------- message filters
def message_filter(db: sqlite_utils.Database, config: Config,
                   target: Target) -> tuple[str, list] | None:
    """(SQL condition over `m` — with `p` the replied-to message — and its parameters), or
    None when the target has no message material (e.g. no readable DM channel)."""
    k, s = target.kind, target.server_id
    if k == "user" and s is None:
        return _in_channels(readable_dm_channels(db, config, target.user_ids))
    if k == "dyad" and s is None:
        return _in_channels(readable_dm_channels(db, config, target.user_ids))
    if k == "user":
        return "m.server_id = ? AND m.author_id = ?", [s, target.user_ids[0]]
    if k == "dyad":
        cond, params = _dyad(*target.user_ids)
        return f"m.server_id = ? AND {cond}", [s, *params]
    if k in ("channel", "thread"):
        return _channel(db, config, target)
    if k == "user_in_channel":
        cond, params = _channel(db, config, target)
        return f"{cond} AND m.author_id = ?", [*params, target.user_ids[0]]
    if k == "dyad_in_channel":
        cond, params = _channel(db, config, target)
        dyad, dparams = _dyad(*target.user_ids)
        return f"{cond} AND {dyad}", [*params, *dparams]
    if k == "subject":
        from zos_cli.reflect.subjects import message_condition

        return message_condition(db, s, target.name)
    if k == "emoji":
        # Used in the text (custom_emoji_ids, a JSON array of quoted ids: exports write the
        # emoji as :name:, the API as <:name:id>) or as a reaction.
        return ("m.server_id = ? AND (instr(m.custom_emoji_ids, ?) > 0 OR m.id IN "
                "(SELECT message_id FROM reactions WHERE emoji_id = ?))",
                [s, f'"{target.emoji_id}"', target.emoji_id])
    if k == "role":
        return ("m.server_id = ? AND m.id IN (SELECT message_id FROM role_mentions "
                "WHERE role_id = ?)", [s, target.role_id])
    if k == "self":
        me = self_user_id(db, config)
        if me is None:
            return None
        mine = "(m.author_id = ? OR m.id IN (SELECT message_id FROM mentions WHERE user_id = ?))"
        if s is None:
            return f"m.server_id IS NOT NULL AND {mine}", [me, me]
        return f"m.server_id = ? AND {mine}", [s, me, me]
    return None


def _in_channels(channels: list[str]) -> tuple[str, list] | None:
    if not channels:
        return None
    return f"m.channel_id IN ({', '.join('?' for _ in channels)})", list(channels)


def _dyad(a: str, b: str) -> tuple[str, list]:
    one_way = ("(m.author_id = ? AND (p.author_id = ? OR m.id IN "
               "(SELECT message_id FROM mentions WHERE user_id = ?)))")
    return f"({one_way} OR {one_way})", [a, b, b, b, a, a]


def _channel(db, config, target: Target) -> tuple[str, list]:
    if target.kind == "thread" or threads_as_topics(db, config, target.server_id):
        return "m.channel_id = ?", [target.channel_id]
    return ("(m.channel_id = ? OR m.channel_id IN (SELECT id FROM channels WHERE parent_id = ?))",
            [target.channel_id, target.channel_id])


MESSAGE_COLUMNS = ("id", "channel_id", "server_id", "author_id", "content", "created_at",
                   "visibility_scope", "reply_to_id", "reply_author_id", "has_media", "has_links",
                   "media", "links")  # (media, links: the analysis rows as JSON, see analyses.py)


def newest_messages(db: sqlite_utils.Database, config: Config, target: Target,
                    mark: Mark | None, as_of: str | None = None,
                    page: int = 200) -> Iterator[dict]:
    """The target's messages past `mark` and up to `as_of` (a run's clock set in the past
    does not read what came after it), newest first, read page by page (the caller stops
    when its token budget is full)."""
    found = message_filter(db, config, target)
    if found is None:
        return
    condition, params = found
    if as_of is not None:
        condition += " AND m.created_at <= ?"
        params = [*params, as_of]
    past = ""
    if mark is not None:
        past = (" AND (m.created_at > ? OR (m.created_at = ? AND "
                "CAST(m.id AS INTEGER) > CAST(? AS INTEGER)))")
        params = [*params, mark.at, mark.at, mark.id]
    sql = (
        "SELECT m.id, m.channel_id, m.server_id, m.author_id, m.content, m.created_at, "
        "m.visibility_scope, m.reply_to_id, p.author_id, m.has_media, m.has_links, "
        f"{SHARED_COLUMNS} "
        "FROM messages m LEFT JOIN messages p ON p.id = m.reply_to_id "
        f"WHERE m.deleted_at IS NULL AND {condition}{past} "
        "ORDER BY m.created_at DESC, CAST(m.id AS INTEGER) DESC LIMIT ? OFFSET ?"
    )
    offset = 0
    while True:
        rows = db.execute(sql, [*params, page, offset]).fetchall()
        for row in rows:
            yield dict(zip(MESSAGE_COLUMNS, row))
        if len(rows) < page:
            return
        offset += page


def reactions_on(db: sqlite_utils.Database, message_ids: list[str]) -> dict[str, list[tuple]]:
    """message id → [(emoji label, count)] from the stored reaction rows."""
    result: dict[str, list[tuple]] = {}
    for start in range(0, len(message_ids), 500):
        chunk = message_ids[start:start + 500]
        rows = db.execute(
            "SELECT message_id, emoji, is_custom, count(*) FROM reactions "
            f"WHERE removed_at IS NULL AND message_id IN ({', '.join('?' for _ in chunk)}) "
            "GROUP BY message_id, emoji, emoji_id ORDER BY count(*) DESC",
            chunk,
        ).fetchall()
        for message_id, emoji, is_custom, count in rows:
            label = f":{emoji}:" if is_custom else emoji
            result.setdefault(message_id, []).append((label, count))
    return result


# ---------------------------------------------------------------- prior insights
PRIOR_COLUMNS = ("id", "topic_key", "created_at", "content", "strength", "confidence",
                 "sources_scope_max", "subject", "metadata", "made_as_of")
# An insight's time in a prompt is the as-of of the run that made it (the data's time, as
# every other time in the prompt), not the wall-clock time it was stored at.
_PRIOR_SELECT = (", ".join("i." + c for c in PRIOR_COLUMNS[:-1])
                 + ", coalesce((SELECT r.as_of FROM layer_runs r WHERE r.id = i.layer_run_id), "
                   "i.created_at)")


def not_superseded_sql(alias: str) -> str:
    """SQL true when insight `alias` is not superseded: no standing (not quarantined) insight
    replaces it, neither a newer one naming it in `supersedes` nor the one a reconciliation
    named in its own `superseded_by` (docs/reflection.md#reconciled-conflicts). A replacement
    quarantined or deleted lets it stand again. (`+n.quarantined`: without statistics SQLite
    would search `n` by the quarantined index, reading every standing insight per row, instead
    of by `supersedes`.)"""
    return (f"NOT EXISTS (SELECT 1 FROM insights n WHERE n.supersedes = {alias}.id "
            "AND +n.quarantined = 0) "
            f"AND NOT EXISTS (SELECT 1 FROM insights w WHERE w.id = {alias}.superseded_by "
            "AND +w.quarantined = 0)")


def prior_insights(db: sqlite_utils.Database, target: Target, retrieval: str,
                   as_of: str, settings: Insights | None = None) -> list[dict]:
    """The target's standing insights in the order the retrieval profile prefers them:
    recent (newest first), deep (strongest first, more of them), balanced (alternating the
    newest and the strongest). Quarantined, expired and superseded insights are left out.

    "Strongest" is the effective strength at `as_of` (`zos_cli.strength`, with the half-lives
    of `settings`, the defaults when None): an insight nothing has reconfirmed for a long time
    gives way to fresher ones. Each row carries it as `effective_strength`."""
    strength.register(db.conn, settings)
    where = "i.topic_key = ?"
    params: list = [target.key]
    if target.kind == "subject" and target.server_id:
        from zos_cli import topics

        where = "(i.topic_key = ? OR (i.subject = ? AND i.topic_key GLOB ?))"
        params = [target.key, target.name, topics.server_keys_glob(target.server_id)]
    base = (
        f"SELECT {_PRIOR_SELECT}, {strength.SQL_FUNCTION}(i.strength, i.category, "
        f"{strength.CLOCK_FROM_SQL}, ?) AS effective_strength FROM insights i "
        f"WHERE {where} AND i.quarantined = 0 "
        "AND (i.expires_at IS NULL OR i.expires_at > ?) "
        f"AND {not_superseded_sql('i')}"
    )
    params = [as_of, *params, as_of]

    def fetch(order: str, limit: int) -> list[dict]:
        rows = db.execute(f"{base} ORDER BY {order} LIMIT ?", [*params, limit]).fetchall()
        return [dict(zip(PRIOR_COLUMNS + ("effective_strength",), r)) for r in rows]

    strongest_first = "effective_strength DESC, i.created_at DESC, i.id DESC"
    if retrieval == "recent":
        return fetch("i.created_at DESC, i.id DESC", 8)
    if retrieval == "deep":
        return fetch(strongest_first, 20)
    newest = fetch("i.created_at DESC, i.id DESC", 6)
    strongest = fetch(strongest_first, 6)
    merged, seen = [], set()
    for pair in zip(newest + [None] * 6, strongest + [None] * 6):
        for row in pair:
            if row is not None and row["id"] not in seen:
                seen.add(row["id"])
                merged.append(row)
    return merged


# Share of the context budget (after the template itself) that prior insights may use.
PRIOR_SHARE = {"recent": 0.2, "balanced": 0.3, "deep": 0.45}


# ---------------------------------------------------------------- synthesis material
def server_insights_for(db: sqlite_utils.Database, target: Target, mark: Mark | None) -> list[dict]:
    """New insights of the server-scoped topics that roll up into a global user or dyad,
    newest first (quarantined ones never)."""
    from zos_cli import topics

    if target.kind not in ("user", "dyad"):
        return []
    global_key = topics.Topic(target.kind, None, target.user_ids).key
    params: list = [topics.server_copies_glob(global_key)]
    past = ""
    if mark is not None:
        past = " AND (i.created_at > ? OR (i.created_at = ? AND i.id > ?))"
        params += [mark.at, mark.at, mark.id]
    rows = db.execute(
        f"SELECT {_PRIOR_SELECT} FROM insights i "
        f"WHERE i.topic_key GLOB ? AND i.quarantined = 0{past} "
        "ORDER BY i.created_at DESC, i.id DESC",
        params,
    ).fetchall()
    # GLOB's `*` could match across key parts; keep exact server-scoped keys only.
    return [dict(zip(PRIOR_COLUMNS, row)) for row in rows
            if topics.global_key_of(row[1]) == global_key]
