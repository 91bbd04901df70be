"""Names in the browser, through zos's one label library (zos_cli/labels, docs/labels.md).

`ServeLabels` holds one `Labeler` for a whole `zos browse`, so a `<chat_N>` is one person on
every page and in every thread of the server: it reads on a read-only connection of its own,
one caller at a time, and is made afresh when the store has changed since (`PRAGMA
data_version`), so a renamed person reads anew. `BrowseLabels` adds what a page shows beside
topic labels: a message's author and channel, and a message's text with the people the
privacy gate hides as `<chat_N>` in it too (as a reflection prompt shows them).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable

import sqlite_utils

from zos_cli import topics
from zos_cli.labels import Labeler, server_place
from zos_cli.labels.names import markup_to_names, mentioned_names, prompt_name

_ALIAS = re.compile(r"<chat_\d+>")


class ServeLabels:
    """Topic labels for one server process (see the module's docstring)."""

    def __init__(self, conn: sqlite3.Connection, config=None) -> None:
        self.conn = conn  # (read-only, its own: serve.py opens it)
        self.db = sqlite_utils.Database(self.conn)
        self.config = config
        self._lock = threading.Lock()
        self._version: int | None = None
        self._labeler: Labeler | None = None

    def labels(self, keys: Iterable[str]) -> dict[str, str]:
        with self._lock:
            version = self.conn.execute("PRAGMA data_version").fetchone()[0]
            if self._labeler is None or version != self._version:
                self._labeler, self._version = Labeler(self.db, self.config), version
            return self._labeler.labels(keys)

    def close(self) -> None:
        self.conn.close()


class BrowseLabels:
    """What one connection's SQL functions and pages show, by name."""

    def __init__(self, conn: sqlite3.Connection, shared: ServeLabels) -> None:
        self.conn = conn
        self.shared = shared

    def topic_labels(self, keys: Iterable[str]) -> dict[str, str]:
        return self.shared.labels(keys)

    def topic(self, key: str) -> str:
        return self.shared.labels([key])[key]

    def server(self, server_id: str | None) -> str:
        return server_place(self.conn, server_id)

    def user(self, user_id: str | None, server_id: str | None) -> str:
        """A person as named where they wrote: their label without its place (`Theo`), or
        `<chat_N>`; their global label's name in a DM."""
        if not user_id:
            return ""
        try:
            key = topics.user(user_id, server_id)
        except topics.InvalidTopicKey:
            return f"user {user_id}"
        label = self.topic(key)
        suffix = f" ({self.server(server_id)})"
        return label[:-len(suffix)] if label.endswith(suffix) else label

    def hidden(self, user_id: str) -> bool:
        """Erased, or outside the privacy gate of a server they are known in: a search by name
        must not lead from their name to their `<chat_N>`."""
        return self.user(user_id, None).startswith("<chat_")

    def channel(self, channel_id: str | None, server_id: str | None) -> str:
        """`#general`; "direct messages" for a DM."""
        if not channel_id:
            return ""
        if server_id is None:
            return "direct messages"
        label = self.topic(f"server:{server_id}:channel:{channel_id}")
        suffix = f" ({self.server(server_id)})"
        return label[:-len(suffix)] if label.endswith(suffix) else label

    def readable(self, text: str | None, server_id: str | None, message_id: str | None) -> str:
        """Discord markup as names, and the people a message mentions who are hidden as
        `<chat_N>` in its text too (exports write a mention as `@Name`, not as markup)."""
        text = text or ""
        if server_id is not None and message_id is not None:
            for user_id, names in mentioned_names(self.conn, message_id, server_id):
                alias = _ALIAS.match(self.user(user_id, server_id))
                for name in names if alias else ():
                    text = text.replace("@" + name, "@" + alias.group(0))
        return markup_to_names(text, user=lambda u: self.user(u, server_id), role=self._role,
                               channel=lambda c: self.channel(c, server_id))

    def _role(self, role_id: str) -> str:
        row = self.conn.execute("SELECT name FROM roles WHERE id = ?", [role_id]).fetchone()
        return prompt_name(row[0] if row else None) or f"role {role_id}"
