"""Topic keys (docs/salience.md#topics): build, parse and validate every kind, with its category, budget
group and cap.

Global keys: `user:<id>`, `dyad:<a>:<b>`, `self:zos`. Server-scoped keys start with
`server:<s>:` followed by `user:<id>`, `channel:<id>`, `thread:<id>`, `role:<id>`,
`dyad:<a>:<b>`, `user_in_channel:<c>:<u>`, `dyad_in_channel:<c>:<a>:<b>`, `subject:<name>`,
`emoji:<id>` or `self:zos`. Ids are Discord snowflakes written canonically (digits, no leading
zero); a dyad's two ids are distinct and sorted ascending *numerically*, so each pair has one
key. Anything else is an InvalidTopicKey.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zos_cli.errors import UsageProblem
from zos_cli.ids import is_discord_id

CATEGORIES = (
    "users", "dyads", "channels", "threads", "user_in_channel", "dyad_in_channel",
    "subjects", "roles", "emoji", "self",
)
GROUPS = ("social", "global", "spaces", "semantic", "culture", "self")

# kind → (category, number of ids after the kind, which of them are snowflakes)
_KINDS = {
    "user": "users",
    "dyad": "dyads",
    "channel": "channels",
    "thread": "threads",
    "role": "roles",
    "user_in_channel": "user_in_channel",
    "dyad_in_channel": "dyad_in_channel",
    "subject": "subjects",
    "emoji": "emoji",
    "self": "self",
}
_ARITY = {
    "user": 1, "dyad": 2, "channel": 1, "thread": 1, "role": 1, "user_in_channel": 2,
    "dyad_in_channel": 3, "subject": 1, "emoji": 1, "self": 1,
}
GLOBAL_KINDS = frozenset({"user", "dyad", "self"})
_SERVER_GROUP = {
    "user": "social", "dyad": "social", "user_in_channel": "social", "dyad_in_channel": "social",
    "channel": "spaces", "thread": "spaces", "subject": "semantic", "role": "semantic",
    "emoji": "culture", "self": "self",
}
# The `zos.toml` [salience.caps] field of each kind, server-scoped and global.
_SERVER_CAP = {
    "user": "server_user", "dyad": "dyad", "channel": "channel", "thread": "thread",
    "role": "role", "user_in_channel": "user_in_channel", "dyad_in_channel": "dyad_in_channel",
    "subject": "subject", "emoji": "emoji", "self": "server_self",
}
_GLOBAL_CAP = {"user": "global_user", "dyad": "global_dyad", "self": "global_self"}

_SUBJECT = re.compile(r"[a-z_][a-z0-9_]{0,63}")  # fullmatch: no trailing newline either
SELF_NAME = "zos"

KEY_HELP = (
    "keys look like user:<id>, dyad:<a>:<b>, self:zos, server:<s>:user:<id>, "
    "server:<s>:channel:<id>, server:<s>:dyad_in_channel:<c>:<a>:<b>, server:<s>:subject:<name>"
)


class InvalidTopicKey(UsageProblem):
    """A topic key that is not one of the forms in docs/salience.md#topics (exit 2 when it came from the user)."""


@dataclass(frozen=True)
class Topic:
    kind: str                     # user, dyad, channel, thread, role, user_in_channel, …
    server_id: str | None         # None: a global topic
    ids: tuple[str, ...]          # the parts after the kind (ids, a subject name, or "zos")

    @property
    def key(self) -> str:
        tail = ":".join((self.kind, *self.ids))
        return tail if self.server_id is None else f"server:{self.server_id}:{tail}"

    @property
    def is_global(self) -> bool:
        return self.server_id is None

    @property
    def category(self) -> str:
        return _KINDS[self.kind]

    @property
    def group(self) -> str:
        if self.server_id is None:
            return "self" if self.kind == "self" else "global"
        return _SERVER_GROUP[self.kind]

    @property
    def cap_field(self) -> str:
        """The name of this topic's cap in `zos.toml` [salience.caps]."""
        return (_GLOBAL_CAP if self.server_id is None else _SERVER_CAP)[self.kind]

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
    if kind not in _KINDS:
        raise _bad(key, f"unknown kind {kind!r}")
    if server_id is None and kind not in GLOBAL_KINDS:
        raise _bad(key, f"{kind} topics are server-scoped: prefix them with server:<id>:")
    if server_id is not None:
        _check_id(key, server_id, "server id")
    if len(ids) != _ARITY[kind]:
        raise _bad(key, f"a {kind} key has {_ARITY[kind]} part(s) after {kind!r}, not {len(ids)}")
    if kind == "self":
        if ids != (SELF_NAME,):
            raise _bad(key, "the self topic is self:zos")
    elif kind == "subject":
        if not _SUBJECT.fullmatch(ids[0]):
            raise _bad(key, f"subject name {ids[0]!r} must match [a-z_][a-z0-9_]* (≤ 64 chars)")
    else:
        for value in ids:
            _check_id(key, value, "id")
    if kind == "dyad" or kind == "dyad_in_channel":
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
    "CATEGORIES", "GROUPS", "GLOBAL_KINDS", "InvalidTopicKey", "Topic", "parse", "is_valid",
    "sorted_pair", "user", "dyad", "self_topic", "channel", "thread", "role",
    "user_in_channel", "dyad_in_channel", "subject", "emoji", "category_of", "group_of", "cap_of",
]
