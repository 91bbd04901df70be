"""The working part of a `zos analyze` run: a thread pool reads, fetches and describes; this
thread decides, deduplicates and writes (run.py explains the whole).

Three kinds of job go to the pool: reading an attachment (a local file, or its URL through
the image fetcher), describing an image (the model), and reading a link (one fetch per
normalized URL, then its summary). A finished job's outcome is written here at once, in its
own transaction, with the model calls it made (`llm_calls`, tied to the rows it served).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack

import sqlite_utils

from zos_cli.analyze import store, work
from zos_cli.analyze.plan import LinkItem, MediaItem, Plan
from zos_cli.analyze.results import Totals
from zos_cli.progress import Progress
from zos_cli.config import Config
from zos_cli.reflect.llm import OFFLINE, RetryPolicy
from zos_cli.store import db as db_module

log = logging.getLogger("zos.analyze")

_DESCRIBE = "describe"  # the job kind of an image description


class Runner:
    def __init__(self, db: sqlite_utils.Database, config: Config, checked, options, as_of: str,
                 totals: Totals, on_warning: Callable[[str], None]) -> None:
        self.db, self.config, self.checked, self.options = db, config, checked, options
        self.as_of, self.totals, self.on_warning = as_of, totals, on_warning
        self.policy = RetryPolicy.from_config(config)
        self.link_fetcher = self.image_fetcher = None
        self.capped = False
        self.left = 0  # items not taken because --max-cost was reached
        self._estimates: dict[str, float] = {}
        # (sha256, scope) → the rows waiting for the description in flight for those bytes
        self._describing: dict[tuple[str, str], list[tuple[MediaItem, work.MediaRead]]] = {}

    # ------------------------------------------------------------------ set-up
    def open_fetchers(self, stack: ExitStack, plan: Plan, policy, resolver) -> None:
        from zos_cli.analyze.addresses import AddressPolicy
        from zos_cli.analyze.fetch import Fetcher

        analysis = self.config.analysis
        policy = policy or AddressPolicy(allow_private_addresses=analysis.allow_private_addresses)
        extra = {"resolver": resolver} if resolver is not None else {}
        if any(isinstance(i, LinkItem) for i in plan.items):
            self.link_fetcher = stack.enter_context(Fetcher(
                user_agent=analysis.user_agent, policy=policy, max_bytes=analysis.max_link_bytes,
                allow_domains=analysis.allow_domains, deny_domains=analysis.deny_domains,
                **extra))
        wants_images = any(isinstance(i, MediaItem) and i.local_path is None
                           for i in plan.items)
        if wants_images and self.link_fetcher is not None and not (
                analysis.allow_domains or analysis.deny_domains):
            self.image_fetcher = self.link_fetcher  # one robots.txt cache (caps are per call)
        elif wants_images:
            # Attachments come from Discord's CDN: the domain lists are for shared links.
            self.image_fetcher = stack.enter_context(Fetcher(
                user_agent=analysis.user_agent, policy=policy,
                max_bytes=analysis.max_image_bytes, **extra))

    def _estimate(self, kind: str) -> float:
        """USD one model job of this kind is estimated to cost (0 offline)."""
        if kind not in self._estimates:
            from zos_cli.analyze.describe import estimate_cost, estimate_tokens_image

            if kind == _DESCRIBE:
                choice, tokens = self.checked.vision, estimate_tokens_image()
            else:
                choice, tokens = self.checked.summary, work.typical_page_tokens()
            cost = 0.0 if choice.offline else estimate_cost(choice, tokens)
            if cost is None:
                cost = 0.0
                if self.options.max_cost is not None:
                    self.on_warning(f"litellm knows no price for {choice.model}: --max-cost "
                                    "counts it as free")
            self._estimates[kind] = cost
        return self._estimates[kind]

    # ------------------------------------------------------------------ the loop
    def run(self, items: list, progress: Progress) -> None:
        queue: deque = deque(items)
        describe_queue: deque = deque()  # (item, read): images waiting for the model
        pending: dict[Future, tuple[str, object, float]] = {}
        concurrency = self.options.concurrency
        # `concurrency` workers, and as many jobs again waiting in the pool's queue: a worker
        # that finishes takes the next job at once, without waiting for this thread to
        # write the last outcome and hand it one.
        backlog = 2 * concurrency

        def over_cap(estimate: float) -> bool:
            if self.options.max_cost is None or estimate == 0:
                return False
            in_flight = sum(e for _k, _i, e in pending.values())
            return self.totals.cost_usd + in_flight + estimate > self.options.max_cost

        def start_more(pool) -> None:
            while len(pending) < backlog and (describe_queue or queue):
                if describe_queue:
                    item, read = describe_queue.popleft()
                    estimate = self._estimate(_DESCRIBE)
                    if self.capped or over_cap(estimate):
                        bar.advance(self._stop_at_cap(item, read))
                        continue
                    future = pool.submit(work.describe, self.checked.vision, read.data,
                                         policy=self.policy)
                    pending[future] = (_DESCRIBE, (item, read), estimate)
                    continue
                item = queue.popleft()
                if isinstance(item, LinkItem):
                    estimate = 0.0 if self.checked.summary.offline else self._estimate("link")
                    if self.capped or over_cap(estimate):
                        self._stop_at_cap(item)
                        bar.advance()
                        continue
                    future = pool.submit(work.read_link, item.url, fetcher=self.link_fetcher,
                                         choice=self.checked.summary, policy=self.policy)
                    pending[future] = ("link", item, estimate)
                else:
                    if self.capped and item.is_image and not self.checked.vision.offline:
                        self._stop_at_cap(item)
                        bar.advance()
                        continue
                    row = item.row
                    future = pool.submit(
                        work.read_media, url=row.url, file_name=row.file_name,
                        content_type=row.content_type, size_bytes=row.size_bytes,
                        local_path=item.local_path, is_image=item.is_image,
                        fetcher=self.image_fetcher,
                        max_bytes=self.config.analysis.max_image_bytes)
                    pending[future] = ("media", item, 0.0)

        with progress("Analysing", len(items)) as bar, \
                ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="analyze") as pool:
            try:
                start_more(pool)
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        kind, item, _estimate = pending.pop(future)
                        result = future.result()
                        if kind == "link":
                            self._link_done(item, result)
                            bar.advance()
                        elif kind == "media":
                            if self._media_read(item, result, describe_queue):
                                bar.advance()
                        else:
                            bar.advance(self._described(*item, result))
                    start_more(pool)
            except BaseException:
                for future in pending:
                    future.cancel()  # an interrupt stops the queue; what is in flight ends
                raise

    def _stop_at_cap(self, item, read: work.MediaRead | None = None) -> int:
        """Leave an item (and, for an image, the rows waiting for its description) due for
        the next run; returns how many items that is."""
        if not self.capped:
            self.capped = True
            log.info("--max-cost %s reached: no more model calls", self.options.max_cost)
        if isinstance(item, LinkItem):
            self.left += 1
            self.totals.skipped["max_cost"] += len(item.rows)
            return 1
        items = 1 + (len(self._describing.pop(self._key(item, read), []))
                     if read is not None else 0)
        self.left += items
        self.totals.skipped["max_cost"] += items
        return items

    # ------------------------------------------------------------------ media
    @staticmethod
    def _key(item: MediaItem, read: work.MediaRead) -> tuple[str, str]:
        return (read.facts.sha256, item.row.place.scope_key)

    def _media_read(self, item: MediaItem, read: work.MediaRead, describe_queue: deque) -> bool:
        """Write what reading gave, or queue the image for its description. True when the
        item is done."""
        row = item.row
        attempt = row.attempts + 1 if row.work in ("retry", "upgrade") else 1
        if read.error is not None or read.skip is not None:
            if row.status == "ok":  # an offline description stays; the upgrade waits
                self._write_media(row, error=read.error or read.detail, attempts=attempt)
            elif read.error is not None:
                self._write_media(row, status="failed", error=read.error, attempts=attempt,
                                  analyzed_at=self.as_of)
                self.totals.errors.append({"item": f"media:{row.id}", "error": read.error})
            else:
                self._write_media(row, status="skipped", skip_reason=read.skip,
                                  error=read.detail, attempts=attempt, analyzed_at=self.as_of)
                self.totals.skipped[read.skip] += 1
            return True
        if read.facts is None:  # not an image: what the file says of itself, no model
            facts = read.file
            self._write_media(
                row, status="ok", skip_reason=None, local_path=_path(item), sha256=None,
                content_type=facts.content_type or row.content_type, width=None, height=None,
                duration_seconds=facts.duration_seconds,
                description=_file_description(facts), analyzer=OFFLINE,
                analyzed_at=self.as_of, attempts=attempt, error=None)
            self.totals.media_analysed += 1
            return True
        known = store.described_in_scope(self.db, read.facts.sha256, row.place.scope_key)
        if known is not None:  # the same bytes, described for this scope before
            self._image_ok(item, read, known["description"], known["analyzer"], attempt)
            return True
        if self.checked.vision.offline:
            from zos_cli.analyze.images import offline_image_description

            self._image_ok(item, read, offline_image_description(read.facts, row.file_name or ""),
                           OFFLINE, attempt)
            return True
        key = self._key(item, read)
        if key in self._describing:  # the same bytes are being described: wait for it
            self._describing[key].append((item, read))
            return False
        self._describing[key] = []
        describe_queue.appendleft((item, read))
        return False

    def _described(self, item: MediaItem, read: work.MediaRead, outcome) -> int:
        """Write the model's description (or its failure) to the row and to every row that
        waited for the same bytes, with the calls tied to all of them; returns how many."""
        served = [(item, read)] + self._describing.pop(self._key(item, read), [])
        self.totals.add_cost(outcome.tokens, outcome.cost_usd)
        with db_module.write_transaction(self.db):
            for each, each_read in served:
                row = each.row
                attempt = row.attempts + 1 if row.work in ("retry", "upgrade") else 1
                if outcome.text is not None:
                    self._image_ok(each, each_read, outcome.text, self.checked.vision.label,
                                   attempt, transaction=False)
                elif row.status == "ok":
                    store.set_media(self.db, [row.id], error=outcome.error, attempts=attempt)
                else:
                    store.set_media(self.db, [row.id], status="failed", error=outcome.error,
                                    attempts=attempt, analyzed_at=self.as_of,
                                    sha256=each_read.facts.sha256)
                    self.totals.errors.append({"item": f"media:{row.id}",
                                               "error": outcome.error or "no description"})
            self._record_calls(outcome.calls, [("media", each.row.id) for each, _r in served])
        return len(served)

    def _image_ok(self, item: MediaItem, read: work.MediaRead, description: str, analyzer: str,
                  attempt: int, *, transaction: bool = True) -> None:
        facts = read.facts
        fields = dict(status="ok", skip_reason=None, local_path=_path(item), sha256=facts.sha256,
                      content_type=facts.content_type, width=facts.width, height=facts.height,
                      duration_seconds=None, description=description, analyzer=analyzer,
                      analyzed_at=self.as_of, attempts=attempt, error=None)
        if transaction:
            self._write_media(item.row, **fields)
        else:
            store.set_media(self.db, [item.row.id], **fields)
        self.totals.media_analysed += 1

    def _write_media(self, row, **fields) -> None:
        with db_module.write_transaction(self.db):
            store.set_media(self.db, [row.id], **fields)

    # ------------------------------------------------------------------ links
    def _link_done(self, item: LinkItem, read: work.LinkRead) -> None:
        fetched, ids = read.fetch, [row.id for row in item.rows]
        self.totals.add_cost(read.tokens, read.cost_usd)
        error = None
        with db_module.write_transaction(self.db):
            if fetched.ok:
                error = read.error
                store.set_links(
                    self.db, ids, normalized_url=item.url, status="ok", skip_reason=None,
                    http_status=fetched.http_status, content_type=fetched.content_type,
                    title=read.title, description=read.description,
                    summary=None if error else read.summary,
                    analyzer=self.checked.summary.label if error else read.analyzer,
                    fetched_at=self.as_of, analyzed_at=self.as_of, attempts=item.attempt,
                    error=error)
                if not error:
                    self.totals.links_analysed += len(ids)
            else:
                # Rows already read `ok` keep what they have (a summary retry, or an upgrade
                # of an offline summary, whose page is now out of reach).
                kept = [row for row in item.rows if row.status == "ok"]
                failed = [row.id for row in item.rows if row.status != "ok"]
                if failed:
                    store.set_links(
                        self.db, failed, normalized_url=item.url, status=fetched.status,
                        skip_reason=None, http_status=fetched.http_status,
                        content_type=fetched.content_type, title=None, description=None,
                        summary=None, analyzer=None, fetched_at=self.as_of,
                        analyzed_at=self.as_of, attempts=item.attempt,
                        error=fetched.detail)
                    self.totals.skipped[fetched.status] += len(failed)
                if kept:
                    retried = [row.id for row in kept if row.summary is None]
                    if retried:
                        error = f"the page could not be read again: {fetched.status}"
                        store.set_links(self.db, retried, attempts=item.attempt, error=error)
                    upgraded = [row.id for row in kept if row.summary is not None]
                    if upgraded:
                        store.set_links(self.db, upgraded, attempts=item.attempt)
            self._record_calls(read.calls or [], [("link", row_id) for row_id in ids])
        if error:
            self.totals.errors.append({"item": f"link:{item.url}", "error": error})

    def _record_calls(self, calls: list, sources: list[tuple[str, str]]) -> None:
        if calls:
            from zos_cli.reflect.store import record_analysis_calls

            record_analysis_calls(self.db, calls, sources)


def _path(item: MediaItem) -> str | None:
    return str(item.local_path) if item.local_path is not None else None


def _file_description(facts) -> str:
    from zos_cli.analyze.files import offline_file_description

    return offline_file_description(facts)
