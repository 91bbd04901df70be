"""The privacy-gate role (docs/privacy.md#privacy-gate-role): per server, users without it — including users whose
roles are unknown — get no topics, salience or insights. One place answers "which role?" and
"does this user hold it?" for ingest, poll, reflect and selection."""

from __future__ import annotations

import sqlite_utils


def gate_role(db: sqlite_utils.Database, config, server_id: str | None) -> str | None:
    """The server's privacy-gate role: zos.toml first, else the stored server row. None for
    DMs (consent governs them) and for servers without one."""
    if server_id is None:
        return None
    configured = config.server(server_id).privacy_gate_role if config is not None else None
    if configured:
        return configured
    row = db.execute("SELECT privacy_gate_role FROM servers WHERE id = ?", [server_id]).fetchone()
    return row[0] if row and row[0] else None


def holds_role(db: sqlite_utils.Database, user_id: str, role_id: str) -> bool:
    return db.execute("SELECT 1 FROM user_roles WHERE user_id = ? AND role_id = ?",
                      [user_id, role_id]).fetchone() is not None


def passes_gate(db: sqlite_utils.Database, config, server_id: str | None, user_id: str) -> bool:
    role = gate_role(db, config, server_id)
    return role is None or holds_role(db, user_id, role)


def gated_anywhere(db: sqlite_utils.Database, config, user_id: str) -> bool:
    """Whether the user lacks the gate role of any server they are known in: their global
    topics are then not reflected on (losing the role quarantined their global insights)."""
    return any(not passes_gate(db, config, server_id, user_id) for (server_id,) in db.execute(
        "SELECT server_id FROM user_server_tracking WHERE user_id = ?", [user_id]).fetchall())
