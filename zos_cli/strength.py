"""Effective strength: how strong a standing insight still is at a given as-of.

    effective = strength × 0.5 ^ (age_days / half_life_days[category])

`age_days` runs from the insight's clock start to the query's as-of. The clock starts at
`last_confirmed_at` (the as-of of the last run whose answer restated it), else at the as-of of
the run that wrote it — never at the wall-clock `created_at`, so an imported history reflected
today at its data clock does not look years old (docs/reflection.md#reconfirmation-and-fading).

One function computes it, in Python (`effective_strength`) and, the same function, inside
SQL (`register`), so that `insights list` can sort and limit in one query and reflection's
prior insights are ordered the same way. It is shared vocabulary (like `topics`) because both
`reflect` and `insights` use it and neither may import the other.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from zos_cli.timeutil import parse_time

if TYPE_CHECKING:  # (not at run time: a listing with no zos.toml never imports pydantic)
    from zos_cli.config import Insights

SECONDS_PER_DAY = 86400.0
# Days after which an insight's effective strength halves, by insight category as the layers
# write it: the built-in `[insights.half_life_days]` (config.py reads it from here). A
# channel's mood changes faster than what a person is like; what zos thinks of itself should
# follow its latest runs; a synthesis gathers much and changes slowly.
HALF_LIFE_DAYS = {
    "user_reflection": 180.0,
    "dyad_reflection": 180.0,
    "channel_reflection": 60.0,
    "subject_reflection": 120.0,
    "emoji_reflection": 90.0,
    "self_reflection": 30.0,
    "synthesis": 365.0,
    "reconcile": 180.0,
}
# A category missing from the table (a custom layer's): the half-life of a person's insight.
DEFAULT_HALF_LIFE_DAYS = 180.0

# The clock start of an insight `i`, in SQL: its last confirmation; else its run's as-of; else
# the as-of its metadata recorded (a run row is gone only if deleted by hand: `layer_runs`
# rows are never deleted by zos); else, for a row with neither, its created_at.
CLOCK_FROM_SQL = (
    "coalesce(i.last_confirmed_at, "
    "(SELECT r.as_of FROM layer_runs r WHERE r.id = i.layer_run_id), "
    "CASE WHEN json_valid(i.metadata) THEN json_extract(i.metadata, '$.as_of') END, "
    "i.created_at)"
)
# The SQL function `register` defines: effective_strength(strength, category, clock_from, as_of).
SQL_FUNCTION = "effective_strength"


def age_days(clock_from: str, as_of: str) -> float:
    """Whole and fractional days from `clock_from` to `as_of`; 0 when the insight is newer than
    the as-of (a query set before the run that made or confirmed it does not strengthen it)."""
    seconds = (parse_time(as_of) - parse_time(clock_from)).total_seconds()
    return max(seconds, 0.0) / SECONDS_PER_DAY


def half_life(category: str, settings: Insights | None = None) -> float:
    """The half-life in days of `category`: the config's (`settings`), the built-in when None."""
    if settings is not None:
        return settings.half_life(category)
    return HALF_LIFE_DAYS.get(category, DEFAULT_HALF_LIFE_DAYS)


def effective_strength(strength: float, category: str, clock_from: str, as_of: str,
                       settings: Insights | None = None) -> float:
    """`strength` halved once per half-life of `category` elapsed between `clock_from` and
    `as_of` (see the module's docstring); the built-in half-lives when `settings` is None."""
    return strength * 0.5 ** (age_days(clock_from, as_of) / half_life(category, settings))


def register(conn: sqlite3.Connection, settings: Insights | None = None) -> None:
    """Define `effective_strength(strength, category, clock_from, as_of)` on this connection
    with these half-lives (defined again on each call: the settings may differ per caller)."""

    def sql_effective(strength, category, clock_from, as_of):
        if strength is None or clock_from is None or as_of is None:
            return None
        return effective_strength(float(strength), category or "", clock_from, as_of, settings)

    conn.create_function(SQL_FUNCTION, 4, sql_effective, deterministic=True)
