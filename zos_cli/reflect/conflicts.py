"""Open conflicts between standing insights (docs/reflection.md#reconciled-conflicts): what
the reconcile layer's targets are. Kept apart from `reconcile.py` (the prompt and the store)
so that choosing targets — `zos salience budget`, a dry run — loads no answer schema or store.

A conflict is a pair: an insight whose `conflicts_with` names another. It is open while both
insights stand (not quarantined, not expired at the run's as-of, not superseded — see
`material.not_superseded_sql`) and they are not both `conflict_resolved`. It belongs to the
topic of the insight that named it (the newer one when each names the other).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from zos_cli.reflect import material
from zos_cli.reflect.layers import Layer
from zos_cli.reflect.material import Target, target_from_key


def _standing_sql(alias: str) -> str:
    """SQL true when insight `alias` stands at the `:as_of` parameter. (`+`: never search by the
    quarantined index, which holds nearly every insight.)"""
    return (f"+{alias}.quarantined = 0 AND ({alias}.expires_at IS NULL OR "
            f"{alias}.expires_at > :as_of) AND {material.not_superseded_sql(alias)}")


# The order is forced (CROSS JOIN): the insights naming conflicts (one scan), their ids, then
# each named insight by its key. Left to itself, SQLite's planner (no statistics) may put the
# named insights outside and read every insight for each.
_OPEN_PAIRS = (
    "SELECT a.id, a.topic_key, a.created_at, b.id, b.created_at FROM insights a "
    "CROSS JOIN json_each(CASE WHEN json_valid(a.conflicts_with) THEN a.conflicts_with "
    "ELSE '[]' END) c CROSS JOIN insights b "
    "WHERE b.id = c.value AND a.conflicts_with IS NOT NULL "
    "AND a.conflicts_with NOT IN ('', '[]') AND b.id <> a.id "
    "AND NOT (a.conflict_resolved = 1 AND b.conflict_resolved = 1) "
    f"AND {_standing_sql('a')} AND {_standing_sql('b')}"
)


@dataclass(frozen=True)
class Pair:
    topic_key: str   # the topic of the insight that named the conflict
    first: str       # the older insight
    second: str      # the newer
    named_at: str    # when the conflict was named (that insight's created_at)


def open_pairs(db: sqlite_utils.Database, as_of: str) -> list[Pair]:
    """Every open conflict at `as_of`, oldest named first (each pair once)."""
    found: dict[frozenset, tuple] = {}
    for a_id, a_topic, a_at, b_id, b_at in db.execute(_OPEN_PAIRS, {"as_of": as_of}):
        naming = (a_at, a_id, a_topic)
        (_, first), (_, second) = sorted([(a_at, a_id), (b_at, b_id)])
        key = frozenset((a_id, b_id))
        if key not in found or naming > found[key][0]:
            found[key] = (naming, first, second)
    pairs = [Pair(naming[2], first, second, naming[0])
             for naming, first, second in found.values()]
    return sorted(pairs, key=lambda p: (p.named_at, p.first, p.second))


def conflict_targets(db: sqlite_utils.Database, layer: Layer, limit: int, as_of: str,
                     exclude=None) -> list[Target]:
    """The topics with open conflicts, most open pairs first (then the longest open);
    `exclude(target)`: topics passed over before the limit counts them."""
    by_topic: dict[str, list[Pair]] = {}
    for pair in open_pairs(db, as_of):
        by_topic.setdefault(pair.topic_key, []).append(pair)
    ranked = sorted(by_topic, key=lambda k: (-len(by_topic[k]), by_topic[k][0].named_at, k))
    targets = []
    for key in ranked:
        if len(targets) >= limit:
            break
        target = target_from_key(key)
        if target.category in layer.categories and not (exclude and exclude(target)):
            targets.append(target)
    return targets


def standing_ids(db: sqlite_utils.Database, ids: list[str], as_of: str) -> set[str]:
    """Which of these insights stand at `as_of`."""
    if not ids:
        return set()
    marks = ", ".join(f":id{n}" for n in range(len(ids)))
    params = {"as_of": as_of, **{f"id{n}": i for n, i in enumerate(ids)}}
    return {r[0] for r in db.execute(
        f"SELECT a.id FROM insights a WHERE a.id IN ({marks}) AND {_standing_sql('a')}", params)}
