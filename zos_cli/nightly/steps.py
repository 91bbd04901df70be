"""The night's three kinds of step, each calling the library function its own command calls
(`zos salience decay`, `zos analyze`, `zos reflect --layer`) and turning that command's
summary into one step row of `zos nightly --json`:

    {step, status, targets, insights_created, tokens_used, cost_usd, errors, budget_usd, note}

`status` is completed | partial | failed | skipped | locked; `targets` counts what the step
worked on (topics decayed, items analysed, a layer's targets); `errors` are
`{target, error}` (`target`: the topic key, the analysed item, or null for the whole step);
`budget_usd` is what the night's `--max-cost` left for the step (null without a cap). In a
dry run the counts and costs are the steps' estimates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import sqlite_utils

from zos_cli.analyze.run import AnalyzeOptions, CheckedAnalysis
from zos_cli.config import Config
from zos_cli.progress import Progress
from zos_cli.reflect.run import CheckedRun, RunOptions

STATUSES = ("completed", "partial", "failed", "skipped", "locked")
# A step's share of the night's exit code: the worst wins, in this order (0, then 1, then 75).
EXIT_CODES = {"completed": 0, "skipped": 0, "partial": 1, "failed": 1, "locked": 75}


def step_row(step: str, status: str, *, targets: int = 0, insights_created: int = 0,
             tokens_used: int = 0, cost_usd: float = 0.0, errors: list[dict] | None = None,
             budget_usd: float | None = None, note: str | None = None) -> dict:
    assert status in STATUSES, status
    return {"step": step, "status": status, "targets": targets,
            "insights_created": insights_created, "tokens_used": tokens_used,
            "cost_usd": round(cost_usd, 6), "errors": errors or [], "budget_usd": budget_usd,
            "note": note}


@dataclass(frozen=True)
class Step:
    """One step of the night: `lock` is the job lock its own command takes (a step never
    runs beside that command); `run` calls the library with the budget left to it and gives
    the command's summary; `row` turns a summary (also one an error carried) into a row.
    A step `settled` before the night (analysis turned off) is that row, and never runs."""

    name: str
    lock: str
    run: Callable[[sqlite_utils.Database, float | None, Progress, Callable], dict] | None = None
    row: Callable[[dict, float | None], dict] | None = None
    settled: dict | None = None


# ---------------------------------------------------------------- decay
def decay_step(config: Config, as_of: str, dry_run: bool) -> Step:
    def run(db, _budget, _progress, _on_warning) -> dict:
        from zos_cli.salience.decay import decay

        return decay(db, config, as_of, dry_run=dry_run)

    def row(doc: dict, budget: float | None) -> dict:
        verb = "would write" if doc["dry_run"] else "wrote"
        return step_row("decay", "completed", targets=doc["topics_decayed"], budget_usd=budget,
                        note=f"{verb} {doc['rows']} decay row(s), {doc['amount']:.2f} in all")

    return Step("decay", "salience", run, row)  # the lock of `zos salience decay`


# ---------------------------------------------------------------- analyze
def analysis_step(config: Config, options: AnalyzeOptions, checked: CheckedAnalysis) -> Step:
    def run(db, budget, progress, on_warning) -> dict:
        from zos_cli.analyze.run import analyze

        return analyze(db, config, replace(options, max_cost=budget), checked=checked,
                       progress=progress, on_warning=on_warning)

    return Step("analyze", "analyze", run, _analysis_row)


def _analysis_row(doc: dict, budget: float | None) -> dict:
    left = f"{doc['remaining']} item(s) left for the next run" if doc["remaining"] else None
    if doc["dry_run"]:
        would = doc["would_analyse"]
        return step_row("analyze", "completed", budget_usd=budget, note=left,
                        targets=would["images"] + would["files"] + would["links"],
                        tokens_used=doc["estimated_tokens"], cost_usd=doc["estimated_cost_usd"])
    analysed = doc["media_analysed"] + doc["links_analysed"]
    errors = [{"target": e.get("item"), "error": e["error"]} for e in doc["errors"]]
    status = "completed" if not errors else "partial" if analysed else "failed"
    return step_row("analyze", status, targets=analysed, tokens_used=doc["tokens_used"],
                    cost_usd=doc["cost_usd"], errors=errors, budget_usd=budget, note=left)


def analysis_off() -> dict:
    return step_row("analyze", "skipped",
                    note="[analysis] media and links are off: nothing fetched or sent")


# ---------------------------------------------------------------- a reflection layer
def layer_step(config: Config, options: RunOptions, checked: CheckedRun) -> Step:
    def run(db, budget, progress, on_warning) -> dict:
        from zos_cli.reflect.run import run_layer

        return run_layer(db, config, replace(options, max_cost=budget), checked=checked,
                         progress=progress, on_warning=on_warning)

    return Step(options.layer, f"reflect-{options.layer}", run, _layer_row)


def _layer_row(doc: dict, budget: float | None) -> dict:
    status = "completed" if doc["status"] == "dry_run" else doc["status"]
    capped = [s for s in doc.get("skipped", []) if s["reason"].startswith("--max-cost")]
    note = doc.get("note")
    if capped and not doc["targets"]:
        status = "skipped"  # the night's money was spent before this layer's first target
        note = (f"the night's --max-cost left {budget or 0:.6f} USD, below the estimate of its "
                f"first target: {len(capped)} target(s) not taken")
    elif capped:
        note = f"{len(capped)} target(s) not taken: the night's --max-cost was reached"
    errors = [{"target": e["target"], "error": e["error"]} for e in doc.get("errors", [])]
    return step_row(doc["layer"], status, targets=len(doc["targets"]),
                    insights_created=doc["insights_created"], tokens_used=doc["tokens_used"],
                    cost_usd=doc["cost_usd"], errors=errors, budget_usd=budget, note=note)
