"""Reading and correcting what zos understood: insights, their provenance, the layer runs and
model calls behind them (`zos insights …`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import sqlite_utils

from typing import TYPE_CHECKING

from zos_cli import strength
from zos_cli.store import db as db_module
from zos_cli.store.audit import record_event, record_tombstone
from zos_cli.errors import NotFound, UsageProblem
from zos_cli.timeutil import normalize, now_stored

if TYPE_CHECKING:  # (a listing with no zos.toml never imports pydantic: tests/test_startup.py)
    from zos_cli.config import Insights

SCOPES = ("public", "dm", "derived")
VALENCES = ("joy", "concern", "curiosity", "warmth", "tension", "awe", "grief", "longing",
            "peace", "gratitude")
LIST_KEYS = ("id", "topic_key", "category", "content", "sources_scope_max", "created_at",
             "strength", "confidence", "importance", "novelty", "valence", "quarantined",
             "layer_run_id")
_SELECT = (
    "i.id, i.topic_key, i.category, i.content, i.sources_scope_max, i.created_at, i.strength, "
    "i.confidence, i.importance, i.novelty, i.quarantined, i.layer_run_id, "
    + ", ".join(f"i.valence_{v}" for v in VALENCES)
)


# `insights list` adds these to LIST_KEYS (docs/reflection.md#reconfirmation-and-fading):
# the effective strength at the list's as-of, and how often and when last it was reconfirmed.
FADING_KEYS = ("effective_strength", "confirmation_count", "last_confirmed_at")
SORTS = {
    "effective": "effective_strength DESC, i.created_at DESC, i.id DESC",
    "strength": "i.strength DESC, i.created_at DESC, i.id DESC",
    "created": "i.created_at DESC, i.id DESC",
}


def _fading_select(db: sqlite_utils.Database, settings: Insights | None) -> str:
    """The FADING_KEYS columns (one `?`: the as-of), with the SQL function defined."""
    strength.register(db.conn, settings)
    return (f"{strength.SQL_FUNCTION}(i.strength, i.category, {strength.CLOCK_FROM_SQL}, ?) "
            "AS effective_strength, i.confirmation_count, i.last_confirmed_at")


def _row(values: tuple) -> dict:
    base = dict(zip(("id", "topic_key", "category", "content", "sources_scope_max",
                     "created_at", "strength", "confidence", "importance", "novelty",
                     "quarantined", "layer_run_id"), values[:12]))
    valence = {v: x for v, x in zip(VALENCES, values[12:]) if x is not None}
    base["quarantined"] = bool(base["quarantined"])
    return {key: (valence if key == "valence" else base[key]) for key in LIST_KEYS}


def _filters(*, topic: str | None = None, category: str | None = None,
             scope: str | None = None, since: str | None = None,
             include_quarantined: bool = False, topic_glob: str | None = None,
             current: bool = False) -> tuple[list[str], list]:
    where, params = [], []
    if topic:
        where.append("i.topic_key = ?")
        params.append(topic)
    if topic_glob:
        where.append("i.topic_key GLOB ?")
        params.append(topic_glob)
    if category:
        where.append("i.category = ?")
        params.append(category)
    if scope:
        if scope not in SCOPES:
            raise UsageProblem(f"--scope {scope!r}: choose public, dm or derived")
        where.append("i.sources_scope_max = ?")
        params.append(scope)
    if since:
        text = since.strip()
        if len(text) == 10:  # a date alone means its midnight, UTC
            text += "T00:00:00+00:00"
        try:
            params.append(normalize(text))
        except ValueError:
            raise UsageProblem(
                f"--since {since!r} is not a time: give ISO-8601 (2024-03-01 or "
                "2024-03-01T12:00:00+00:00)")
        where.append("i.created_at >= ?")
    if not include_quarantined:
        where.append("i.quarantined = 0")
    if current:
        # Superseded only by a successor of the scope asked for that is not quarantined: a
        # quarantined successor, or a dm one in a public listing, does not hide what it
        # replaced.
        successor = "n.supersedes = i.id AND n.quarantined = 0"
        if scope:
            successor += " AND n.sources_scope_max = ?"
            params.append(scope)
        where.append(f"NOT EXISTS (SELECT 1 FROM insights n WHERE {successor})")
    return where, params


def list_insights(db: sqlite_utils.Database, *, topic: str | None = None,
                  category: str | None = None, scope: str | None = None,
                  since: str | None = None, include_quarantined: bool = False,
                  limit: int | None = 50, sort: str = "effective", as_of: str | None = None,
                  settings: Insights | None = None, topic_glob: str | None = None,
                  current: bool = False) -> Iterator[dict]:
    """Strongest first at `as_of` by default (`sort`: effective, strength or created — newest
    first); `as_of` defaults to the wall clock (the command passes the data's clock), the
    half-lives are `settings`' (the defaults when None). `scope` keeps exactly that scope
    (public never shows dm or derived). `topic_glob`: topics matching an SQL GLOB;
    `current`: leave out insights superseded by one of that scope, not quarantined."""
    if sort not in SORTS:
        raise UsageProblem(f"--sort {sort!r}: choose effective, strength or created")
    where, params = _filters(topic=topic, category=category, scope=scope, since=since,
                             include_quarantined=include_quarantined, topic_glob=topic_glob,
                             current=current)
    sql = f"SELECT {_SELECT}, {_fading_select(db, settings)} FROM insights i"
    params = [as_of or now_stored(), *params]
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {SORTS[sort]}"
    if limit is not None:
        if limit < 0:
            raise UsageProblem("--limit must be zero or more")
        sql += f" LIMIT {int(limit)}"
    for values in db.execute(sql, params):
        row = _row(values[:-3])
        row.update(zip(FADING_KEYS, values[-3:]))
        yield row


def _json(text: str | None, default):
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def get_insight(db: sqlite_utils.Database, insight_id: str, *, as_of: str | None = None,
                settings: Insights | None = None) -> dict:
    """One insight with its provenance, run, calls and supersedes chain, and (as in `list`)
    its effective strength at `as_of` (the wall clock when None) and its reconfirmations."""
    values = db.execute(f"SELECT {_SELECT}, {_fading_select(db, settings)} FROM insights i "
                        "WHERE i.id = ?", [as_of or now_stored(), insight_id]).fetchone()
    if values is None:
        raise NotFound(f"no insight {insight_id}: see `zos insights list` for ids")
    doc = _row(values[:-3])
    doc.update(zip(FADING_KEYS, values[-3:]))
    extra = db.execute(
        "SELECT supersedes, subject, participants, conflicts_with, open_questions, "
        "context_channel, context_thread, salience_spent, strength_adjustment, "
        "synthesis_source_ids, expires_at, metadata FROM insights WHERE id = ?", [insight_id]
    ).fetchone()
    (supersedes, subject, participants, conflicts, questions, channel, thread, spent, adjust,
     synthesis, expires, metadata) = extra
    doc.update({
        "subject": subject, "participants": _json(participants, []),
        "conflicts_with": _json(conflicts, []), "open_questions": _json(questions, []),
        "context_channel": channel, "context_thread": thread, "salience_spent": spent,
        "strength_adjustment": adjust, "synthesis_source_ids": _json(synthesis, None),
        "expires_at": expires, "metadata": _json(metadata, {}),
        "supersedes": supersedes,
        "supersedes_chain": _chain(db, supersedes),
        # (A newer insight naming it, or the one a reconciliation retired it for.)
        "superseded_by": [r[0] for r in db.execute(
            "SELECT id FROM insights WHERE supersedes = ? OR id = (SELECT superseded_by FROM "
            "insights WHERE id = ?) ORDER BY created_at", [insight_id, insight_id])],
        "sources": _sources(db, insight_id),
        "layer_run": _run_brief(db, doc["layer_run_id"]),
        "calls": _calls_for(db, doc["layer_run_id"], doc["topic_key"]),
    })
    return doc


def _chain(db, first: str | None) -> list[dict]:
    chain, seen, current = [], set(), first
    while current and current not in seen:
        seen.add(current)
        row = db.execute("SELECT id, created_at, content, supersedes FROM insights WHERE id = ?",
                         [current]).fetchone()
        if row is None:
            chain.append({"id": current, "deleted": True})
            break
        chain.append({"id": row[0], "created_at": row[1], "content": row[2]})
        current = row[3]
    return chain


def _sources(db, insight_id: str) -> dict:
    messages = [
        dict(zip(("id", "channel_id", "author_id", "created_at", "visibility_scope", "content"), r))
        for r in db.execute(
            "SELECT s.source_id, m.channel_id, m.author_id, m.created_at, m.visibility_scope, "
            "substr(m.content, 1, 200) FROM insight_sources s "
            "LEFT JOIN messages m ON m.id = s.source_id "
            "WHERE s.insight_id = ? AND s.source_type = 'message' ORDER BY m.created_at",
            [insight_id])
    ]
    insights = [
        dict(zip(("id", "topic_key", "sources_scope_max", "created_at"), r))
        for r in db.execute(
            "SELECT s.source_id, i.topic_key, i.sources_scope_max, i.created_at "
            "FROM insight_sources s LEFT JOIN insights i ON i.id = s.source_id "
            "WHERE s.insight_id = ? AND s.source_type = 'insight' ORDER BY i.created_at",
            [insight_id])
    ]
    return {"messages": messages, "insights": insights}


def _run_brief(db, run_id: str | None) -> dict | None:
    if not run_id:
        return None
    row = db.execute("SELECT id, layer_name, layer_hash, status, started_at, model, as_of "
                     "FROM layer_runs WHERE id = ?", [run_id]).fetchone()
    return dict(zip(("id", "layer_name", "layer_hash", "status", "started_at", "model",
                     "as_of"), row)) if row else None


CALL_KEYS = ("id", "layer_run_id", "topic_key", "model_profile", "model_provider", "model_name",
             "status", "tokens_input", "tokens_output", "estimated_cost_usd", "latency_ms",
             "error", "created_at")


def _calls_for(db, run_id: str | None, topic_key: str) -> list[dict]:
    if not run_id:
        return []
    rows = db.execute(f"SELECT {', '.join(CALL_KEYS)} FROM llm_calls WHERE layer_run_id = ? "
                      "AND topic_key = ? ORDER BY created_at, id", [run_id, topic_key])
    return [dict(zip(CALL_KEYS, r)) for r in rows]


def _fts_query(text: str) -> str:
    """Each word as a quoted FTS5 string: operators and punctuation in the operator's text
    are searched for, not parsed."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words)


def search_insights(db: sqlite_utils.Database, text: str, *, scope: str | None = None,
                    include_quarantined: bool = False, limit: int = 20) -> list[dict]:
    """Full-text search, best match first (FTS5 bm25), with a highlighted snippet."""
    if not text.strip():
        raise UsageProblem("TEXT is empty: give words to search for")
    where, params = _filters(scope=scope, include_quarantined=include_quarantined)
    sql = (
        f"SELECT {_SELECT}, bm25(insights_fts) AS rank, "
        "snippet(insights_fts, 1, '[', ']', '…', 12) FROM insights_fts "
        "JOIN insights i ON i.id = insights_fts.insight_id WHERE insights_fts MATCH ?"
        + "".join(f" AND {w}" for w in where)
        + " ORDER BY rank LIMIT ?"
    )
    try:
        rows = db.execute(sql, [_fts_query(text), *params, limit]).fetchall()
    except sqlite3.OperationalError as exc:
        raise UsageProblem(f"cannot search for {text!r}: {exc}")
    result = []
    for values in rows:
        row = _row(values[:-2])
        row["rank"] = round(values[-2], 4)
        row["snippet"] = values[-1]
        result.append(row)
    return result


def export_insights(db: sqlite_utils.Database, fmt: str = "jsonl", *, scope: str | None = None,
                    topic: str | None = None, include_quarantined: bool = False) -> Iterator[str]:
    """Lines of an export, oldest first: JSON lines (the list keys plus subject, supersedes,
    open questions) or Markdown grouped by topic."""
    if fmt not in ("jsonl", "md"):
        raise UsageProblem(f"--format {fmt!r}: choose jsonl or md")
    where, params = _filters(topic=topic, scope=scope, include_quarantined=include_quarantined)
    sql = (f"SELECT {_SELECT}, i.subject, i.supersedes, i.open_questions FROM insights i"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY i.topic_key, i.created_at, i.id")
    current = None
    if fmt == "md":
        yield "# zos insights"
    for values in db.execute(sql, params):
        row = _row(values[:-3])
        row["subject"], row["supersedes"] = values[-3], values[-2]
        row["open_questions"] = _json(values[-1], [])
        if fmt == "jsonl":
            yield json.dumps(row, ensure_ascii=False)
            continue
        if row["topic_key"] != current:
            current = row["topic_key"]
            yield f"\n## {current}\n"
        content = row["content"].replace("\n", " ").replace("<", "&lt;")
        yield (f"- {content}  \n  _{row['created_at'][:10]} · {row['category']} · "
               f"scope {row['sources_scope_max']} · strength {row['strength']:.2f} · "
               f"confidence {row['confidence']:.2f} · id {row['id']}_")


RUN_KEYS = ("id", "layer_name", "layer_hash", "status", "started_at", "completed_at", "as_of",
            "model", "targets", "targets_ok", "targets_failed", "insights_created",
            "tokens_input", "tokens_output", "cost_usd", "error")


def list_runs(db: sqlite_utils.Database, *, layer: str | None = None,
              limit: int = 50) -> list[dict]:
    """Layer runs, newest first: what ran, on what, what it cost, what failed."""
    sql = f"SELECT {', '.join(RUN_KEYS)} FROM layer_runs"
    params: list = []
    if layer:
        sql += " WHERE layer_name = ?"
        params.append(layer)
    sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
    rows = []
    for values in db.execute(sql, [*params, limit]):
        row = dict(zip(RUN_KEYS, values))
        row["targets"] = _json(row["targets"], [])
        row["target_count"] = len(row["targets"])
        row["errors"] = _json(row.pop("error"), [])
        rows.append(row)
    return rows


def list_calls(db: sqlite_utils.Database, *, run: str | None = None, limit: int = 100,
               full: bool = False) -> list[dict]:
    """Model calls, newest first; `full` adds the prompt and response text."""
    keys = CALL_KEYS + (("prompt", "response") if full else ())
    sql = f"SELECT {', '.join(keys)} FROM llm_calls"
    params: list = []
    if run:
        sql += " WHERE layer_run_id = ?"
        params.append(run)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    return [dict(zip(keys, values)) for values in db.execute(sql, [*params, limit])]


def delete_insight(db: sqlite_utils.Database, insight_id: str,
                   reason: str = "operator deletion") -> dict:
    """Operator correction: the insight, its provenance rows and its full-text row go (the
    bytes overwritten: secure_delete); a tombstone (ids only) and an event remain."""
    if db.execute("SELECT 1 FROM insights WHERE id = ?", [insight_id]).fetchone() is None:
        raise NotFound(f"no insight {insight_id}: see `zos insights list` for ids")
    deleted_at = now_stored()
    with db_module.secure_delete(db):
        with db_module.write_transaction(db):
            db.execute("DELETE FROM insights WHERE id = ?", [insight_id])
            # The trigger removed the FTS row; merging the index leaves no old segment that
            # still holds the deleted text's terms.
            db.execute("INSERT INTO insights_fts (insights_fts) VALUES ('optimize')")
            tombstone = record_tombstone(db, "insight", insight_id, reason, deleted_at)
            record_event(db, "insight_deleted",
                         {"insight_id": insight_id, "tombstone_id": tombstone}, deleted_at)
    return {"deleted": insight_id, "tombstone_id": tombstone, "deleted_at": deleted_at}
