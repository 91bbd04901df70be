"""The privacy-gate question for the salience engine: may this user's activity count here?"""

from __future__ import annotations

from zos_cli.privacy.gate import gate_role, holds_role


class PrivacyGate:
    """`gate(server_id, user_id)`: True when the server has no privacy-gate role
    (privacy/gate.py: zos.toml, else the server row), or the user holds that role. Roles
    unknown means no role: such a user earns nothing and forms no dyads.

    By default the answer is what `user_roles` holds when asked (a poll, a reflection, a
    rebuild), and only positive answers are remembered: a poll may learn a user's roles later
    in the same run. An ingest run `settle`s the answers first (ingest/role_gate.py): the role set
    the run leaves each user with, so that nothing depends on how far the run has written.
    """

    def __init__(self, db, config):
        self.db = db
        self.config = config
        self._roles: dict[str, str | None] = {}   # server → its gate role, asked once
        self._holds: set[tuple[str, str]] = set()
        self._settled: dict[tuple[str, str], bool] | None = None

    def settle(self, answers: dict[tuple[str, str], bool]) -> None:
        """Answer from `answers` ((server, user) → holds the role) for the users a run shows
        with roles. Everyone else's stored roles cannot change during that run, so their
        answers, negative ones included, are remembered."""
        self._settled = dict(answers)

    def __call__(self, server_id: str, user_id: str) -> bool:
        if server_id not in self._roles:
            self._roles[server_id] = gate_role(self.db, self.config, server_id)
        role = self._roles[server_id]
        if not role:
            return True
        settled = self._settled
        if settled is not None:
            answer = settled.get((server_id, user_id))
            if answer is None:
                answer = settled[(server_id, user_id)] = holds_role(self.db, user_id, role)
            return answer
        if (user_id, role) in self._holds:
            return True
        if holds_role(self.db, user_id, role):
            self._holds.add((user_id, role))
            return True
        return False
