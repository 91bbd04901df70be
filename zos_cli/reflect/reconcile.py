"""The reconcile layer (docs/reflection.md#reconciled-conflicts): topics whose standing insights
contradict each other, the prompt that shows each pair with its provenance, and what an answer
changes.

- **A conflict** is a pair: an insight whose `conflicts_with` names another. It is open while
  both insights stand (not quarantined, not expired at the run's as-of, not superseded — see
  `material.not_superseded_sql`) and they are not both `conflict_resolved`. It belongs to the
  topic of the insight that named it (the newer one when each names the other).
- **Targets** are the topics with open pairs, whatever their balance, most pairs first.
- **Context**: zos's self-concept block, then each pair (older insight first), both insights'
  provenance summarised — scope, what they were made from, layer and model, the as-of of the
  run that wrote them, stored and effective strength, confidence, reconfirmations — and their
  text quoted as data between BEGIN DATA / END DATA. Pairs past the token budget wait.
- **The answer** (`schema.ReconcileOut`) judges pairs. A resolution naming an id the context
  did not show, two ids not shown as a pair, a pair already judged, or an insight that an
  earlier resolution of the answer retired is dropped; the drops are written on the answering
  call's `error` (where `zos insights calls` shows why an answer was not used) and in the run
  summary.
- **The store** (one transaction, `store.write_reconciliation`): both insights become
  `conflict_resolved`; keep_first / keep_second retire the loser (`superseded_by` = the
  winner); merge writes a new `reconcile` insight that retires both, with every insight of the
  prompt as its provenance and their combined scope; both_true only resolves. No salience is
  spent: targets are chosen by their conflicts, not their balance.
- **Offline** (no model): `run.py` reports the targets and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlite_utils

from zos_cli import strength
from zos_cli.config import Config
from zos_cli.ids import new_id
from zos_cli.reflect import self_concept, store
from zos_cli.reflect.analyses import flat, quoted
from zos_cli.reflect.conflicts import Pair, open_pairs, standing_ids
from zos_cli.reflect.context import MAX_INSIGHT_CHARS, SELF_SHARE, Context, server_name, target_label
from zos_cli.reflect.layers import Layer
from zos_cli.reflect.llm import SYSTEM_PROMPT, CallRecord
from zos_cli.reflect.material import Target, target_from_key
from zos_cli.reflect.people import Namer, prompt_name
from zos_cli.reflect.schema import ReconcileOut, Resolution
from zos_cli.reflect.timefmt import estimate_tokens, relative
from zos_cli.store import db as db_module
from zos_cli.store.db import self_user_id
from zos_cli.timeutil import now_stored, parse_time

MAX_PAIRS = 10   # pairs per prompt (the answer holds at most 20 resolutions)


# ---------------------------------------------------------------- the context
_DETAIL_COLUMNS = ("id", "topic_key", "category", "content", "sources_scope_max", "strength",
                   "confidence", "subject", "participants", "context_channel", "context_thread",
                   "confirmation_count", "metadata", "made_as_of", "layer",
                   "effective_strength")


def _details(db: sqlite_utils.Database, config: Config, ids: list[str],
             as_of: str) -> dict[str, dict]:
    """The insights of the pairs, with what their provenance line needs."""
    if not ids:
        return {}
    strength.register(db.conn, config.insights)
    rows = db.execute(
        "SELECT i.id, i.topic_key, i.category, i.content, i.sources_scope_max, i.strength, "
        "i.confidence, i.subject, i.participants, i.context_channel, i.context_thread, "
        "i.confirmation_count, i.metadata, coalesce(run.as_of, CASE WHEN json_valid(i.metadata) "
        "THEN json_extract(i.metadata, '$.as_of') END, i.created_at), run.layer_name, "
        f"{strength.SQL_FUNCTION}(i.strength, i.category, {strength.CLOCK_FROM_SQL}, ?) "
        "FROM insights i LEFT JOIN layer_runs run ON run.id = i.layer_run_id "
        f"WHERE i.id IN ({', '.join('?' for _ in ids)})", [as_of, *ids]).fetchall()
    details = {}
    for row in rows:
        detail = dict(zip(_DETAIL_COLUMNS, row))
        try:
            detail["metadata"] = json.loads(detail["metadata"] or "{}")
        except ValueError:
            detail["metadata"] = {}
        detail.update(_sources_of(db, detail["id"]))
        details[detail["id"]] = detail
    return details


def _sources_of(db: sqlite_utils.Database, insight_id: str) -> dict:
    counts = dict(db.execute("SELECT source_type, count(*) FROM insight_sources "
                             "WHERE insight_id = ? GROUP BY source_type", [insight_id]))
    first, last = db.execute(
        "SELECT min(m.created_at), max(m.created_at) FROM insight_sources s JOIN messages m "
        "ON m.id = s.source_id WHERE s.insight_id = ? AND s.source_type = 'message'",
        [insight_id]).fetchone()
    return {"source_messages": counts.get("message", 0),
            "source_insights": counts.get("insight", 0), "messages_from": first,
            "messages_to": last}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def provenance(detail: dict, as_of: str) -> str:
    """One insight's provenance, summarised: who wrote it, when, from what, how strong."""
    meta = detail["metadata"]
    layer = detail["layer"] or meta.get("layer") or "unknown"
    by = ("the offline reflector" if meta.get("reflector") == "offline"
          else f"model {prompt_name(str(meta.get('model') or 'unknown'))}")
    made = detail["made_as_of"]
    when = relative(made, as_of) if made <= as_of else f"as of {made[:10]}"
    parts = []
    if detail["source_messages"]:
        span = ""
        if detail["messages_from"]:
            since = relative(detail["messages_from"], as_of)
            until = relative(detail["messages_to"], as_of)
            span = f" ({since})" if since == until else f" ({since} to {until})"
        parts.append(_plural(detail["source_messages"], "message") + span)
    if detail["source_insights"]:
        parts.append(_plural(detail["source_insights"], "insight"))
    sources = " and ".join(parts) or "no recorded sources"
    effective = detail["effective_strength"] or 0.0
    count = detail["confirmation_count"] or 0
    return (f"{layer} layer, {by} · written {when} · scope {detail['sources_scope_max']} · "
            f"from {sources} · strength {detail['strength']:.2f}, now {effective:.2f} · "
            f"confidence {detail['confidence']:.2f} · reconfirmed {_plural(count, 'time')}")


def _text(detail: dict) -> str:
    text = detail["content"]
    return text if len(text) <= MAX_INSIGHT_CHARS else text[:MAX_INSIGHT_CHARS] + " …[truncated]"


@dataclass
class ReconcileContext(Context):
    pairs: list[Pair] = field(default_factory=list)   # the pairs shown, in prompt order


def build_context(db: sqlite_utils.Database, config: Config, layer: Layer, target: Target,
                  as_of: str) -> ReconcileContext:
    """The target's open pairs within the layer's budget, rendered into its prompt; the pairs'
    insights are its provenance (`source_insights`: their scope is the prompt's)."""
    namer = Namer(db, config, self_user_id(db, config))
    label = target_label(namer, db, target)
    variables = {
        "target": {"key": target.key, "kind": target.kind, "category": target.category,
                   "label": label, "server": server_name(db, target.server_id),
                   "is_global": target.is_global, "balance": round(target.balance, 2)},
        "as_of": parse_time(as_of).strftime("%Y-%m-%d %H:%M UTC"),
    }
    concept = self_concept.for_prompt(db)
    preamble = self_concept.prompt_block(
        concept["content"],
        min(config.self_.prompt_tokens, layer.spec.context_tokens // SELF_SHARE))

    def render(lines: list[str], count: int) -> str:
        return preamble + layer.render(**variables, pairs="\n".join(lines), pair_count=count)

    budget = max(layer.spec.context_tokens - estimate_tokens(SYSTEM_PROMPT)
                 - estimate_tokens(render([], 0)), 0)
    pairs = [p for p in open_pairs(db, as_of) if p.topic_key == target.key][:MAX_PAIRS]
    details = _details(db, config, sorted({i for p in pairs for i in (p.first, p.second)}),
                       as_of)
    chosen: list[Pair] = []
    lines: list[str] = []
    used = 0
    for pair in pairs:
        if pair.first not in details or pair.second not in details:
            continue  # (deleted since the pairs were read)
        block = []
        for side, insight_id in (("first", pair.first), ("second", pair.second)):
            detail = details[insight_id]
            about = ""
            if detail["topic_key"] != target.key:  # (a subject's or a synthesis's source)
                about = f" · about {target_label(namer, db, target_from_key(detail['topic_key']))}"
            block.append(f"[pair {len(chosen) + 1} · {side} · id {insight_id}{about} · "
                         f"{provenance(detail, as_of)}] {quoted(_text(detail))}")
        cost = sum(estimate_tokens(line) + 1 for line in block)
        if chosen and used + cost > budget:
            break
        chosen.append(pair)
        lines += block
        used += cost
    shown = list(dict.fromkeys(i for p in chosen for i in (p.first, p.second)))
    return ReconcileContext(target, layer, as_of, prompt=render(lines, len(chosen)),
                            source_insights=[details[i] for i in shown], label=label,
                            self_version=concept["version"], pairs=chosen)


def offline_note(contexts: list[ReconcileContext]) -> str:
    pairs = sum(len(c.pairs) for c in contexts)
    return (f"no model configured: the reconcile layer needs one to judge conflicts; "
            f"{_plural(pairs, 'open conflict pair')} in {_plural(len(contexts), 'topic')} "
            "wait for it (nothing written)")


# ---------------------------------------------------------------- the answer
@dataclass
class Plan:
    kept: list[Resolution] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)   # {first, second, verdict, reason}


def plan_resolutions(context: ReconcileContext, answer: ReconcileOut,
                     standing: set[str]) -> Plan:
    """The resolutions that may be applied, in the answer's order, and those dropped (why)."""
    shown = {frozenset((p.first, p.second)) for p in context.pairs}
    ids = {i for pair in shown for i in pair}
    judged: set[frozenset] = set()
    retired: set[str] = set()
    result = Plan()
    for resolution in answer.resolutions:
        pair = frozenset((resolution.first, resolution.second))
        unknown = [i for i in (resolution.first, resolution.second) if i not in ids]
        if unknown:
            reason = f"{', '.join(flat(i, 64) for i in unknown)} not in the context"
        elif len(pair) == 1:
            reason = "names one insight twice"
        elif pair not in shown:
            reason = "the two insights were not shown as a conflicting pair"
        elif pair in judged:
            reason = "the pair was already judged earlier in the answer"
        elif pair & retired:
            reason = "an earlier resolution of the answer retired one of the two"
        elif not pair <= standing:
            reason = "one of the two no longer stands (quarantined or superseded since)"
        else:
            judged.add(pair)
            result.kept.append(resolution)
            if resolution.verdict == "keep_first":
                retired.add(resolution.second)
            elif resolution.verdict == "keep_second":
                retired.add(resolution.first)
            elif resolution.verdict == "merge":
                retired |= pair
            continue
        result.dropped.append({"first": flat(resolution.first, 64),
                               "second": flat(resolution.second, 64),
                               "verdict": resolution.verdict, "reason": reason})
    return result


@dataclass
class Reconciled(store.StoredTarget):
    resolutions: list[dict] = field(default_factory=list)  # {target, first, second, verdict, merged}
    dropped: list[dict] = field(default_factory=list)      # {target, first, second, verdict, reason}


def _ids(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _merged_row(context: ReconcileContext, resolution: Resolution, run_id: str,
                created_at: str, *, reflector: str, model_label: str, cached: bool) -> dict:
    """The merged insight: on the target's topic, scope and provenance from the whole prompt
    (what the model read), as strong as the stronger of the two now (effective strength at
    the run's as-of) times its strength_adjustment. Its own conflicts_with, supersedes and
    confirms are not used: what it replaces is decided here."""
    merged = resolution.merged
    details = {d["id"]: d for d in context.source_insights}
    a, b = details[resolution.first], details[resolution.second]
    base = max(a["effective_strength"] or 0.0, b["effective_strength"] or 0.0)
    return {
        "id": new_id(), "topic_key": context.target.key,
        "category": context.layer.spec.insight_category, "content": merged.content,
        "sources_scope_max": context.scope(), "layer_run_id": run_id, "supersedes": None,
        "quarantined": 0, "salience_spent": 0.0,
        "strength_adjustment": merged.strength_adjustment,
        "strength": base * merged.strength_adjustment, "confidence": merged.confidence,
        "importance": merged.importance, "novelty": merged.novelty,
        **merged.valence.columns(),
        "context_channel": a["context_channel"] if a["context_channel"] == b["context_channel"]
        else None,
        "context_thread": a["context_thread"] if a["context_thread"] == b["context_thread"]
        else None,
        "subject": merged.subject,
        "participants": json.dumps(sorted(set(_ids(a["participants"]))
                                          | set(_ids(b["participants"])))),
        "conflicts_with": "[]", "conflict_resolved": 0, "synthesis_source_ids": None,
        "open_questions": json.dumps(merged.open_questions), "expires_at": None,
        "created_at": created_at,
        "metadata": {"reflector": reflector, "model": model_label,
                     "layer": context.layer.name, "layer_hash": context.layer.hash,
                     "cached": cached, "as_of": context.as_of, "confirms": [],
                     "reconciles": [resolution.first, resolution.second],
                     "verdict": "merge"},
    }


def store_answer(db: sqlite_utils.Database, *, run_id: str, context: ReconcileContext,
                 answer: ReconcileOut, calls: list[CallRecord], reflector: str,
                 model_label: str, cache_entry: dict | None = None) -> Reconciled:
    """Apply one target's answer: all or nothing, in one transaction (the insights' standing is
    read again inside it, so nothing retired or quarantined since the prompt is touched)."""
    key = context.target.key
    result = Reconciled(key, tokens=sum(c.tokens for c in calls))
    created_at = now_stored()
    cached = cache_entry is not None and bool(cache_entry.get("hit"))
    with db_module.write_transaction(db):
        standing = standing_ids(db, [d["id"] for d in context.source_insights], context.as_of)
        plan = plan_resolutions(context, answer, standing)
        rows, resolved, retired = [], [], []
        for resolution in plan.kept:
            first, second, verdict = resolution.first, resolution.second, resolution.verdict
            resolved += [first, second]
            merged_id = None
            if verdict == "keep_first":
                retired.append((second, first))
            elif verdict == "keep_second":
                retired.append((first, second))
            elif verdict == "merge":
                row = _merged_row(context, resolution, run_id, created_at, reflector=reflector,
                                  model_label=model_label, cached=cached)
                rows.append(row)
                merged_id = row["id"]
                retired += [(first, merged_id), (second, merged_id)]
            result.resolutions.append({"target": key, "first": first, "second": second,
                                       "verdict": verdict, "merged": merged_id})
        if plan.dropped and calls:
            # (The call that answered keeps its status: its answer was used, minus these.)
            calls[-1].error = (f"kept {len(plan.kept)} of {len(answer.resolutions)} "
                               "resolution(s); dropped: " + "; ".join(
                                   f"{d['first']} / {d['second']} ({d['verdict']}): "
                                   f"{d['reason']}" for d in plan.dropped))[:2000]
        store.write_reconciliation(db, run_id=run_id, context=context, merged_rows=rows,
                                   resolved=sorted(set(resolved)), retired=retired,
                                   calls=calls, model_label=model_label,
                                   cache_entry=cache_entry)
    result.insight_ids = [row["id"] for row in rows]
    result.dropped = [{"target": key, **d} for d in plan.dropped]
    return result
