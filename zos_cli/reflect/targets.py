"""Which topics a layer run reflects on.

- `--topic KEY`: that topic, when it belongs to one of the layer's categories.
- A message layer: salience selection (docs/salience.md#budget) — balance ≥ the layer's min_salience, in
  descending balance, up to min(layer max_targets, its budget group's share, --max-targets).
  Subjects only once established, and never a name merged into another (docs/subjects.md).
- The self layer (`source = "self"`): the one topic self:zos, whatever its balance, once it
  exists or zos has run anything since it last reflected on itself.
- Synthesis: the global user and dyad topics whose server-scoped insights include some newer
  than the topic's last synthesis, most new insights first.
- Reconcile (`source = "conflicts"`): the topics with open conflicts, most first
  (reflect/reconcile.py).
Users without a server's privacy-gate role are never targets (nor dyads they are part of).
A target's balance is its balance as of the run's as-of time (what the run will spend from):
a run set in the past is not chosen by activity after it.
"""

from __future__ import annotations

import sqlite_utils

from zos_cli import topics
from zos_cli.config import Config
from zos_cli.errors import NotFound, UsageProblem
from zos_cli.privacy.gate import gated_anywhere, passes_gate
from zos_cli.reflect import material, self_work, subjects
from zos_cli.reflect.layers import Layer
from zos_cli.reflect.material import Target, target_from_key
from zos_cli.salience.spending import balance_as_of_sql
from zos_cli.timeutil import now_stored

_PERSON_KINDS = ("user", "dyad", "user_in_channel", "dyad_in_channel")


def gated_out(db: sqlite_utils.Database, config: Config, target: Target) -> bool:
    """A person topic whose person lacks the privacy-gate role: in its server, or for a global
    topic in any server they are known in (losing it there quarantined their global insights:
    a new one would undo that)."""
    if target.kind not in _PERSON_KINDS:
        return False
    if target.server_id is None:
        return any(gated_anywhere(db, config, u) for u in target.user_ids)
    return not all(passes_gate(db, config, target.server_id, u) for u in target.user_ids)


def _balance(db: sqlite_utils.Database, key: str, as_of: str | None) -> float | None:
    if as_of is None:
        row = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()
    else:
        row = db.execute(f"SELECT {balance_as_of_sql()} FROM topics WHERE key = ?",
                         [as_of, key]).fetchone()
    return float(row[0]) if row else None


def named_target(db: sqlite_utils.Database, config: Config, layer: Layer, key: str,
                 as_of: str | None = None) -> Target:
    target = target_from_key(key)
    if target.category not in layer.categories:
        raise UsageProblem(
            f"--topic {key} is a {target.category} topic; layer {layer.name} reflects on "
            f"{' and '.join(layer.categories)} topics"
        )
    if layer.spec.source == "server_insights" and not target.is_global:
        raise UsageProblem(
            f"--topic {key} is server-scoped; layer {layer.name} folds server insights into "
            "global topics (user:<id> or dyad:<a>:<b>)"
        )
    balance = _balance(db, key, as_of)
    if balance is None and layer.spec.source == "messages":
        raise NotFound(f"no topic {key} in the database: see `zos salience top` for topics")
    if gated_out(db, config, target):
        raise UsageProblem(
            f"{key}: a user without the privacy-gate role of server {target.server_id} is never "
            "analysed"
        )
    refused = subjects.refusal(db, key) if balance is not None else None
    if refused:
        raise UsageProblem(refused)
    return Target(**{**target.__dict__, "balance": balance or 0.0})


def synthesis_targets(db: sqlite_utils.Database, layer: Layer, limit: int,
                      as_of: str | None = None, exclude=None) -> list[Target]:
    """Global user/dyad topics with server insights newer than their last synthesis;
    `exclude(target)`: topics passed over before the limit counts them."""
    rows = db.execute(
        "SELECT topic_key, created_at, id FROM insights WHERE quarantined = 0 AND "
        "(topic_key GLOB ? OR topic_key GLOB ?)",
        [topics.server_kind_glob("user"), topics.server_kind_glob("dyad")],
    ).fetchall()
    counts: dict[str, int] = {}
    newest: dict[str, str] = {}
    marks: dict[str, material.Mark | None] = {}
    for topic_key, created_at, insight_id in rows:
        global_key = topics.global_key_of(topic_key)
        if global_key is None:
            continue
        if global_key not in marks:
            marks[global_key] = material.get_mark(db, layer.name, global_key)
        mark = marks[global_key]
        if mark is not None and (created_at, insight_id) <= (mark.at, mark.id):
            continue
        counts[global_key] = counts.get(global_key, 0) + 1
        newest[global_key] = max(newest.get(global_key, ""), created_at)
    wanted = {c for c in layer.categories}
    ranked = sorted(counts, key=lambda k: (-counts[k], newest[k], k))
    targets = []
    for key in ranked:
        if len(targets) >= limit:
            break
        target = target_from_key(key)
        if target.category in wanted and not (exclude and exclude(target)):
            balance = _balance(db, key, as_of) or 0.0
            targets.append(Target(**{**target.__dict__, "balance": balance}))
    return targets


def choose_targets(db: sqlite_utils.Database, config: Config, layer: Layer, *,
                   topic: str | None = None, max_targets: int | None = None,
                   as_of: str | None = None) -> list[Target]:
    """The run's targets; `as_of` (stored form): the run's clock, for their balances."""
    if max_targets is not None and max_targets < 0:
        raise UsageProblem("--max-targets must be zero or more")
    if topic is not None:  # ("" too: an unset $KEY in a cron line is not "every target")
        return [named_target(db, config, layer, topic, as_of)]
    if layer.spec.source == "self":
        # zos's own work is material whatever the topic's balance (no topic yet, even).
        if min(layer.spec.max_targets, max_targets if max_targets is not None else 1) < 1:
            return []
        key = topics.self_topic()
        balance = _balance(db, key, as_of)
        if balance is None and not self_work.has_work(db, layer.name):
            return []  # (a new database: nothing done, nothing said to zos)
        return [target_from_key(key, balance or 0.0)]
    if layer.spec.source == "server_insights":
        limit = layer.spec.max_targets if max_targets is None else min(max_targets,
                                                                      layer.spec.max_targets)
        return synthesis_targets(db, layer, limit, as_of,
                                 exclude=lambda target: gated_out(db, config, target))
    if layer.spec.source == "conflicts":  # the reconcile layer: topics with open conflicts
        from zos_cli.reflect.conflicts import conflict_targets

        limit = layer.spec.max_targets if max_targets is None else min(max_targets,
                                                                      layer.spec.max_targets)
        return [Target(**{**t.__dict__, "balance": _balance(db, t.key, as_of) or 0.0})
                for t in conflict_targets(db, layer, limit, as_of or now_stored(),
                                          exclude=lambda target: gated_out(db, config, target))]
    from zos_cli.salience import select_targets

    rows = select_targets(
        db, config, categories=layer.categories, layer_max_targets=layer.spec.max_targets,
        max_targets=max_targets, min_salience=layer.spec.min_salience,
        # (provisional subjects, and names merged into another, are never reflected on)
        exclude=lambda key: (gated_out(db, config, target_from_key(key))
                             or subjects.refusal(db, key) is not None), as_of=as_of,
    )
    return [Target(**{**target_from_key(row["topic_key"]).__dict__,
                      "balance": float(row["balance"])}) for row in rows]


def next_targets(db: sqlite_utils.Database, config: Config,
                 layers: list[Layer] | None = None) -> list[dict]:
    """What each layer's next run would take, chosen exactly as `zos reflect` chooses (gated
    users passed over, synthesis by new server insights): `zos salience budget`'s per-layer
    view. Rows {layer, categories, max_targets, targets}."""
    from zos_cli.reflect.layers import load_layers

    out = []
    for layer in layers if layers is not None else load_layers().values():
        out.append({"layer": layer.name, "categories": layer.categories,
                    "max_targets": layer.spec.max_targets,
                    "targets": [t.key for t in choose_targets(db, config, layer)]})
    return out
