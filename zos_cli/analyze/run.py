"""One `zos analyze` run: plan (plan.py), then read, fetch and describe with bounded
concurrency, writing each item's outcome as it finishes.

Worker threads fetch, read files and call models (work.py); every database write stays on
this thread, one small transaction per item, so a killed run loses at most what was in flight
and the next run goes on with what is still due. Images are described once per (sha256,
scope): a second row with the same bytes waits for the first one's description, or takes the
one already stored for its scope. `max_cost` stops sending to a model once what was spent,
plus what is in flight, would pass it: what is left stays due for the next run.

The caller holds the job lock `analyze` and says how progress and warnings reach a person.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta

import sqlite_utils

from zos_cli import timeutil
from zos_cli.analyze import store
from zos_cli.analyze.plan import LinkItem, MediaItem, Plan, make_plan
from zos_cli.analyze.results import Totals, summary
from zos_cli.progress import Progress, no_progress
from zos_cli.analyze.work import typical_page_tokens
from zos_cli.config import Config
from zos_cli.errors import TemporaryFailure, UsageProblem
from zos_cli.reflect.llm import ModelChoice
from zos_cli.store import db as db_module

log = logging.getLogger("zos.analyze")  # --verbose: items and outcomes (ids, never text)


@dataclass
class AnalyzeOptions:
    media: bool = True
    links: bool = True
    limit: int | None = None
    model: str | None = None
    max_cost: float | None = None
    concurrency: int = 4
    dry_run: bool = False
    as_of: str | None = None  # None or "now": the wall clock


@dataclass
class CheckedAnalysis:
    vision: ModelChoice
    summary: ModelChoice


def check_analysis(config: Config, options: AnalyzeOptions) -> CheckedAnalysis:
    """The models of a run, or the usage problem that stops it (before any lock or read)."""
    from zos_cli.analyze.describe import resolve_summary_model, resolve_vision_model

    if options.concurrency < 1:
        raise UsageProblem("--concurrency must be at least 1")
    if options.max_cost is not None and not 0 <= options.max_cost < math.inf:
        raise UsageProblem("--max-cost must be a number of US dollars, zero or more")
    if options.limit is not None and options.limit < 0:
        raise UsageProblem("--limit must be zero or more")
    if not (options.media or options.links):
        raise UsageProblem("--no-media and --no-links leave nothing to analyse: drop one")
    return CheckedAnalysis(resolve_vision_model(config, options.model),
                           resolve_summary_model(config, options.model))


def resolve_as_of(text: str | None) -> str:
    """The run's clock: what it stamps on rows and judges `refetch_days` against; only
    messages created by then are analysed. Default: now."""
    if text is None or text.strip().lower() == "now":
        return timeutil.now_stored()
    value = text.strip()
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        value += "T00:00:00+00:00"  # a date alone: the start of that UTC day
    try:
        return timeutil.normalize(value)
    except ValueError:
        raise UsageProblem(f"--as-of {text!r} is not a time: give an ISO-8601 time such as "
                           "2024-03-01T12:00:00+00:00, or `now`") from None


def analyze(db: sqlite_utils.Database, config: Config, options: AnalyzeOptions, *,
            checked: CheckedAnalysis | None = None, progress: Progress = no_progress,
            on_warning: Callable[[str], None] = log.warning, policy=None,
            resolver=None) -> dict:
    """Analyse what is due; returns the summary (`zos analyze --json`). `policy`/`resolver`:
    the fetchers' address policy and name resolver (tests inject them)."""
    checked = checked or check_analysis(config, options)
    as_of = resolve_as_of(options.as_of)
    stale_before = timeutil.to_stored(timeutil.parse_time(as_of)
                                      - timedelta(days=config.analysis.refetch_days))
    plan = make_plan(db, config, media=options.media, links=options.links, as_of=as_of,
                     stale_before=stale_before, upgrade_images=not checked.vision.offline,
                     upgrade_links=not checked.summary.offline, limit=options.limit)
    log.info("analysis as of %s: %s item(s) due, %s settled without a fetch", as_of,
             len(plan.items), len(plan.writes))
    _check_credentials(checked, plan)
    totals = Totals(skipped=plan.skipped.copy(), links_analysed=plan.copied_links)
    if options.dry_run:
        return _dry_run(checked, plan, totals, as_of, options)
    _apply_settled(db, plan)
    from zos_cli.analyze.execute import Runner  # (not for a dry run: it brings httpx)

    runner = Runner(db, config, checked, options, as_of, totals, on_warning)
    try:
        with ExitStack() as stack:
            runner.open_fetchers(stack, plan, policy, resolver)
            runner.run(plan.items, progress)
    except sqlite3.OperationalError as exc:
        if not db_module.is_busy(exc):
            raise
        totals.errors.append({"item": None, "error": db_module.busy_message(exc)})
        raise TemporaryFailure(db_module.busy_message(exc), summary=summary(
            checked, totals, as_of, remaining=plan.remaining + runner.left)) from exc
    if runner.capped:
        on_warning(f"--max-cost {options.max_cost:g} reached: {runner.left} item(s) left for "
                   "the next run")
    return summary(checked, totals, as_of, remaining=plan.remaining + runner.left)


def _check_credentials(checked: CheckedAnalysis, plan: Plan) -> None:
    """A configured model without its key stops the run (exit 78) before anything is sent,
    but only when there is something for it to do (litellm is not even imported otherwise)."""
    from zos_cli.reflect.llm import check_credentials

    if not checked.vision.offline and any(isinstance(i, MediaItem) and i.is_image
                                          for i in plan.items):
        check_credentials(checked.vision)
    if not checked.summary.offline and any(isinstance(i, LinkItem) for i in plan.items):
        check_credentials(checked.summary)


def _apply_settled(db: sqlite_utils.Database, plan: Plan) -> None:
    if not plan.writes:
        return
    with db_module.write_transaction(db):
        for kind, row_ids, fields in plan.writes:
            (store.set_media if kind == "media" else store.set_links)(db, row_ids, **fields)


def _dry_run(checked: CheckedAnalysis, plan: Plan, totals: Totals, as_of: str,
             options: AnalyzeOptions) -> dict:
    """What a run would do, with nothing fetched, sent or written."""
    from zos_cli.analyze.describe import estimate_cost, estimate_tokens_image

    images = sum(1 for i in plan.items if isinstance(i, MediaItem) and i.is_image)
    files = sum(1 for i in plan.items if isinstance(i, MediaItem)) - images
    urls = [i for i in plan.items if isinstance(i, LinkItem)]
    tokens = cost = 0.0
    if images and not checked.vision.offline:
        image_tokens = images * estimate_tokens_image()
        tokens += image_tokens
        cost += estimate_cost(checked.vision, image_tokens, calls=images) or 0.0
    if urls and not checked.summary.offline:
        page_tokens = len(urls) * typical_page_tokens()
        tokens += page_tokens
        cost += estimate_cost(checked.summary, page_tokens, calls=len(urls)) or 0.0
    return summary(checked, totals, as_of, remaining=plan.remaining, dry_run=True,
                   would_analyse={"images": images, "files": files, "links": len(urls),
                                  "link_rows": sum(len(i.rows) for i in urls)},
                   estimated_tokens=int(tokens), estimated_cost_usd=round(cost, 6))
