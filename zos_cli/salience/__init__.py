"""Salience: what zos pays attention to (docs/salience.md).

    events_to_earns(event, config, gate)        the earns of one event (pure)
    SalienceEngine(db, config)                  earn/propagate/spill/warm, batched into the ledger
    select_targets(db, config, categories=…)    which topics a reflection layer takes
    after_reflection(db, config, key, tokens, as_of)   spend / reset / retain
    decay(db, config, as_of)                    idle topics lose 1% a day after 7 idle days
"""

from zos_cli.salience.clock import data_clock, resolve_as_of
from zos_cli.salience.decay import decay
from zos_cli.salience.earns import events_to_earns
from zos_cli.salience.engine import SalienceEngine
from zos_cli.salience.selection import allocate, budget_plan, select_targets
from zos_cli.salience.spending import after_reflection

__all__ = [
    "SalienceEngine",
    "events_to_earns",
    "select_targets",
    "after_reflection",
    "decay",
    "allocate",
    "budget_plan",
    "data_clock",
    "resolve_as_of",
]
