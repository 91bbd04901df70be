"""`zos status`: one screen about the database and what zos has done with it."""

from __future__ import annotations

import json
from pathlib import Path

import sqlite_utils

from zos_cli.store import migrations
from zos_cli.store.db import table_counts

COUNTED_TABLES = [
    "servers",
    "channels",
    "users",
    "messages",
    "reactions",
    "topics",
    "salience_ledger",
    "insights",
    "layer_runs",
    "llm_calls",
    "consents",
]

# What `last_ingest_run` shows of an ingest run's summary (`errors`: how many files failed).
RUN_KEYS = ("ingest_id", "files", "files_skipped_unchanged", "messages_new", "messages_seen",
            "errors")


def file_size(db_path: Path) -> int:
    """The database with its WAL, in bytes."""
    total = 0
    for suffix in ("", "-wal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


def collect_status(db: sqlite_utils.Database, db_path: Path, *, top: int = 5) -> dict:
    """Works on a database with pending migrations too (it reports them), so every query
    below is skipped when its table does not exist yet."""
    state = migrations.status(db)
    doc = {
        "database": str(db_path),
        "size_bytes": file_size(db_path),
        "schema_version": state.current,
        "latest_schema_version": state.latest,
        "pending_migrations": [m.label for m in state.pending],
        "newer_than_code": state.newer_than_code,
        "counts": table_counts(db, [t for t in COUNTED_TABLES if db[t].exists()]),
        "last_ingest": None,
        "last_ingest_run": None,
        "last_poll_at": None,
        "last_reflect": None,
        "last_nightly": None,
        "salience_pending_messages": 0,
        "analysis": None,
        "top_salience": [],
    }
    if state.pending or state.newer_than_code:
        return doc
    last_ingest = db.execute(
        "SELECT path, status, messages_new, finished_at FROM ingest_log "
        "WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    # The last ingest_log row is one file; the run it belongs to is the `ingest` event its
    # run recorded at the end (with the run's totals).
    last_run = db.execute(
        "SELECT payload, created_at FROM events WHERE event_type = 'ingest' "
        "ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    last_poll = db.execute("SELECT max(last_polled_at) FROM poll_state").fetchone()[0]
    # Stored, not yet earned: a running poll's or backfill's, or what a stopped one left.
    pending = db.execute("SELECT count(*) FROM messages WHERE salience_pending = 1").fetchone()[0]
    last_reflect = db.execute(
        "SELECT layer_name, status, started_at FROM layer_runs "
        "WHERE status <> 'dry_run' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    last_night = db.execute(
        "SELECT payload FROM events WHERE event_type = 'nightly' "
        "ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    top_rows = db.execute(
        "SELECT key, category, budget_group, balance, last_activity_at FROM topics "
        "WHERE balance > 0 ORDER BY balance DESC, last_activity_at DESC, key LIMIT ?",
        [top],
    ).fetchall()
    doc.update({
        "analysis": analysis_counts(db),
        "last_ingest": dict(zip(("path", "status", "messages_new", "finished_at"), last_ingest))
        if last_ingest
        else None,
        "last_ingest_run": {
            **{k: json.loads(last_run[0]).get(k) for k in RUN_KEYS},
            "finished_at": last_run[1],
        } if last_run else None,
        "last_poll_at": last_poll,
        "salience_pending_messages": pending,
        "last_reflect": dict(zip(("layer", "status", "started_at"), last_reflect))
        if last_reflect
        else None,
        "last_nightly": nightly_run(json.loads(last_night[0])) if last_night else None,
        "top_salience": [
            dict(zip(("topic_key", "category", "group", "balance", "last_activity_at"), r))
            for r in top_rows
        ],
    })
    return doc


def nightly_run(payload: dict) -> dict:
    """The last `zos nightly` from the event it recorded (zos_cli/nightly/run.py): its times,
    what it cost, how many steps did not complete, and each step's status and cost."""
    return {
        **{k: payload.get(k) for k in ("started_at", "finished_at", "cost_usd", "max_cost_usd",
                                       "errors")},
        "steps": [{k: step.get(k) for k in ("step", "status", "cost_usd")}
                  for step in payload.get("steps", [])],
    }


def analysis_counts(db: sqlite_utils.Database) -> dict:
    """Attachments and links of stored messages not analysed yet (`pending`), and those
    analysed, whatever the outcome (`ok`, skipped, failed, or a link's fetch status)."""
    counts = {}
    for table, name in (("media_analysis", "media"), ("link_analysis", "links")):
        pending, done = db.execute(
            f"SELECT coalesce(sum(status = 'pending'), 0), coalesce(sum(status <> 'pending'), 0) "
            f"FROM {table}").fetchone()
        counts[f"{name}_pending"], counts[f"{name}_analysed"] = pending, done
    return counts
