"""The privacy gate of an ingest run's salience (DESIGN §5, §7), settled before anything is
earned.

In a server with a privacy-gate role, whether a user's activity earns depends on their roles.
An export shows a user's role set on every message they author (as of `exportedAt`; reactors
carry none), and the run keeps the newest observation of it (observe_people). Asking the
database while the run is being written would answer by what the run has written so far: a
reactor seen before they first author would count as an outsider, a user who gained the role
in a newer export would count only after that export's first message — and the answer would
change with the batch size, after a kill and a resume, and in `zos salience rebuild`, which
reads the final roles.

So the gate files of a run (those of servers with a gate role) are read once first, like DM
files, for the newest role set each user shows there, by the same rule the writer applies:
the newest observation wins, a tie goes to the later one in the run's order (its merge
groups, then snowflake order, then file order, then author, mentions, reactors), and the run
wins a tie with what is stored. The run's earns then use the role set the run leaves each
user with: the same answers for any batch size, after a resume, and in a rebuild.

One difference remains, by design: the writer skips an observation of a stored message that
is not newer than the stored one, this pass does not. They differ only when two observations
with the same export time show one user with different role sets, which one export never does.
"""

from __future__ import annotations

import logging

import sqlite_utils

from zos_cli.privacy.gate import gate_role, holds_role
from zos_cli.sources.export import ExportError

log = logging.getLogger("zos.ingest")


def settle_gate(db: sqlite_utils.Database, config, groups: list[list]) -> dict[tuple[str, str], bool]:
    """(server id, user id) → whether the user holds the server's gate role once the run is
    written, for every user the run shows with roles in a server that has a gate role.
    `groups` are the run's file plans as they will be merged (FilePlan: export, channel)."""
    gates: dict[str, str | None] = {}
    newest: dict[tuple[str, str], tuple[tuple, frozenset[str]]] = {}
    for g, group in enumerate(groups):
        for f, plan in enumerate(group):
            server_id = plan.channel.server_id
            if server_id is None:
                continue  # a DM: consent governs it, not a role
            if server_id not in gates:
                gates[server_id] = gate_role(db, config, server_id)
            if gates[server_id]:
                _read_role_sets(plan, server_id, (g, f), newest)
    answers = {}
    for (server_id, user_id), ((when, *_), role_ids) in newest.items():
        stored = db.execute(
            "SELECT roles_refreshed_at FROM user_server_tracking WHERE user_id = ? "
            "AND server_id = ?", [user_id, server_id]).fetchone()
        role = gates[server_id]
        if ((stored[0] if stored else None) or "") <= when:
            answers[(server_id, user_id)] = role in role_ids
        else:  # a newer role set is stored than any this run shows: it stays
            answers[(server_id, user_id)] = holds_role(db, user_id, role)
    if newest:
        log.info("privacy gate: role sets of %s users read from the gated files", len(newest))
    return answers


def _read_role_sets(plan, server_id: str, place: tuple[int, int], newest: dict) -> None:
    group, file_index = place
    try:
        for message in plan.export.messages():
            when = message.observed_at or ""
            order = int(message.id)
            users = [message.author, *message.mentions]
            for reaction in message.reactions or ():
                users.extend(reaction.users)
            for position, user in enumerate(users):
                if user.roles is None:
                    continue  # an export without roles (or a reactor): nothing shown
                key = (when, group, order, file_index, position)
                known = newest.get((server_id, user.id))
                if known is None or known[0] <= key:
                    newest[(server_id, user.id)] = (key, frozenset(r.id for r in user.roles))
    except ExportError:
        pass  # the writer stops at the same place and reports it; what came before counts
    finally:
        plan.export.release_handle()
