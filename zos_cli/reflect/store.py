"""Writing what a reflection produced: insights with provenance and scope, the model calls
behind them, the salience spent, the high-water mark — for one target, in one transaction.

What is written is decided here, never by the model: the topic is the target's, the scope is
computed from the provenance, and the answer can only fill the columns of `InsightOut`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.config import Config
from zos_cli.ids import new_id
from zos_cli.reflect.context import Context
from zos_cli.reflect import self_concept, subjects
from zos_cli.reflect.llm import CallRecord
from zos_cli.reflect.schema import InsightOut, ReflectionOut
from zos_cli.salience.batch import ensure_topic, mark_provisional
from zos_cli.timeutil import now_stored

INSIGHT_COLUMNS = (
    "id", "topic_key", "category", "content", "sources_scope_max", "layer_run_id", "supersedes",
    "quarantined", "salience_spent", "strength_adjustment", "strength", "confidence",
    "importance", "novelty", "valence_joy", "valence_concern", "valence_curiosity",
    "valence_warmth", "valence_tension", "valence_awe", "valence_grief", "valence_longing",
    "valence_peace", "valence_gratitude", "context_channel", "context_thread", "subject",
    "participants", "conflicts_with", "conflict_resolved", "synthesis_source_ids",
    "open_questions", "expires_at", "created_at", "metadata", "subject_terms",
)
CALL_COLUMNS = (
    "id", "layer_run_id", "topic_key", "model_profile", "model_provider", "model_name",
    "prompt", "response", "tokens_input", "tokens_output", "estimated_cost_usd", "latency_ms",
    "status", "error", "created_at",
)


@dataclass
class StoredTarget:
    topic_key: str
    insight_ids: list[str] = field(default_factory=list)
    tokens: int = 0
    spent: float = 0.0
    subjects: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # standing insights reconfirmed
    self_concept: dict | None = None   # the self layer's revision: {version, state, reason}


def _insert(db: sqlite_utils.Database, table: str, columns: tuple[str, ...],
            rows: list[dict]) -> None:
    if not rows:
        return
    marks = ", ".join("?" for _ in columns)
    db.conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
        [[row.get(c) for c in columns] for row in rows],
    )


def call_rows(run_id: str | None, calls: list[CallRecord]) -> list[dict]:
    return [{"id": new_id(), "layer_run_id": run_id, **vars(c)} for c in calls]


def context_sources(context: Context) -> list[tuple[str, str]]:
    """What a target's prompt carries: (source_type, id) of its messages and insights."""
    return ([("message", m["id"]) for m in context.messages]
            + [("insight", i["id"]) for i in context.provenance_insights])


def _insert_calls(db: sqlite_utils.Database, run_id: str | None, calls: list[CallRecord],
                  context: Context) -> None:
    """The calls' llm_calls rows, and for each what its prompt carried (llm_call_sources:
    how forgetting finds every call that read a message, whatever became of it)."""
    rows = call_rows(run_id, calls)
    _insert(db, "llm_calls", CALL_COLUMNS, rows)
    sources = sorted(set(context_sources(context)))
    db.conn.executemany(
        "INSERT INTO llm_call_sources (call_id, source_type, source_id) VALUES (?, ?, ?)",
        [(row["id"], kind, source) for row in rows for kind, source in sources])


def record_calls(db: sqlite_utils.Database, run_id: str, calls: list[CallRecord],
                 context: Context) -> None:
    """The audit of a target that produced nothing: its calls, in their own transaction."""
    if not calls:
        return
    with db_module.write_transaction(db):
        _insert_calls(db, run_id, calls, context)


ANALYSIS_SOURCE_TYPES = ("media", "link")


def record_analysis_calls(db: sqlite_utils.Database, calls: list[CallRecord],
                          sources: list[tuple[str, str]]) -> list[str]:
    """The `llm_calls` rows of one analysis (an image description or a page summary: no layer
    run) and, for each, the items it served in `llm_call_sources` — (`media`,
    media_analysis.id) or (`link`, link_analysis.id) — so forgetting those items finds the
    calls. Runs inside the caller's write transaction, with the analysis rows it completes.
    A call without a topic key is listed under its first item (`media:<id>`, `link:<id>`):
    what `zos insights calls` shows. Returns the call ids."""
    if not calls:
        return []
    if not db.conn.in_transaction:
        raise RuntimeError("record_analysis_calls runs inside the caller's write transaction")
    sources = sorted(set(sources))
    wrong = sorted({kind for kind, _ in sources} - set(ANALYSIS_SOURCE_TYPES))
    if wrong or not sources:
        raise ValueError(f"analysis calls serve media or link items, not {wrong or 'nothing'}")
    label = "{}:{}".format(*sources[0])
    rows = [{**row, "topic_key": row["topic_key"] or label} for row in call_rows(None, calls)]
    _insert(db, "llm_calls", CALL_COLUMNS, rows)
    db.conn.executemany(
        "INSERT INTO llm_call_sources (call_id, source_type, source_id) VALUES (?, ?, ?)",
        [(row["id"], kind, source) for row in rows for kind, source in sources])
    return [row["id"] for row in rows]


def _context_place(db: sqlite_utils.Database, context: Context) -> tuple[str | None, str | None]:
    """(context_channel, context_thread) when every message read came from one place."""
    channels = {m["channel_id"] for m in context.messages}
    if len(channels) != 1:
        if context.target.channel_id:
            return context.target.channel_id, None
        return None, None
    (channel,) = channels
    row = db.execute("SELECT type, parent_id FROM channels WHERE id = ?", [channel]).fetchone()
    if row and row[0] in ("public_thread", "private_thread", "news_thread"):
        return row[1], channel
    return channel, None


def _previous_offline(db: sqlite_utils.Database, topic_key: str, category: str) -> str | None:
    row = db.execute(
        "SELECT id FROM insights WHERE topic_key = ? AND category = ? "
        "AND json_extract(metadata, '$.reflector') = 'offline' "
        "AND NOT EXISTS (SELECT 1 FROM insights n WHERE n.supersedes = insights.id) "
        "ORDER BY created_at DESC, id DESC LIMIT 1",
        [topic_key, category],
    ).fetchone()
    return row[0] if row else None


def _supersedes(insight: InsightOut, subject: str | None, context: Context) -> str | None:
    """The model may name a standing insight of this topic that it replaces (kept only if it
    was shown); else a newer insight on the same subject replaces the newest standing one on
    that subject. Insights of other topics (synthesis sources) are never superseded here."""
    own = [p for p in context.prior if p["topic_key"] == context.target.key]
    if insight.supersedes and insight.supersedes in {p["id"] for p in own}:
        return insight.supersedes
    if subject:
        same = [p for p in own if p["subject"] == subject]
        if same:
            return max(same, key=lambda p: (p["created_at"], p["id"]))["id"]
    return None


def _confirm(db: sqlite_utils.Database, answer: ReflectionOut, shown: set[str],
             as_of: str) -> list[str]:
    """Reconfirm the shown insights the answer says it restates: once per target however many
    of its new insights name one (one reflection is one confirmation). Ids the context did not
    show are dropped: the model cannot reach an insight it was not given. `last_confirmed_at`
    never moves back, so a run set at an earlier as-of does not make an insight look older."""
    confirmed = sorted({i for insight in answer.insights for i in insight.confirms if i in shown})
    db.conn.executemany(
        "UPDATE insights SET confirmation_count = confirmation_count + 1, "
        "last_confirmed_at = CASE WHEN last_confirmed_at IS NULL OR last_confirmed_at < ? "
        "THEN ? ELSE last_confirmed_at END WHERE id = ?",
        [(as_of, as_of, insight_id) for insight_id in confirmed])
    return confirmed


def store_target(
    db: sqlite_utils.Database,
    config: Config,
    *,
    run_id: str,
    context: Context,
    answer: ReflectionOut,
    calls: list[CallRecord],
    tokens: int,
    reflector: str,
    model_label: str,
    cache_entry: dict | None = None,
) -> StoredTarget:
    """Insights, provenance, calls, salience spend, subject earns, the reconfirmation of the
    standing insights the answer restates, and the mark: all or nothing."""
    from zos_cli.events import SubjectNamedEvent
    from zos_cli.salience import SalienceEngine, after_reflection

    target = context.target
    layer = context.layer
    created_at = now_stored()
    scope = context.scope()
    shown = {p["id"] for p in context.provenance_insights}
    message_ids = [m["id"] for m in context.messages]
    channel, thread = _context_place(db, context)
    participants = sorted({m["author_id"] for m in context.messages} - set(context.aliased))
    stored = StoredTarget(target.key, tokens=tokens)
    with db_module.write_transaction(db):
        ensure_topic(db, target.key, created_at)
        # The version the prompt carried; a prompt with the shipped default (none stored yet)
        # stores it now as version 1, so the insight can name it.
        concept = self_concept.stored_default(db)
        self_version = context.self_version
        if self_version is None and concept["content"] == self_concept.shipped_text():
            self_version = concept["version"]
        spend = after_reflection(db, config, target.key, tokens, context.as_of,
                                 layer_run_id=run_id)
        stored.spent = float(spend.get("spent", 0.0)) if isinstance(spend, dict) else 0.0
        share = stored.spent / len(answer.insights)
        previous_offline = (_previous_offline(db, target.key, layer.spec.insight_category)
                            if reflector == "offline" else None)
        # A name merged or renamed into another subject arrives at that subject.
        named = {i.subject: (subjects.resolve(db, target.server_id, i.subject)
                             if target.server_id is not None else i.subject)
                 for i in answer.insights if i.subject}
        rows, sources = [], []
        for insight in answer.insights:
            insight_id = new_id()
            stored.insight_ids.append(insight_id)
            subject = named.get(insight.subject)
            supersedes = previous_offline or _supersedes(insight, subject, context)
            rows.append({
                "id": insight_id,
                "topic_key": target.key,
                "category": layer.spec.insight_category,
                "content": insight.content,
                "sources_scope_max": scope,
                "layer_run_id": run_id,
                "supersedes": supersedes,
                "quarantined": 0,
                "salience_spent": share,
                "strength_adjustment": insight.strength_adjustment,
                "strength": share * insight.strength_adjustment,
                "confidence": insight.confidence,
                "importance": insight.importance,
                "novelty": insight.novelty,
                **insight.valence.columns(),
                "context_channel": channel,
                "context_thread": thread,
                "subject": subject,
                "subject_terms": (json.dumps(insight.subject_terms, ensure_ascii=False)
                                  if insight.subject_terms else None),
                "participants": json.dumps(participants),
                "conflicts_with": json.dumps([i for i in insight.conflicts_with if i in shown]),
                "conflict_resolved": 0,
                "synthesis_source_ids": (json.dumps([i["id"] for i in context.source_insights])
                                         if context.source_insights else None),
                "open_questions": json.dumps(insight.open_questions),
                "expires_at": None,
                "created_at": created_at,
                "metadata": json.dumps({
                    "reflector": reflector,
                    "model": model_label,
                    "layer": layer.name,
                    "layer_hash": layer.hash,
                    "cached": cache_entry is not None and cache_entry.get("hit", False),
                    "as_of": context.as_of,
                    "confirms": sorted({i for i in insight.confirms if i in shown}),
                    "self_concept_version": self_version,
                }),
            })
            sources += [(insight_id, "message", m) for m in message_ids]
            sources += [(insight_id, "insight", i) for i in shown]
        _insert(db, "insights", INSIGHT_COLUMNS, rows)
        stored.confirmed = _confirm(db, answer, shown, context.as_of)
        db.conn.executemany(
            "INSERT INTO insight_sources (insight_id, source_type, source_id) VALUES (?, ?, ?)",
            sources,
        )
        _insert_calls(db, run_id, calls, context)
        names = sorted(set(named.values()))
        if names and target.server_id is not None:
            new_keys = _missing_subject_topics(db, target.server_id, names)
            engine = SalienceEngine(db, config)
            for name in names:
                engine.apply(SubjectNamedEvent(target.server_id, name, context.as_of))
            engine.flush(f"subjects named by layer run {run_id}")
            mark_provisional(db, new_keys)
            subjects.promote_named(db, config, target.server_id, names)
            stored.subjects = names
        revision = getattr(answer, "self_concept", None)
        if revision:  # (only the self layer's answer has one; offline never proposes)
            stored.self_concept = self_concept.propose(db, config, revision, layer_run_id=run_id)
        if context.new_mark is not None:
            db.execute(
                "INSERT INTO reflection_marks (layer_name, topic_key, last_item_at, last_item_id, "
                "layer_run_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (layer_name, topic_key) DO UPDATE SET "
                "last_item_at = excluded.last_item_at, last_item_id = excluded.last_item_id, "
                "layer_run_id = excluded.layer_run_id, updated_at = excluded.updated_at",
                [layer.name, target.key, context.new_mark.at, context.new_mark.id, run_id,
                 created_at],
            )
        if cache_entry is not None and not cache_entry.get("hit"):
            db.execute(
                "INSERT OR REPLACE INTO llm_cache (cache_key, model_name, response, tokens_input, "
                "tokens_output, topic_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [cache_entry["key"], model_label, cache_entry["response"],
                 cache_entry["tokens_input"], cache_entry["tokens_output"], target.key,
                 created_at],
            )
    return stored


def move_subject_insights(db: sqlite_utils.Database, server_id: str, from_name: str,
                          into_name: str, merge_id: str) -> int:
    """A subject merge (reflect/subject_merge.py; the caller holds the write transaction):
    the insights about FROM's topic move to INTO's, and the server's insights that name FROM
    name INTO. Each keeps in its metadata where it was first filed (`merged_from`: topic key,
    subject and merge) and the name it first gave (`subject_was`). Returns the insights
    moved to INTO's topic."""
    from zos_cli import topics

    from_key, into_key = topics.subject(server_id, from_name), topics.subject(server_id, into_name)
    moved = db.execute(
        "UPDATE insights SET topic_key = ?, metadata = CASE WHEN json_extract(metadata, "
        "'$.merged_from') IS NULL THEN json_set(coalesce(metadata, '{}'), '$.merged_from', "
        "json_object('topic_key', topic_key, 'subject', subject, 'merge', ?)) "
        "ELSE metadata END WHERE topic_key = ?", [into_key, merge_id, from_key]).rowcount
    db.execute(
        "UPDATE insights SET subject = ?, metadata = CASE WHEN json_extract(metadata, "
        "'$.subject_was') IS NULL THEN json_set(coalesce(metadata, '{}'), '$.subject_was', "
        "subject) ELSE metadata END WHERE subject = ? AND topic_key GLOB ?",
        [into_name, from_name, topics.server_keys_glob(server_id)])
    return moved


def _missing_subject_topics(db, server_id: str, names: list[str]) -> list[str]:
    from zos_cli import topics

    keys = [topics.subject(server_id, n) for n in names]
    existing = {r[0] for r in db.execute(
        f"SELECT key FROM topics WHERE key IN ({', '.join('?' for _ in keys)})", keys)}
    return [k for k in keys if k not in existing]


# ---------------------------------------------------------------- layer runs
def start_run(db: sqlite_utils.Database, *, layer, as_of: str, model_label: str,
              targets: list[str], status: str = "running", tokens_input: int = 0,
              cost_usd: float = 0.0) -> str:
    run_id = new_id()
    started = now_stored()
    with db_module.write_transaction(db):
        db.execute(
            "INSERT INTO layer_runs (id, layer_name, layer_hash, status, started_at, completed_at, "
            "as_of, model, targets, tokens_input, cost_usd) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [run_id, layer.name, layer.hash, status, started,
             started if status == "dry_run" else None, as_of, model_label, json.dumps(targets),
             tokens_input, cost_usd],
        )
    return run_id


def finish_run(db: sqlite_utils.Database, config: Config, run_id: str, *, status: str,
               as_of: str, targets: list[str], targets_ok: int, targets_failed: int,
               insights_created: int, tokens_input: int, tokens_output: int, cost_usd: float,
               errors: list[dict]) -> None:
    """Close the run; a completed run earns self_run for self:zos (in the same transaction)."""
    from zos_cli.events import LayerRunCompletedEvent
    from zos_cli.salience import SalienceEngine

    with db_module.write_transaction(db):
        db.execute(
            "UPDATE layer_runs SET status = ?, completed_at = ?, targets = ?, targets_ok = ?, "
            "targets_failed = ?, insights_created = ?, tokens_input = ?, tokens_output = ?, "
            "cost_usd = ?, error = ? WHERE id = ?",
            [status, now_stored(), json.dumps(targets), targets_ok, targets_failed,
             insights_created, tokens_input, tokens_output, cost_usd,
             json.dumps(errors) if errors else None, run_id],
        )
        if status == "completed":
            engine = SalienceEngine(db, config)
            engine.apply(LayerRunCompletedEvent(created_at=as_of, layer_run_id=run_id))
            engine.flush(f"layer run {run_id} completed")


# ---------------------------------------------------------------- reconciled conflicts
def write_reconciliation(db: sqlite_utils.Database, *, run_id: str, context: Context,
                         merged_rows: list[dict], resolved: list[str],
                         retired: list[tuple[str, str]], calls: list[CallRecord],
                         model_label: str, cache_entry: dict | None = None) -> None:
    """What the reconcile layer decided for one target (reflect/reconcile.py plans it), inside
    the caller's write transaction: the merged insights (`metadata` still a dict), each with
    every insight its prompt carried as provenance and the scope of them all; the conflicts
    marked resolved; each retired insight's `superseded_by` (loser → winner or merged); the
    calls and their sources; the answer cache. No salience is spent and no mark is kept: the
    resolved flags are what the next run starts from."""
    if not db.conn.in_transaction:
        raise RuntimeError("write_reconciliation runs inside the caller's write transaction")
    concept = self_concept.stored_default(db)
    self_version = context.self_version
    if self_version is None and concept["content"] == self_concept.shipped_text():
        self_version = concept["version"]
    shown = sorted({i["id"] for i in context.provenance_insights})
    rows = [{**row, "metadata": json.dumps({**row["metadata"],
                                            "self_concept_version": self_version})}
            for row in merged_rows]
    if rows:
        ensure_topic(db, context.target.key, rows[0]["created_at"])
    _insert(db, "insights", INSIGHT_COLUMNS, rows)
    db.conn.executemany(
        "INSERT INTO insight_sources (insight_id, source_type, source_id) VALUES (?, ?, ?)",
        [(row["id"], "insight", source) for row in rows for source in shown])
    db.conn.executemany("UPDATE insights SET conflict_resolved = 1 WHERE id = ?",
                        [(insight_id,) for insight_id in resolved])
    db.conn.executemany("UPDATE insights SET superseded_by = ? WHERE id = ?",
                        [(by, loser) for loser, by in retired])
    _insert_calls(db, run_id, calls, context)
    if cache_entry is not None and not cache_entry.get("hit"):
        db.execute(
            "INSERT OR REPLACE INTO llm_cache (cache_key, model_name, response, tokens_input, "
            "tokens_output, topic_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [cache_entry["key"], model_label, cache_entry["response"],
             cache_entry["tokens_input"], cache_entry["tokens_output"], context.target.key,
             now_stored()],
        )
