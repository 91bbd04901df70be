"""The privacy-gate question for the salience engine: may this user's activity count here?"""

from __future__ import annotations

from zos_cli.privacy.gate import gate_role, holds_role


class PrivacyGate:
    """`gate(server_id, user_id)`: True when the server has no privacy-gate role
    (privacy/gate.py: zos.toml, else the server row), or the user is known to hold that role
    in `user_roles`. Roles unknown means no role: such a user earns nothing and forms no dyads.

    Only positive answers are remembered: a user's roles may be written later in the same run
    (a reactor seen before they author anything), and then they count from that point on.
    """

    def __init__(self, db, config):
        self.db = db
        self.config = config
        self._roles: dict[str, str | None] = {}   # server → its gate role, asked once
        self._holds: set[tuple[str, str]] = set()

    def __call__(self, server_id: str, user_id: str) -> bool:
        if server_id not in self._roles:
            self._roles[server_id] = gate_role(self.db, self.config, server_id)
        role = self._roles[server_id]
        if not role:
            return True
        if (user_id, role) in self._holds:
            return True
        if holds_role(self.db, user_id, role):
            self._holds.add((user_id, role))
            return True
        return False
