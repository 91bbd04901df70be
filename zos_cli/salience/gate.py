"""The privacy-gate question for the salience engine: may this user's activity count here?"""

from __future__ import annotations


class PrivacyGate:
    """`gate(server_id, user_id)`: True when the server has no privacy-gate role configured
    (`[servers."<id>"] privacy_gate_role`), or the user is known to hold that role in
    `user_roles`. Roles unknown means no role: such a user earns nothing and forms no dyads.

    Only positive answers are remembered: a user's roles may be written later in the same run
    (a reactor seen before they author anything), and then they count from that point on.
    """

    def __init__(self, db, config):
        self.db = db
        self.config = config
        self._holds: set[tuple[str, str]] = set()

    def __call__(self, server_id: str, user_id: str) -> bool:
        role = self.config.server(server_id).privacy_gate_role
        if not role:
            return True
        if (user_id, role) in self._holds:
            return True
        row = self.db.execute(
            "SELECT 1 FROM user_roles WHERE user_id = ? AND role_id = ?", [user_id, role]
        ).fetchone()
        if row:
            self._holds.add((user_id, role))
        return row is not None
