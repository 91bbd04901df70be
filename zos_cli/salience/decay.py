"""Decay (docs/salience.md#decay): after `decay_idle_days` (7) whole UTC days without an earn on a topic,
`decay_rate` (1%) of its balance per further day, compounded, one `decay` row per topic per day.

Day arithmetic: let L be the UTC date of the topic's last earn (its last_activity_at; a topic
that never earned counts from its creation). Days L+1 … L+7 are the idle days; day L+8 and
every later day D up to the as-of date decay, each row stamped D 00:00:00 UTC. A topic's
decayed days are remembered by its decay rows, so running decay again for the same as-of day
writes nothing. Propagation, spillover, warming, spends and decay are not activity.
Balances at or below `decay_min_balance` are left alone (rows that small would change nothing):
a balance that falls that low stops decaying on that day.

Each day decays the topic's balance on that day — its stored balance less the ledger rows
stamped after the day (propagation and spends may arrive while a topic is idle) — so a decay
run days late writes what nightly runs would have written. With no such rows it is the stored
balance compounded, as before.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

from zos_cli.store import db as db_module
from zos_cli import timeutil
from zos_cli.ids import new_ids
from zos_cli.salience.batch import INSERT_TRIGGERS, insert_decays, set_balance

log = logging.getLogger("zos.salience")


def _day(stored: str) -> date:
    return date.fromisoformat(stored[:10])


def _stamp(day: date) -> str:
    return timeutil.to_stored(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def _first_day_holding(stored: str) -> date:
    """The first day whose decay (stamped at its 00:00 UTC) counts a row stamped `stored`."""
    day = _day(stored)
    return day if stored[11:26] == "00:00:00.000000" else day + timedelta(days=1)


def decay_days(last_earn: str, last_decay: str | None, as_of: str,
               idle_days: int) -> Iterator[date]:
    """The days on which a topic decays now: after its idle days, after its last decay row,
    up to and including the as-of date (one at a time: after years idle they are many)."""
    day = _day(last_earn) + timedelta(days=idle_days + 1)
    if last_decay is not None:
        day = max(day, _day(last_decay) + timedelta(days=1))
    last = _day(as_of)
    while day <= last:
        yield day
        day += timedelta(days=1)


def _topic_decays(db, config, as_of: str) -> Iterator[tuple[dict, list[tuple[date, float]]]]:
    """Per topic that decays at `as_of`: its summary entry and its rows (day, amount), one
    topic at a time (a first decay after importing years of history is many rows: they are
    never all in memory). A balance that falls to `decay_min_balance` stops decaying there."""
    s = config.salience
    floor = max(s.decay_min_balance, 0.0)
    # A topic can only decay when its last earn is on or before this day.
    cutoff = _stamp(_day(as_of) - timedelta(days=s.decay_idle_days))
    candidates = db.execute(
        "SELECT t.key, t.id, t.balance, coalesce(t.last_activity_at, t.created_at), "
        " (SELECT max(l.created_at) FROM salience_ledger l "
        "   WHERE l.topic_id = t.id AND l.transaction_type = 'decay') "
        "FROM topics t WHERE t.balance > ? AND coalesce(t.last_activity_at, t.created_at) < ? "
        "ORDER BY t.key",
        [floor, cutoff],
    ).fetchall()  # (read before the first insert: the rows change balances)
    for key, topic_id, balance, last_earn, last_decay in candidates:
        days = decay_days(last_earn, last_decay, as_of, s.decay_idle_days)
        first = next(days, None)
        if first is None:
            continue
        # Each day decays the balance of that day: rows stamped after it (propagation, spends:
        # not activity, so they may come after the idle days began) are not in it yet. A
        # catch-up decay run late thus takes the same amounts as a nightly one would have.
        later = [(_first_day_holding(at), amount) for at, amount in db.execute(
            "SELECT created_at, amount FROM salience_ledger WHERE topic_id = ? "
            "AND created_at > ? ORDER BY created_at DESC", [topic_id, _stamp(first)])]
        not_yet = sum(amount for _day_, amount in later)  # of the rows after the day in hand
        rows, decayed = [], 0.0
        for day in itertools.chain((first,), days):
            while later and later[-1][0] <= day:  # (oldest last) now part of the balance
                not_yet -= later.pop()[1]
            current = balance - not_yet + decayed
            if current <= floor:
                if not later:
                    break  # nothing comes after: it only decays further
                continue
            amount = -s.decay_rate * current
            rows.append((day, amount))
            decayed += amount
        current = balance + decayed
        if rows:
            yield ({"topic_key": key, "balance_before": balance, "balance_after": current,
                    "days": len(rows), "first_day": rows[0][0].isoformat(),
                    "last_day": rows[-1][0].isoformat()}, topic_id, rows)


def decay(db, config, as_of: str, *, dry_run: bool = False) -> dict:
    """Apply (or with `dry_run` only compute) the decay due at `as_of`, in its own write
    transaction. Returns a summary with one entry per decayed topic."""
    as_of = timeutil.normalize(as_of)
    topics, rows_written, total = [], 0, 0.0
    with contextlib.ExitStack() as stack:
        if not dry_run:
            stack.enter_context(db_module.write_transaction(db))
            # The ledger's insert triggers cost more than the insert (a sub-program per row;
            # a first decay after importing old history is millions of rows). Their work is
            # done here: each row carries its topic id, and the topic's balance is set once to
            # the running sum of its rows from the stored balance — the same additions, in
            # the same order, as the balance trigger's.
            stack.enter_context(db_module.triggers_suspended(db, *INSERT_TRIGGERS))
        for entry, topic_id, rows in _topic_decays(db, config, as_of):
            topics.append(entry)
            rows_written += len(rows)
            total += sum(amount for _day_, amount in rows)
            if not dry_run:
                insert_decays(db, [
                    (row_id, entry["topic_key"], amount,
                     f"decay {day.isoformat()} (as of {as_of})", _stamp(day), topic_id)
                    for row_id, (day, amount) in zip(new_ids(len(rows)), rows)])
                set_balance(db, topic_id, entry["balance_after"])
    log.info("decay as of %s%s: %s topics, %s rows, %.4f in all", as_of,
             " (dry run)" if dry_run else "", len(topics), rows_written, total)
    return {
        "as_of": as_of,
        "dry_run": dry_run,
        "topics_decayed": len(topics),
        "rows": rows_written,
        "amount": total,
        "topics": topics,
    }
