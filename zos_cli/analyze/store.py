"""The one module that completes `media_analysis` and `link_analysis` rows.

The writer (observe/rows.py) creates a row per attachment and per link of a stored message
with nothing but what the message said; analysis fills in the rest here, in a second stage
(docs/architecture.md#tables-and-their-home-modules). Reads choose what is due, newest
message first; writes set a row's outcome. Every write runs inside the caller's transaction
(run.py keeps each item's writes in one small transaction of its own).

What is due (the row's `work`):
- `new`: never analysed (`pending`);
- `recheck`: skipped for privacy (`gated_user`, `no_consent`): asked again every run, since
  a role or a consent may have come since; nothing is fetched unless it now passes;
- `retry`: a transient failure (a link's `timeout` or 5xx `http_error`; an attachment's
  `timeout`/`unreachable`, or a failed model call), while `attempts` < MAX_ATTEMPTS;
- `summary`: a link read `ok` whose summary call failed: only the summary is tried again;
- `upgrade`: described offline, and a model is now configured: a model replaces it;
- `stale`: any other outcome that is not `ok`, once `refetch_days` have passed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlite_utils

from zos_cli.ids import json_ids

MAX_ATTEMPTS = 3
PRIVACY_REASONS = ("gated_user", "no_consent")
# An attachment whose source answered this way may answer on a later run.
TRANSIENT_MEDIA_REASONS = ("timeout", "unreachable")

MEDIA_FIELDS = ("status", "skip_reason", "local_path", "sha256", "content_type", "width",
                "height", "duration_seconds", "description", "analyzer", "analyzed_at",
                "attempts", "error")
LINK_FIELDS = ("normalized_url", "status", "skip_reason", "http_status", "attempts", "title",
               "description", "summary", "content_type", "analyzer", "fetched_at",
               "analyzed_at", "error")


@dataclass(frozen=True)
class Place:
    """Where the message that shared an item lives: what the privacy gates ask about."""

    message_id: str
    created_at: str
    channel_id: str
    server_id: str | None  # None: a DM
    author_id: str

    @property
    def is_dm(self) -> bool:
        return self.server_id is None

    @property
    def scope_key(self) -> str:
        """The deduplication scope: the public scope, or one DM channel. What was said of an
        image in a DM is never copied to a row outside that DM."""
        return "public" if self.server_id is not None else f"dm:{self.channel_id}"


@dataclass(frozen=True)
class MediaRow:
    id: str
    place: Place
    url: str
    file_name: str | None
    size_bytes: int | None
    content_type: str | None
    status: str
    skip_reason: str | None
    analyzer: str | None
    attempts: int
    work: str


@dataclass(frozen=True)
class LinkRow:
    id: str
    place: Place
    url: str
    normalized_url: str | None
    status: str
    skip_reason: str | None
    http_status: int | None
    attempts: int
    title: str | None
    description: str | None
    summary: str | None
    content_type: str | None
    analyzer: str | None
    fetched_at: str | None
    analyzed_at: str | None
    error: str | None
    work: str | None  # None: settled (a sibling whose result may be shared)

    def result(self) -> dict:
        """What a settled row learned, to copy onto another row of the same URL."""
        return {"status": self.status, "skip_reason": self.skip_reason,
                "http_status": self.http_status, "title": self.title,
                "description": self.description, "summary": self.summary,
                "content_type": self.content_type, "analyzer": self.analyzer,
                "fetched_at": self.fetched_at, "error": self.error}


_PLACE = "m.id, m.created_at, m.channel_id, m.server_id, m.author_id"

_MEDIA_WORK = """CASE
    WHEN a.status = 'pending' THEN 'new'
    WHEN a.status = 'skipped' AND a.skip_reason IN ('gated_user', 'no_consent') THEN 'recheck'
    WHEN a.attempts < :max_attempts AND (a.status = 'failed' OR (a.status = 'skipped'
         AND a.skip_reason IN ('timeout', 'unreachable'))) THEN 'retry'
    WHEN :upgrade AND a.status = 'ok' AND a.analyzer = 'offline' AND a.width IS NOT NULL
         THEN 'upgrade'
    WHEN a.status IN ('skipped', 'failed') AND coalesce(a.analyzed_at, '') <= :stale_before
         THEN 'stale'
    END"""


def media_due(db: sqlite_utils.Database, *, as_of: str, stale_before: str,
              upgrade_offline: bool) -> list[MediaRow]:
    """Attachments of stored messages (created by `as_of`) that are due, newest first."""
    rows = db.execute(
        f"SELECT * FROM (SELECT a.id, {_PLACE}, a.url, a.file_name, a.size_bytes, "
        f"a.content_type, a.status, a.skip_reason, a.analyzer, a.attempts, {_MEDIA_WORK} AS work "
        "FROM media_analysis a JOIN messages m ON m.id = a.message_id "
        "WHERE m.created_at <= :as_of AND m.deleted_at IS NULL) WHERE work IS NOT NULL "
        "ORDER BY created_at DESC, id DESC",
        {"as_of": as_of, "stale_before": stale_before, "upgrade": int(upgrade_offline),
         "max_attempts": MAX_ATTEMPTS},
    ).fetchall()
    return [MediaRow(r[0], Place(*r[1:6]), *r[6:]) for r in rows]


_LINK_WORK = """CASE
    WHEN l.status = 'pending' THEN 'new'
    WHEN l.status = 'skipped' AND l.skip_reason IN ('gated_user', 'no_consent') THEN 'recheck'
    WHEN l.attempts < :max_attempts AND (l.status = 'timeout'
         OR (l.status = 'http_error' AND l.http_status >= 500)) THEN 'retry'
    WHEN l.status = 'ok' AND l.summary IS NULL AND l.error IS NOT NULL
         AND (l.attempts < :max_attempts OR coalesce(l.fetched_at, '') <= :stale_before)
         THEN 'summary'
    WHEN :upgrade AND l.status = 'ok' AND l.analyzer = 'offline' THEN 'upgrade'
    WHEN l.status NOT IN ('ok', 'pending')
         AND coalesce(l.fetched_at, l.analyzed_at, '') <= :stale_before THEN 'stale'
    END"""

_LINK_COLUMNS = ("l.url, l.normalized_url, l.status, l.skip_reason, l.http_status, l.attempts, "
                 "l.title, l.description, l.summary, l.content_type, l.analyzer, l.fetched_at, "
                 "l.analyzed_at, l.error")


def links_due(db: sqlite_utils.Database, *, as_of: str, stale_before: str,
              upgrade_offline: bool) -> list[LinkRow]:
    """Every link row of a URL that has a row due (the settled rows of that URL too, with
    `work` None: their result may be shared), and the rows not normalized yet; newest
    message first. Rows of messages created after `as_of` are left out."""
    return _links(db, "(normalized_url IS NULL AND work IS NOT NULL) OR normalized_url IN "
                  "(SELECT normalized_url FROM w WHERE work IS NOT NULL "
                  "AND normalized_url IS NOT NULL)",
                  as_of=as_of, stale_before=stale_before, upgrade_offline=upgrade_offline)


def links_of(db: sqlite_utils.Database, urls: Iterable[str], *, as_of: str, stale_before: str,
             upgrade_offline: bool) -> list[LinkRow]:
    """The rows already normalized to one of `urls` (the siblings of rows just normalized)."""
    return _links(db, "normalized_url IN (SELECT value FROM json_each(:urls))",
                  as_of=as_of, stale_before=stale_before, upgrade_offline=upgrade_offline,
                  urls=json_ids(urls))


def _links(db: sqlite_utils.Database, where: str, **params) -> list[LinkRow]:
    params["upgrade"] = int(params.pop("upgrade_offline"))
    params["max_attempts"] = MAX_ATTEMPTS
    rows = db.execute(
        f"WITH w AS (SELECT l.id, {_PLACE}, {_LINK_COLUMNS}, {_LINK_WORK} AS work "
        "FROM link_analysis l JOIN messages m ON m.id = l.message_id "
        "WHERE m.created_at <= :as_of AND m.deleted_at IS NULL) "
        f"SELECT * FROM w WHERE {where} ORDER BY created_at DESC, id DESC",
        params,
    ).fetchall()
    return [LinkRow(r[0], Place(*r[1:6]), *r[6:]) for r in rows]


def dm_participants(db: sqlite_utils.Database, channel_id: str) -> list[str]:
    """The stored participants of a DM channel (everyone but zos), [] when unknown."""
    row = db.execute("SELECT participant_ids FROM channels WHERE id = ?", [channel_id]).fetchone()
    try:
        return [str(p) for p in json.loads(row[0] or "[]")] if row else []
    except ValueError:
        return []


def described_in_scope(db: sqlite_utils.Database, sha256: str, scope_key: str) -> dict | None:
    """A model's description of the same bytes, made for a message of the same scope (the
    public scope, or the same DM channel), newest first; None when there is none. Offline
    descriptions are not shared: they name the row's own file."""
    if scope_key == "public":
        where, params = "m.server_id IS NOT NULL", [sha256]
    else:
        where, params = "m.channel_id = ?", [sha256, scope_key.removeprefix("dm:")]
    row = db.execute(
        "SELECT a.description, a.analyzer, a.width, a.height, a.content_type "
        "FROM media_analysis a JOIN messages m ON m.id = a.message_id "
        f"WHERE a.sha256 = ? AND a.status = 'ok' AND a.analyzer <> 'offline' "
        f"AND a.description <> '' AND {where} ORDER BY a.analyzed_at DESC LIMIT 1",
        params,
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("description", "analyzer", "width", "height", "content_type"), row))


# ------------------------------------------------------------------------------- writes
def _assignments(fields: dict, allowed: Sequence[str]) -> tuple[str, list]:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"not an analysis column: {', '.join(sorted(unknown))}")
    names = [name for name in allowed if name in fields]
    return ", ".join(f"{name} = ?" for name in names), [fields[name] for name in names]


def set_media(db: sqlite_utils.Database, row_ids: Iterable[str], **fields) -> None:
    """Give attachment rows their outcome (caller holds a write transaction)."""
    assignments, values = _assignments(fields, MEDIA_FIELDS)
    db.execute(f"UPDATE media_analysis SET {assignments} "
               "WHERE id IN (SELECT value FROM json_each(?))", [*values, json_ids(row_ids)])


def set_links(db: sqlite_utils.Database, row_ids: Iterable[str], **fields) -> None:
    """Give link rows their outcome (caller holds a write transaction)."""
    assignments, values = _assignments(fields, LINK_FIELDS)
    db.execute(f"UPDATE link_analysis SET {assignments} "
               "WHERE id IN (SELECT value FROM json_each(?))", [*values, json_ids(row_ids)])
