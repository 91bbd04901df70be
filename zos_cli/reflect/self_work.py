"""What the self layer reads of zos's own work (docs/reflection.md#the-self-layer): its layer
runs since the self layer last reflected (targets by kind, failures, tokens and dollars spent)
and what became of the insights it wrote since (how many conflicted with standing ones, how
many superseded older ones, how many have since been superseded themselves or retired by the
reconcile layer, and, when the database has `insights.confirmation_count`, how many were
reconfirmed).

Only counts, layer names and topic kinds: no insight text, no error text (a provider's error
may quote a prompt) and no topic key (keys name people). So this material carries nothing of
the community and adds nothing to the self insight's provenance or scope.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import sqlite_utils

from zos_cli import topics

MAX_RUNS = 30          # newest runs shown (the prompt's budget counts them)


@dataclass
class SelfWork:
    since: str | None                                  # the last self reflection's start
    runs: list[dict] = field(default_factory=list)     # newest first
    insights: Counter = field(default_factory=Counter)  # category → written
    conflicted: int = 0
    superseding: int = 0
    superseded: int = 0              # since replaced by a newer insight or retired by reconcile
    reconfirmed: int | None = None   # None: no confirmation_count column (issue 19, section 3)

    @property
    def empty(self) -> bool:
        return not self.runs


def _kinds(targets: list[str]) -> Counter:
    kinds: Counter = Counter()
    for key in targets:
        try:
            kinds[topics.parse(key).kind.replace("_", " ")] += 1
        except topics.InvalidTopicKey:
            kinds["other"] += 1
    return kinds


def _has_column(db: sqlite_utils.Database, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _last_self_run(db: sqlite_utils.Database, layer_name: str) -> str | None:
    row = db.execute(
        "SELECT max(started_at) FROM layer_runs WHERE layer_name = ? "
        "AND status IN ('completed', 'partial')", [layer_name]).fetchone()
    return row[0] if row else None


def has_work(db: sqlite_utils.Database, layer_name: str) -> bool:
    """Whether zos ran anything since the self layer last reflected."""
    since = _last_self_run(db, layer_name)
    return db.execute(
        "SELECT 1 FROM layer_runs WHERE status NOT IN ('dry_run', 'running') "
        "AND started_at > ? LIMIT 1", [since or ""]).fetchone() is not None


def recent_work(db: sqlite_utils.Database, layer_name: str) -> SelfWork:
    """zos's runs since `layer_name` (the self layer) last reflected, newest first (dry runs
    and runs still going are left out), and what became of their insights."""
    since = _last_self_run(db, layer_name)
    after, params = ("AND started_at > ?", [since]) if since else ("", [])
    runs = db.execute(
        "SELECT id, layer_name, status, started_at, model, targets, targets_ok, targets_failed, "
        "insights_created, tokens_input + tokens_output, cost_usd FROM layer_runs "
        f"WHERE status NOT IN ('dry_run', 'running') {after} "
        "ORDER BY started_at DESC, id DESC LIMIT ?", [*params, MAX_RUNS]).fetchall()
    work = SelfWork(since)
    for (run_id, layer, status, started, model, targets, ok, failed, insights, tokens,
         cost) in runs:
        work.runs.append({
            "id": run_id, "layer": layer, "status": status, "started_at": started,
            "model": model, "kinds": _kinds(json.loads(targets or "[]")), "ok": ok,
            "failed": failed, "insights": insights, "tokens": tokens, "cost_usd": cost or 0.0})
    ids = [r["id"] for r in work.runs]
    if not ids:
        return work
    marks = ", ".join("?" for _ in ids)
    for category, written, conflicted, superseding in db.execute(
            "SELECT category, count(*), sum(conflicts_with IS NOT NULL AND conflicts_with "
            "NOT IN ('', '[]')), sum(supersedes IS NOT NULL) FROM insights "
            f"WHERE layer_run_id IN ({marks}) GROUP BY category", ids):
        work.insights[category] = written
        work.conflicted += conflicted or 0
        work.superseding += superseding or 0
    work.superseded = db.execute(
        f"SELECT count(*) FROM insights i WHERE i.layer_run_id IN ({marks}) AND "
        "(i.superseded_by IS NOT NULL OR EXISTS (SELECT 1 FROM insights n "
        "WHERE n.supersedes = i.id AND n.quarantined = 0))", ids).fetchone()[0]
    if _has_column(db, "insights", "confirmation_count"):
        work.reconfirmed = db.execute(
            f"SELECT count(*) FROM insights WHERE layer_run_id IN ({marks}) "
            "AND confirmation_count > 0", ids).fetchone()[0]
    return work


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "none"


def run_line(run: dict) -> str:
    targets = sum(run["kinds"].values())
    return (f"[{run['started_at'][:16].replace('T', ' ')} UTC · layer {run['layer']} · "
            f"{run['status']} · model {run['model']}] {targets} target(s) "
            f"({_counts(run['kinds'])}), {run['failed']} failed, {run['insights']} insight(s), "
            f"{run['tokens']} tokens, ${run['cost_usd']:.4f}")


def lines(work: SelfWork) -> list[str]:
    """The prompt's lines about zos's own work (empty when it has done nothing since)."""
    if work.empty:
        return []
    out = [run_line(r) for r in reversed(work.runs)]  # oldest first, as the transcript
    summary = (f"Insights written in these runs: {sum(work.insights.values())} "
               f"({_counts(work.insights)}); {work.conflicted} conflicted with a standing "
               f"insight; {work.superseding} superseded an older one; {work.superseded} have "
               "since been superseded or retired by reconcile")
    if work.reconfirmed is not None:
        summary += f"; {work.reconfirmed} have been reconfirmed since"
    out.append(summary + ".")
    return out


def describe(work: SelfWork) -> str:
    """The offline self insight: what zos did, what failed, what it attended to."""
    runs = work.runs
    layers = Counter(r["layer"] for r in runs)
    statuses = Counter(r["status"] for r in runs)
    kinds: Counter = Counter()
    for r in runs:
        kinds.update(r["kinds"])
    failed_targets = sum(r["failed"] for r in runs)
    tokens = sum(r["tokens"] for r in runs)
    cost = sum(r["cost_usd"] for r in runs)
    since = f" since {work.since[:10]}" if work.since else ""
    sentences = [
        f"zos ran {len(runs)} reflection run(s){since}: {_counts(layers)} "
        f"({_counts(statuses)}).",
        f"It attended to {sum(kinds.values())} target(s): {_counts(kinds)}.",
        ("No target failed." if not failed_targets else
         f"{failed_targets} target(s) failed, in "
         f"{sum(1 for r in runs if r['failed'])} run(s)."),
        f"It wrote {sum(work.insights.values())} insight(s) ({_counts(work.insights)}); "
        f"{work.conflicted} conflicted with standing insights and {work.superseding} "
        "superseded older ones.",
        f"It used {tokens} tokens (${cost:.4f}).",
    ]
    if work.reconfirmed is not None:
        sentences.append(f"{work.reconfirmed} of those insights were reconfirmed since.")
    return " ".join(sentences)
