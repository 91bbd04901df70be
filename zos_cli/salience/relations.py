"""Who is related to whom (docs/salience.md#related-topics), read off a topic key's parts.

Two kinds of relation, kept apart because they are used differently (see index.py):
- *owners*: topics with many related topics (server users → their dyads and user_in_channel
  topics, channels → their user_in_channel topics and threads, global users → their server
  users and global dyads, global dyads → their server dyads). A topic lists the owners whose
  receptive sets it joins; the owner's transfers reach those sets lazily (offers.py).
- *exact* related keys: every other relation, a handful of keys per topic.
Together they are the related(t) of docs/salience.md#related-topics, each direction once.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from zos_cli.topics import Topic

_intern = sys.intern


class TopicParts(NamedTuple):
    """A parsed key as the index keeps it: a Topic's fields and properties in a plain tuple
    (a frozen dataclass costs a __dict__ per topic)."""

    kind: str
    server_id: str | None
    ids: tuple[str, ...]

    key = Topic.key
    is_global = Topic.is_global
    category = Topic.category
    group = Topic.group
    cap_field = Topic.cap_field


def parse_stored(key: str) -> TopicParts:
    """Keys read back from the database were validated when built: split, do not re-check."""
    parts = key.split(":")
    if parts[0] == "server":
        return TopicParts(parts[2], parts[1], tuple(parts[3:]))
    return TopicParts(parts[0], None, tuple(parts[1:]))


def owners_of(topic: TopicParts, parent_channel_id: str | None) -> tuple[str, ...]:
    """The owners whose receptive sets this topic belongs to (when receptive), interned."""
    return tuple(_intern(k) for k in _owner_keys(topic, parent_channel_id))


def _owner_keys(topic: TopicParts, parent_channel_id: str | None) -> tuple[str, ...]:
    s, kind, ids = topic.server_id, topic.kind, topic.ids
    if s is None:
        if kind == "dyad":
            return (f"user:{ids[0]}", f"user:{ids[1]}")
        return ()
    if kind == "dyad":
        return (f"server:{s}:user:{ids[0]}", f"server:{s}:user:{ids[1]}", f"dyad:{ids[0]}:{ids[1]}")
    if kind == "user_in_channel":
        return (f"server:{s}:user:{ids[1]}", f"server:{s}:channel:{ids[0]}")
    if kind == "user":
        return (f"user:{ids[0]}",)
    if kind == "thread" and parent_channel_id:
        return (f"server:{s}:channel:{parent_channel_id}",)
    return ()


# Relations rebuilt on every call instead of kept: dyads are most of a community's topics
# (memory), and an emoji's relation depends on who used it.
UNCACHED_KINDS = frozenset({"dyad", "dyad_in_channel", "emoji"})

OWNER_KINDS = frozenset({("user", False), ("channel", False), ("user", True), ("dyad", True)})


def is_owner(topic: TopicParts) -> bool:
    return (topic.kind, topic.server_id is None) in OWNER_KINDS


def exact_related_keys(topic: TopicParts, owners: tuple[str, ...],
                       user_id: str | None) -> list[str]:
    """The related topics of `topic` that are not reached through an owner's set, in the
    order transfers are given. `owners`: the topic's own owners (a thread's parent channel
    is both). `user_id`: who used an emoji (its related topic)."""
    s, kind, ids = topic.server_id, topic.kind, topic.ids
    if s is None:
        if kind == "dyad":
            return [f"user:{ids[0]}", f"user:{ids[1]}"]
        return []
    if kind == "user":
        return [f"user:{ids[0]}"]
    if kind == "dyad":
        a, b = ids
        return [f"server:{s}:user:{a}", f"server:{s}:user:{b}", f"dyad:{a}:{b}"]
    if kind == "thread":
        return list(owners)
    if kind == "user_in_channel":
        return [f"server:{s}:user:{ids[1]}", f"server:{s}:channel:{ids[0]}"]
    if kind == "dyad_in_channel":
        c, a, b = ids
        return [f"server:{s}:dyad:{a}:{b}", f"server:{s}:channel:{c}",
                f"server:{s}:user:{a}", f"server:{s}:user:{b}"]
    if kind == "emoji" and user_id:
        return [f"server:{s}:user:{user_id}"]
    return []  # channels relate through their set; subjects, roles and self to nothing
