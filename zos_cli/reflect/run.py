"""One layer run: choose targets, assemble their contexts, reflect (model or offline) with
bounded concurrency, store each target as it finishes, and close the run with its totals.

Statuses: running → completed (every attempted target stored) | partial (some failed) |
failed (all failed); `dry_run` runs write only their `layer_runs` row. A target that fails
spends no salience and writes only its `llm_calls` audit rows.

The caller holds the layer's job lock (`zos reflect` takes `reflect-<layer>` after
`check_run`) and says how progress and warnings reach a person (`progress`, `on_warning`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.config import Config
from zos_cli.errors import TemporaryFailure, UsageProblem, ZosError
from zos_cli.progress import Progress, no_progress
from zos_cli import topics
from zos_cli.reflect import llm, store
from zos_cli.reflect.cache import cached_answer
from zos_cli.reflect.context import Context, build_context
from zos_cli.reflect.layers import Layer, get_layer
from zos_cli.reflect.llm import CallRecord, ModelChoice, ModelOutcome, RetryPolicy
from zos_cli.reflect.offline import REFLECTOR as OFFLINE_REFLECTOR
from zos_cli.reflect.offline import reflect_offline
from zos_cli.reflect.offline_terms import Corpus
from zos_cli.reflect.schema import InvalidAnswer, answer_model_for
from zos_cli.reflect.targets import choose_targets

log = logging.getLogger("zos.reflect")  # --verbose: targets and outcomes (never their text)


@dataclass
class RunOptions:
    layer: str
    dry_run: bool = False
    topic: str | None = None
    max_targets: int | None = None
    model: str | None = None
    concurrency: int | None = None
    max_cost: float | None = None
    as_of: str | None = None        # None: the data's clock; "now": the wall clock; or ISO-8601
    cache: bool = False
    layers_dir: Path | None = None  # local override folder (default ./layers)
    record_dry_run: bool = True     # False: a dry run writes no `dry_run` row (zos nightly)


@dataclass
class CheckedRun:
    """What a run was checked to be before it starts: the layer (whose name its job lock
    takes), the model and how many targets go at once."""
    layer: Layer
    choice: ModelChoice
    concurrency: int


@dataclass
class RunTotals:
    ok: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    insights: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    cost_usd: float = 0.0
    revision: dict | None = None   # the self layer's self-concept revision, as stored
    resolutions: list[dict] = field(default_factory=list)  # the reconcile layer's, as applied
    dropped: list[dict] = field(default_factory=list)      # and the resolutions it dropped

    def add_calls(self, calls: list[CallRecord]) -> None:
        self.tokens_input += sum(c.tokens_input for c in calls)
        self.tokens_output += sum(c.tokens_output for c in calls)
        self.cost_usd += sum(c.estimated_cost_usd for c in calls)


def resolve_as_of(db: sqlite_utils.Database, value: str | None) -> str:
    """The run's clock (salience's): the newest stored message by default, so an imported
    export is not judged against today's date; `now` is the wall clock."""
    from zos_cli.salience import resolve_as_of as salience_as_of

    return salience_as_of(db, value or None)


def _at(db: sqlite_utils.Database, as_of: str) -> str:
    """The note's " at <as_of>" for a run whose clock is before the newest stored message:
    its balances are those at that time, not the ones `zos salience top` shows."""
    from zos_cli.salience import data_clock

    clock = data_clock(db)
    return f" at {as_of}" if clock is not None and as_of < clock else ""


def empty_summary(layer_name: str) -> dict:
    """The summary of a run that never started (what a failure before it reports)."""
    return {"layer_run_id": None, "status": "failed", "targets": [], "insights_created": 0,
            "tokens_used": 0, "cost_usd": 0.0, "layer": layer_name}


def _summary(layer: Layer, choice: ModelChoice, as_of: str, **values) -> dict:
    doc = {
        "layer_run_id": None, "status": "completed", "targets": [], "insights_created": 0,
        "tokens_used": 0, "cost_usd": 0.0, "errors": [],
        "layer": layer.name, "layer_hash": layer.hash, "model": choice.label, "as_of": as_of,
        "skipped": [],
    }
    doc.update(values)
    return doc


def check_run(config: Config, options: RunOptions) -> CheckedRun:
    """The layer, model and concurrency of a run, or the usage problem that stops it (before
    any lock is taken or anything is read)."""
    layer = get_layer(options.layer, options.layers_dir)
    choice = llm.resolve_model(config, layer.spec.model, options.model)
    concurrency = (config.reflection.concurrency if options.concurrency is None
                   else options.concurrency)
    if concurrency < 1:
        raise UsageProblem("--concurrency must be at least 1")
    if options.max_cost is not None and not 0 <= options.max_cost < math.inf:
        raise UsageProblem("--max-cost must be a number of US dollars, zero or more")
    return CheckedRun(layer, choice, concurrency)


def run_layer(db: sqlite_utils.Database, config: Config, options: RunOptions, *,
              checked: CheckedRun | None = None, progress: Progress = no_progress,
              on_warning: Callable[[str], None] = log.warning) -> dict:
    """Run one layer (`checked`: what `check_run` gave for these options, if the caller
    already asked); returns the summary of docs/reflection.md#the-run-record (`reflect --json`)."""
    checked = checked or check_run(config, options)
    layer, choice, concurrency = checked.layer, checked.choice, checked.concurrency
    as_of = resolve_as_of(db, options.as_of)
    targets = choose_targets(db, config, layer, topic=options.topic,
                             max_targets=options.max_targets, as_of=as_of)
    log.info("layer %s as of %s: %s target(s): %s", layer.name, as_of, len(targets),
             ", ".join(t.key for t in targets) or "none")
    if not targets and layer.spec.source == "self":
        return _summary(layer, choice, as_of, note=(
            f"nothing salient for layer {layer.name}: zos has run nothing since it last "
            f"reflected on itself and has no {topics.self_topic()} topic{_at(db, as_of)}"))
    if not targets:
        return _summary(layer, choice, as_of, note=_nothing_to_do(db, layer, as_of))
    # Checked once there is something to reflect on: litellm (4 s, 170 MB to import)
    # is not loaded by a run that has nothing to do.
    llm.check_credentials(choice)
    contexts, skipped = [], []
    conflicts = layer.spec.source == "conflicts"  # the reconcile layer (reflect/reconcile.py)
    if conflicts:  # (loaded only when it runs: a dry run of another layer stays light)
        from zos_cli.reflect import reconcile
    for target in targets:
        context = (reconcile.build_context if conflicts else build_context)(
            db, config, layer, target, as_of)
        if context.has_material:
            contexts.append(context)
        else:
            skipped.append({"target": target.key, "reason": "no open conflicts" if conflicts
                            else "nothing new since its last reflection"})
    contexts, estimates, capped = _within_cost(choice, contexts, options.max_cost, on_warning)
    skipped += capped
    if not contexts:
        note = ("nothing new to reflect on for the selected targets" if not capped else
                f"--max-cost {options.max_cost:g} is below the estimated cost of the first "
                f"target ({capped[0]['target']})")
        return _summary(layer, choice, as_of, skipped=skipped, note=note)
    if options.dry_run:
        return _dry_run(db, layer, choice, as_of, contexts, estimates, skipped,
                        record=options.record_dry_run)
    if conflicts and choice.offline:  # (judging a conflict needs a model: report, write nothing)
        return _summary(layer, choice, as_of, targets=[c.target.key for c in contexts],
                        skipped=skipped, note=reconcile.offline_note(contexts))
    run_id = store.start_run(db, layer=layer, as_of=as_of, model_label=choice.label,
                             targets=[c.target.key for c in contexts])
    totals = RunTotals()
    try:
        if choice.offline:
            _run_offline(db, config, run_id, contexts, totals, progress)
        else:
            policy = RetryPolicy.from_config(config)
            costs = [e["cost_usd"] for e in estimates]
            stopped = _run_model(db, config, run_id, choice, policy, list(zip(contexts, costs)),
                                 totals, concurrency, options.cache, options.max_cost, progress)
            skipped += stopped
            contexts = [c for c in contexts
                        if c.target.key not in {s["target"] for s in stopped}]
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        totals.errors.append({"target": None, "error": f"run aborted: {reason}"})
        busy = isinstance(exc, sqlite3.OperationalError) and db_module.is_busy(exc)
        try:
            _finish(db, config, run_id, as_of, contexts, totals, force="failed")
        except sqlite3.OperationalError as again:
            if not (busy and db_module.is_busy(again)):
                raise
        if busy:  # another job held the database: what finished stays; say what it was
            raise TemporaryFailure(db_module.busy_message(exc), summary=_summary(
                layer, choice, as_of, layer_run_id=run_id, status="failed",
                targets=[c.target.key for c in contexts], insights_created=totals.insights,
                tokens_used=totals.tokens_input + totals.tokens_output,
                cost_usd=round(totals.cost_usd, 6), errors=totals.errors,
                skipped=skipped)) from exc
        raise
    status = _finish(db, config, run_id, as_of, contexts, totals)
    # (The self layer's summary says what became of a revision it proposed; the reconcile
    # layer's, what it resolved and what it dropped.)
    extra = {"self_concept": totals.revision} if totals.revision is not None else {}
    if conflicts:
        extra.update(resolutions=totals.resolutions, dropped=totals.dropped)
    return _summary(
        layer, choice, as_of, layer_run_id=run_id, status=status,
        targets=[c.target.key for c in contexts], insights_created=totals.insights,
        tokens_used=totals.tokens_input + totals.tokens_output,
        cost_usd=round(totals.cost_usd, 6), errors=totals.errors, skipped=skipped, **extra,
    )


def _within_cost(choice: ModelChoice, contexts: list[Context], max_cost: float | None,
                 on_warning: Callable[[str], None]):
    """(contexts kept, per-target estimates, skipped): targets are taken in order until the
    next one's estimate would pass `max_cost`. The estimate is the prompt plus a full
    `max_tokens` answer at litellm's prices."""
    estimates, kept, skipped, total = [], [], [], 0.0
    unknown_price = capped = False
    for context in contexts:
        cost = llm.estimate_cost(choice, context.tokens, 0 if choice.offline else choice.max_tokens)
        if cost is None:
            unknown_price, cost = True, 0.0
        if capped or (max_cost is not None and total + cost > max_cost):
            capped = True  # stop taking targets: salience order is kept, none is jumped
            skipped.append({"target": context.target.key,
                            "reason": f"--max-cost {max_cost:g} reached"})
            continue
        total += cost
        kept.append(context)
        estimates.append({"target": context.target.key, "prompt_tokens": context.tokens,
                          "cost_usd": round(cost, 6)})
    if unknown_price and max_cost is not None:
        on_warning(f"litellm knows no price for {choice.model}: --max-cost counts it as free")
    return kept, estimates, skipped


def _dry_run(db, layer, choice, as_of, contexts, estimates, skipped, *, record: bool) -> dict:
    tokens = sum(e["prompt_tokens"] for e in estimates)
    cost = round(sum(e["cost_usd"] for e in estimates), 6)
    run_id = store.start_run(db, layer=layer, as_of=as_of, model_label=choice.label,
                             targets=[c.target.key for c in contexts], status="dry_run",
                             tokens_input=tokens, cost_usd=cost) if record else None
    return _summary(layer, choice, as_of, layer_run_id=run_id, status="dry_run",
                    targets=[c.target.key for c in contexts], tokens_used=tokens,
                    cost_usd=cost, estimates=estimates, skipped=skipped)


def _store(db, config, run_id, context: Context, outcome: ModelOutcome, totals: RunTotals, *,
           reflector: str, model_label: str, tokens: int, cache_entry: dict | None) -> bool:
    try:
        if hasattr(context, "pairs"):  # a reconcile.ReconcileContext
            from zos_cli.reflect import reconcile

            stored = reconcile.store_answer(
                db, run_id=run_id, context=context, answer=outcome.answer, calls=outcome.calls,
                reflector=reflector, model_label=model_label, cache_entry=cache_entry)
            totals.resolutions += stored.resolutions
            totals.dropped += stored.dropped
        else:
            stored = store.store_target(
                db, config, run_id=run_id, context=context, answer=outcome.answer,
                calls=outcome.calls, tokens=tokens, reflector=reflector,
                model_label=model_label, cache_entry=cache_entry,
            )
    except (ZosError, sqlite3.Error) as exc:
        _fail(db, run_id, context, outcome.calls, f"could not store: {exc}", totals)
        return False
    totals.ok.append(context.target.key)
    totals.insights += len(stored.insight_ids)
    if stored.self_concept is not None:
        totals.revision = stored.self_concept
    log.info("%s: %s insight(s) stored, %s tokens", context.target.key,
             len(stored.insight_ids), tokens)
    totals.add_calls(outcome.calls)
    return True


def _fail(db, run_id, context: Context, calls: list[CallRecord], error: str,
          totals: RunTotals) -> None:
    store.record_calls(db, run_id, calls, context)
    totals.add_calls(calls)
    totals.errors.append({"target": context.target.key, "error": error})
    # (Not the error's text: a provider's error may quote the prompt, messages included.)
    log.info("%s: failed (the run's errors say why)", context.target.key)


def _run_offline(db, config, run_id: str, contexts: list[Context], totals: RunTotals,
                 progress: Progress) -> None:
    corpus = Corpus.open(db, config)   # (the full-text index's size, counted once a run)
    with progress("Reflecting (offline)", len(contexts)) as bar:
        for context in contexts:
            try:
                outcome = ModelOutcome(reflect_offline(context, corpus), [])
            except (InvalidAnswer, ValueError) as exc:  # (pydantic's ValidationError is one)
                # What it wrote from the names it read is not a valid insight (markup, say):
                # this target fails, the others go on.
                _fail(db, run_id, context, [], f"the offline reflector's insight is not valid: "
                      f"{str(exc).splitlines()[0]}", totals)
                bar.advance()
                continue
            # The offline reflector's tokens are the context it read (docs/salience.md#spending).
            if _store(db, config, run_id, context, outcome, totals, reflector=OFFLINE_REFLECTOR,
                      model_label=llm.OFFLINE, tokens=context.tokens, cache_entry=None):
                totals.tokens_input += context.tokens
            bar.advance()


def _run_model(db, config, run_id: str, choice: ModelChoice, policy: RetryPolicy,
               work: list[tuple[Context, float]], totals: RunTotals, concurrency: int,
               use_cache: bool, max_cost: float | None, progress: Progress) -> list[dict]:
    """Model calls run in a thread pool, at most `concurrency` targets at once; every
    database write stays on this thread, one transaction per finished target, so a crash
    keeps what finished. With `max_cost`, a target starts only while what the finished calls
    cost, plus the estimates of those in flight and its own, stays within it (repairs and
    retries cost more than estimated): the targets left are returned as skipped."""
    queue = deque(work)
    pending: dict = {}  # future → (context, cache entry, estimate)
    stopped: list[dict] = []

    def start_more(pool, bar) -> None:
        while queue and len(pending) < concurrency:
            context, estimate = queue[0]
            entry = None
            if use_cache:
                cached, entry = cached_answer(db, choice, context)
                if cached is not None:  # (a replay costs nothing)
                    queue.popleft()
                    _store(db, config, run_id, context, cached, totals, reflector="model",
                           model_label=choice.label, tokens=cached.tokens, cache_entry=entry)
                    bar.advance()
                    continue
            in_flight = sum(e for _c, _e, e in pending.values())
            if max_cost is not None and totals.cost_usd + in_flight + estimate > max_cost:
                stopped.extend({"target": c.target.key, "reason": f"--max-cost {max_cost:g} "
                                f"reached (the calls so far cost {totals.cost_usd:.6f})"}
                               for c, _e in queue)
                queue.clear()
                return
            queue.popleft()
            future = pool.submit(llm.reflect, choice, context.prompt,
                                 topic_key=context.target.key, policy=policy,
                                 answer_model=answer_model_for(context.layer))
            pending[future] = (context, entry, estimate)

    with progress("Reflecting", len(work)) as bar, \
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="reflect") as pool:
        try:
            start_more(pool, bar)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    _take_result(db, config, run_id, choice, future, pending, totals)
                    del pending[future]
                    bar.advance()
                start_more(pool, bar)
        except BaseException:
            for future in pending:
                future.cancel()  # an interrupt stops the queue; calls in flight end by timeout
            raise
    return stopped


def _take_result(db, config, run_id: str, choice: ModelChoice, future, pending: dict,
                 totals: RunTotals) -> None:
    """Store (or record the failure of) one finished target."""
    context, entry, _estimate = pending[future]
    outcome = future.result()
    if outcome.answer is None:
        _fail(db, run_id, context, outcome.calls, outcome.error or "no answer", totals)
        return
    if entry is not None:
        ok = outcome.calls[-1]
        entry.update(response=outcome.raw_answer, tokens_input=ok.tokens_input,
                     tokens_output=ok.tokens_output)
    _store(db, config, run_id, context, outcome, totals, reflector="model",
           model_label=choice.label, tokens=outcome.tokens, cache_entry=entry)


def _finish(db, config, run_id: str, as_of: str, contexts: list[Context], totals: RunTotals,
            force: str | None = None) -> str:
    attempted = len(contexts)
    failed = len([e for e in totals.errors if e["target"] is not None])
    if force:
        status = force
    elif failed == 0:
        status = "completed"
    elif failed < attempted:
        status = "partial"
    else:
        status = "failed"
    store.finish_run(
        db, config, run_id, status=status, as_of=as_of,
        targets=[c.target.key for c in contexts], targets_ok=len(totals.ok),
        targets_failed=failed, insights_created=totals.insights,
        tokens_input=totals.tokens_input, tokens_output=totals.tokens_output,
        cost_usd=round(totals.cost_usd, 6), errors=totals.errors,
    )
    return status


def _nothing_to_do(db: sqlite_utils.Database, layer, as_of: str) -> str:
    """Why a layer found no target, in the terms of how it picks them."""
    if layer.spec.source == "conflicts":
        return f"nothing to reconcile: no topic has open conflicts{_at(db, as_of)}"
    if layer.categories == ["subjects"]:
        return (f"nothing salient for layer {layer.name}: no established subject{_at(db, as_of)} "
                "(a subject is established once insights about [subjects] promote_after "
                "targets name it, or by `zos subjects promote NAME`)")
    return (f"nothing salient for layer {layer.name}: no {'/'.join(layer.categories)} topic "
            f"has a balance of {layer.spec.min_salience:g} or more{_at(db, as_of)}")
