"""Which topics a reflection takes (docs/salience.md#budget).

The nightly budget is counted in targets (`reflection.nightly_targets`), shared across the
budget groups by their shares (largest-remainder apportionment, so the counts add up). A group
with fewer eligible topics (balance ≥ min_salience) than its share gives the rest back, and
what is given back is shared again, by the same shares, among the groups that still have
eligible topics left, until the budget or the demand runs out. The self group has its own
count (`reflection.self_targets`). A layer run takes from its categories the eligible topics in
descending balance, at most its group's allocation per group, and at most
min(layer max_targets, --max-targets) in all.

A run's selection is made at its as-of time: balances as of it (spending.balance_as_of_sql,
the figure the run then spends from), so a run whose as-of is in the past neither takes nor
ranks topics by activity after it, which its context does not read.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from zos_cli import topics
from zos_cli.salience.spending import balance_as_of_sql

SHARED_GROUPS = ("social", "global", "spaces", "semantic", "culture")


def apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `total` whole targets by `weights` (largest remainder; ties in the given order)."""
    positive = {g: w for g, w in weights.items() if w > 0}
    out = {g: 0 for g in weights}
    weight_sum = sum(positive.values())
    if total <= 0 or weight_sum <= 0:
        return out
    exact = {g: total * w / weight_sum for g, w in positive.items()}
    for g, x in exact.items():
        out[g] = math.floor(x + 1e-9)
    left = total - sum(out.values())
    order = sorted(positive, key=lambda g: -(exact[g] - out[g]))
    for g in order[:left]:
        out[g] += 1
    return out


def allocate(config, demand: dict[str, int]) -> dict[str, dict]:
    """Per group: share, base (its share of the budget), demand, allocated (after reallocation)."""
    shares = config.salience.budget.shares()
    total = config.reflection.nightly_targets
    base = apportion(total, shares)
    allocated = {g: min(base[g], demand.get(g, 0)) for g in SHARED_GROUPS}
    left = total - sum(allocated.values())
    while left > 0:
        hungry = {g: shares[g] for g in SHARED_GROUPS if demand.get(g, 0) > allocated[g]}
        extra = apportion(left, hungry)
        given = 0
        for g, n in extra.items():
            add = min(n, demand.get(g, 0) - allocated[g])
            allocated[g] += add
            given += add
        if given == 0:
            break
        left -= given
    plan = {g: {"share": shares[g], "base": base[g], "demand": demand.get(g, 0),
                "allocated": allocated[g]} for g in SHARED_GROUPS}
    self_count = config.reflection.self_targets
    plan["self"] = {"share": None, "base": self_count, "demand": demand.get("self", 0),
                    "allocated": min(self_count, demand.get("self", 0))}
    return plan


def group_demand(db, min_salience: float, as_of: str | None = None) -> dict[str, int]:
    """Eligible topics per group; with `as_of`, by their balance as of it. (A balance as of a
    time is never above the current one, so `balance >= ?` first keeps to the balance index
    and the few topics above the floor.)"""
    sql = "SELECT budget_group, count(*) FROM topics WHERE balance >= ?"
    params: list = [min_salience]
    if as_of is not None:
        sql += f" AND {balance_as_of_sql()} >= ?"
        params += [as_of, min_salience]
    return dict(db.execute(sql + " GROUP BY budget_group", params).fetchall())


def select_targets(db, config, *, categories: list[str], layer_max_targets: int,
                   max_targets: int | None = None, min_salience: float | None = None,
                   topic_key: str | None = None,
                   exclude: Callable[[str], bool] | None = None,
                   as_of: str | None = None) -> list[dict]:
    """The targets of one layer run: rows {topic_key, category, group, balance,
    last_activity_at} in descending balance (see the module docstring for the limits).
    With `topic_key`, only that topic is considered (same filters). `exclude(key)`: topics
    that may not be reflected on (a person outside a server's privacy gate) are passed over
    before the limits count them. `as_of` (stored form): balances as of that time, for the
    demand, the floor, the order and the balance returned; None: the current balances."""
    unknown = [c for c in categories if c not in topics.CATEGORIES]
    if unknown:
        raise ValueError(f"unknown topic categories: {', '.join(unknown)}")
    if topic_key is not None:
        topics.parse(topic_key)
    floor = config.salience.min_salience if min_salience is None else min_salience
    limit = layer_max_targets if max_targets is None else min(layer_max_targets, max_targets)
    if limit <= 0 or not categories:
        return []
    plan = allocate(config, group_demand(db, floor, as_of))
    value: str = "balance"
    params: list = []
    if as_of is not None:
        value, params = balance_as_of_sql(), [as_of]
    sql = (f"SELECT key, category, budget_group, {value} AS b, last_activity_at FROM topics "
           f"WHERE category IN ({', '.join('?' * len(categories))}) AND balance >= ?")
    params += [*categories, floor]
    if topic_key is not None:
        sql += " AND key = ?"
        params.append(topic_key)
    sql = f"SELECT * FROM ({sql}) WHERE b >= ? ORDER BY b DESC, key"
    params.append(floor)
    taken: dict[str, int] = {}
    out = []
    for key, category, group, balance, last in db.execute(sql, params):
        if taken.get(group, 0) >= plan[group]["allocated"]:
            continue
        if exclude is not None and exclude(key):
            continue
        taken[group] = taken.get(group, 0) + 1
        out.append({"topic_key": key, "category": category, "group": group,
                    "balance": balance, "last_activity_at": last})
        if len(out) >= limit:
            break
    return out


def budget_plan(db, config, *, layers: list[dict] | None = None) -> dict:
    """`zos salience budget`: the next nightly allocation per group and the topics it would
    take; `layers`: each reflection layer's next targets, as the reflection package chooses
    them (reflect.targets.next_targets), shown beside."""
    floor = config.salience.min_salience
    plan = allocate(config, group_demand(db, floor))
    groups = []
    for group, entry in plan.items():
        limit = entry["allocated"]
        keys = [r[0] for r in db.execute(
            "SELECT key FROM topics WHERE budget_group = ? AND balance >= ? "
            "ORDER BY balance DESC, key LIMIT ?", [group, floor, limit])]
        groups.append({"group": group, **entry, "targets": keys})
    doc = {
        "nightly_targets": config.reflection.nightly_targets,
        "self_targets": config.reflection.self_targets,
        "min_salience": floor,
        "groups": groups,
        "layers": [],
    }
    doc["layers"] = list(layers or [])
    return doc
