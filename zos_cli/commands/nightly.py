"""`zos nightly`: decay, analysis where enabled, then the configured layers (docs/nightly.md)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.output import JsonFlag, NlFlag
from zos_cli.store import locks

# Library modules are imported inside the command so that `zos --help` stays fast.

NIGHTLY_JOB = "nightly"


def register(app: typer.Typer) -> None:
    app.command("nightly")(nightly)


def nightly(
    ctx: typer.Context,
    max_cost: Annotated[Optional[float], typer.Option(
        "--max-cost", metavar="USD",
        help="One cap for the whole night: each step gets what the steps before it left.")
    ] = None,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="T",
        help="The night's one clock: ISO-8601 or 'now' (default: the newest stored message).")
    ] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="M",
        help="litellm model string for analysis and every layer, or 'offline' (beats "
             "ZOS_MODEL and zos.toml).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Each step's targets and estimated cost; call no model, fetch and "
                          "write nothing.")] = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Run the night: decay, analysis (where [analysis] turns it on), then the layers of
    [nightly] layers in order, under one --max-cost.

    A failing step does not stop the others. Exit 78 for a configuration problem (before any
    step); otherwise the worst step's outcome: 0, then 1 (partial or failed), then 75 (a
    step's lock held by another job)."""
    from zos_cli.nightly import NightOptions, check_night, empty_summary, night_error, run_night

    fmt = output.choose(json_, nl)
    output.summary_on_failure(fmt, empty_summary(), "step")
    app_state = state(ctx)
    options = NightOptions(max_cost=max_cost, as_of=as_of, model=model, dry_run=dry_run)

    def step_lock(job: str):
        return locks.job_lock(app_state.db_path, job)

    # The night's lock first, so that a second night exits 75 at once; a dry run writes
    # nothing, so it takes no lock (as `salience decay --dry-run`).
    with app_state.database() as db, nullcontext() if dry_run else step_lock(NIGHTLY_JOB):
        checked = check_night(db, app_state.config, options)
        summary = run_night(db, app_state.config, options, checked=checked,
                            step_lock=step_lock, progress=_progress_bar, on_warning=output.warn)
    output.print_document(summary, fmt, human=_print_summary)
    problem = night_error(summary)
    if problem is not None:
        raise problem


def _progress_bar(description: str, total: int):
    return output.progress(description, total=total, unit="items")


def _print_summary(doc: dict) -> None:
    cap = "none" if doc["max_cost_usd"] is None else f"{doc['max_cost_usd']:.4f}"
    shown = {
        "as of": doc["as_of"],
        "started": doc["started_at"],
        "finished": doc["finished_at"],
        "cost (USD)": f"{doc['cost_usd']:.4f} (cap: {cap})",
    }
    output.print_key_values(shown, title="zos nightly" + (" (dry run)" if doc["dry_run"] else ""))
    rows = [{"step": r["step"], "status": r["status"], "targets": r["targets"],
             "insights": r["insights_created"], "tokens": r["tokens_used"],
             "cost (USD)": f"{r['cost_usd']:.4f}", "note": r["note"] or ""}
            for r in doc["steps"]]
    output.print_rows(rows, output.Format.TABLE, title="Steps")
    if doc["errors"]:
        output.print_rows(doc["errors"], output.Format.TABLE, title="Errors")
