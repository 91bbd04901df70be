"""Which channels a poll or a backfill reads: guild text channels, threads, consented DMs.

A few requests per guild: its channels and its active threads (and, for a backfill, each
channel's archived public threads; a poll reads only those archived since its last look, see
`archived`). A channel the bot may not see (403) is skipped and reported, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.privacy.consent import list_consents
from zos_cli.sources.discord import api
from zos_cli.sources.discord import convert
from zos_cli.sources.discord.client import DiscordClient
from zos_cli.sources.discord.errors import DiscordForbidden, DiscordNotFound, DiscordRequestFailed
from zos_cli.ids import is_discord_id
from zos_cli.records import THREAD_TYPES, ChannelRecord

# Channels that hold messages themselves; forum and media channels only hold threads.
MESSAGE_CHANNEL_TYPES = frozenset({"text", "news"}) | THREAD_TYPES
THREAD_PARENT_TYPES = frozenset({"text", "news", "forum", "media"})
DM_STATE_KEY = "discord.dm_channel:{}"


@dataclass
class Discovery:
    channels: list[ChannelRecord] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)     # {channel, reason}
    errors: list[dict] = field(default_factory=list)      # {channel, error}
    parents: list[ChannelRecord] = field(default_factory=list)  # channels that hold threads
    guilds: list[str] = field(default_factory=list)       # guilds whose channels were listed

    def add(self, record: ChannelRecord) -> None:
        if record.type in MESSAGE_CHANNEL_TYPES and all(c.id != record.id for c in self.channels):
            self.channels.append(record)


def discover(client: DiscordClient, *, guild_ids: list[str] | None = None,
             channel_ids: list[str] | None = None, archived_threads: bool = False) -> Discovery:
    """The guild channels to read: `channel_ids` when given (with, for a backfill, their
    threads), else every text channel and active thread of `guild_ids` (default: every guild
    the bot is in), plus archived public threads when `archived_threads`."""
    found = Discovery()
    guilds = {str(g["id"]): g for g in api.guilds(client)}
    if channel_ids:
        _explicit_channels(client, found, guilds, channel_ids, archived_threads)
        return found
    for guild_id in guild_ids or sorted(guilds, key=int):
        guild = guilds.get(guild_id)
        if guild is None:
            found.errors.append({"channel": f"guild:{guild_id}",
                                 "error": f"the bot is not a member of guild {guild_id}"})
            continue
        _guild_channels(client, found, guild, archived_threads)
    return found


def _guild_channels(client: DiscordClient, found: Discovery, guild: dict, archived: bool) -> None:
    guild_id = str(guild["id"])
    try:
        raw = api.guild_channels(client, guild_id)
        threads = api.active_threads(client, guild_id)
    except DiscordForbidden as exc:
        found.skipped.append({"channel": f"guild:{guild_id}", "reason": exc.message})
        return
    except DiscordRequestFailed as exc:  # (a 5xx storm, the bot removed meanwhile: 404)
        # This guild's failure; the other guilds are still read. (Auth failures, bans and
        # rate-limit waits are not DiscordRequestFailed: they end the whole run.)
        found.errors.append({"channel": f"guild:{guild_id}", "error": exc.message})
        return
    found.guilds.append(guild_id)
    categories = {str(c["id"]): c.get("name") for c in raw if c.get("type") == 4}
    parents = []
    for data in sorted(raw, key=lambda c: (c.get("position", 0), int(c["id"]))):
        data = {**data, "guild_id": guild_id}
        record = _record(data, guild, categories)
        found.add(record)
        if record.type in THREAD_PARENT_TYPES:
            parents.append(record)
    for data in sorted(threads, key=lambda t: int(t["id"])):
        found.add(_record({**data, "guild_id": guild_id}, guild, categories))
    found.parents += parents
    if archived:
        for parent in parents:
            _archived(client, found, parent, guild, categories)


def _archived(client: DiscordClient, found: Discovery, parent: ChannelRecord, guild: dict,
              categories: dict) -> None:
    try:
        for data in api.archived_public_threads(client, parent.id):
            found.add(_record({**data, "guild_id": parent.server_id}, guild, categories))
    except DiscordForbidden as exc:
        found.skipped.append({"channel": parent.id, "reason": f"archived threads: {exc.message}"})


def _explicit_channels(client: DiscordClient, found: Discovery, guilds: dict, channel_ids: list[str],
                       with_threads: bool) -> None:
    for channel_id in channel_ids:
        try:
            data = api.channel(client, channel_id)
        except DiscordForbidden as exc:
            found.skipped.append({"channel": channel_id, "reason": exc.message})
            continue
        except (DiscordNotFound, DiscordRequestFailed) as exc:
            found.errors.append({"channel": channel_id, "error": exc.message})
            continue
        if not data.get("guild_id"):
            found.errors.append({"channel": channel_id, "error": "a DM channel: zos reads DMs only "
                                 "with consent (`zos consent grant USER`), through `zos poll`"})
            continue
        guild = guilds.get(str(data["guild_id"]), {"id": str(data["guild_id"])})
        record = _record(data, guild, {})
        if record.type not in MESSAGE_CHANNEL_TYPES | THREAD_PARENT_TYPES:
            found.errors.append({"channel": channel_id,
                                 "error": f"a {record.type} channel holds no messages"})
            continue
        found.add(record)
        if with_threads and record.type in THREAD_PARENT_TYPES:
            _guild_threads_of(client, found, guild, record)


def _guild_threads_of(client: DiscordClient, found: Discovery, guild: dict, parent: ChannelRecord) -> None:
    try:
        for data in api.active_threads(client, parent.server_id):
            if str(data.get("parent_id")) == parent.id:
                found.add(_record({**data, "guild_id": parent.server_id}, guild, {}))
    except DiscordForbidden as exc:
        found.skipped.append({"channel": parent.id, "reason": f"active threads: {exc.message}"})
    _archived(client, found, parent, guild, {})


def _record(data: dict, guild: dict, categories: dict) -> ChannelRecord:
    return convert.channel(
        data,
        server_name=guild.get("name"),
        server_icon_url=convert.guild_icon_url(guild) if guild.get("name") else None,
        category_name=categories.get(str(data.get("parent_id"))),
    )


def dm_channels(db: sqlite_utils.Database, client: DiscordClient, self_user_id: str,
                only: set[str] | None = None) -> Discovery:
    """The DM channel of every user with an active `dm_read` consent (nobody else's). The
    channel id is remembered, so `POST /users/@me/channels` is sent once per user."""
    found = Discovery()
    # (A grant recorded before ids were checked as ASCII digits is no Discord user: skipped.)
    users = sorted({c["user_id"] for c in list_consents(db, active_only=True)
                    if c["consent_type"] == "dm_read" and is_discord_id(c["user_id"])}, key=int)
    for user_id in users:
        if user_id == self_user_id:
            continue
        key = DM_STATE_KEY.format(user_id)
        channel_id = db_module.get_state(db, key)
        if channel_id is None:
            try:
                data = api.open_dm(client, user_id)
            except DiscordRequestFailed as exc:
                found.errors.append({"channel": f"dm:{user_id}", "error": exc.message})
                continue
            channel_id = str(data["id"])
            with db_module.write_transaction(db):
                db_module.set_state(db, key, channel_id)
        if only is not None and channel_id not in only:
            continue
        found.channels.append(ChannelRecord(id=channel_id, type="dm", server_id=None,
                                            participant_ids=[user_id]))
    return found


def one_per_channel(skipped: list[dict]) -> list[dict]:
    """A channel the bot may not read at all is met twice (its archived threads, then its
    messages): listed once, with the later reason, which names its messages."""
    seen: dict[str, dict] = {}
    for entry in skipped:
        seen[entry["channel"]] = entry
    return list(seen.values())
