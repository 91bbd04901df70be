"""Threads archived since the previous poll, so that their last messages are not missed.

`/guilds/{id}/threads/active` stops listing a thread once it is archived: a thread that got
messages after one poll and was archived before the next (or was created and archived between
two polls) would never be read again. So each poll also asks every parent channel (text,
news, forum, media) for its archived public threads, newest archive first, and stops at the
first one archived before that channel's mark: one request per parent in the usual case. The
threads found are polled like active ones (after their cursor; one never polled starts with its
newest `initial_messages`).

A parent's mark is the time a poll began (before it listed the guild's active threads: a
thread active then was polled in that run, so if it is archived later, it is archived after the
mark), kept in `zos_state`. It moves only when the parent's list was read and every thread
found in it was polled; a failure leaves it where it was, so those threads are looked at again.
Archive times are compared with the mark less `CLOCK_SKEW`, for a local clock ahead of Discord's.

Without a mark of its own, a parent falls back on its guild's mark (the start of the last poll
that listed the guild: a channel created since then), then on its own or its threads' last
poll time in `poll_state` (a database polled before marks existed; a forum has only its
threads'). Without any — the first poll — its
archived threads are not read at all: their history is `zos ingest --token`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.sources.discord import api
from zos_cli.sources.discord import convert
from zos_cli.sources.discord.client import DiscordClient
from zos_cli.records import ChannelRecord
from zos_cli.timeutil import normalize, parse_time, to_stored

STATE_KEY = "discord.archived_threads_checked_at:{}"     # a parent channel id, or guild:<id>
CLOCK_SKEW = timedelta(minutes=1)


@dataclass
class Walk:
    """One parent channel's look at its archived threads in one poll."""
    parent: ChannelRecord
    mark: str | None          # where the look stops (None: the parent's first poll, no look)
    own: bool                 # the mark is the parent's own (not its guild's or poll_state's)
    thread_ids: list[str] = field(default_factory=list)
    read: bool = False        # the list was read back to the mark


def start(db: sqlite_utils.Database, parent: ChannelRecord) -> Walk:
    own = db_module.get_state(db, STATE_KEY.format(parent.id))
    if own is not None:
        return Walk(parent, own, True)
    mark = db_module.get_state(db, STATE_KEY.format(f"guild:{parent.server_id}"))
    if mark is None:
        # Polled by a zos that kept no marks: its last poll, or (a forum, a channel with no
        # messages of its own has no poll_state row) its threads' latest.
        row = db.execute(
            "SELECT max(last_polled_at) FROM poll_state WHERE channel_id = ?1 OR channel_id IN "
            "(SELECT id FROM channels WHERE parent_id = ?1)", [parent.id]).fetchone()
        mark = row[0] if row else None
    return Walk(parent, mark, False)


def threads(client: DiscordClient, walk: Walk) -> list[ChannelRecord]:
    """The parent's public threads archived since its mark, newest archive first. Raises the
    request's error (DiscordForbidden, DiscordRequestFailed); `walk.read` stays False then."""
    found: list[ChannelRecord] = []
    if walk.mark is not None:
        since = to_stored(parse_time(walk.mark) - CLOCK_SKEW)
        parent = walk.parent
        # The generator asks for the next page only when this loop goes past a full one.
        for data in api.archived_public_threads(client, parent.id):
            if normalize(data["thread_metadata"]["archive_timestamp"]) < since:
                break
            record = convert.channel({**data, "guild_id": parent.server_id},
                                     server_name=parent.server_name,
                                     server_icon_url=parent.server_icon_url)
            if record.is_thread:  # (a kind zos does not poll would hold the mark back forever)
                found.append(record)
    walk.thread_ids = [t.id for t in found]
    walk.read = True
    return found


def save(db: sqlite_utils.Database, walks: Iterable[Walk], guild_ids: Iterable[str], at: str,
         polled: set[str]) -> None:
    """Move the marks to `at` (when this poll began) for the parents read in full whose threads
    were all `polled`, and for the guilds listed. A parent left behind keeps the mark it was
    looked at from, as its own: its guild's mark moves on. The caller holds the transaction."""
    for walk in walks:
        if walk.read and all(t in polled for t in walk.thread_ids):
            db_module.set_state(db, STATE_KEY.format(walk.parent.id), at)
        elif not walk.own and walk.mark is not None:
            db_module.set_state(db, STATE_KEY.format(walk.parent.id), walk.mark)
    for guild_id in guild_ids:
        db_module.set_state(db, STATE_KEY.format(f"guild:{guild_id}"), at)
