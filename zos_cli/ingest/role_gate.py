"""The privacy gate of an ingest run's salience (docs/ingest.md#privacy-gate-role), settled before anything is
earned.

In a server with a privacy-gate role, whether a user's activity earns depends on their roles.
An export shows a user's role set on every message they author (as of `exportedAt`; reactors
carry none), and the run keeps the newest observation of it (observe/people.py). Asking the
database while the run is being written would answer by what the run has written so far: a
reactor seen before they first author would count as an outsider, a user who gained the role
in a newer export would count only after that export's first message — and the answer would
change with the batch size, after a kill and a resume, and in `zos salience rebuild`, which
reads the final roles.

So the gate files of a run (those of servers with a gate role) are read once first, like DM
files, merged as the writer merges them (per group, in snowflake order), for the newest role
set each user shows there, by the rules the writer applies:
- only the observations the writer takes count: of one message id seen in several files of a
  group, the newest (the later one on a tie); and that one only when the message is new or it
  is newer than the stored observation (stored before the run, or by an earlier group) — an
  older or equal observation of a stored message shows nothing, not even the roles it
  carries (a newer export without `roles` hides an older one's);
- messages of erased users and erased users themselves show nothing (observe `_gate`);
- the newest observation wins, a tie goes to the later one in the run's order (its merge
  groups, then snowflake order, then file order, then author, mentions, reactors), and the
  run wins a tie with what is stored.
The run's earns then use the role set the run leaves each user with: the same answers for
any batch size, after a resume, and in a rebuild.

Files whose messages are not in snowflake order (not DiscordChatExporter's) are merged as
the writer merges them, but an id seen twice then is not always seen together.
"""

from __future__ import annotations

import heapq
import logging
from array import array
from bisect import bisect_left
from collections.abc import Iterator

import sqlite_utils

from zos_cli.ingest.files import merge_chunk_bytes
from zos_cli.observe.writer import newer_observation
from zos_cli.observe.rows import stored_observations
from zos_cli.privacy.gate import gate_role, holds_role
from zos_cli.sources.export import ExportError

log = logging.getLogger("zos.ingest")

LOOKUP_IDS = 2000  # message ids looked up in one query


def settle_gate(db: sqlite_utils.Database, config,
                groups: list[list]) -> dict[tuple[str, str], bool]:
    """(server id, user id) → whether the user holds the server's gate role once the run is
    written, for every user the run shows with roles in a server that has a gate role.
    `groups` are the run's file plans as they will be merged (FilePlan: export, channel)."""
    gates: dict[str, str | None] = {}
    newest: dict[tuple[str, str], tuple[tuple, frozenset[str]]] = {}
    seen = _Seen(db, groups)
    for g, group in enumerate(groups):
        gated = []
        for f, plan in enumerate(group):
            server_id = plan.channel.server_id
            if server_id is None:
                continue  # a DM: consent governs it, not a role
            if server_id not in gates:
                gates[server_id] = gate_role(db, config, server_id)
            if gates[server_id]:
                gated.append((f, plan))
        if gated:
            _read_group(gated, g, merge_chunk_bytes(len(group)), seen, newest)
    answers = {}
    for (server_id, user_id), ((when, *_), role_ids) in newest.items():
        stored = db.execute(
            "SELECT roles_refreshed_at FROM user_server_tracking WHERE user_id = ? "
            "AND server_id = ?", [user_id, server_id]).fetchone()
        role = gates[server_id]
        if ((stored[0] if stored else None) or "") <= when:
            answers[(server_id, user_id)] = role in role_ids
        else:  # a newer role set is stored than any this run shows: it stays
            answers[(server_id, user_id)] = holds_role(db, user_id, role)
    if newest:
        log.info("privacy gate: role sets of %s users read from the gated files", len(newest))
    return answers


def _messages(plan, chunk: int) -> Iterator:
    """One file's messages; a read error ends them where the writer stops (what came before
    counts; the writer reports it)."""
    plan.export.set_chunk_bytes(chunk)
    try:
        yield from plan.export.messages()
    except ExportError:
        pass
    finally:
        plan.export.release_handle()


def _keyed(file_index: int, plan, chunk: int) -> Iterator[tuple]:
    """Keyed as the writer merges: (snowflake, file index, record)."""
    for message in _messages(plan, chunk):
        yield int(message.id), file_index, message


def _chosen(gated: list, chunk: int) -> Iterator[tuple]:
    """(file index, record) per message id, as the writer's batch chooses among the
    observations of one id merged together: the newest, the later one on a tie. One file
    holds each id once (the reader skips a repeated id, as for the writer)."""
    if len(gated) == 1:
        f, plan = gated[0]
        for message in _messages(plan, chunk):
            yield f, message
        return
    run_id, run = None, None
    for snowflake, f, message in heapq.merge(*(_keyed(f, p, chunk) for f, p in gated)):
        if snowflake != run_id:
            if run is not None:
                yield run
            run_id, run = snowflake, (f, message)
        elif not newer_observation(run[1].observed_at, message.observed_at):
            run = (f, message)
    if run is not None:
        yield run


def _read_group(gated: list, group: int, chunk: int, seen: _Seen, newest: dict) -> None:
    """The role sets shown by the observations of one merge group the writer takes."""
    channels = {f: plan.channel for f, plan in gated}
    checked = {f: seen.may_be_stored(channel) for f, channel in channels.items()}
    erased = seen.erased
    pending: list[tuple] = []  # chosen, to be checked against the stored messages

    def check() -> None:
        for f, message in seen.taken(pending, channels, group):
            _note(message, channels[f].server_id, group, f, erased, newest)
        pending.clear()

    for f, message in _chosen(gated, chunk):
        if message.author.id in erased:
            continue  # the writer drops the message
        if checked[f]:
            pending.append((f, message))
            if len(pending) >= LOOKUP_IDS:
                check()
        else:  # new: nothing of its channel's server is stored, nor seen in another group
            _note(message, channels[f].server_id, group, f, erased, newest)
    check()


class _Seen:
    """Whether the writer will take an observation of a message: it takes one that is new,
    or newer than the one stored — before the run (looked up a chunk at a time, only in the
    servers that have messages stored) or by an earlier merge group of the run (remembered
    only for the channels whose files fall in more than one group)."""

    def __init__(self, db, groups: list[list]):
        self.db = db
        self.erased = frozenset(r[0] for r in db.execute(
            "SELECT object_id FROM tombstones WHERE object_type = 'user'"))
        in_groups: dict[str, set[int]] = {}
        for g, group in enumerate(groups):
            for plan in group:
                in_groups.setdefault(plan.channel.id, set()).add(g)
        self.spanning = {ch for ch, gs in in_groups.items() if len(gs) > 1}
        self.written = _Written()  # what earlier groups wrote of the spanning channels
        self._stored_in: dict[str, bool] = {}  # server → has messages stored

    def may_be_stored(self, channel) -> bool:
        return channel.id in self.spanning or self._has_messages(channel.server_id)

    def _has_messages(self, server_id: str) -> bool:
        known = self._stored_in.get(server_id)
        if known is None:
            known = self._stored_in[server_id] = self.db.execute(
                "SELECT 1 FROM messages WHERE server_id = ? LIMIT 1", [server_id]).fetchone() \
                is not None
        return known

    def taken(self, chosen: list[tuple], channels: dict, group: int) -> list[tuple]:
        """The (file index, record) of `chosen` (in merge group `group`) the writer takes."""
        lookup = [m.id for f, m in chosen if self._has_messages(channels[f].server_id)]
        stored = stored_observations(self.db, lookup) if lookup else {}
        taken = []
        for f, m in chosen:
            spanning = channels[f].id in self.spanning
            known, before = self.written.get(int(m.id)) if spanning else (False, None)
            if not known:
                known, before = m.id in stored, stored.get(m.id)
            if known and not newer_observation(m.observed_at, before):
                continue  # an older or equal observation of a stored message
            if spanning:
                self.written.add(group, int(m.id), m.observed_at)
            taken.append((f, m))
        return taken


class _Written:
    """Message id → the observation time the writer stores, for what earlier merge groups
    write of the channels whose files fall in several groups: per group the ids in the order
    merged (ascending: looked up by bisection, 12 bytes each), out-of-order ones aside."""

    def __init__(self):
        self.segments: list[tuple[int, array, array, dict]] = []  # (group, ids, at, aside)
        self.times: list[str | None] = []
        self._time_index: dict[str | None, int] = {}

    def get(self, message_id: int) -> tuple[bool, str | None]:
        for _, ids, at, aside in reversed(self.segments):  # the latest group wrote last
            if message_id in aside:
                return True, self.times[aside[message_id]]
            i = bisect_left(ids, message_id)
            if i < len(ids) and ids[i] == message_id:
                return True, self.times[at[i]]
        return False, None

    def add(self, group: int, message_id: int, observed: str | None) -> None:
        t = self._time_index.get(observed)
        if t is None:
            t = self._time_index[observed] = len(self.times)
            self.times.append(observed)
        if not self.segments or self.segments[-1][0] != group:
            self.segments.append((group, array("Q"), array("I"), {}))
        _, ids, at, aside = self.segments[-1]
        if not ids or message_id > ids[-1]:
            ids.append(message_id)
            at.append(t)
        else:
            aside[message_id] = t


def _note(message, server_id: str, group: int, file_index: int, erased: frozenset,
          newest: dict) -> None:
    when = message.observed_at or ""
    order = int(message.id)
    users = [message.author, *message.mentions]
    for reaction in message.reactions or ():
        users.extend(reaction.users)
    for position, user in enumerate(users):
        if user.roles is None or user.id in erased:
            continue  # an export without roles (or a reactor): nothing shown
        key = (when, group, order, file_index, position)
        known = newest.get((server_id, user.id))
        if known is None or known[0] <= key:
            newest[(server_id, user.id)] = (key, frozenset(r.id for r in user.roles))
