"""Moving one subject's balance into another (docs/salience.md#merges).

A merge keeps "balance = the sum of the ledger" with two transfer rows, never by editing old
rows: `merge_out` on the subject merged away takes its whole balance (it ends at 0), and
`merge_in` on the subject it went into adds what that subject's cap lets in. What the cap
refuses is gone, as a capped earn's overflow is. Each row names the other topic
(`source_topic`) and the merge (`subject merge <event id>` in its reason), so `zos salience
ledger` explains the move, and `zos salience rebuild` replays it at its time
(`SalienceEngine.apply_merge`), from the balances the replay gives there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from zos_cli import timeutil, topics
from zos_cli.ids import new_id
from zos_cli.salience.batch import insert_merge_rows
from zos_cli.salience.clock import data_clock

MERGE_ROW_TYPES = ("merge_out", "merge_in")
MERGE_ID_IN_REASON = re.compile(r"^subject merge (\S+):")


@dataclass(frozen=True)
class MergeAmounts:
    moved: float      # FROM's balance, taken out by merge_out
    taken: float      # what INTO received (merge_in)
    refused: float    # moved − taken: what INTO's cap refused
    cap: float        # INTO's cap
    from_before: float
    into_before: float

    @property
    def into_after(self) -> float:
        return self.into_before + self.taken


def merge_amounts(from_balance: float, into_balance: float, cap: float) -> MergeAmounts:
    """What a merge moves: all of FROM's balance out; into INTO as much as its cap allows."""
    moved = max(from_balance, 0.0)
    taken = max(0.0, min(moved, cap - into_balance))
    return MergeAmounts(moved, taken, moved - taken, cap, from_balance, into_balance)


def reasons(from_key: str, into_key: str, amounts: MergeAmounts, merge_id: str) -> tuple[str, str]:
    """The reasons of the merge_out and merge_in rows."""
    head = f"subject merge {merge_id}:"
    out = f"{head} {amounts.moved:.6g} moved into {into_key}"
    into = f"{head} {amounts.moved:.6g} moved from {from_key}, {amounts.taken:.6g} taken"
    if amounts.refused > 0:
        into += f", {amounts.refused:.6g} refused by the cap ({amounts.cap:g})"
    return out, into


def merge_time(db, from_key: str, into_key: str) -> str:
    """When a merge happens on the ledger's clock: the data's clock (the newest stored
    message, as reflection and decay use), and never before a row either topic already has,
    so that a rebuild replays the merge after everything it moved. (Rebuild replays a merge
    among the reflection rows of its instant in the order they were written, but after the
    decays of its instant: a decay row at that very time moves the merge a microsecond on.)"""
    at = data_clock(db) or timeutil.now_stored()
    ids = "(SELECT id FROM topics WHERE key IN (?, ?))"
    row = db.execute(f"SELECT max(created_at) FROM salience_ledger WHERE topic_id IN {ids}",
                     [from_key, into_key]).fetchone()
    if row and row[0] and row[0] > at:
        at = row[0]
    if db.execute(f"SELECT 1 FROM salience_ledger WHERE topic_id IN {ids} AND "
                  "transaction_type = 'decay' AND created_at = ?",
                  [from_key, into_key, at]).fetchone():
        at = timeutil.to_stored(timeutil.parse_time(at) + timedelta(microseconds=1))
    return at


def balance_of(db, key: str) -> float:
    row = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()
    return float(row[0]) if row else 0.0


def plan(db, config, from_key: str, into_key: str) -> MergeAmounts:
    """The amounts a merge now would move (nothing written)."""
    cap = topics.cap_of(into_key, config.salience.caps)
    return merge_amounts(balance_of(db, from_key), balance_of(db, into_key), cap)


def merge_balances(db, config, from_key: str, into_key: str, at: str,
                   merge_id: str) -> MergeAmounts:
    """Write the merge_out and merge_in rows (the caller holds the write transaction; both
    topics exist). The ledger's triggers keep both balances."""
    amounts = plan(db, config, from_key, into_key)
    out_reason, in_reason = reasons(from_key, into_key, amounts, merge_id)
    insert_merge_rows(db, [
        (new_id(), from_key, "merge_out", -amounts.moved, out_reason, into_key, at),
        (new_id(), into_key, "merge_in", amounts.taken, in_reason, from_key, at),
    ])
    return amounts
