"""`zos reflect --layer NAME` and `zos reflect --list`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.store import locks
from zos_cli.errors import JobFailed, UsageProblem
from zos_cli.commands.topic_options import TOPIC_HELP, GlobalOpt, ServerOpt, topic_key
from zos_cli.output import JsonFlag, NlFlag

# Library modules are imported inside the command so that `zos --help` stays fast.


def register(app: typer.Typer) -> None:
    app.command("reflect")(reflect)


LIST_COLUMNS = ["name", "category", "model", "max_targets", "retrieval", "context_tokens",
                "insight_category", "origin"]


def reflect(
    ctx: typer.Context,
    layer: Annotated[Optional[str], typer.Option(
        "--layer", "-l", metavar="NAME", help="The layer to run (see --list).")] = None,
    list_layers: Annotated[bool, typer.Option(
        "--list", help="List the layers (shipped, and ./layers overrides) and exit.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show targets, estimated prompt tokens and cost; call no model.")] = False,
    topic: Annotated[Optional[str], typer.Option(
        "--topic", metavar="TOPIC",
        help=f"Reflect on this topic only (of the layer's category). {TOPIC_HELP}")
    ] = None,
    server: ServerOpt = None,
    global_: GlobalOpt = False,
    max_targets: Annotated[Optional[int], typer.Option(
        "--max-targets", metavar="N", callback=output.at_most_max_count,
        help="Take at most N targets.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="M",
        help="litellm model string for this run, or 'offline' (beats ZOS_MODEL and zos.toml).")
    ] = None,
    concurrency: Annotated[Optional[int], typer.Option(
        "--concurrency", metavar="K", max=1024,
        help="Targets reflected at once (default: zos.toml, 4).")
    ] = None,
    max_cost: Annotated[Optional[float], typer.Option(
        "--max-cost", metavar="USD", help="Stop taking targets before the estimate passes USD.")
    ] = None,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="T",
        help="The run's clock: ISO-8601 or 'now' (default: the newest stored message).")
    ] = None,
    cache: Annotated[bool, typer.Option(
        "--cache", help="Reuse a stored answer for the same model and prompt.")] = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Run one reflection layer: salient topics become validated, stored insights.

    Exits 1 when the run is partial or failed (its summary is printed first); a run with
    nothing salient says so and exits 0."""
    fmt = output.choose(json_, nl)
    if list_layers:
        from zos_cli.reflect.layers import in_order, load_layers

        # In the night's order (`[nightly] layers`), then the layers it does not run.
        order = state(ctx).config.nightly.layers
        rows = [lay.as_row() for lay in in_order(load_layers(), order)]
        output.print_rows(rows, fmt, columns=LIST_COLUMNS, title="Reflection layers")
        return
    if not layer:
        raise UsageProblem("--layer NAME is required: see `zos reflect --list` for the layers")
    from zos_cli.reflect.run import RunOptions, check_run, empty_summary, run_layer

    output.summary_on_failure(fmt, empty_summary(layer), "target")
    app_state = state(ctx)
    with app_state.database() as db:
        topic = topic_key(app_state, db, topic, server, global_)
        options = RunOptions(
            layer=layer, dry_run=dry_run, topic=topic, max_targets=max_targets, model=model,
            concurrency=concurrency, max_cost=max_cost, as_of=as_of, cache=cache,
        )
        checked = check_run(app_state.config, options)
        # One run of a layer at a time (another layer may run beside it).
        with locks.job_lock(app_state.db_path, f"reflect-{checked.layer.name}"):
            summary = run_layer(db, app_state.config, options, checked=checked,
                                progress=_progress_bar, on_warning=output.warn)
    output.print_document(summary, fmt, human=_print_summary)
    if summary.get("note"):
        output.note(summary["note"])
    if summary["status"] in ("partial", "failed"):
        failed = len([e for e in summary["errors"] if e["target"]])
        raise JobFailed(
            f"layer run {summary['layer_run_id']} {summary['status']}: {failed} of "
            f"{len(summary['targets'])} targets failed; see `zos insights calls --run "
            f"{summary['layer_run_id']}`"
        )


def _progress_bar(description: str, total: int):
    return output.progress(description, total=total, unit="targets")


def _print_summary(doc: dict) -> None:
    shown = {
        "layer": f"{doc['layer']} ({doc['layer_hash'][:12]})",
        "model": doc["model"],
        "as of": doc["as_of"],
        "run": doc["layer_run_id"] or "none",
        "status": doc["status"],
        "targets": len(doc["targets"]),
        "insights created": doc["insights_created"],
        "tokens": doc["tokens_used"],
        "cost (USD)": f"{doc['cost_usd']:.4f}",
    }
    output.print_key_values(shown, title="zos reflect")
    if doc.get("estimates"):
        output.print_rows(doc["estimates"], output.Format.TABLE, title="Dry run estimates")
    if doc["errors"]:
        output.print_rows(doc["errors"], output.Format.TABLE, title="Errors")
    if doc["skipped"]:
        output.print_rows(doc["skipped"], output.Format.TABLE, title="Skipped")
    if doc.get("resolutions"):  # (the reconcile layer's)
        output.print_rows(doc["resolutions"], output.Format.TABLE, title="Resolutions")
    if doc.get("dropped"):
        output.print_rows(doc["dropped"], output.Format.TABLE, title="Dropped resolutions")
