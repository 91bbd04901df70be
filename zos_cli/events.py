"""Normalized salience events: what the one writer hands to the salience engine.

`zos_cli.salience.events_to_earns` turns each into the ordered (topic, amount) earns of
docs/salience.md#what-earns. Events carry facts only; weights, focus, caps and the privacy gate are applied by
the salience engine from the configuration and the stored roles.

A message's events are built in one place, `message_salience_events`, from one row shape,
`MessageRow`: the writer fills it from the records it is writing, `zos salience rebuild` and
the earning of pending messages from the stored rows. Because both go through the same
function, a message earns the same whether it is ingested now or replayed later; the callers
only have to hand it the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from zos_cli.records import CONVERSATIONAL_TYPES, DM_TYPES, THREAD_TYPES


class MessageEvent(NamedTuple):  # NamedTuples: one or more per message, built cheaply
    message_id: str
    server_id: str | None            # None: a DM
    channel_id: str                  # the channel or thread the message is in
    author_id: str
    created_at: str                  # stored form
    message_type: str                # DiscordChatExporter name (Default, Reply, ThreadCreated…)
    is_system: bool                  # not a person talking (ThreadCreated is handled apart)
    parent_channel_id: str | None = None   # set when channel_id is a thread
    has_media: bool = False
    has_links: bool = False
    reply_to_author_id: str | None = None  # author of the replied-to message, when known
    mentioned_user_ids: tuple[str, ...] = ()
    mentioned_role_ids: tuple[str, ...] = ()
    custom_emoji_ids: tuple[str, ...] = ()  # inline custom emoji, one per occurrence
    dm_participant_ids: tuple[str, ...] = ()  # DMs: everyone in it except zos itself


class ReactionEvent(NamedTuple):
    message_id: str
    server_id: str | None
    channel_id: str
    message_author_id: str
    reactor_id: str
    created_at: str                  # the reacted-to message's time (event time)
    emoji_id: str = ""               # custom emoji id, '' for unicode
    parent_channel_id: str | None = None


class SubjectNamedEvent(NamedTuple):
    server_id: str
    subject: str                     # [a-z_][a-z0-9_]*
    created_at: str


class LayerRunCompletedEvent(NamedTuple):
    created_at: str
    layer_run_id: str | None = None


class MessageRow(NamedTuple):
    """One message as its salience events need it: its `messages` columns, its channel's
    `channels` columns, its mentions and role mentions, and the author of the message it
    replies to. The mention lists may come in any order and with repeats (the builder sorts
    and deduplicates them: a record lists mentions in text order with repeats, the tables hold
    one row per id), so a record's lists and a table's rows can be handed over as they are.
    A NamedTuple because the writer makes one per new message on the ingest hot path."""
    id: str
    server_id: str | None            # None: a DM
    channel_id: str
    channel_type: str                # a stored channel type: decides thread and DM
    channel_parent_id: str | None    # the channel's parent (only a thread's is used)
    channel_participant_ids: Sequence[str] | None  # the channel's (only a DM's are used)
    author_id: str
    created_at: str                  # stored form
    message_type: str
    has_media: bool
    has_links: bool
    custom_emoji_ids: Sequence[str]  # inline custom emoji, one per occurrence, in text order
    reply_to_author_id: str | None   # None: not a reply, or its parent is not stored
    mentioned_user_ids: Iterable[str]
    mentioned_role_ids: Iterable[str]


def message_salience_events(row: MessageRow, reactions: Iterable[tuple[str, str, str]] = (),
                            *, with_message: bool = True) -> list[MessageEvent | ReactionEvent]:
    """The salience events of one message: its MessageEvent (unless `with_message` is False:
    a message earned before whose new reactions earn now), then one ReactionEvent per
    (reactor user id, emoji, emoji id) of `reactions`, in that sorted order (the engine's
    results depend on the order, and the reactions table has no order of its own)."""
    thread_parent = row.channel_parent_id if row.channel_type in THREAD_TYPES else None
    events: list[MessageEvent | ReactionEvent] = []
    if with_message:
        users, roles, participants = (row.mentioned_user_ids, row.mentioned_role_ids,
                                      row.channel_participant_ids)
        # Positional: this runs once per ingested message, and keywords cost twice as much.
        # The order is MessageEvent's fields (tests/test_salience_event_builder.py pins it).
        events.append(MessageEvent(
            row.id, row.server_id, row.channel_id, row.author_id, row.created_at,
            row.message_type,
            row.message_type not in CONVERSATIONAL_TYPES,         # is_system
            thread_parent,                                        # parent_channel_id
            bool(row.has_media), bool(row.has_links), row.reply_to_author_id,
            tuple(sorted(set(users))) if users else (),           # mentioned_user_ids
            tuple(sorted(set(roles))) if roles else (),           # mentioned_role_ids
            tuple(row.custom_emoji_ids),
            tuple(participants) if participants and row.channel_type in DM_TYPES else (),
        ))
    if reactions:
        events.extend(
            ReactionEvent(row.id, row.server_id, row.channel_id, row.author_id, reactor_id,
                          row.created_at, emoji_id, thread_parent)
            for reactor_id, _emoji, emoji_id in sorted(reactions))
    return events


SalienceEvent = MessageEvent | ReactionEvent | SubjectNamedEvent | LayerRunCompletedEvent

__all__ = [
    "MessageEvent",
    "ReactionEvent",
    "SubjectNamedEvent",
    "LayerRunCompletedEvent",
    "SalienceEvent",
    "MessageRow",
    "message_salience_events",
]
