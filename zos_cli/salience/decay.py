"""Decay (DESIGN §5): after `decay_idle_days` (7) whole UTC days without an earn on a topic,
`decay_rate` (1%) of its balance per further day, compounded, one `decay` row per topic per day.

Day arithmetic: let L be the UTC date of the topic's last earn (its last_activity_at; a topic
that never earned counts from its creation). Days L+1 … L+7 are the idle days; day L+8 and
every later day D up to the as-of date decay, each row stamped D 00:00:00 UTC. A topic's
decayed days are remembered by its decay rows, so running decay again for the same as-of day
writes nothing. Propagation, spillover, warming, spends and decay are not activity.
Balances below `decay_min_balance` are left alone (rows that small would change nothing).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from zos_cli import db as db_module
from zos_cli import timeutil
from zos_cli.ids import new_id


def _day(stored: str) -> date:
    return date.fromisoformat(stored[:10])


def _stamp(day: date) -> str:
    return timeutil.to_stored(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def decay_days(last_earn: str, last_decay: str | None, as_of: str, idle_days: int) -> list[date]:
    """The days on which a topic decays now: after its idle days, after its last decay row,
    up to and including the as-of date."""
    first = _day(last_earn) + timedelta(days=idle_days + 1)
    if last_decay is not None:
        first = max(first, _day(last_decay) + timedelta(days=1))
    last = _day(as_of)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def plan_decay(db, config, as_of: str) -> list[dict]:
    """Per topic that decays at `as_of`: its rows (day, amount) and balances before/after."""
    s = config.salience
    as_of = timeutil.normalize(as_of)
    # A topic can only decay when its last earn is on or before this day.
    cutoff = _stamp(_day(as_of) - timedelta(days=s.decay_idle_days))
    candidates = db.execute(
        "SELECT t.key, t.balance, coalesce(t.last_activity_at, t.created_at), "
        " (SELECT max(l.created_at) FROM salience_ledger l "
        "   WHERE l.topic_id = t.id AND l.transaction_type = 'decay') "
        "FROM topics t WHERE t.balance > ? AND coalesce(t.last_activity_at, t.created_at) < ? "
        "ORDER BY t.key",
        [max(s.decay_min_balance, 0.0), cutoff],
    )
    plan = []
    for key, balance, last_earn, last_decay in candidates:
        days = decay_days(last_earn, last_decay, as_of, s.decay_idle_days)
        if not days:
            continue
        rows, current = [], balance
        for day in days:
            amount = -s.decay_rate * current
            rows.append((day, amount))
            current += amount
        plan.append({"topic_key": key, "balance_before": balance, "balance_after": current,
                     "days": len(days), "first_day": days[0].isoformat(),
                     "last_day": days[-1].isoformat(), "rows": rows})
    return plan


def decay(db, config, as_of: str, *, dry_run: bool = False) -> dict:
    """Apply (or with `dry_run` only compute) the decay due at `as_of`, in its own write
    transaction. Returns a summary with one entry per decayed topic."""
    as_of = timeutil.normalize(as_of)
    if dry_run:
        plan = plan_decay(db, config, as_of)
    else:
        with db_module.write_transaction(db):
            plan = plan_decay(db, config, as_of)
            db.conn.executemany(
                "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
                "created_at, topic_id) "
                "VALUES (?, ?, 'decay', ?, ?, ?, (SELECT id FROM topics WHERE key = ?2))",
                [(new_id(), p["topic_key"], amount, f"decay {day.isoformat()} (as of {as_of})",
                  _stamp(day))
                 for p in plan for day, amount in p["rows"]],
            )
    topics = [{k: v for k, v in p.items() if k != "rows"} for p in plan]
    return {
        "as_of": as_of,
        "dry_run": dry_run,
        "topics_decayed": len(plan),
        "rows": sum(p["days"] for p in plan),
        "amount": sum(a for p in plan for _d, a in p["rows"]),
        "topics": topics,
    }
