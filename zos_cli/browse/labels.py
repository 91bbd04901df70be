"""Labels for the browser: a topic key, a user or a channel as a person reads it.

    server user      Theo (Tidepool Makers)        channel   #general (Tidepool Makers)
    dyad             Theo ↔ Jun (Tidepool Makers)  user in a channel   Theo in #general
    emoji            :tidepool:                    subject   subject kiln (Tidepool Makers)
    global user      Theo (everywhere)

Users without a server's privacy-gate role, and erased users (no `users` row left), are
`<chat_N>`, numbered in order of first appearance for the life of one `zos browse` (as a
reflection numbers them within one prompt), so nothing names them.

This is the browser's own small copy, read from the users/channels/servers tables. When the
shared label module lands (`topic_labels(conn, keys)`), `BrowseLabels.topic_labels` becomes a
call to it: the SQL functions the plugin registers (`zos_label`, …) stay as they are.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterable

from zos_cli import topics
from zos_cli.privacy.gate import gated_anywhere, passes_gate

_FLATTEN = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
MAX_NAME_CHARS = 64
CACHE_SECONDS = 30.0  # names may change while a browser is open (a poll, an ingest)


def flat_name(name: str | None) -> str:
    """One line, no control characters, at most 64 characters."""
    if not name:
        return ""
    flat = " ".join(_FLATTEN.sub(" ", name).split())
    return flat if len(flat) <= MAX_NAME_CHARS else flat[:MAX_NAME_CHARS - 1] + "…"


class Aliases:
    """`<chat_N>` per hidden user id, numbered in order of first appearance; shared by every
    connection (thread) of one server process."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def of(self, user_id: str) -> str:
        with self._lock:
            if user_id not in self._ids:
                self._ids[user_id] = f"<chat_{len(self._ids) + 1}>"
            return self._ids[user_id]


class BrowseLabels:
    """Labels read through one connection (Datasette gives each thread its own), cached for a
    short while."""

    def __init__(self, conn: sqlite3.Connection, config, aliases: Aliases,
                 self_user_id: str | None) -> None:
        self.conn = conn
        self.config = config
        self.aliases = aliases
        self.self_user_id = self_user_id
        self._cache: dict[tuple, str] = {}
        self._since = time.monotonic()

    def cached(self, key: tuple, make) -> str:
        if time.monotonic() - self._since > CACHE_SECONDS:
            self._cache.clear()
            self._since = time.monotonic()
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _one(self, sql: str, params: list):
        return self.conn.execute(sql, params).fetchone()

    # ------------------------------------------------------------ places
    def server(self, server_id: str | None) -> str:
        if server_id is None:
            return "everywhere"
        return self.cached(("server", server_id), lambda: flat_name(
            (self._one("SELECT name FROM servers WHERE id = ?", [server_id]) or [None])[0])
            or f"server {server_id}")

    def channel(self, channel_id: str | None) -> str:
        """`#general`; "direct messages" for a DM channel."""
        if channel_id is None:
            return ""

        def make() -> str:
            row = self._one("SELECT name, type FROM channels WHERE id = ?", [channel_id])
            if row is None:
                return f"#{channel_id}"
            if row[1] in ("dm", "group_dm"):
                return "direct messages"
            return f"#{flat_name(row[0]) or channel_id}"
        return self.cached(("channel", channel_id), make)

    # ------------------------------------------------------------ people
    def user(self, user_id: str | None, server_id: str | None) -> str:
        """A user's name where they are seen: their server nickname in a server (global name
        in DMs); `<chat_N>` when hidden by the privacy gate or erased."""
        if user_id is None:
            return ""
        return self.cached(("user", user_id, server_id),
                            lambda: self._user(user_id, server_id, server_id is None))

    def global_user(self, user_id: str) -> str:
        return self.cached(("global user", user_id), lambda: self._user(user_id, None, False))

    def hidden(self, user_id: str) -> bool:
        """Erased, or outside the privacy gate of any server they are known in: a search by
        name must not lead from their name to their `<chat_N>`."""
        return self.global_user(user_id).startswith("<chat_")

    def _user(self, user_id: str, server_id: str | None, in_dm: bool) -> str:
        if self.self_user_id and user_id == self.self_user_id:
            return "zos"
        row = self._one(
            "SELECT u.display_name, u.name, t.nickname FROM users u LEFT JOIN "
            "user_server_tracking t ON t.user_id = u.id AND t.server_id = ? WHERE u.id = ?",
            [server_id, user_id])
        if row is None:  # erased (or never seen): nothing may name them
            return self.aliases.of(user_id)
        hidden = (not passes_gate(self.conn, self.config, server_id, user_id)
                  if server_id is not None
                  else (not in_dm and gated_anywhere(self.conn, self.config, user_id)))
        if hidden:
            return self.aliases.of(user_id)
        display, name, nickname = row
        return flat_name(nickname or display or name) or f"user {user_id}"

    # ------------------------------------------------------------ topics
    def topic_labels(self, keys: Iterable[str]) -> dict[str, str]:
        """key → label (the key itself when it is not a valid topic key)."""
        return {key: self.cached(("topic", key), lambda k=key: self._topic(k)) for key in keys}

    def topic(self, key: str) -> str:
        return self.topic_labels([key])[key]

    def _topic(self, key: str) -> str:
        try:
            topic = topics.parse(key)
        except topics.InvalidTopicKey:
            return key
        s, ids, kind = topic.server_id, topic.ids, topic.kind
        where = f"({self.server(s)})"
        person = self.global_user if s is None else (lambda u: self.user(u, s))
        if kind == "user":
            return f"{person(ids[0])} {where}"
        if kind == "dyad":
            return f"{person(ids[0])} ↔ {person(ids[1])} {where}"
        if kind in ("channel", "thread"):
            return f"{self.channel(ids[0])} {where}"
        if kind == "user_in_channel":
            return f"{person(ids[1])} in {self.channel(ids[0])}"
        if kind == "dyad_in_channel":
            return f"{person(ids[1])} ↔ {person(ids[2])} in {self.channel(ids[0])}"
        if kind == "subject":
            return f"subject {ids[0]} {where}"
        if kind == "role":
            return f"@{self._role(ids[0])} {where}"
        if kind == "emoji":
            row = self._one("SELECT emoji FROM reactions WHERE emoji_id = ? LIMIT 1", [ids[0]])
            return f":{flat_name(row[0]) if row else 'emoji ' + ids[0]}:"
        return f"zos {where}"  # self

    # ------------------------------------------------------------ message text
    def readable(self, text: str | None, server_id: str | None, message_id: str | None) -> str:
        """Discord markup as names, and the people a message mentions who are outside the
        server's privacy gate as `<chat_N>` in its text too (exports write a mention as
        `@Name`, not as markup), as a reflection prompt shows them."""
        text = text or ""
        if server_id is not None and message_id is not None:
            for (user_id,) in self.conn.execute(
                    "SELECT user_id FROM mentions WHERE message_id = ?", [message_id]):
                alias = self.user(user_id, server_id)
                if not alias.startswith("<chat_"):
                    continue
                row = self._one(
                    "SELECT u.name, u.display_name, t.nickname FROM users u LEFT JOIN "
                    "user_server_tracking t ON t.user_id = u.id AND t.server_id = ? "
                    "WHERE u.id = ?", [server_id, user_id])
                for name in sorted({n for n in row or () if n}, key=len, reverse=True):
                    text = text.replace("@" + name, "@" + alias)  # longest first
        text = _USER_MENTION.sub(lambda m: "@" + self.user(m.group(1), server_id), text)
        text = _ROLE_MENTION.sub(lambda m: "@" + self._role(m.group(1)), text)
        text = _CHANNEL_MENTION.sub(lambda m: self.channel(m.group(1)), text)
        return _CUSTOM_EMOJI.sub(lambda m: f":{m.group(1)}:", text)

    def _role(self, role_id: str) -> str:
        row = self._one("SELECT name FROM roles WHERE id = ?", [role_id])
        return flat_name(row[0] if row else None) or f"role {role_id}"


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
_CUSTOM_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]+):(\d+)>")
