"""The table writes of one `observe` batch, each a few `executemany` calls.

`batch` is the `observe._Batch` in progress: `observations` (allowed by the DM gate),
`effective` (the new and the newer-than-stored observations, snowflake order), `new_ids`,
`updated_ids`, `now`, and the writer `w` with its caches and counters.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from zos_cli.ids import new_id
from zos_cli.records import UserRecord
from zos_cli.timeutil import snowflake_time, to_stored

_MIN_SEEN = ("CASE WHEN {c} IS NULL OR excluded.{c} < {c} THEN coalesce(excluded.{c}, {c}) "
             "ELSE {c} END")
_MAX_SEEN = ("CASE WHEN {c} IS NULL OR excluded.{c} > {c} THEN coalesce(excluded.{c}, {c}) "
             "ELSE {c} END")


def json_ids(ids) -> str:
    return json.dumps(list(ids))


def is_deleted_user(user: UserRecord) -> bool:
    """Discord replaces a deleted account by 'Deleted User' (or 'deleted_user_…')."""
    name = user.name or ""
    return name == "Deleted User" or name.startswith("deleted_user_")


def domain_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


# ---------------------------------------------------------------------- servers, channels
def write_places(batch) -> None:
    w, conn, now = batch.w, batch.db.conn, batch.now
    servers, channels = {}, {}
    for obs in batch.observations:
        ch = obs.channel
        w.channels_by_source[obs.source_id].add(ch.id)
        if ch.server_id and ch.server_id not in w.servers_written:
            servers[ch.server_id] = ch
        if ch.id not in w.channels_written:
            channels[ch.id] = ch
    if servers:
        conn.executemany(
            "INSERT INTO servers (id, name, icon_url, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "name = coalesce(excluded.name, name), "
            "icon_url = coalesce(excluded.icon_url, icon_url), updated_at = excluded.updated_at",
            [(sid, ch.server_name, ch.server_icon_url, now, now) for sid, ch in servers.items()],
        )
        w.servers_written.update(servers)
    if channels:
        conn.executemany(
            "INSERT INTO channels (id, server_id, name, type, parent_id, category_id, "
            "category_name, topic, participant_ids, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "name = coalesce(excluded.name, name), "
            "type = CASE WHEN excluded.type = 'unknown' THEN type ELSE excluded.type END, "
            "parent_id = coalesce(excluded.parent_id, parent_id), "
            "category_id = coalesce(excluded.category_id, category_id), "
            "category_name = coalesce(excluded.category_name, category_name), "
            "topic = coalesce(excluded.topic, topic), "
            "participant_ids = coalesce(excluded.participant_ids, participant_ids), "
            "updated_at = excluded.updated_at",
            [
                (ch.id, ch.server_id, ch.name, ch.type, ch.parent_id, ch.category_id,
                 ch.category_name, ch.topic,
                 json_ids(ch.participant_ids) if ch.participant_ids is not None else None,
                 to_stored(snowflake_time(ch.id)), now)
                for ch in channels.values()
            ],
        )
        w.channels_written.update(channels)


# ---------------------------------------------------------------------- users and roles
class _People:
    """What one batch learned about people: latest record per user, first/last seen (as
    author or reactor), per-server tracking, and the role sets observations showed."""

    def __init__(self):
        self.users: dict[str, UserRecord] = {}
        self.seen: dict[str, list[str]] = {}
        self.tracking: dict[tuple[str, str], list] = {}
        self.roles_now: dict[tuple[str, str], list] = {}

    def note(self, user: UserRecord, server_id: str | None, at: str | None, authored: bool,
             observed: str | None) -> None:
        self.users[user.id] = user
        if at is not None:
            span = self.seen.get(user.id)
            if span is None:
                self.seen[user.id] = [at, at]
            elif at < span[0]:
                span[0] = at
            elif at > span[1]:
                span[1] = at
        if server_id is None:
            return
        key = (user.id, server_id)
        row = self.tracking.get(key)
        if row is None:  # nickname, first seen, last seen, new messages, roles known, refreshed
            row = self.tracking[key] = [None, None, None, 0, 0, None]
        if user.nickname:
            row[0] = user.nickname
        if at is not None:
            if row[1] is None or at < row[1]:
                row[1] = at
            if row[2] is None or at > row[2]:
                row[2] = at
        if authored:
            row[3] += 1
        if user.roles is not None:
            row[4], row[5] = 1, observed
            self.roles_now[key] = user.roles


def write_people(batch) -> None:
    people = _People()
    note = people.note
    new = batch.new_id_set
    by_source = batch.w.users_by_source
    for obs in batch.effective:
        m, sid = obs.message, obs.channel.server_id
        seen = by_source[obs.source_id]
        note(m.author, sid, m.created_at, m.id in new, m.observed_at)
        seen.add(m.author.id)
        for u in m.mentions:
            note(u, sid, None, False, m.observed_at)
            seen.add(u.id)
        for r in m.reactions or ():
            for u in r.users:
                note(u, sid, m.created_at, False, m.observed_at)
                seen.add(u.id)
    written = {id(obs) for obs in batch.effective}
    for obs in batch.observations:  # who each source saw, written or not
        if id(obs) in written:
            continue
        seen, m = by_source[obs.source_id], obs.message
        seen.add(m.author.id)
        seen.update(u.id for u in m.mentions)
        for r in m.reactions or ():
            seen.update(u.id for u in r.users)
    if not people.users:
        return
    conn = batch.db.conn
    conn.executemany(
        "INSERT INTO users (id, name, display_name, discriminator, avatar_url, is_bot, "
        "is_deleted, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = coalesce(excluded.name, name), "
        "display_name = coalesce(excluded.display_name, display_name), "
        "discriminator = coalesce(excluded.discriminator, discriminator), "
        "avatar_url = coalesce(excluded.avatar_url, avatar_url), is_bot = excluded.is_bot, "
        "is_deleted = excluded.is_deleted, "
        f"first_seen_at = {_MIN_SEEN.format(c='first_seen_at')}, "
        f"last_seen_at = {_MAX_SEEN.format(c='last_seen_at')}",
        [
            (u.id, u.name, u.display_name or u.nickname or u.name, u.discriminator,
             u.avatar_url, int(u.is_bot), int(is_deleted_user(u)),
             *(people.seen.get(u.id) or (None, None)))
            for u in people.users.values()
        ],
    )
    if people.tracking:
        conn.executemany(
            "INSERT INTO user_server_tracking (user_id, server_id, nickname, first_seen_at, "
            "last_seen_at, message_count, roles_known, roles_refreshed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, server_id) DO UPDATE SET "
            "nickname = coalesce(excluded.nickname, nickname), "
            f"first_seen_at = {_MIN_SEEN.format(c='first_seen_at')}, "
            f"last_seen_at = {_MAX_SEEN.format(c='last_seen_at')}, "
            "message_count = message_count + excluded.message_count, "
            "roles_known = max(roles_known, excluded.roles_known), "
            "roles_refreshed_at = coalesce(excluded.roles_refreshed_at, roles_refreshed_at)",
            [(uid, sid, *row) for (uid, sid), row in people.tracking.items()],
        )
    if people.roles_now:
        _write_roles(batch, people.roles_now)


def _write_roles(batch, roles_now: dict[tuple[str, str], list]) -> None:
    conn = batch.db.conn
    role_rows = {}
    for (_, sid), roles in roles_now.items():
        for r in roles:
            role_rows[r.id] = (r.id, sid, r.name, r.color, r.position)
    if role_rows:
        conn.executemany(
            "INSERT INTO roles (id, server_id, name, color, position) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = coalesce(excluded.name, name), "
            "color = coalesce(excluded.color, color), "
            "position = coalesce(excluded.position, position)",
            list(role_rows.values()),
        )
    # The role set an observation shows is the user's whole current set in that server.
    conn.executemany(
        "DELETE FROM user_roles WHERE user_id = ? AND server_id = ? "
        "AND role_id NOT IN (SELECT value FROM json_each(?))",
        [(uid, sid, json_ids(r.id for r in roles)) for (uid, sid), roles in roles_now.items()],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO user_roles (user_id, role_id, server_id, seen_at) "
        "VALUES (?, ?, ?, ?)",
        [(uid, r.id, sid, batch.now) for (uid, sid), roles in roles_now.items() for r in roles],
    )


# ---------------------------------------------------------------------- messages
def _aggregate(reactions) -> str | None:
    if not reactions:
        return None
    return json.dumps([{"emoji": r.emoji_name, "emoji_id": r.emoji_id, "count": r.count}
                       for r in reactions], ensure_ascii=False)


def write_messages(batch) -> None:
    """New messages inserted; newer observations of stored ones update content and flags;
    their mentions, role mentions, attachments (media_analysis) and links (link_analysis)."""
    new = batch.new_id_set
    inserts, updates = [], []
    mentions, role_mentions, media, links = [], [], [], []
    for obs in batch.effective:
        m, ch = obs.message, obs.channel
        stickers = json.dumps(m.stickers, ensure_ascii=False) if m.stickers else None
        emoji = json.dumps(m.inline_custom_emoji_ids) if m.inline_custom_emoji_ids else None
        has_media, has_links = int(bool(m.attachments)), int(bool(m.link_urls))
        aggregate = _aggregate(m.reactions)
        if m.id in new:
            inserts.append((
                m.id, ch.id, ch.server_id, m.author.id, m.content, m.created_at, m.edited_at,
                m.message_type, "dm" if ch.is_dm else "public", aggregate, m.reply_to_id,
                m.thread_id, has_media, has_links, int(m.is_pinned), stickers, emoji,
                m.observed_at, batch.now,
            ))
        else:
            updates.append((
                m.content, m.edited_at, int(m.is_pinned), stickers, emoji, has_media, has_links,
                m.observed_at, batch.now, int(m.reactions is not None), aggregate, m.id,
            ))
        if m.mentions:
            mentions.extend((m.id, uid) for uid in dict.fromkeys(u.id for u in m.mentions))
        if m.role_mention_ids:
            role_mentions.extend((m.id, rid) for rid in dict.fromkeys(m.role_mention_ids))
        if m.attachments:
            media.extend((new_id(), m.id, a.id, a.url, a.file_name, a.size_bytes,
                          a.content_type) for a in m.attachments)
        if m.link_urls:
            links.extend((new_id(), m.id, url, domain_of(url)) for url in m.link_urls)
    conn = batch.db.conn
    if inserts:
        conn.executemany(
            "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at, "
            "edited_at, message_type, visibility_scope, reactions_aggregate, reply_to_id, "
            "thread_id, has_media, has_links, is_pinned, stickers, custom_emoji_ids, "
            "source_exported_at, ingested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
    if updates:
        conn.executemany(
            "UPDATE messages SET content = ?, edited_at = ?, is_pinned = ?, stickers = ?, "
            "custom_emoji_ids = ?, has_media = ?, has_links = ?, source_exported_at = ?, "
            "updated_at = ?, reactions_aggregate = CASE WHEN ? THEN ? ELSE reactions_aggregate "
            "END WHERE id = ?",
            updates,
        )
        changed = json_ids(batch.updated_ids)
        conn.execute("DELETE FROM mentions WHERE message_id IN (SELECT value FROM json_each(?))",
                     [changed])
        conn.execute("DELETE FROM role_mentions WHERE message_id IN "
                     "(SELECT value FROM json_each(?))", [changed])
    if mentions:
        conn.executemany("INSERT OR IGNORE INTO mentions (message_id, user_id) VALUES (?, ?)",
                         mentions)
    if role_mentions:
        conn.executemany("INSERT OR IGNORE INTO role_mentions (message_id, role_id) "
                         "VALUES (?, ?)", role_mentions)
    if media:
        conn.executemany(
            "INSERT OR IGNORE INTO media_analysis (id, message_id, attachment_id, url, "
            "file_name, size_bytes, content_type) VALUES (?, ?, ?, ?, ?, ?, ?)", media)
    if links:
        conn.executemany("INSERT OR IGNORE INTO link_analysis (id, message_id, url, domain) "
                         "VALUES (?, ?, ?, ?)", links)


# ---------------------------------------------------------------------- reactions
def write_reactions(batch) -> dict[str, list[tuple[str, str, str]]]:
    """Reaction rows; returns, per message, the NEW (user, emoji, emoji_id) keys in the
    canonical order (user_id, emoji, emoji_id) that the engine is fed and rebuild replays."""
    new = batch.new_id_set
    fresh: dict[str, list[tuple[str, str, str]]] = {}
    inserts = []
    known = [obs for obs in batch.effective if obs.message.reactions is not None]
    stored: dict[str, dict[tuple[str, str, str], str | None]] = {}
    updated = [obs.message.id for obs in known if obs.message.id not in new]
    if updated:
        for mid, uid, emoji, emoji_id, removed in batch.db.execute(
            "SELECT message_id, user_id, emoji, emoji_id, removed_at FROM reactions "
            "WHERE message_id IN (SELECT value FROM json_each(?))", [json_ids(updated)]
        ):
            stored.setdefault(mid, {})[(uid, emoji, emoji_id)] = removed
    removals, restores = [], []
    for obs in known:
        m = obs.message
        at = m.observed_at or batch.now
        current = sorted({(u.id, r.emoji_name, r.emoji_id) for r in m.reactions for u in r.users})
        before = stored.get(m.id, {})
        added = [k for k in current if k not in before]
        if added:
            fresh[m.id] = added
            inserts.extend((m.id, *k, int(k[2] != ""), at) for k in added)
        if before:
            now_set = set(current)
            removals.extend((at, m.id, *k) for k, removed in before.items()
                            if removed is None and k not in now_set)
            restores.extend((m.id, *k) for k, removed in before.items()
                            if removed is not None and k in now_set)
    conn = batch.db.conn
    if inserts:
        conn.executemany(
            "INSERT INTO reactions (message_id, user_id, emoji, emoji_id, is_custom, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", inserts)
    if removals:
        conn.executemany(
            "UPDATE reactions SET removed_at = ? WHERE message_id = ? AND user_id = ? "
            "AND emoji = ? AND emoji_id = ?", removals)
    if restores:
        conn.executemany(
            "UPDATE reactions SET removed_at = NULL WHERE message_id = ? AND user_id = ? "
            "AND emoji = ? AND emoji_id = ?", restores)
    for obs in known:
        if obs.message.id in fresh:
            batch.w.by_source[obs.source_id]["reactions_new"] += len(fresh[obs.message.id])
    return fresh


# ---------------------------------------------------------------------- sources
def write_sources(batch) -> None:
    """Which ingest or poll saw each message, first and last."""
    batch.db.conn.executemany(
        "INSERT INTO message_sources (message_id, source_type, source_id, first_seen_at, "
        "last_seen_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, source_id) "
        "DO UPDATE SET last_seen_at = excluded.last_seen_at",
        [(obs.message.id, batch.w.source_type, obs.source_id, batch.now, batch.now)
         for obs in batch.observations],
    )
