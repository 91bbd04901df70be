"""A label for every topic key, made from the newest names zos holds, for many keys in a few
queries (docs/labels.md).

| topic | label |
|---|---|
| server user | `Theo (Tidepool Makers)` |
| channel, thread | `#general (Tidepool Makers)` |
| dyad | `Theo ↔ Jun (Tidepool Makers)` |
| user in a channel | `Theo in #general` |
| dyad in a channel | `Theo ↔ Jun in #general` |
| emoji | `:tidepool:` |
| subject | `subject kiln (Tidepool Makers)` |
| role | `@Moderators (Tidepool Makers)` |
| global user, dyad, self | `Theo (everywhere)`, `Theo ↔ Jun (everywhere)`, `zos (everywhere)` |
| self in a server | `zos (Tidepool Makers)` |

People are named as in a reflection prompt (labels/names.py): a server nickname, else the
display name, else the user name. Whoever a prompt would not name stays anonymous: a user
without the server's privacy-gate role (in a global topic: without the gate role of any
server they are known in, as reflection's targets decide) and an erased user appear as
`<chat_N>`, numbered in order of appearance within one `Labeler` (one listing). zos's own
account is `zos`. A key that does not parse is its own label: labelling never fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import sqlite_utils

from zos_cli import topics
from zos_cli.ids import json_ids
from zos_cli.labels.names import alias, person_name, prompt_name
from zos_cli.privacy.gate import lacking_gate_role
from zos_cli.store.db import self_user_id

EVERYWHERE = "everywhere"
PAIR = " ↔ "
THREAD_TYPES = ("news_thread", "public_thread", "private_thread")
_RAW_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]+):(\d+)>")
_FORMATTED_EMOJI = re.compile(r"(?<![<\w]):([A-Za-z0-9_~]+):(?!\d)")
_KEY_IN_TEXT = re.compile(
    r"\b(?:server:\d+:)?(?:%s):[A-Za-z0-9_]+(?::\d+)*" % "|".join(
        sorted(topics.KINDS, key=len, reverse=True)))
# Rows labelled per batch by label_rows: a listing streams, a few queries per batch.
BATCH_ROWS = 500


# kind → what a part refers to → the positions of such parts in its key.
_POSITIONS = {name: {ref: [i for i, part in enumerate(kind.parts) if part.refers_to == ref]
                     for ref in {part.refers_to for part in kind.parts}}
              for name, kind in topics.KINDS.items()}


def _parts(topic: topics.Topic, refers_to: str) -> list[str]:
    return [topic.ids[i] for i in _POSITIONS[topic.kind].get(refers_to, ())]


@dataclass
class _Names:
    """What one batch of keys needs, read in one query per table."""

    servers: dict[str, str] = field(default_factory=dict)
    users: dict[str, tuple] = field(default_factory=dict)        # id → (name, display, is_bot)
    nicknames: dict[tuple[str, str], str] = field(default_factory=dict)  # (server, user)
    hidden: set[tuple[str | None, str]] = field(default_factory=set)  # (scope, user): <chat_N>
    channels: dict[str, str] = field(default_factory=dict)      # id → "#name"
    roles: dict[str, str] = field(default_factory=dict)
    emoji: dict[str, str] = field(default_factory=dict)


def server_place(db: sqlite_utils.Database, server_id: str | None) -> str:
    """What a label puts in its parentheses for a server: its name, `server <id>` while it
    has none, `everywhere` for global topics."""
    if server_id is None:
        return EVERYWHERE
    row = db.execute("SELECT name FROM servers WHERE id = ?", [server_id]).fetchone()
    return prompt_name(row[0] if row else None) or f"server {server_id}"


def _in(ids: Iterable[str]) -> str:
    return json_ids(sorted(set(ids)))


def _read(db: sqlite_utils.Database, config, parsed: list[topics.Topic]) -> _Names:
    names = _Names()
    servers = {t.server_id for t in parsed if t.server_id is not None}
    people: set[tuple[str | None, str]] = set()
    channels, roles, emoji = set(), set(), set()
    wanted = {"channel": channels, "thread": channels, "role": roles, "emoji": emoji}
    for t in parsed:
        for refers_to, positions in _POSITIONS[t.kind].items():
            for i in positions:
                if refers_to == "user":
                    people.add((t.server_id, t.ids[i]))
                elif refers_to in wanted:
                    wanted[refers_to].add(t.ids[i])
    user_ids = {u for _scope, u in people}
    if servers:
        names.servers = {i: prompt_name(n) for i, n in db.execute(
            "SELECT id, name FROM servers WHERE id IN (SELECT value FROM json_each(?))",
            [_in(servers)])}
    if user_ids:
        names.users = {r[0]: r[1:] for r in db.execute(
            "SELECT id, name, display_name, is_bot FROM users "
            "WHERE id IN (SELECT value FROM json_each(?))", [_in(user_ids)])}
        known_in = db.execute(
            "SELECT server_id, user_id, nickname FROM user_server_tracking "
            "WHERE user_id IN (SELECT value FROM json_each(?))", [_in(user_ids)]).fetchall()
        names.nicknames = {(s, u): n for s, u, n in known_in if n}
        names.hidden = _hidden(db, config, people, [(s, u) for s, u, _n in known_in])
    if channels:
        names.channels = {i: f"#{prompt_name(n)}" if prompt_name(n) else f"channel {i}"
                          for i, n in db.execute(
                              "SELECT id, name FROM channels "
                              "WHERE id IN (SELECT value FROM json_each(?))", [_in(channels)])}
    if roles:
        names.roles = {i: prompt_name(n) for i, n in db.execute(
            "SELECT id, name FROM roles WHERE id IN (SELECT value FROM json_each(?))",
            [_in(roles)]) if prompt_name(n)}
    if emoji:
        names.emoji = _emoji_names(db, emoji)
    return names


def _hidden(db, config, people: set[tuple[str | None, str]],
            known_in: list[tuple[str, str]]) -> set[tuple[str | None, str]]:
    """The (scope, user) pairs shown as `<chat_N>`: erased users anywhere; in a server, users
    without its gate role; in a global topic, users without the gate role of any server they
    are known in (privacy/gate.py answers both)."""
    user_ids = {u for _s, u in people}
    erased = {r[0] for r in db.execute(
        "SELECT object_id FROM tombstones WHERE object_type = 'user' "
        "AND object_id IN (SELECT value FROM json_each(?))", [_in(user_ids)])}
    global_users = {u for s, u in people if s is None}
    asked = {p for p in people if p[0] is not None}
    asked |= {(s, u) for s, u in known_in if u in global_users}
    failing = lacking_gate_role(db, config, asked)
    gated_anywhere = {u for _s, u in failing}
    return {(s, u) for s, u in people
            if u in erased or (s, u) in failing or (s is None and u in gated_anywhere)}


def _emoji_names(db, emoji_ids: set[str]) -> dict[str, str]:
    """A custom emoji's newest name: the newest reaction's, else the newest message's that
    used it (raw text holds `<:name:id>`; a formatted export writes `:name:`, which names the
    emoji only when the message used no other custom emoji)."""
    found: dict[str, str] = {}
    for emoji_id, name in db.execute(
            "SELECT emoji_id, emoji FROM reactions WHERE emoji_id IN "
            "(SELECT value FROM json_each(?)) ORDER BY coalesce(created_at, ''), rowid",
            [_in(emoji_ids)]):
        found[emoji_id] = name  # the newest reaction's name wins
    missing = emoji_ids - found.keys()
    if missing:
        for content, ids in db.execute(
                "SELECT content, custom_emoji_ids FROM messages WHERE custom_emoji_ids IS NOT "
                "NULL AND EXISTS (SELECT 1 FROM json_each(custom_emoji_ids) WHERE value IN "
                "(SELECT value FROM json_each(?))) ORDER BY id", [_in(missing)]):
            named = {i: n for n, i in _RAW_EMOJI.findall(content or "")}
            if not named:
                used, written = set(json.loads(ids)), set(_FORMATTED_EMOJI.findall(content or ""))
                if len(used) == 1 and len(written) == 1:
                    named = {used.pop(): written.pop()}
            found.update({i: n for i, n in named.items() if i in missing})
    return {i: prompt_name(n) for i, n in found.items() if prompt_name(n)}


class Labeler:
    """Labels for one listing. `labels(keys)` reads what a batch of keys needs in one query
    per table; `<chat_N>` numbers run on across the batches of one Labeler, so the same
    anonymous person keeps one number in a whole listing."""

    def __init__(self, db: sqlite_utils.Database, config=None):
        self.db, self.config = db, config
        self._self_id: str | None = None   # zos's own account, read with the first batch
        self._self_read = False
        self._aliases: dict[str, str] = {}
        self._done: dict[str, str] = {}

    def labels(self, keys: Iterable[str]) -> dict[str, str]:
        """key → label for every key given (in the order given, repeated keys once)."""
        keys = list(dict.fromkeys(keys))
        todo: list[tuple[str, topics.Topic | None]] = []
        for key in keys:
            if key not in self._done:
                try:
                    todo.append((key, topics.parse(key)))
                except topics.InvalidTopicKey:
                    todo.append((key, None))
        if todo:
            if not self._self_read:
                self._self_id, self._self_read = self_user_id(self.db, self.config), True
            names = _read(self.db, self.config, [t for _k, t in todo if t is not None])
            for key, topic in todo:
                self._done[key] = key if topic is None else self._label(topic, names)
        return {key: self._done[key] for key in keys}

    def readable(self, text: str | None) -> str | None:
        """`text` with every topic key in it replaced by its label (a ledger row's reason
        names the topics an earn came from)."""
        if not text:
            return text
        found = [k for k in dict.fromkeys(_KEY_IN_TEXT.findall(text)) if topics.is_valid(k)]
        if not found:
            return text
        labels = self.labels(found)
        return _KEY_IN_TEXT.sub(lambda m: labels.get(m.group(0), m.group(0)), text)

    def _person(self, user_id: str, scope: str | None, names: _Names) -> str:
        if self._self_id and user_id == self._self_id:
            return "zos"
        if (scope, user_id) in names.hidden:
            if user_id not in self._aliases:
                self._aliases[user_id] = alias(len(self._aliases) + 1)
            return self._aliases[user_id]
        name, display, is_bot = names.users.get(user_id, (None, None, False))
        return person_name(user_id, nickname=names.nicknames.get((scope, user_id)),
                           display_name=display, name=name, is_bot=bool(is_bot))

    def _label(self, topic: topics.Topic, names: _Names) -> str:
        s, kind = topic.server_id, topic.kind
        where = EVERYWHERE if s is None else (names.servers.get(s) or f"server {s}")
        people = [self._person(u, s, names) for u in _parts(topic, "user")]
        place = [names.channels.get(c, f"channel {c}")
                 for c in _parts(topic, "channel") + _parts(topic, "thread")]
        if kind == "user":
            return f"{people[0]} ({where})"
        if kind == "dyad":
            return f"{PAIR.join(people)} ({where})"
        if kind in ("channel", "thread"):
            return f"{place[0]} ({where})"
        if kind in ("user_in_channel", "dyad_in_channel"):
            return f"{PAIR.join(people)} in {place[0]}"
        if kind == "subject":
            return f"subject {topic.ids[0]} ({where})"
        if kind == "role":
            role = names.roles.get(topic.ids[0])
            return f"@{role} ({where})" if role else f"role {topic.ids[0]} ({where})"
        if kind == "emoji":
            emoji = names.emoji.get(topic.ids[0])
            return f":{emoji}:" if emoji else f"emoji {topic.ids[0]}"
        return f"zos ({where})"  # self


def topic_labels(db: sqlite_utils.Database, keys: Iterable[str], *, config=None) -> dict[str, str]:
    """key → label for each key (see the module docstring), in a few queries whatever the
    number of keys. `config`: a zos.toml Config for its privacy-gate roles, or None (then the
    gate roles stored on the servers apply)."""
    return Labeler(db, config).labels(keys)


def label_rows(db: sqlite_utils.Database, rows: Iterable[dict], *, config=None,
               key: str = "topic_key", field_name: str = "label",
               topic_of: Callable[[str], str] | None = None,
               labeler: Labeler | None = None) -> Iterator[dict]:
    """The rows, each with `label` (the label of its `key` field, or of `topic_of(value)`
    when that field holds something else, such as a user id; None where it is None) right
    after that field; every other field kept. Streams: labels a batch of rows at a time,
    with one Labeler for the whole listing."""
    labeler = labeler or Labeler(db, config)

    def as_key(value: str) -> str:
        try:
            return topic_of(value) if topic_of is not None else value
        except topics.InvalidTopicKey:
            return value  # (its own label)

    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield from _labelled(labeler, batch, key, field_name, as_key)
            batch = []
    if batch:
        yield from _labelled(labeler, batch, key, field_name, as_key)


def _labelled(labeler: Labeler, rows: list[dict], key: str, field_name: str,
              as_key: Callable[[str], str]) -> Iterator[dict]:
    found = labeler.labels(as_key(r[key]) for r in rows if r.get(key) is not None)
    for row in rows:
        out = {}
        for name, value in row.items():
            if name == field_name:
                continue
            out[name] = value
            if name == key:
                out[field_name] = found.get(as_key(value)) if value is not None else None
        if field_name not in out:
            out[field_name] = None
        yield out
