"""The privacy-gate role (docs/privacy.md#privacy-gate-role): per server, users without it — including users whose
roles are unknown — get no topics, salience or insights. One place answers "which role?" and
"does this user hold it?" for ingest, poll, reflect and selection."""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils

from zos_cli.ids import json_ids


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


def lacking_gate_role(db: sqlite_utils.Database, config,
                      pairs: Iterable[tuple[str | None, str]]) -> set[tuple[str | None, str]]:
    """passes_gate's answer for many (server id, user id) pairs at once: those that do not
    pass, in one query per gated server (for labels of a whole listing)."""
    by_server: dict[str, set[str]] = {}
    for server_id, user_id in pairs:
        if server_id is not None:
            by_server.setdefault(server_id, set()).add(user_id)
    failing: set[tuple[str | None, str]] = set()
    for server_id, user_ids in by_server.items():
        role = gate_role(db, config, server_id)
        if role is None:
            continue
        holding = {r[0] for r in db.execute(
            "SELECT user_id FROM user_roles WHERE role_id = ? AND user_id IN "
            "(SELECT value FROM json_each(?))", [role, json_ids(sorted(user_ids))])}
        failing |= {(server_id, u) for u in user_ids - holding}
    return failing

