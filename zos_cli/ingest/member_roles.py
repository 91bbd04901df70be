"""Members' roles in servers that set a privacy-gate role (docs/privacy.md#privacy-gate-role).

The salience engine and reflection read the stored roles (`user_roles`, with
`user_server_tracking.roles_known`) to decide who is behind the gate; users whose roles are
unknown count as outside it. So, in a gated server, poll

- refreshes the roles of the users it knows there at most every `poll.roles_refresh_minutes`
  (from the member list when the bot has the Server Members intent, else one request per
  user), and
- learns the roles of a user it has not seen there before right before storing their first
  messages, so newcomers are not treated as outsiders until the next refresh.

Every change of a user's roles is returned and recorded as a `roles_changed` event (ids
only); a change of the gate role itself goes to `privacy.apply_gate_change`, which
quarantines or restores that user's insights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli import timeutil
from zos_cli.store.audit import record_event
from zos_cli.sources.discord import api
from zos_cli.sources.discord.client import DiscordClient
from zos_cli.sources.discord.errors import DiscordForbidden
from zos_cli.observe.people import record_member_roles

STATE_KEY = "discord.roles_refreshed_at:{}"


@dataclass
class RoleChange:
    server_id: str
    user_id: str
    added: list[str]
    removed: list[str]
    had_gate: bool
    has_gate: bool
    left_server: bool = False

    def as_dict(self) -> dict:
        return {
            "server_id": self.server_id, "user_id": self.user_id, "added": self.added,
            "removed": self.removed, "had_gate": self.had_gate, "has_gate": self.has_gate,
            "left_server": self.left_server,
        }


@dataclass
class GuildRoles:
    """What one run knows about a gated server's roles; members fetched once per run."""

    server_id: str
    gate_role: str
    fetched: set[str] = field(default_factory=set)
    role_names: dict[str, dict] | None = None


def refresh_due(db: sqlite_utils.Database, server_id: str, minutes: float) -> bool:
    last = db_module.get_state(db, STATE_KEY.format(server_id))
    if last is None:
        return True
    return timeutil.now() - timeutil.parse_time(last) >= timedelta(minutes=minutes)


def refresh_server(db: sqlite_utils.Database, client: DiscordClient, guild: GuildRoles) -> list[RoleChange]:
    """The known users' current roles, recorded in one transaction with the refresh time."""
    _load_role_names(client, guild)
    # Only users zos has seen there: members who never spoke are not recorded (newcomers are
    # learned when they first appear, by `fetch_unknown`).
    wanted = set(_known_users(db, guild.server_id))
    try:
        members = {str(m["user"]["id"]): m for m in api.guild_members(client, guild.server_id)}
    except DiscordForbidden:
        # No Server Members intent: ask for the known users one by one.
        members = {}
        for user_id in sorted(wanted, key=int):
            member = api.guild_member(client, guild.server_id, user_id)
            if member is not None:
                members[user_id] = member
    changes: list[RoleChange] = []
    with db_module.write_transaction(db):
        for user_id in sorted(wanted, key=int):
            change = record_member(db, guild, user_id, members.get(user_id))
            if change is not None:
                changes.append(change)
        db_module.set_state(db, STATE_KEY.format(guild.server_id), timeutil.now_stored())
    guild.fetched.update(wanted)
    return changes


def fetch_unknown(db: sqlite_utils.Database, client: DiscordClient, guild: GuildRoles,
                  user_ids: set[str]) -> dict[str, dict | None]:
    """Members for the users whose roles in this server are not known yet (one request each).
    Read-only: the caller records them with `record_member` inside its own write."""
    unknown = sorted(
        (u for u in user_ids if u not in guild.fetched and not _roles_known(db, u, guild.server_id)),
        key=int,
    )
    if not unknown:
        return {}
    _load_role_names(client, guild)
    out = {u: api.guild_member(client, guild.server_id, u) for u in unknown}
    guild.fetched.update(unknown)
    return out


def record_member(db: sqlite_utils.Database, guild: GuildRoles, user_id: str,
                  member: dict | None) -> RoleChange | None:
    """Store one user's current roles (None: no longer a member, so no roles). Caller holds
    the write transaction. Returns the change, if the known roles changed."""
    now = timeutil.now_stored()
    server = guild.server_id
    before = _stored_roles(db, user_id, server)
    was_known = _roles_known(db, user_id, server)
    roles = {str(r) for r in (member or {}).get("roles", [])}
    names = guild.role_names or {}
    record_member_roles(
        db, server_id=server, user_id=user_id, user=(member or {}).get("user") or {"id": user_id},
        nickname=(member or {}).get("nick"),
        roles=[(r, *(names.get(r, {}).get(k) for k in ("name", "color", "position")))
               for r in roles],
        at=now)
    had_gate, has_gate = guild.gate_role in before, guild.gate_role in roles
    if was_known and before == roles:
        return None
    change = RoleChange(server, user_id, sorted(roles - before, key=int), sorted(before - roles, key=int),
                        had_gate, has_gate, left_server=member is None)
    record_event(db, "roles_changed", {**change.as_dict(), "gate_role": guild.gate_role}, now)
    if had_gate != has_gate:
        from zos_cli.privacy import apply_gate_change

        apply_gate_change(db, server, user_id, has_gate)
    return change


def _load_role_names(client: DiscordClient, guild: GuildRoles) -> None:
    if guild.role_names is None:
        names = {}
        for r in api.guild_roles(client, guild.server_id):
            color = r.get("color")
            names[str(r["id"])] = {
                "name": r.get("name"),
                "color": f"#{color:06X}" if isinstance(color, int) and color else None,
                "position": r.get("position"),
            }
        guild.role_names = names


def _known_users(db: sqlite_utils.Database, server_id: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT user_id FROM user_server_tracking WHERE server_id = ?", [server_id])]


def _roles_known(db: sqlite_utils.Database, user_id: str, server_id: str) -> bool:
    row = db.execute(
        "SELECT roles_known FROM user_server_tracking WHERE user_id = ? AND server_id = ?",
        [user_id, server_id],
    ).fetchone()
    return bool(row and row[0])


def _stored_roles(db: sqlite_utils.Database, user_id: str, server_id: str) -> set[str]:
    return {r[0] for r in db.execute(
        "SELECT role_id FROM user_roles WHERE user_id = ? AND server_id = ?", [user_id, server_id])}
