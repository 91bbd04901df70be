"""The table writes of one `observe` batch, each a few `executemany` calls.

`batch` is the writer's `observe.batch.BatchRows` for the call in progress: what it
observed, which messages are new or updated, and the writer's counts and caches. The people
(users, tracking, roles) are written by `observe.people`. The functions that take `db` are
the home of these tables' writes from elsewhere (a cursor's channel row, the DM gate's
participants, a poll's deletions), inside the caller's transaction.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from zos_cli.ids import json_ids, new_ids
from zos_cli.privacy import message_index
from zos_cli.timeutil import now_stored, snowflake_time, to_stored

# json.dumps(..., ensure_ascii=False) builds a new encoder per call; this one is reused.
_encode_keeping_unicode = json.JSONEncoder(ensure_ascii=False).encode


def stored_observations(db, ids) -> dict[str, str | None]:
    """Stored message id → when its stored observation was made (`source_exported_at`), for
    those of `ids` that are stored: what a new observation must be newer than to replace it."""
    return dict(db.execute("SELECT id, source_exported_at FROM messages "
                           "WHERE id IN (SELECT value FROM json_each(?))",
                           [json_ids(ids)]).fetchall())


def domain_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


# ---------------------------------------------------------------------- servers, channels
def ensure_server(db, server_id: str, name: str | None = None,
                  icon_url: str | None = None) -> None:
    """The server row something else refers to (a cursor, a member's roles); never
    overwrites one that exists (the batch writes fill in and update the details)."""
    now = now_stored()
    db.execute(
        "INSERT INTO servers (id, name, icon_url, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        [server_id, name, icon_url, now, now],
    )


def ensure_channel(db, channel) -> None:
    """The server and channel rows a cursor or checkpoint refers to (the batch writes fill in
    and update the details when messages are stored; this never overwrites them)."""
    now = now_stored()
    if channel.server_id:
        db.execute(
            "INSERT INTO servers (id, name, icon_url, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING",
            [channel.server_id, channel.server_name, channel.server_icon_url, now, now],
        )
    participants = json_ids(channel.participant_ids) if channel.participant_ids is not None else None
    db.execute(
        "INSERT INTO channels (id, server_id, name, type, parent_id, category_id, category_name, "
        "topic, participant_ids, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        [channel.id, channel.server_id, channel.name, channel.type, channel.parent_id,
         channel.category_id, channel.category_name, channel.topic, participants,
         to_stored(snowflake_time(channel.id)), now],
    )


def set_participants(db, channel_id: str, participant_ids: list[str]) -> None:
    """A stored DM channel's participant list, replaced (the DM gate widens it)."""
    db.execute("UPDATE channels SET participant_ids = ? WHERE id = ?",
               [json.dumps(participant_ids), channel_id])


def write_places(batch) -> None:
    conn, now = batch.db.conn, batch.now
    servers_written, channels_written = batch.servers_written, batch.channels_written
    servers, channels = {}, {}
    for obs in batch.observations:
        ch = obs.channel
        batch.counts.channels_seen(obs.source_id).add(ch.id)
        if ch.server_id and ch.server_id not in servers_written:
            servers[ch.server_id] = ch
        if ch.id not in channels_written:
            channels[ch.id] = ch
    if servers:
        conn.executemany(
            "INSERT INTO servers (id, name, icon_url, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "name = coalesce(excluded.name, name), "
            "icon_url = coalesce(excluded.icon_url, icon_url), updated_at = excluded.updated_at",
            [(sid, ch.server_name, ch.server_icon_url, now, now) for sid, ch in servers.items()],
        )
        servers_written.update(servers)
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
        channels_written.update(channels)


# ---------------------------------------------------------------------- messages
def _aggregate(reactions) -> str | None:
    if not reactions:
        return None
    return _encode_keeping_unicode([{"emoji": r.emoji_name, "emoji_id": r.emoji_id,
                                     "count": r.count} for r in reactions])


def write_messages(batch) -> None:
    """New messages inserted; newer observations of stored ones update content and flags;
    their mentions, role mentions, attachments (media_analysis) and links (link_analysis)."""
    new, now = batch.new_id_set, batch.now
    inserts, updates = [], []
    kept = []  # (updated message, its attachment urls, its link urls) as JSON
    mentions, role_mentions, attachments, links = [], [], [], []
    scopes: dict[int, str] = {}  # channel record → visibility_scope
    for obs in batch.effective:
        m, ch = obs.message, obs.channel
        mid = m.id
        stickers = _encode_keeping_unicode(m.stickers) if m.stickers else None
        emoji = json.dumps(m.inline_custom_emoji_ids) if m.inline_custom_emoji_ids else None
        has_media, has_links = int(bool(m.attachments)), int(bool(m.link_urls))
        aggregate = _aggregate(m.reactions) if m.reactions else None
        if mid in new:
            scope = scopes.get(id(ch))
            if scope is None:
                scope = scopes[id(ch)] = "dm" if ch.is_dm else "public"
            inserts.append((
                mid, ch.id, ch.server_id, m.author.id, m.content, m.created_at, m.edited_at,
                m.message_type, scope, aggregate, m.reply_to_id, m.thread_id, has_media,
                has_links, int(m.is_pinned), stickers, emoji, m.observed_at, now,
            ))
        else:
            updates.append((
                m.content, m.edited_at, int(m.is_pinned), stickers, emoji, has_media, has_links,
                m.observed_at, now, int(m.reactions is not None), aggregate, mid,
            ))
            kept.append((mid, json_ids(a.url for a in m.attachments), json_ids(m.link_urls)))
        if m.mentions:
            mentions.extend((mid, uid) for uid in dict.fromkeys(u.id for u in m.mentions))
        if m.role_mention_ids:
            role_mentions.extend((mid, rid) for rid in dict.fromkeys(m.role_mention_ids))
        if m.attachments:
            attachments.extend((mid, a) for a in m.attachments)
        if m.link_urls:
            links.extend((mid, url) for url in m.link_urls)
    # Row ids for the analysis tables in one call (new_ids), not one ULID per row.
    media = [(row_id, mid, a.id, a.url, a.file_name, a.size_bytes, a.content_type)
             for row_id, (mid, a) in zip(new_ids(len(attachments)), attachments)]
    links = [(row_id, mid, url, domain_of(url))
             for row_id, (mid, url) in zip(new_ids(len(links)), links)]
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
        message_index.add_new(conn, [(row[0], row[4]) for row in inserts])
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
        # Attachments and links the newer observation no longer has go with their analysis
        # rows; those it still has keep theirs (and what was analysed of them).
        conn.executemany("DELETE FROM media_analysis WHERE message_id = ? AND url NOT IN "
                         "(SELECT value FROM json_each(?))", [(m, a) for m, a, _ in kept])
        conn.executemany("DELETE FROM link_analysis WHERE message_id = ? AND url NOT IN "
                         "(SELECT value FROM json_each(?))", [(m, u) for m, _, u in kept])
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
    counted = []  # (source, new reactions), added to the counts once the rows are written
    now = batch.now
    for obs in known:
        m = obs.message
        mid = m.id
        before = stored.get(mid)
        if not m.reactions and not before:
            continue
        at = m.observed_at or now
        current = sorted({(u.id, r.emoji_name, r.emoji_id) for r in m.reactions for u in r.users})
        added = [k for k in current if k not in before] if before else current
        if added:
            fresh[mid] = added
            counted.append((obs.source_id, len(added)))
            inserts.extend((mid, uid, emoji, emoji_id, int(emoji_id != ""), at)
                           for uid, emoji, emoji_id in added)
        if before:
            now_set = set(current)
            # A listing shorter than its count (docs/ingest.md#the-export-format: exports may list only some reactors)
            # is no evidence that an unlisted user took their reaction back.
            partial = {(r.emoji_name, r.emoji_id) for r in m.reactions if len(r.users) < r.count}
            removals.extend((at, mid, *k) for k, removed in before.items()
                            if removed is None and k not in now_set and k[1:] not in partial)
            restores.extend((mid, *k) for k, removed in before.items()
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
    for source_id, n in counted:
        batch.counts.add(source_id, "reactions_new", n)
    return fresh


def mark_deleted(db, message_ids: list[str], at: str) -> int:
    """Stamp `deleted_at` once on messages Discord no longer has; returns how many."""
    cur = db.execute(
        "UPDATE messages SET deleted_at = ? WHERE deleted_at IS NULL AND id IN "
        "(SELECT value FROM json_each(?))",
        [at, json_ids(message_ids)],
    )
    return cur.rowcount


# ---------------------------------------------------------------------- sources
def write_sources(batch) -> None:
    """Which ingest or poll saw each message, first and last."""
    source_type, now = batch.source_type, batch.now
    batch.db.conn.executemany(
        "INSERT INTO message_sources (message_id, source_type, source_id, first_seen_at, "
        "last_seen_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, source_id) "
        "DO UPDATE SET last_seen_at = excluded.last_seen_at",
        [(obs.message.id, source_type, obs.source_id, now, now) for obs in batch.observations],
    )
