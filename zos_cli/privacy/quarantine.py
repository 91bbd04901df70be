"""Quarantine: insights kept but left out of reflection context and default listings.

An insight may be quarantined for several reasons at once (rows of insight_quarantines);
`insights.quarantined` is 1 exactly while it has at least one, so lifting one reason (a role
regained, a consent granted again) never releases an insight held for another.
"""

from __future__ import annotations

import sqlite_utils

from zos_cli import topics
from zos_cli.store.audit import record_event
from zos_cli.privacy.provenance import dm_channel_ids, dm_message_ids, insights_derived_from
from zos_cli.timeutil import now_stored


# The kinds of topic about a user whose insights losing a gate role quarantines (erase
# deletes these and the user's in-channel topics too).
GATED_KINDS = ("user", "dyad")


def user_topic_patterns(user_id: str, server_id: str | None = None) -> list[str]:
    """GLOB patterns of the user and dyad topics of a user: server-scoped (in `server_id`, or
    in any server), then global."""
    return (topics.user_globs(user_id, GATED_KINDS, server_id or topics.ANY_SERVER)
            + topics.user_globs(user_id, GATED_KINDS, None))


def _topic_insights(db: sqlite_utils.Database, patterns: list[str]) -> list[str]:
    where = " OR ".join("topic_key GLOB ?" for _ in patterns)
    return [r[0] for r in db.execute(f"SELECT id FROM insights WHERE {where}", patterns)]


def _add_reason(db: sqlite_utils.Database, insight_ids: list[str], reason: str) -> int:
    at = now_stored()
    db.conn.executemany(
        "INSERT OR IGNORE INTO insight_quarantines (insight_id, reason, created_at) VALUES (?,?,?)",
        [(i, reason, at) for i in insight_ids],
    )
    return _sync_flags(db, insight_ids)


def _lift_reason(db: sqlite_utils.Database, reason: str) -> int:
    ids = [r[0] for r in db.execute(
        "SELECT insight_id FROM insight_quarantines WHERE reason = ?", [reason])]
    db.execute("DELETE FROM insight_quarantines WHERE reason = ?", [reason])
    return _sync_flags(db, ids)


def _sync_flags(db: sqlite_utils.Database, insight_ids: list[str]) -> int:
    changed = 0
    for start in range(0, len(insight_ids), 500):
        chunk = insight_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        cursor = db.execute(
            f"UPDATE insights SET quarantined = EXISTS (SELECT 1 FROM insight_quarantines q "
            f"WHERE q.insight_id = insights.id) WHERE id IN ({marks}) AND quarantined <> "
            f"EXISTS (SELECT 1 FROM insight_quarantines q WHERE q.insight_id = insights.id)",
            chunk,
        )
        changed += cursor.rowcount
    return changed


def apply_gate_change(
    db: sqlite_utils.Database, server_id: str, user_id: str, has_gate_role: bool
) -> int:
    """A user lost (or regained) a server's privacy-gate role: quarantine (or restore) their
    user and dyad insights, server and global. Caller holds the write transaction.
    Returns how many insights changed state."""
    reason = f"gate:{server_id}:{user_id}"
    if has_gate_role:
        changed = _lift_reason(db, reason)
    else:
        changed = _add_reason(db, _topic_insights(db, user_topic_patterns(user_id, server_id)) +
                              _topic_insights(db, topics.user_globs(user_id, GATED_KINDS, None)),
                              reason)
    if changed:
        record_event(db, "gate_quarantine" if not has_gate_role else "gate_restore",
                     {"server_id": server_id, "user_id": user_id, "insights": changed})
    return changed


def quarantine_dm_insights(db: sqlite_utils.Database, user_id: str) -> int:
    """Consent revoked: quarantine every insight whose provenance includes the user's DM
    channels (transitively). Caller holds the write transaction."""
    messages = dm_message_ids(db, dm_channel_ids(db, user_id))
    return _add_reason(db, sorted(insights_derived_from(db, messages)), f"dm_revoked:{user_id}")


def lift_dm_quarantine(db: sqlite_utils.Database, user_id: str) -> int:
    """Consent granted again: release what the revoke quarantined (nothing else)."""
    return _lift_reason(db, f"dm_revoked:{user_id}")
