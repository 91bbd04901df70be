"""What a reflection costs a topic (docs/salience.md#spending).

After a successful reflection of a target: cost = tokens × cost_per_token; spent =
min(cost, balance); rows `spend` (−spent), `reset` (−(balance − spent): the rest of the
balance) and `retain` (+spent × retain_factor), stamped with the run's as-of time. A failed
target spends nothing: the caller simply does not call `after_reflection`.

The reason of the three rows records the token count (`tokens=N`), so that `zos salience
rebuild` can re-apply the reflection with the balance the replay gives at that time.

The balance is the topic's balance at the run's as-of time T (its ledger rows stamped at or
before T), since the reflection read nothing after T. A run whose as-of is in the past keeps
the rows after T, so its reset takes only what came before T, and `zos salience rebuild`
(which re-applies the spend at T from the replayed balance at T) finds the same amounts —
and the same balances, unless something after T depended on the balance (a cap reached, a
decay, a topic warm before the reset and not after it). The basis is never more than the
topic holds now: when the rows after T take away more than they add (decay up to the wall
clock, another layer's reset), it is the current balance. With the default as-of there are
normally no rows after T, and the basis is the current balance to the bit. Selection ranks
by the same figure (`balance_as_of_sql`).

Aggregated rows (batch.py) are stamped with the newest event they cover: activity on both
sides of T that shares a row counts as after T, and is left standing by the reset.
"""

from __future__ import annotations

import re

from zos_cli import timeutil
from zos_cli.ids import new_id
from zos_cli.salience.batch import insert_reflection_rows

TOKENS_IN_REASON = re.compile(r"\btokens=(\d+)\b")


def balance_as_of_sql(table: str = "topics") -> str:
    """A SQL expression: the balance of `table`'s topic row as of the time bound to its one
    `?` — the maintained balance minus the net of the ledger rows stamped after that time when
    they added (max(0, …): never more than the topic holds now; see the module docstring).
    Subtracting the few rows after T (one range of the (topic_id, created_at) index) rather
    than summing the many before it keeps the default case exactly the maintained balance."""
    return (f"({table}.balance - max(0.0, coalesce((SELECT sum(later.amount) "
            f"FROM salience_ledger later WHERE later.topic_id = {table}.id "
            "AND later.created_at > ?), 0.0)))")


def reflection_amounts(balance: float, tokens: int, config) -> tuple[float, float, float]:
    """(spent, reset, retain) as positive magnitudes for a topic holding `balance`."""
    if tokens < 0:
        raise ValueError(f"tokens must be ≥ 0, not {tokens}")
    s = config.salience
    balance = max(balance, 0.0)
    spent = min(tokens * s.cost_per_token, balance)
    reset = balance - spent
    return spent, reset, spent * s.retain_factor


def after_reflection(db, config, topic_key: str, tokens: int, as_of: str,
                     layer_run_id: str | None = None) -> dict:
    """Write the spend / reset / retain rows of one reflected target, from its balance as of
    `as_of` (see the module docstring); the caller holds the write transaction. Returns
    {spent, reset, retain, balance} (the first three as positive magnitudes; balance is the
    topic's balance afterwards). A topic that does not exist spends nothing and writes
    nothing."""
    at = timeutil.normalize(as_of)
    row = db.execute(f"SELECT {balance_as_of_sql()} FROM topics WHERE key = ?",
                     [at, topic_key]).fetchone()
    if row is None:
        return {"spent": 0.0, "reset": 0.0, "retain": 0.0, "balance": 0.0}
    spent, reset, retain = reflection_amounts(row[0], tokens, config)
    cost = tokens * config.salience.cost_per_token
    reason = f"reflection {layer_run_id or '-'}: tokens={tokens} cost={cost:.6g}"
    insert_reflection_rows(
        db,
        [(new_id(), topic_key, "spend", -spent, reason, layer_run_id, at),
         (new_id(), topic_key, "reset", -reset, reason, layer_run_id, at),
         (new_id(), topic_key, "retain", retain, reason, layer_run_id, at)],
    )
    after = db.execute("SELECT balance FROM topics WHERE key = ?", [topic_key]).fetchone()[0]
    return {"spent": spent, "reset": reset, "retain": retain, "balance": after}
