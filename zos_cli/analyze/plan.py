"""What a `zos analyze` run will do, decided before anything is fetched or sent.

From the rows that are due (store.py), newest message first: which are refused by the
privacy gates (a DM whose consent does not hold: `no_consent`; a user without the server's
privacy-gate role: `gated_user`), which links are not URLs zos fetches (`invalid_url`) or are
excluded by the domain lists (`denied_domain`), which link rows take the result another row
of the same URL already has (no fetch), and the work left: one item per attachment, one item
per normalized URL (one fetch, shared by every row of that URL). A dry run stops here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from zos_cli.analyze import store
from zos_cli.analyze.addresses import domain_matches, normalize_url, parse_url
from zos_cli.analyze.store import LinkRow, MediaRow, Place
from zos_cli.config import Config
from zos_cli.privacy.consent import dm_may_be_stored
from zos_cli.privacy.gate import passes_gate
from zos_cli.store.db import self_user_id


class Gates:
    """The privacy gates, asked once per DM channel and once per (server, author)."""

    def __init__(self, db: sqlite_utils.Database, config: Config) -> None:
        self.db, self.config = db, config
        self.me = self_user_id(db, config)
        self._dm: dict[str, bool] = {}
        self._gate: dict[tuple[str, str], bool] = {}

    def refusal(self, place: Place) -> str | None:
        """Why this message's items may not be read (None: they may)."""
        if place.is_dm:
            if place.channel_id not in self._dm:
                participants = store.dm_participants(self.db, place.channel_id)
                self._dm[place.channel_id] = dm_may_be_stored(self.db, participants,
                                                              self_id=self.me)
            return None if self._dm[place.channel_id] else "no_consent"
        key = (place.server_id, place.author_id)
        if key not in self._gate:
            self._gate[key] = passes_gate(self.db, self.config, place.server_id, place.author_id)
        return None if self._gate[key] else "gated_user"


@dataclass
class MediaItem:
    row: MediaRow
    local_path: Path | None
    is_image: bool  # likely an image (what an estimate counts); the bytes decide

    @property
    def created_at(self) -> str:
        return self.row.place.created_at


@dataclass
class LinkItem:
    url: str                 # normalized: one fetch for every row
    rows: list[LinkRow]      # the rows it completes (all admitted by the gates)
    attempt: int             # which attempt this fetch is (retries count up to MAX_ATTEMPTS)

    @property
    def created_at(self) -> str:
        return self.rows[0].place.created_at


@dataclass
class Plan:
    items: list[MediaItem | LinkItem] = field(default_factory=list)  # newest first
    # Settled without a fetch, written before the work starts: (kind, row ids, fields).
    writes: list[tuple[str, list[str], dict]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # status or skip reason → rows
    copied_links: int = 0    # link rows that take another row's result (ok ones)
    remaining: int = 0       # items due but beyond --limit


def make_plan(db: sqlite_utils.Database, config: Config, *, media: bool, links: bool,
              as_of: str, stale_before: str, upgrade_images: bool, upgrade_links: bool,
              limit: int | None) -> Plan:
    plan, gates = Plan(), Gates(db, config)
    media_items = _plan_media(db, plan, gates, as_of=as_of, stale_before=stale_before,
                              upgrade=upgrade_images) if media else []
    link_items = _plan_links(db, config, plan, gates, as_of=as_of, stale_before=stale_before,
                             upgrade=upgrade_links) if links else []
    items = sorted(media_items + link_items, key=lambda i: i.created_at, reverse=True)
    if limit is not None and len(items) > limit:
        plan.remaining = len(items) - limit
        items = items[:limit]
    plan.items = items
    return plan


def _plan_media(db, plan: Plan, gates: Gates, *, as_of: str, stale_before: str,
                upgrade: bool) -> list[MediaItem]:
    from zos_cli.analyze.work import looks_like_image

    items = []
    for row in store.media_due(db, as_of=as_of, stale_before=stale_before,
                               upgrade_offline=upgrade):
        refusal = gates.refusal(row.place)
        if refusal is not None:
            plan.skipped[refusal] += 1
            if not (row.status == "skipped" and row.skip_reason == refusal):
                plan.writes.append(("media", [row.id], {
                    "status": "skipped", "skip_reason": refusal, "error": None,
                    "analyzed_at": as_of}))
            continue
        local = None
        if parse_url(row.url) is None:  # an export's asset path, not a web address
            from zos_cli.analyze.images import resolve_local_path

            local = resolve_local_path(db, row.place.message_id, row.url)
        image = looks_like_image(row.file_name, row.content_type, str(local or row.url))
        items.append(MediaItem(row, local, image))
    return items


def _plan_links(db, config: Config, plan: Plan, gates: Gates, *, as_of: str,
                stale_before: str, upgrade: bool) -> list[LinkItem]:
    groups: dict[str, list[LinkRow]] = {}
    window = {"as_of": as_of, "stale_before": stale_before, "upgrade_offline": upgrade}
    due = store.links_due(db, **window)
    # Rows not normalized yet: the rows stored under the same URL may have its result.
    fresh = {normalize_url(r.url) for r in due if r.normalized_url is None} - {None}
    known = {r.id for r in due}
    due += [r for r in store.links_of(db, fresh, **window) if r.id not in known]
    due.sort(key=lambda r: (r.place.created_at, r.id), reverse=True)
    for row in due:
        url = row.normalized_url or normalize_url(row.url)
        if url is None:
            if row.work is not None:  # not a URL zos fetches: settled without a request
                plan.skipped["invalid_url"] += 1
                plan.writes.append(("link", [row.id], {
                    "status": "invalid_url", "skip_reason": None, "error": None,
                    "fetched_at": None, "analyzed_at": as_of, "attempts": 1}))
            continue
        groups.setdefault(url, []).append(row)
    analysis = config.analysis
    items = []
    for url, rows in groups.items():  # (in order of each URL's newest row)
        admitted = []
        for row in rows:
            refusal = gates.refusal(row.place)
            if refusal is None:
                admitted.append(row)
            elif row.work is not None:
                plan.skipped[refusal] += 1
                if not (row.status == "skipped" and row.skip_reason == refusal):
                    plan.writes.append(("link", [row.id], {
                        "normalized_url": url, "status": "skipped", "skip_reason": refusal,
                        "error": None, "analyzed_at": as_of}))
        due = [row for row in admitted if row.work is not None]
        if not due:
            continue
        settled = sorted((row for row in rows if row.work is None),
                         key=lambda r: r.fetched_at or r.analyzed_at or "", reverse=True)
        if settled:  # this URL was already read (for another message): share that
            result = settled[0].result()
            plan.writes.append(("link", [row.id for row in due], {
                **result, "normalized_url": url, "analyzed_at": as_of,
                "attempts": settled[0].attempts}))
            if result["status"] == "ok":
                plan.copied_links += len(due)
            else:
                plan.skipped[_reason(result)] += len(due)
            continue
        host = parse_url(url).host
        if domain_matches(host, analysis.deny_domains) or (
                analysis.allow_domains and not domain_matches(host, analysis.allow_domains)):
            plan.skipped["denied_domain"] += len(due)
            plan.writes.append(("link", [row.id for row in due], {
                "normalized_url": url, "status": "skipped", "skip_reason": "denied_domain",
                "error": None, "analyzed_at": as_of, "attempts": 1}))
            continue
        retried = [row.attempts for row in due if row.work in ("retry", "summary", "upgrade")]
        items.append(LinkItem(url, due, 1 + max(retried, default=0)))
    return items


def _reason(result: dict) -> str:
    return result["skip_reason"] if result["status"] == "skipped" else result["status"]
