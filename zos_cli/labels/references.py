"""Topic references: what a person may type wherever a command takes a topic key
(docs/labels.md#references).

| reference | means |
|---|---|
| `@name` | a server user, by user name, display name or server nickname |
| `@name --global` | that user's global topic |
| `#channel` (quoted in a shell: `'#general'`) or `channel:name` | a channel (or a thread) |
| `@a+@b` | a dyad (with --global: the global dyad) |
| `subject:name` | a subject |

Names match ignoring case. `--server ID|NAME` keeps the servers to one when a name is known
in several. A reference that matches several topics, or none, is a usage error (exit 2): the
first lists the candidates with their keys, the second names the closest name zos knows.
Anything that is not a reference is taken as a key: a well-formed key is returned as it is,
stored or not (the command then says what it always said), a malformed one is an
InvalidTopicKey. Whoever a label shows as `<chat_N>` (labels/labeler.py) is never
matched, nor offered as the closest name: a reference cannot reveal them.
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Iterable

import sqlite_utils

from zos_cli import topics
from zos_cli.errors import UsageProblem
from zos_cli.ids import is_discord_id, json_ids
from zos_cli.labels.labeler import THREAD_TYPES, topic_labels
from zos_cli.privacy.gate import lacking_gate_role

REFERENCE_HELP = ("a reference is @name, @name --global, '#channel', channel:name, @a+@b or "
                  "subject:name, each with --server ID|NAME when a name is in several servers")
SHOWN_CANDIDATES = 10
DIFFLIB_POOL = 200
_CHANNEL_PREFIXES = ("#", "channel:")
_SUBJECT_PREFIX = "subject:"
INGEST_FIRST = "ingest an export first"
SUBJECTS_FIRST = "a subject appears when a reflection names it: run `zos reflect`"


def is_reference(text: str) -> bool:
    """Whether `text` is written as a reference rather than a key."""
    return text.startswith(("@", *_CHANNEL_PREFIXES, _SUBJECT_PREFIX))


def resolve_server(db: sqlite_utils.Database, server: str) -> str:
    """`--server ID|NAME`: a Discord id as it is, or the id of the one server of that name."""
    text = server.strip()
    if is_discord_id(text):
        return text
    rows = db.execute("SELECT id, name FROM servers ORDER BY id").fetchall()
    found = [i for i, name in rows if name and name.casefold() == text.casefold()]
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageProblem(f"--server {text!r} names {len(found)} servers "
                           f"({', '.join(found)}): give the id")
    names = {name.casefold(): name for _i, name in rows if name}
    raise UsageProblem(f"--server {text!r}: no server of that name{_closest(text, names, '')}")


def resolve_reference(db: sqlite_utils.Database, ref: str, *, config=None,
                      server: str | None = None, global_: bool = False) -> str:
    """The topic key a reference (or a key) names; `server` is `--server ID|NAME`,
    `global_` is `--global`; `config`: the zos.toml Config for its gate roles, or None."""
    text = (ref or "").strip()
    if not is_reference(text):
        if server is not None or global_:
            raise UsageProblem(f"--server and --global go with a reference, not with the key "
                               f"{text!r} ({REFERENCE_HELP})")
        try:
            topics.parse(text)
        except topics.InvalidTopicKey as exc:
            raise topics.InvalidTopicKey(f"{exc.message}; or give a reference: "
                                         f"{REFERENCE_HELP}") from None
        return text
    server_id = resolve_server(db, server) if server is not None else None
    if text.startswith(_SUBJECT_PREFIX):
        _no_global(global_, "subjects")
        return _subject(db, config, text, server_id)
    if text.startswith(_CHANNEL_PREFIXES):
        _no_global(global_, "channels")
        return _channel(db, config, text, server_id)
    people = _People(db, config, server_id, global_)
    sides = re.split(r"\+(?=@)", text)
    if len(sides) == 1:
        return _one(db, config, text, people.keys(text))
    if len(sides) != 2:
        raise UsageProblem(f"{text!r}: a dyad is two people, @a+@b")
    a, b = (people.users(side, whole=text) for side in sides)
    keys = {topics.dyad(x, y) if global_ else topics.dyad(x, y, s)
            for s, x in a for t, y in b if x != y and (global_ or s == t)}
    if not keys:
        where = "" if global_ else " in one server"
        raise UsageProblem(f"{text!r}: these two are not two different people known{where}")
    return _one(db, config, text, keys)


def _no_global(global_: bool, what: str) -> None:
    if global_:
        raise UsageProblem(f"--global: {what} belong to a server; leave it out")


def _where(db, server_id: str | None) -> str:
    if server_id is None:
        return ""
    row = db.execute("SELECT name FROM servers WHERE id = ?", [server_id]).fetchone()
    return f" in {row[0]}" if row and row[0] else f" in server {server_id}"


def _closest(typed: str, names: dict[str, str], prefix: str, *, first: str = INGEST_FIRST) -> str:
    """`: the closest is …` for a name that matched nothing (names: folded → as shown);
    `first`: what to do when zos knows no such name at all."""
    if not names:
        return f" (zos knows none yet: {first})"
    folded = typed.casefold()
    pool = list(names)
    if len(pool) > DIFFLIB_POOL:  # difflib on thousands of names takes seconds: the names
        mine = _bigrams(folded)  # sharing the most letter pairs go through it
        pool = heapq.nlargest(DIFFLIB_POOL, pool, key=lambda n: len(mine & _bigrams(n)))
    best = difflib.get_close_matches(folded, pool, n=1, cutoff=0.0)
    return f": the closest is {prefix}{names[best[0]]}" if best else ""


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)}


def _one(db, config, ref: str, keys: Iterable[str]) -> str:
    found = sorted(set(keys))
    if len(found) == 1:
        return found[0]
    labels = topic_labels(db, found, config=config)
    shown = "; ".join(f"{labels[k]} = {k}" for k in found[:SHOWN_CANDIDATES])
    more = f"; and {len(found) - SHOWN_CANDIDATES} more" if len(found) > SHOWN_CANDIDATES else ""
    raise UsageProblem(f"{ref} matches {len(found)} topics: {shown}{more}. Add --server "
                       "ID|NAME, or give the key")


class _People:
    """Who a `@name` can mean: (scope, user id) pairs, scope a server or None for a global
    topic, the anonymous left out. Names are compared casefolded, in SQL (one scan)."""

    _SELECT = ("SELECT u.id, u.name, u.display_name, t.server_id, t.nickname FROM users u "
               "LEFT JOIN user_server_tracking t ON t.user_id = u.id")

    def __init__(self, db, config, server_id: str | None, global_: bool):
        self.db, self.config, self.server_id, self.global_ = db, config, server_id, global_
        db.conn.create_function("zos_casefold", 1, _casefold, deterministic=True)

    def _entries(self, where: str = "", params: Iterable = ()) -> list[tuple]:
        """(scope, user id, names) of the rows `where` picks, the anonymous left out."""
        sql, args = self._SELECT, list(params)
        if self.server_id is not None:
            sql += " WHERE t.server_id = ?" + (f" AND ({where})" if where else "")
            args.insert(0, self.server_id)
        elif where:
            sql += f" WHERE {where}"
        rows = self.db.execute(sql + " ORDER BY u.id", args).fetchall()
        user_ids = json_ids(sorted({r[0] for r in rows}))
        erased = {r[0] for r in self.db.execute(
            "SELECT object_id FROM tombstones WHERE object_type = 'user' AND object_id IN "
            "(SELECT value FROM json_each(?))", [user_ids])}
        known_in = self.db.execute(
            "SELECT server_id, user_id FROM user_server_tracking WHERE user_id IN "
            "(SELECT value FROM json_each(?))", [user_ids]).fetchall()
        failing = lacking_gate_role(self.db, self.config, known_in)
        gated_anywhere = {u for _s, u in failing}
        entries = []
        for user_id, name, display, s, nickname in rows:
            if user_id in erased:
                continue
            if self.global_ and user_id not in gated_anywhere:
                entries.append((None, user_id, (name, display, nickname)))
            elif not self.global_ and s is not None and (s, user_id) not in failing:
                entries.append((s, user_id, (name, display, nickname)))
        return entries

    def users(self, side: str, *, whole: str) -> set[tuple[str | None, str]]:
        """(scope, user id) of everyone `@name` may mean; none is a usage error."""
        name = side[1:].strip()
        if not name:
            raise UsageProblem(f"{whole!r}: a name follows @")
        found = {(s, u) for s, u, _n in self._entries(
            "zos_casefold(u.name) = ? OR zos_casefold(u.display_name) = ? OR "
            "zos_casefold(t.nickname) = ?", [_casefold(name)] * 3)}
        if not found and is_discord_id(name):  # @<id>: the user id itself
            found = {(s, u) for s, u, _n in self._entries("u.id = ?", [name])}
        if not found:
            pool = {n.casefold(): n for _s, _u, names in self._entries() for n in names if n}
            kind = "user" if self.global_ else "server user"
            raise UsageProblem(f"no {kind} called @{name}{_where(self.db, self.server_id)}"
                               f"{_closest(name, pool, '@')}")
        return found

    def keys(self, side: str) -> set[str]:
        return {topics.user(u, s) for s, u in self.users(side, whole=side)}


def _casefold(text: str | None) -> str | None:
    return text.casefold() if text else text


def _channel(db, config, text: str, server_id: str | None) -> str:
    name = text[1:] if text.startswith("#") else text[len("channel:"):]
    name = name.strip().lstrip("#")
    if not name:
        raise UsageProblem(f"{text!r}: a channel name follows # or channel:")
    sql = ("SELECT id, server_id, name, type FROM channels WHERE server_id IS NOT NULL "
           "AND type NOT IN ('category', 'dm', 'group_dm')")
    params: list = []
    if server_id is not None:
        sql += " AND server_id = ?"
        params.append(server_id)
    rows = db.execute(sql, params).fetchall()
    found = [topics.thread(s, i) if kind in THREAD_TYPES else topics.channel(s, i)
             for i, s, n, kind in rows if n and n.casefold() == name.casefold()]
    if not found:
        pool = {n.casefold(): n for _i, _s, n, _k in rows if n}
        raise UsageProblem(f"no channel called #{name}{_where(db, server_id)}"
                           f"{_closest(name, pool, '#')}")
    return _one(db, config, text, found)


def _subject(db, config, text: str, server_id: str | None) -> str:
    typed = text[len(_SUBJECT_PREFIX):].strip()
    name = re.sub(r"[\s-]+", "_", typed.casefold())
    if not name:
        raise UsageProblem(f"{text!r}: a subject name follows subject:")
    sql = "SELECT key FROM topics WHERE category = 'subjects'"
    params: list = []
    if server_id is not None:
        sql += " AND server_id = ?"
        params.append(server_id)
    keys = [r[0] for r in db.execute(sql, params)]
    found = [k for k in keys if k.rsplit(":", 1)[1] == name]
    if not found:
        pool = {k.rsplit(":", 1)[1]: k.rsplit(":", 1)[1] for k in keys}
        raise UsageProblem(f"no subject called {typed}{_where(db, server_id)}"
                           f"{_closest(name, pool, 'subject:', first=SUBJECTS_FIRST)}")
    return _one(db, config, text, found)
