"""Normalized salience events: what the one writer hands to the salience engine.

`zos_cli.salience.events_to_earns` turns each into the ordered (topic, amount) earns of
docs/salience.md#what-earns. Events carry facts only; weights, focus, caps and the privacy gate are applied by
the salience engine from the configuration and the stored roles.
"""

from __future__ import annotations

from typing import NamedTuple


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


SalienceEvent = MessageEvent | ReactionEvent | SubjectNamedEvent | LayerRunCompletedEvent

__all__ = [
    "MessageEvent",
    "ReactionEvent",
    "SubjectNamedEvent",
    "LayerRunCompletedEvent",
    "SalienceEvent",
]
