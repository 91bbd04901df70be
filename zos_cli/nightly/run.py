"""One night (docs/nightly.md): decay, then analysis where `[analysis]` turns it on, then the
layers of `[nightly] layers` in their order, each through the library function its own
command calls.

- Everything that can be checked is checked first (`check_night`): the clock, `--max-cost`,
  that every listed layer exists and loads, the models and their keys. A configuration
  problem (78) stops the night before any step has written anything.
- One cost cap for the whole night: each step is given what the steps before it left
  (`budget_usd`); in a dry run, what their estimates left.
- A step that fails (or whose lock another job holds) is recorded as such and the night goes
  on; the exit code is the worst step's: 0 (completed, skipped), then 1 (partial, failed),
  then 75 (locked).
- The night is recorded as one `nightly` event (counts and statuses, no text), which
  `zos status` shows; a dry run writes nothing at all and takes no lock.

The caller holds the `nightly` job lock and hands in `step_lock(job)`, which takes the job
lock a step's own command takes (library code takes no lock itself).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from zos_cli.analyze.run import AnalyzeOptions, check_analysis
from zos_cli.config import Config
from zos_cli.errors import ConfigError, JobFailed, TemporaryFailure, UsageProblem, ZosError
from zos_cli.nightly.steps import (
    EXIT_CODES,
    Step,
    analysis_off,
    analysis_step,
    decay_step,
    layer_step,
    step_row,
)
from zos_cli.progress import Progress, no_progress
from zos_cli.reflect import llm
from zos_cli.reflect.layers import layer_names
from zos_cli.reflect.run import RunOptions, check_run
from zos_cli.salience.clock import resolve_as_of
from zos_cli.store import audit
from zos_cli.store import db as db_module
from zos_cli.timeutil import now_stored

log = logging.getLogger("zos.nightly")  # --verbose: each step's outcome (names and counts)

EVENT = "nightly"  # the events row a night leaves (read by `zos status`)


@dataclass
class NightOptions:
    max_cost: float | None = None   # USD for the whole night; None: no cap
    as_of: str | None = None        # None: the data's clock; "now": the wall clock; ISO-8601
    model: str | None = None        # for analysis and every layer (as their --model)
    dry_run: bool = False
    layers_dir: Path | None = None  # local layer folder (default ./layers)


@dataclass
class CheckedNight:
    """The night as checked before it starts: its one clock and its steps, in order."""
    as_of: str
    steps: list[Step]


def empty_summary() -> dict:
    """The summary of a night that never started (what a failure before it reports)."""
    return {"started_at": None, "finished_at": None, "as_of": None, "dry_run": False,
            "max_cost_usd": None, "cost_usd": 0.0, "errors": [], "steps": []}


def check_night(db: sqlite_utils.Database, config: Config, options: NightOptions) -> CheckedNight:
    """The night's clock and steps, or the problem that stops it before any step: a bad flag
    (2), or a configuration error (78): a listed layer that does not exist or does not load,
    a layer's model profile missing, a configured model without its key."""
    if options.max_cost is not None and not 0 <= options.max_cost < math.inf:
        raise UsageProblem("--max-cost must be a number of US dollars, zero or more")
    # One clock for the whole night: every step decays, analyses and reflects as of it.
    as_of = resolve_as_of(db, options.as_of)
    known = layer_names(options.layers_dir)
    missing = [name for name in config.nightly.layers if name not in known]
    if missing:
        one = len(missing) == 1
        raise ConfigError(
            f"[nightly] layers names {', '.join(missing)}, which {'is' if one else 'are'} no "
            f"layer (the layers: {', '.join(known)}; see `zos reflect --list`): remove "
            f"{'it' if one else 'them'} from the list in zos.toml, or add "
            f"layers/{missing[0]}.toml")
    steps = [decay_step(config, as_of, options.dry_run)]
    models: list[llm.ModelChoice] = []
    analysis = config.analysis
    if analysis.media or analysis.links:
        analyze_options = AnalyzeOptions(media=analysis.media, links=analysis.links,
                                         model=options.model, dry_run=options.dry_run,
                                         as_of=as_of)
        checked = check_analysis(config, analyze_options)
        steps.append(analysis_step(config, analyze_options, checked))
        if analysis.media:
            models.append(checked.vision)
        if analysis.links:
            models.append(checked.summary)
    else:
        steps.append(Step("analyze", "analyze", settled=analysis_off()))
    for name in config.nightly.layers:
        run_options = RunOptions(layer=name, dry_run=options.dry_run, model=options.model,
                                 as_of=as_of, layers_dir=options.layers_dir,
                                 record_dry_run=False)
        checked_run = check_run(config, run_options)
        steps.append(layer_step(config, run_options, checked_run))
        models.append(checked_run.choice)
    # Asked now, not when a step first has something for its model (as `zos reflect` does):
    # a missing key found at the third layer would stop the night after two steps wrote.
    for choice in {(m.model, m.api_base): m for m in models if not m.offline}.values():
        llm.check_credentials(choice)
    return CheckedNight(as_of, steps)


def _no_lock(job: str) -> AbstractContextManager:
    return nullcontext()


def run_night(db: sqlite_utils.Database, config: Config, options: NightOptions, *,
              checked: CheckedNight | None = None,
              step_lock: Callable[[str], AbstractContextManager] = _no_lock,
              progress: Progress = no_progress,
              on_warning: Callable[[str], None] = log.warning) -> dict:
    """Run the night's steps in order; returns the summary (`zos nightly --json`)."""
    checked = checked or check_night(db, config, options)
    started = now_stored()
    rows: list[dict] = []
    spent = 0.0
    for step in checked.steps:
        budget = (None if options.max_cost is None
                  else round(max(options.max_cost - spent, 0.0), 6))
        if step.settled is not None:
            row = {**step.settled, "budget_usd": budget}
        else:
            row = _attempt(db, step, budget, options.dry_run, step_lock, progress, on_warning)
        spent += row["cost_usd"]
        rows.append(row)
        log.info("step %s: %s, %s target(s), %s insight(s), %.6f USD", row["step"],
                 row["status"], row["targets"], row["insights_created"], row["cost_usd"])
    summary = {
        "started_at": started, "finished_at": now_stored(), "as_of": checked.as_of,
        "dry_run": options.dry_run, "max_cost_usd": options.max_cost,
        "cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
        "errors": [{"step": r["step"], "error": _problem(r)} for r in rows
                   if EXIT_CODES[r["status"]]],
        "steps": rows,
    }
    if not options.dry_run:
        _record(db, summary, on_warning)
    return summary


def _attempt(db, step: Step, budget: float | None, dry_run: bool,
             step_lock: Callable[[str], AbstractContextManager], progress: Progress,
             on_warning: Callable[[str], None]) -> dict:
    """One step under its own command's lock (none in a dry run: it writes nothing); what
    goes wrong becomes the step's status, never the night's end."""
    def labelled(description: str, total: int):
        return progress(f"{step.name}: {description}", total)

    try:
        with nullcontext() if dry_run else step_lock(step.lock):
            return step.row(step.run(db, budget, labelled, on_warning), budget)
    except TemporaryFailure as exc:  # its lock held, the database busy, a rate limit
        return _broken(step, "locked", exc.message, exc.summary, budget)
    except ZosError as exc:
        return _broken(step, "failed", exc.message, exc.summary, budget)
    except sqlite3.Error as exc:
        if isinstance(exc, sqlite3.OperationalError) and db_module.is_busy(exc):
            return _broken(step, "locked", db_module.busy_message(exc), None, budget)
        return _broken(step, "failed", f"database error: {exc}", None, budget)
    except Exception as exc:  # noqa: BLE001 - one step's fault must not end the night
        log.debug("step %s", step.name, exc_info=True)
        return _broken(step, "failed", f"{type(exc).__name__}: {exc}", None, budget)


def _broken(step: Step, status: str, message: str, summary: dict | None,
            budget: float | None) -> dict:
    """The row of a step stopped by an error: what its summary so far says (a reflection
    stopped midway keeps the cost of the targets it stored), with the error last."""
    row = step.row(summary, budget) if summary else step_row(step.name, status,
                                                              budget_usd=budget)
    row["status"] = status
    row["errors"].append({"target": None, "error": message})
    return row


def _problem(row: dict) -> str:
    """The line a step that did not complete leaves in the night's `errors`."""
    whole = [e["error"] for e in row["errors"] if e["target"] is None]
    if whole:
        return whole[-1]
    failed = len(row["errors"])
    if row["step"] == "analyze":
        return (f"{row['status']}: {failed} item(s) could not be analysed (they are tried "
                "again on the next run)")
    return (f"{row['status']}: {failed} of {row['targets']} target(s) failed; see "
            f"`zos insights runs --layer {row['step']}`")


def _record(db: sqlite_utils.Database, summary: dict, on_warning: Callable[[str], None]) -> None:
    """The night as one `nightly` event: times, costs, statuses and counts (no target, no
    error text: events hold ids and counts). A database too busy to take it leaves the
    night's work as it is and says so."""
    payload = {
        "started_at": summary["started_at"], "finished_at": summary["finished_at"],
        "as_of": summary["as_of"], "max_cost_usd": summary["max_cost_usd"],
        "cost_usd": summary["cost_usd"], "errors": len(summary["errors"]),
        "steps": [{"step": r["step"], "status": r["status"], "targets": r["targets"],
                   "insights_created": r["insights_created"], "tokens_used": r["tokens_used"],
                   "cost_usd": r["cost_usd"], "errors": len(r["errors"])}
                  for r in summary["steps"]],
    }
    try:
        with db_module.write_transaction(db):
            audit.record_event(db, EVENT, payload, at=summary["finished_at"])
    except sqlite3.Error as exc:
        message = f"the night was not recorded for `zos status`: {exc}"
        on_warning(message)
        summary["errors"].append({"step": None, "error": message})


def night_error(summary: dict) -> ZosError | None:
    """The error a finished night ends with: None when every step completed or was skipped;
    else 75 when a step was locked out (the worst), 1 when one failed or partly failed."""
    worst = max([EXIT_CODES[r["status"]] for r in summary["steps"]]
                + [1 for e in summary["errors"] if e["step"] is None], default=0)
    if not worst:
        return None
    names = ", ".join(f"{r['step']} {r['status']}" for r in summary["steps"]
                      if EXIT_CODES[r["status"]])
    if worst == EXIT_CODES["locked"]:
        return TemporaryFailure(f"the night ran, but not all of it: {names} (see `errors`); "
                                "run `zos nightly` again when the other job finishes")
    return JobFailed(f"the night ran with {names or 'its record unwritten'} (see `errors`); "
                     "the other steps ran")
