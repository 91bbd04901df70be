"""`zos analyze`: read the images and links people share (docs/analyze.md)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.errors import JobFailed
from zos_cli.output import JsonFlag, NlFlag
from zos_cli.store import locks

# Library modules are imported inside the command so that `zos --help` stays fast.


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)


def analyze(
    ctx: typer.Context,
    media: Annotated[bool, typer.Option(
        "--media/--no-media", help="Analyse attachments (images go to the vision model).")
    ] = True,
    links: Annotated[bool, typer.Option(
        "--links/--no-links", help="Fetch and summarise shared links.")] = True,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", metavar="N", min=0, callback=output.at_most_max_count,
        help="Analyse at most N items (attachments and distinct links), newest first.")
    ] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="M",
        help="litellm model string for images and pages, or 'offline' (beats ZOS_MODEL and "
             "zos.toml; for images it must read images).")
    ] = None,
    max_cost: Annotated[Optional[float], typer.Option(
        "--max-cost", metavar="USD",
        help="Stop sending to the model once the calls would cost more than USD.")] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", metavar="K", min=1, max=256,
        help="Items fetched, read or described at once.")] = 4,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be analysed and estimate tokens and cost; fetch, "
                          "send and write nothing.")] = False,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="T",
        help="The run's clock: ISO-8601 or 'now' (the default). Only messages created by "
             "then are analysed; refetch_days counts from it.")] = None,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Describe shared images and summarise shared links, newest first, for reflection.

    Only what is not analysed yet (or is due again); resumable after a kill. Exit 1 when some
    items failed (the summary lists them), 75 when another analyze runs, 78 for a configured
    model without its key."""
    from zos_cli.analyze.results import empty_summary
    from zos_cli.analyze.run import AnalyzeOptions, analyze as run_analysis, check_analysis

    fmt = output.choose(json_, nl)
    output.summary_on_failure(fmt, empty_summary(), "item")
    app_state = state(ctx)
    options = AnalyzeOptions(media=media, links=links, limit=limit, model=model,
                             max_cost=max_cost, concurrency=concurrency, dry_run=dry_run,
                             as_of=as_of)
    checked = check_analysis(app_state.config, options)
    with app_state.database() as db, locks.job_lock(app_state.db_path, "analyze"):
        summary = run_analysis(db, app_state.config, options, checked=checked,
                               progress=_progress_bar, on_warning=output.warn)
    output.print_document(summary, fmt, human=_print_summary)
    if summary["errors"]:
        raise JobFailed(f"{len(summary['errors'])} item(s) could not be analysed (listed "
                        "above): they are tried again on the next run")


def _progress_bar(description: str, total: int):
    return output.progress(description, total=total, unit="items")


def _print_summary(doc: dict) -> None:
    shown = {
        "as of": doc["as_of"],
        "models": f"images: {doc['vision_model']}, pages: {doc['summary_model']}",
        "media analysed": doc["media_analysed"],
        "links analysed": doc["links_analysed"],
        "skipped": ", ".join(f"{k} {v}" for k, v in doc["skipped"].items()) or "none",
        "tokens": doc["tokens_used"],
        "cost (USD)": f"{doc['cost_usd']:.4f}",
        "still due": doc["remaining"],
    }
    if doc["dry_run"]:
        would = doc["would_analyse"]
        shown = {
            "as of": doc["as_of"],
            "models": shown["models"],
            "would analyse": (f"{would['images']} images, {would['files']} other files, "
                              f"{would['links']} links ({would['link_rows']} messages)"),
            "skipped": shown["skipped"],
            "estimated tokens": doc["estimated_tokens"],
            "estimated cost (USD)": f"{doc['estimated_cost_usd']:.4f}",
            "left beyond --limit": doc["remaining"],
        }
    output.print_key_values(shown, title="zos analyze" + (" (dry run)" if doc["dry_run"] else ""))
    if doc["errors"]:
        output.print_rows(doc["errors"], output.Format.TABLE, title="Errors")
