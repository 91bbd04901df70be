"""What a reflection costs a topic (DESIGN §5 "Selection and spending").

After a successful reflection of a target: cost = tokens × cost_per_token; spent =
min(cost, balance); rows `spend` (−spent), `reset` (−(balance − spent): the rest of the
balance) and `retain` (+spent × retain_factor), stamped with the run's as-of time. A failed
target spends nothing: the caller simply does not call `after_reflection`.

The reason of the three rows records the token count (`tokens=N`), so that `zos salience
rebuild` can re-apply the reflection with the balance the replay gives at that time.
"""

from __future__ import annotations

import re

from zos_cli import timeutil
from zos_cli.ids import new_id

TOKENS_IN_REASON = re.compile(r"\btokens=(\d+)\b")


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
    """Write the spend / reset / retain rows of one reflected target; the caller holds the
    write transaction. Returns {spent, reset, retain, balance} (the first three as positive
    magnitudes; balance is the topic's balance afterwards). A topic that does not exist
    spends nothing and writes nothing."""
    row = db.execute("SELECT balance FROM topics WHERE key = ?", [topic_key]).fetchone()
    if row is None:
        return {"spent": 0.0, "reset": 0.0, "retain": 0.0, "balance": 0.0}
    balance = row[0]
    spent, reset, retain = reflection_amounts(balance, tokens, config)
    at = timeutil.normalize(as_of)
    cost = tokens * config.salience.cost_per_token
    reason = f"reflection {layer_run_id or '-'}: tokens={tokens} cost={cost:.6g}"
    db.conn.executemany(
        "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
        "layer_run_id, created_at, topic_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT id FROM topics WHERE key = ?2))",
        [(new_id(), topic_key, "spend", -spent, reason, layer_run_id, at),
         (new_id(), topic_key, "reset", -reset, reason, layer_run_id, at),
         (new_id(), topic_key, "retain", retain, reason, layer_run_id, at)],
    )
    after = db.execute("SELECT balance FROM topics WHERE key = ?", [topic_key]).fetchone()[0]
    return {"spent": spent, "reset": reset, "retain": retain, "balance": after}
