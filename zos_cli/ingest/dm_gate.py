"""The DM consent gate of an ingest run (docs/ingest.md#dms-and-consent): who is in each DM export, and whether
its channel may be stored.

A DM export is read once, before anything is written, for its participants. The decision is
taken once every file of the run is read, per channel: a DM channel may come in several files
(an export split by date) and is stored only when everyone seen in any of them has an active
`dm_read` consent. Nothing of a refused DM is written but its ingest-log row (path, counts,
the participant ids it needs, and the other side of a 1:1 DM read while zos's own account was
unknown). From that row an unchanged file is read again once it may be stored, or else
skipped and still counted, and the run says whom its refused DMs wait for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import sqlite_utils

from zos_cli.privacy import consent
from zos_cli.store import db as db_module
from zos_cli.observe.rows import set_participants
from zos_cli.sources.export import ExportError

log = logging.getLogger("zos.ingest")


# System messages of a group DM that name a member (the one added or removed) in `mentions`.
_MEMBERSHIP_CHANGES = frozenset({"RecipientAdd", "RecipientRemove"})


def read_dm_participants(db: sqlite_utils.Database, plan, self_user_id: str | None) -> None:
    """Set `plan.dm_participants` (every author and reactor, every member a RecipientAdd or
    RecipientRemove names, and for a 1:1 DM the user the channel is named after, except zos
    itself) and `plan.dm_messages`."""
    names: dict[str, set[str | None]] = {}
    acted: set[str] = set()
    count = 0
    try:
        count = _read_people(plan, names, acted)
    except ExportError:
        # A bad file still shows who was in the conversation up to the problem: they are
        # recorded (ingest_log), so no other part of the channel is stored without them.
        _settle(db, plan, self_user_id, names, acted, count)
        raise
    plan.sha256 = plan.sha256 or plan.export.sha256
    _settle(db, plan, self_user_id, names, acted, count)


def _read_people(plan, names: dict, acted: set) -> int:
    count = 0
    for message in plan.export.messages():
        count += 1
        users = [message.author, *message.mentions]
        acted.add(message.author.id)
        if message.message_type in _MEMBERSHIP_CHANGES:
            # "X added Y to the group": Y is a member, whether or not Y ever speaks.
            acted.update(u.id for u in message.mentions)
        for reaction in message.reactions or ():
            users.extend(reaction.users)
            acted.update(u.id for u in reaction.users)
        for user in users:
            names.setdefault(user.id, set()).update({user.name, user.nickname})
    return count


def _settle(db: sqlite_utils.Database, plan, self_user_id: str | None, names: dict,
            acted: set, count: int) -> None:
    channel = plan.channel
    named: set[str] = set()
    if channel.type == "dm" and channel.name:
        named = _named(db, channel.name, names)
        acted |= named
        # zos's account unknown and the one it talks to not found: a 1:1 DM of one known
        # person is someone else's conversation too, with someone no one can ask.
        plan.dm_counterpart_unknown = not named and self_user_id is None and len(acted) < 2
    if channel.type == "dm" and self_user_id is None:
        # A 1:1 DM is named after the side that did not export it: the other side is
        # whoever exported it, most likely zos's own account (said in the consent hint).
        others = acted - named - {None}
        plan.dm_probable_self_id = next(iter(others)) if len(others) == 1 else None
    stored = db.execute("SELECT participant_ids FROM channels WHERE id = ?",
                        [channel.id]).fetchone()
    if stored and stored[0]:
        acted |= set(json.loads(stored[0]))
    # Everyone seen in the channel's files of earlier runs too, stored or refused: one part
    # of a group DM does not make it anyone else's conversation.
    for (earlier,) in db.execute(
            "SELECT dm_participant_ids FROM ingest_log WHERE channel_id = ? "
            "AND dm_participant_ids IS NOT NULL", [channel.id]):
        acted |= set(json.loads(earlier))
    acted.discard(self_user_id)
    acted.discard(None)
    plan.dm_participants = sorted(acted, key=int)
    plan.dm_messages = count


def gate_dms(db: sqlite_utils.Database, plans: list, log_start: Callable,
             log_final: Callable) -> None:
    """Decide every DM channel of the run, then log each of its files as read
    (`log_start`) or skipped (`log_final`, its messages counted as skipped).

    A refused channel that is already stored (its earlier parts had everyone's consent) gets
    its newly seen participants, ids only: every later gate (poll, reflect, rebuild) then
    knows it is no longer a conversation of consenting users alone."""
    by_channel: dict[str, list] = {}
    seen_in_failed: dict[str, set[str]] = {}  # (a bad file of the run counts too)
    for plan in plans:
        if plan.channel is None or not plan.channel.is_dm:
            continue
        if plan.status == "running":
            by_channel.setdefault(plan.channel.id, []).append(plan)
        elif plan.status == "failed" and plan.dm_participants:
            seen_in_failed.setdefault(plan.channel.id, set()).update(plan.dm_participants)
    for channel_id, group in by_channel.items():
        everyone = sorted(set().union(seen_in_failed.get(channel_id, set()),
                                      *(p.dm_participants for p in group)), key=int)
        allowed = consent.dm_may_be_stored(db, everyone) and not any(
            p.dm_counterpart_unknown for p in group)
        for plan in group:
            plan.dm_participants = plan.channel.participant_ids = everyone
            if allowed:
                log_start(plan)
            else:
                plan.dm_skipped, plan.status = plan.dm_messages, "completed"
                log_final(plan)
                _widen_stored_participants(db, plan.channel.id, everyone)
                log.info("%s: DM channel %s not stored (%s messages): not every participant "
                         "has consent", plan.label, plan.channel.id, plan.dm_messages)


def _widen_stored_participants(db: sqlite_utils.Database, channel_id: str,
                               everyone: list[str]) -> None:
    row = db.execute("SELECT participant_ids FROM channels WHERE id = ?", [channel_id]).fetchone()
    if row is None:
        return
    known = set(json.loads(row[0] or "[]"))
    if not known.issuperset(everyone):
        with db_module.write_transaction(db):
            set_participants(db, channel_id, sorted(known | set(everyone), key=int))


def unchanged_dm_may_be_stored(db: sqlite_utils.Database, plan, row: tuple,
                               self_user_id: str | None) -> bool:
    """For a file unchanged since the completed ingest `row` (see
    `ingest_log.completed_exports_of_size`): whether it holds a DM refused then that may be
    stored now, so the file is read again. Otherwise a DM's row is carried onto `plan` (it is
    skipped at once): its channel and people, so a purge finds the skipped row too, and what
    is still refused, counted again and its people named from the log without a read."""
    _sha, skipped, participants, log_id, channel_id, probable_self = row
    if participants is None:
        return False  # not a DM
    # (zos's own account counts as a participant while it is not known: not once it is.)
    participants = [p for p in json.loads(participants) if p != self_user_id]
    if participants and consent.dm_may_be_stored(db, participants) and (
            skipped or consent.granted_since(db, participants, log_id)):
        # Consent gained since (or zos's own account learned): read it again. (A grant after
        # that ingest also covers a DM stored then forgotten: what a file adds when nothing
        # was forgotten is 0.)
        return True
    plan.skipped_channel_id, plan.dm_participants = channel_id, participants
    plan.dm_skipped, plan.dm_probable_self_id = skipped, probable_self
    return False


def consent_needed(db: sqlite_utils.Database, plans: list, self_user_id: str | None
                   ) -> list[dict]:
    """Who the DMs of a run that were not stored still wait for: each participant of those
    files (read now, or skipped as unchanged) without an active consent, as
    {user_id, name, probably_zos}. `name` is a stored user name (from a server channel: a
    refused DM stores none); `probably_zos` marks the other side of a 1:1 DM read while
    zos's own account was unknown, which needs `discord.self_user_id`, not a consent."""
    waiting: dict[str, bool] = {}
    for plan in plans:
        if not plan.dm_skipped:
            continue
        probable = plan.dm_probable_self_id if self_user_id is None else None
        for user_id in consent.without_consent(db, plan.dm_participants or ()):
            waiting[user_id] = waiting.get(user_id, False) or user_id == probable
    if not waiting:
        return []
    ids = sorted(waiting, key=int)
    names = dict(db.execute(
        f"SELECT id, name FROM users WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
    return [{"user_id": u, "name": names.get(u), "probably_zos": waiting[u]} for u in ids]


def _named(db: sqlite_utils.Database, name: str, names: dict[str, set[str | None]]) -> set[str]:
    """The one user a 1:1 DM is named after: seen in the file, else already stored."""
    matches = {uid for uid, known in names.items() if name in known}
    if not matches:
        matches = {r[0] for r in db.execute(
            "SELECT id FROM users WHERE name = ? OR display_name = ?", [name, name])}
    return matches if len(matches) == 1 else set()
