"""How people appear in a reflection prompt: display names, and `<chat_N>` for everyone the
privacy-gate role keeps out of analysis.

A server's gate role comes from `zos.toml` (`[servers."<id>"] privacy_gate_role`) or, failing
that, the `servers.privacy_gate_role` column. Users without it — including users whose roles
are unknown — are shown as `<chat_1>`, `<chat_2>`… numbered in order of appearance within one
prompt (one conversation), so nothing about them is named or analysed.
"""

from __future__ import annotations

import sqlite_utils

from zos_cli.config import Config
from zos_cli.labels.names import alias, markup_to_names, mentioned_names, person_name, prompt_name
from zos_cli.privacy.gate import gate_role, passes_gate

__all__ = ["Namer", "prompt_name"]

class Namer:
    """Labels for one prompt. `label(user_id, server_id)` is a display name or `<chat_N>`."""

    def __init__(self, db: sqlite_utils.Database, config: Config, self_user_id: str | None):
        self.db = db
        self.config = config
        self.self_user_id = self_user_id
        self._aliases: dict[str, str] = {}
        self._names: dict[tuple[str, str | None], str] = {}
        self._gate: dict[tuple[str, str | None], bool] = {}
        self._gated_servers: dict[str, bool] = {}  # server id → has a privacy-gate role
        self._roles: dict[str, str] = {}
        self._channels: dict[str, str] = {}

    def is_gated(self, user_id: str, server_id: str | None) -> bool:
        key = (user_id, server_id)
        if key not in self._gate:
            self._gate[key] = not passes_gate(self.db, self.config, server_id, user_id)
        return self._gate[key]

    @property
    def aliased(self) -> dict[str, str]:
        """user id → `<chat_N>` for everyone aliased so far."""
        return dict(self._aliases)

    def label(self, user_id: str, server_id: str | None) -> str:
        if self.self_user_id and user_id == self.self_user_id:
            return "zos"
        if self.is_gated(user_id, server_id):
            if user_id not in self._aliases:
                self._aliases[user_id] = alias(len(self._aliases) + 1)
            return self._aliases[user_id]
        key = (user_id, server_id)
        if key not in self._names:
            self._names[key] = self._display_name(user_id, server_id)
        return self._names[key]

    def _display_name(self, user_id: str, server_id: str | None) -> str:
        row = self.db.execute(
            "SELECT u.display_name, u.name, u.is_bot, t.nickname FROM users u "
            "LEFT JOIN user_server_tracking t ON t.user_id = u.id AND t.server_id = ? "
            "WHERE u.id = ?",
            [server_id, user_id],
        ).fetchone()
        if row is None:
            return f"user {user_id}"
        display, name, is_bot, nickname = row
        return person_name(user_id, nickname=nickname, display_name=display, name=name,
                           is_bot=bool(is_bot))

    def _has_gate(self, server_id: str) -> bool:
        if server_id not in self._gated_servers:
            self._gated_servers[server_id] = gate_role(self.db, self.config, server_id) is not None
        return self._gated_servers[server_id]

    def _hide_gated_mentions(self, text: str, message_id: str, server_id: str) -> str:
        for user_id, names in mentioned_names(self.db, message_id, server_id):
            if self.is_gated(user_id, server_id):
                for name in names:
                    text = text.replace("@" + name, "@" + self.label(user_id, server_id))
        return text

    def channel_name(self, channel_id: str) -> str:
        if channel_id not in self._channels:
            row = self.db.execute(
                "SELECT name, type FROM channels WHERE id = ?", [channel_id]
            ).fetchone()
            if row is None:
                self._channels[channel_id] = f"#{channel_id}"
            elif row[1] in ("dm", "group_dm"):
                self._channels[channel_id] = "direct messages"
            else:
                self._channels[channel_id] = f"#{prompt_name(row[0]) or channel_id}"
        return self._channels[channel_id]

    def role_name(self, role_id: str) -> str:
        if role_id not in self._roles:
            row = self.db.execute("SELECT name FROM roles WHERE id = ?", [role_id]).fetchone()
            self._roles[role_id] = prompt_name(row[0] if row else None) or f"role {role_id}"
        return self._roles[role_id]

    def readable(self, text: str, server_id: str | None, message_id: str | None = None) -> str:
        """Discord markup to names: mentions, role mentions, channel links, custom emoji.
        With `message_id`, the people it mentions who are outside the server's privacy gate
        are `<chat_N>` in its text too: exports write a mention as `@Name`, not as markup."""
        if message_id is not None and server_id is not None and self._has_gate(server_id):
            text = self._hide_gated_mentions(text, message_id, server_id)
        return markup_to_names(text, user=lambda u: self.label(u, server_id),
                               role=self.role_name, channel=self.channel_name)
