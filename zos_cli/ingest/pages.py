"""From API message pages to stored rows, shared by poll and backfill.

For the messages about to be written: fetch every reactor of their reactions (all pages),
learn the roles of people not yet known in a privacy-gated server, convert to records, and
hand them to the one writer in snowflake order inside one `write_transaction` together with
whatever state the caller moves (a cursor, a checkpoint). A failed transaction is rolled back
and the salience engine's pending rows discarded with it.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.sources.discord import api
from zos_cli.sources.discord import convert
from zos_cli.ingest import member_roles as roles
from zos_cli.sources.discord.client import DiscordClient
from zos_cli.records import ChannelRecord, MessageRecord
from zos_cli.timeutil import now_stored

CONTENT_INTENT_ERROR = (
    "messages arrive without content: the bot lacks the Message Content intent (enable it in "
    "the Discord developer portal, Bot → Privileged Gateway Intents); nothing of this channel "
    "was stored"
)


class PageWriter:
    def __init__(self, db: sqlite_utils.Database, config, client: DiscordClient, writer, engine,
                 self_user_id: str | None, *, on_warning: Callable[[str], None]):
        self.db = db
        self.config = config
        self.client = client
        self.writer = writer
        self.engine = engine
        self.self_user_id = self_user_id
        self.gated: dict[str, roles.GuildRoles] = {}
        self.role_changes: list[roles.RoleChange] = []
        self._warned_intent = False
        self.on_warning = on_warning  # a warning for the person running the job

    # ------------------------------------------------------------------ checks
    def content_missing(self, channel: ChannelRecord, page: list[dict]) -> bool:
        """True (and a clear warning, once per run) when a page shows that the bot lacks the
        Message Content intent; such messages must not be stored as if they were real."""
        if channel.is_dm or not convert.looks_like_missing_content_intent(page, self.self_user_id):
            return False
        if not self._warned_intent:
            self.on_warning(f"channel {channel.id}: {CONTENT_INTENT_ERROR}")
            self._warned_intent = True
        return True

    def gate_for(self, server_id: str | None) -> roles.GuildRoles | None:
        if server_id is None:
            return None
        if server_id not in self.gated:
            gate = self.config.server(server_id).privacy_gate_role
            self.gated[server_id] = roles.GuildRoles(server_id, gate) if gate else None
        return self.gated[server_id]

    # ------------------------------------------------------------------ fetching
    def reactors(self, channel_id: str, message: dict,
                 emojis: set[tuple[str, str]] | None = None) -> dict[tuple[str, str], list[dict]]:
        """The users of each reaction of the message, or of those whose `emoji_key` is in
        `emojis`. A reaction left out is recorded with its count and no users: a list shorter
        than its count, which adds no one and takes no one's reaction away."""
        out = {}
        for r in message.get("reactions") or []:
            key = convert.emoji_key(r.get("emoji") or {})
            if emojis is None or key in emojis:
                out[key] = api.reactors(self.client, channel_id, str(message["id"]),
                                        r.get("emoji") or {})
        return out

    def records(self, messages: list[dict], *,
                reactions_for: dict[str, set[tuple[str, str]] | None] | None = None,
                ) -> list[MessageRecord]:
        """Records in snowflake order. Reactors are fetched for the messages in
        `reactions_for` (default: every message), of the emojis it names for each (None: all);
        the other messages carry `reactions=None` (not known here)."""
        observed = now_stored()
        out = []
        for m in sorted(messages, key=lambda m: int(m["id"])):
            mid = str(m["id"])
            if reactions_for is None:
                reactors = self.reactors(str(m["channel_id"]), m)
            elif mid in reactions_for:
                reactors = self.reactors(str(m["channel_id"]), m, reactions_for[mid])
            else:
                reactors = None
            out.append(convert.message(m, observed_at=observed, reactors=reactors))
        return out

    def _members_to_record(self, channel: ChannelRecord, records: list[MessageRecord]) -> list:
        guild = self.gate_for(channel.server_id)
        if guild is None or not records:
            return []
        people = set()
        for r in records:
            people.add(r.author.id)
            people.update(u.id for u in r.mentions)
            for reaction in r.reactions or ():
                people.update(u.id for u in reaction.users)
        members = roles.fetch_unknown(self.db, self.client, guild, people)
        return [(guild, user_id, member) for user_id, member in members.items()]

    # ------------------------------------------------------------------ writing
    def write(self, channel: ChannelRecord, records: list[MessageRecord], *, source_id: str | None = None,
              deleted: list[str] = (), also: Callable[[], None] | None = None) -> None:
        """One transaction: newcomers' roles, the records, deletions, then `also()` (the
        caller's cursor or checkpoint), so state never runs ahead of the rows it covers."""
        from zos_cli.observe.writer import Observation

        members = self._members_to_record(channel, records)
        try:
            with db_module.write_transaction(self.db):
                for guild, user_id, member in members:
                    change = roles.record_member(self.db, guild, user_id, member)
                    if change is not None:
                        self.role_changes.append(change)
                if records:
                    source = source_id or self.writer.source_id
                    self.writer.write_batch([Observation(channel, r, source) for r in records])
                if deleted:
                    self.writer.mark_deleted(list(deleted), now_stored())
                if also is not None:
                    also()
        except BaseException:
            self.engine.discard()
            # The writer remembers which channels it wrote; after a rollback it must not.
            self.writer.forget_places(channel)
            raise
