"""Topic keys (docs/salience.md#topics): one table of the kinds of topic, and everything that
builds, parses, validates or matches a key asks it.

Global keys: `user:<id>`, `dyad:<a>:<b>`, `self:zos`. Server-scoped keys start with
`server:<s>:` followed by `user:<id>`, `channel:<id>`, `thread:<id>`, `role:<id>`,
`dyad:<a>:<b>`, `user_in_channel:<c>:<u>`, `dyad_in_channel:<c>:<a>:<b>`, `subject:<name>`,
`emoji:<id>` or `self:zos`. Ids are Discord snowflakes written canonically (digits, no leading
zero); a dyad's two ids are distinct and sorted ascending *numerically*, so each pair has one
key. Anything else is an InvalidTopicKey.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from zos_cli.errors import UsageProblem
from zos_cli.ids import is_discord_id

# The forms a part of a key (after its kind) takes.
SNOWFLAKE = "snowflake"        # a Discord id, canonical digits
SUBJECT_NAME = "subject name"  # _SUBJECT below
SELF_NAME = "zos"              # the self topic's one name: its only part is this literal

_SUBJECT = re.compile(r"[a-z_][a-z0-9_]{0,63}")  # fullmatch: no trailing newline either


class KeyPart(NamedTuple):
    """One part of a key after its kind: what it refers to (the GLOB helpers look for the
    "user" parts) and its form."""

    refers_to: str   # user, channel, thread, role, emoji, subject, self
    form: str    # SNOWFLAKE, SUBJECT_NAME or SELF_NAME


_USER = KeyPart("user", SNOWFLAKE)
_CHANNEL = KeyPart("channel", SNOWFLAKE)


@dataclass(frozen=True)
class TopicKind:
    """Everything zos knows about one kind of topic."""

    name: str                     # the kind as written in a key
    category: str                 # what layers target and `--category` filters on
    label: str                    # for people, server-scoped: "server user", "channel", …
    server_group: str             # the budget group of its server-scoped topics
    server_cap: str               # its `zos.toml` [salience.caps] field, server-scoped
    parts: tuple[KeyPart, ...]    # the key's parts after the kind, in order
    # Only user, dyad and self topics exist globally too (the others belong to a server).
    global_group: str | None = None
    global_cap: str | None = None
    global_label: str | None = None
    # Its last two parts are a pair of users: distinct, sorted ascending numerically.
    is_pair: bool = False
    # The kinds of its related topics (docs/salience.md#related-topics), each way. In
    # `related` (its server-scoped topics) a bare kind means the same server's topics and
    # "global <kind>" the global ones; in `global_related`, "global <kind>" and "server <kind>".
    # salience/relations.py computes the related keys themselves (tests/test_topics.py
    # checks it names only these kinds).
    related: tuple[str, ...] = ()
    global_related: tuple[str, ...] = ()

    @property
    def may_be_global(self) -> bool:
        return self.global_cap is not None

    @property
    def arity(self) -> int:
        return len(self.parts)


# In the order of CATEGORIES (the order `--category` lists its choices in). Read-only.
KINDS: Mapping[str, TopicKind] = MappingProxyType({k.name: k for k in (
    TopicKind("user", "users", "server user", "social", "server_user", (_USER,),
              global_group="global", global_cap="global_user", global_label="user",
              related=("global user", "dyad", "user_in_channel", "dyad_in_channel", "emoji"),
              global_related=("server user", "global dyad")),
    TopicKind("dyad", "dyads", "dyad", "social", "dyad", (_USER, _USER),
              global_group="global", global_cap="global_dyad", global_label="dyad",
              is_pair=True, related=("user", "global dyad", "dyad_in_channel"),
              global_related=("global user", "server dyad")),
    TopicKind("channel", "channels", "channel", "spaces", "channel", (_CHANNEL,),
              related=("user_in_channel", "dyad_in_channel", "thread")),
    TopicKind("thread", "threads", "thread", "spaces", "thread",
              (KeyPart("thread", SNOWFLAKE),), related=("channel",)),
    TopicKind("user_in_channel", "user_in_channel", "user in channel", "social",
              "user_in_channel", (_CHANNEL, _USER), related=("user", "channel")),
    TopicKind("dyad_in_channel", "dyad_in_channel", "dyad in channel", "social",
              "dyad_in_channel", (_CHANNEL, _USER, _USER), is_pair=True,
              related=("dyad", "channel", "user")),
    TopicKind("subject", "subjects", "subject", "semantic", "subject",
              (KeyPart("subject", SUBJECT_NAME),)),
    TopicKind("role", "roles", "role", "semantic", "role", (KeyPart("role", SNOWFLAKE),)),
    TopicKind("emoji", "emoji", "emoji", "culture", "emoji", (KeyPart("emoji", SNOWFLAKE),),
              related=("user",)),
    TopicKind("self", "self", "self", "self", "server_self", (KeyPart("self", SELF_NAME),),
              global_group="self", global_cap="global_self", global_label="self"),
)})

CATEGORIES = tuple(k.category for k in KINDS.values())
# Budget groups in the order budgets are shown (the table says which kind is in which).
GROUPS = ("social", "global", "spaces", "semantic", "culture", "self")
GLOBAL_KINDS = frozenset(k.name for k in KINDS.values() if k.may_be_global)

KEY_HELP = (
    "keys look like user:<id>, dyad:<a>:<b>, self:zos, server:<s>:user:<id>, "
    "server:<s>:channel:<id>, server:<s>:dyad_in_channel:<c>:<a>:<b>, server:<s>:subject:<name>"
)


class InvalidTopicKey(UsageProblem):
    """A topic key that is not one of the forms in docs/salience.md#topics (exit 2 when it came from the user)."""


@dataclass(frozen=True)
class Topic:
    kind: str                     # a name in KINDS: user, dyad, channel, …
    server_id: str | None         # None: a global topic
    ids: tuple[str, ...]          # the parts after the kind (ids, a subject name, or "zos")

    # (salience.relations.TopicParts borrows these properties: they may read only kind,
    # server_id and ids.)
    @property
    def key(self) -> str:
        tail = ":".join((self.kind, *self.ids))
        return tail if self.server_id is None else f"server:{self.server_id}:{tail}"

    @property
    def is_global(self) -> bool:
        return self.server_id is None

    @property
    def category(self) -> str:
        return KINDS[self.kind].category

    @property
    def group(self) -> str:
        kind = KINDS[self.kind]
        return kind.global_group if self.server_id is None else kind.server_group

    @property
    def cap_field(self) -> str:
        """The name of this topic's cap in `zos.toml` [salience.caps]."""
        kind = KINDS[self.kind]
        return kind.global_cap if self.server_id is None else kind.server_cap

    @property
    def label(self) -> str:
        kind = KINDS[self.kind]
        return kind.global_label if self.server_id is None else kind.label

    def __str__(self) -> str:
        return self.key


def _bad(key: str, why: str) -> InvalidTopicKey:
    return InvalidTopicKey(f"invalid topic key {key!r}: {why} ({KEY_HELP})")


def _check_id(key: str, value: str, what: str) -> str:
    if not is_discord_id(value):
        raise _bad(key, f"{what} {value!r} is not a Discord id (digits, no leading zero)")
    return value


def _make(kind: str, server_id: str | None, ids: tuple[str, ...], key: str) -> Topic:
    """Validate the parts of a key; `key` is what to name in an error."""
    _validate(kind, server_id, ids, key)
    return Topic(kind, server_id, ids)


def _validate(kind: str, server_id: str | None, ids: tuple[str, ...], key: str) -> None:
    spec = KINDS.get(kind)
    if spec is None:
        raise _bad(key, f"unknown kind {kind!r}")
    if server_id is None and not spec.may_be_global:
        raise _bad(key, f"{kind} topics are server-scoped: prefix them with server:<id>:")
    if server_id is not None:
        _check_id(key, server_id, "server id")
    if len(ids) != spec.arity:
        raise _bad(key, f"a {kind} key has {spec.arity} part(s) after {kind!r}, not {len(ids)}")
    for part, value in zip(spec.parts, ids):
        if part.form == SELF_NAME:
            if value != SELF_NAME:
                raise _bad(key, "the self topic is self:zos")
        elif part.form == SUBJECT_NAME:
            if not _SUBJECT.fullmatch(value):
                raise _bad(key,
                           f"subject name {value!r} must match [a-z_][a-z0-9_]* (≤ 64 chars)")
        else:
            _check_id(key, value, "id")
    if spec.is_pair:
        a, b = ids[-2:]
        if a == b:
            raise _bad(key, "a dyad is two different users")
        if int(a) > int(b):
            raise _bad(key, f"dyad ids must be sorted ascending: {b}:{a}")


def parse(key: str) -> Topic:
    """The Topic of a key, or InvalidTopicKey saying what is wrong with it."""
    if not isinstance(key, str) or not key:
        raise _bad(str(key), "empty")
    parts = key.split(":")
    if parts[0] == "server":
        if len(parts) < 4:
            raise _bad(key, "server-scoped keys are server:<id>:<kind>:…")
        return _make(parts[2], parts[1], tuple(parts[3:]), key)
    return _make(parts[0], None, tuple(parts[1:]), key)


def is_valid(key: str) -> bool:
    try:
        parse(key)
    except InvalidTopicKey:
        return False
    return True


def sorted_pair(a: str, b: str) -> tuple[str, str]:
    """Two user ids in a dyad's order: ascending numerically."""
    return (a, b) if int(a) <= int(b) else (b, a)


# ------------------------------------------------- keys read back from the database
# Stored keys were validated when built: these split them without re-checking (and never
# raise), where a full parse per row would cost more than the answer is worth.
def server_id_of(key: str) -> str | None:
    """The server of a key; None for a global key."""
    return key.split(":", 2)[1] if key.startswith("server:") else None


def global_key_of(key: str) -> str | None:
    """The global topic a server-scoped one rolls up into (server:1:user:5 → user:5); None
    for a global key or a kind that is never global."""
    parts = key.split(":")
    if parts[0] != "server" or len(parts) < 3:
        return None
    kind = KINDS.get(parts[2])
    if kind is None or not kind.may_be_global or len(parts) != 3 + kind.arity:
        return None
    return ":".join(parts[2:])


# ---------------------------------------------------------------- GLOB patterns
# For SQL `key GLOB ?`. GLOB's `*` also matches `:`; the patterns stay exact because every
# kind's name is followed by `:` and valid keys have a fixed number of parts per kind.
ANY_SERVER = "*"


def server_keys_glob(server_id: str) -> str:
    """Every key of one server."""
    return f"server:{server_id}:*"


def server_kind_glob(kind: str) -> str:
    """Every server-scoped key of a kind, in any server."""
    return f"server:{ANY_SERVER}:{KINDS[kind].name}:*"


def server_copies_glob(global_key: str) -> str:
    """The server-scoped keys, in any server, whose global topic is `global_key`."""
    return f"server:{ANY_SERVER}:{global_key}"


def user_globs(user_id: str, kinds: Iterable[str], server_id: str | None = ANY_SERVER) -> list[str]:
    """The keys of these kinds with `user_id` as one of their users, a pattern per position
    a user can take, kind by kind: server-scoped (`server_id`: one server, or ANY_SERVER), or
    with server_id None the global ones (kinds that are never global give none)."""
    patterns = []
    for name in kinds:
        kind = KINDS[name]
        if server_id is None and not kind.may_be_global:
            continue
        prefix = name if server_id is None else f"server:{server_id}:{name}"
        for position, part in enumerate(kind.parts):
            if part.refers_to == "user":
                tail = ["*"] * kind.arity
                tail[position] = user_id
                patterns.append(":".join((prefix, *tail)))
    return patterns


# ---------------------------------------------------------------- builders
def _build(kind: str, server_id: str | None, *ids: str) -> str:
    tail = ":".join((kind, *ids))
    key = tail if server_id is None else f"server:{server_id}:{tail}"
    _validate(kind, server_id, ids, key)
    return key


def user(user_id: str, server_id: str | None = None) -> str:
    return _build("user", server_id, user_id)


def dyad(a: str, b: str, server_id: str | None = None) -> str:
    return _build("dyad", server_id, *sorted_pair(a, b))


def self_topic(server_id: str | None = None) -> str:
    return _build("self", server_id, SELF_NAME)


def channel(server_id: str, channel_id: str) -> str:
    return _build("channel", server_id, channel_id)


def thread(server_id: str, thread_id: str) -> str:
    return _build("thread", server_id, thread_id)


def role(server_id: str, role_id: str) -> str:
    return _build("role", server_id, role_id)


def user_in_channel(server_id: str, channel_id: str, user_id: str) -> str:
    return _build("user_in_channel", server_id, channel_id, user_id)


def dyad_in_channel(server_id: str, channel_id: str, a: str, b: str) -> str:
    return _build("dyad_in_channel", server_id, channel_id, *sorted_pair(a, b))


def subject(server_id: str, name: str) -> str:
    return _build("subject", server_id, name)


def emoji(server_id: str, emoji_id: str) -> str:
    return _build("emoji", server_id, emoji_id)


def category_of(key: str) -> str:
    return parse(key).category


def group_of(key: str) -> str:
    return parse(key).group


def cap_of(key: str | Topic, caps) -> float:
    """The cap of a topic from a `zos_cli.config.Caps`."""
    topic = parse(key) if isinstance(key, str) else key
    return getattr(caps, topic.cap_field)


__all__ = [
    "CATEGORIES", "GROUPS", "GLOBAL_KINDS", "KINDS", "TopicKind", "KeyPart", "InvalidTopicKey",
    "Topic", "parse", "is_valid", "sorted_pair", "server_id_of", "global_key_of", "ANY_SERVER",
    "server_keys_glob", "server_kind_glob", "server_copies_glob", "user_globs",
    "user", "dyad", "self_topic", "channel", "thread", "role",
    "user_in_channel", "dyad_in_channel", "subject", "emoji", "category_of", "group_of", "cap_of",
]
