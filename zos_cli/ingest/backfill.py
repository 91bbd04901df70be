"""`zos ingest --token`: a channel's full history through the REST API.

Pages go back in time with `before=` (newest first), including archived public threads.
Each page is written by the one writer (in snowflake order within the page) in the same
transaction as the channel's checkpoint in `backfill_state` (the oldest message stored), so a
killed backfill resumes at that checkpoint with no duplicate and no gap. A channel is
`complete` once its first message was reached; `--since T` stops earlier without marking it
complete (a later run with an older `--since` goes on from the checkpoint). Every channel of a
run gets an `ingest_log` row (kind `api`, path `api:channel:<id>`) with its counts.
New messages are stored marked `salience_pending` and earned at the end of the run, in
snowflake order over every channel (salience/pending.py): pages arrive newest first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timezone

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.store.audit import counts_of, record_event
from zos_cli.config import discord_api_base
from zos_cli.sources.discord import api
from zos_cli.sources.discord import discovery
from zos_cli.ingest import cursors as store
from zos_cli.ingest import log as ingest_log
from zos_cli.sources.discord.client import DiscordClient, DiscordToken
from zos_cli.sources.discord.errors import DiscordForbidden, DiscordRequestFailed
from zos_cli.ingest.pages import CONTENT_INTENT_ERROR, PageWriter
from zos_cli.ingest.poll import unexpected
from zos_cli.errors import UsageProblem, ZosError
from zos_cli.ids import new_id
from zos_cli.records import ChannelRecord
from zos_cli.timeutil import parse_time, time_to_snowflake

# Warnings for the person running the job go to `on_warning`; without one, here.
log = logging.getLogger("zos.backfill")

PAGE = api.PAGE


@dataclass
class BackfillOptions:
    channel_ids: list[str]
    guild_ids: list[str]
    since: str | None = None           # ISO-8601 time; None: the whole history


@dataclass
class BackfillReport:
    summary: dict
    fatal: ZosError | None = None


class BackfillRun:
    def __init__(self, db: sqlite_utils.Database, config, client: DiscordClient,
                 options: BackfillOptions, *, stop: threading.Event | None = None,
                 on_warning: Callable[[str], None] = log.warning):
        self.db = db
        self.on_warning = on_warning
        self.config = config
        self.client = client
        self.options = options
        self.stop = stop or threading.Event()
        self.run_id = new_id()
        self.since_id = _since_snowflake(options.since)
        self.skipped: list[dict] = []
        self.errors: list[dict] = []
        self.channels = self.complete = 0
        self.writer = None

    def run(self) -> BackfillReport:
        fatal = None
        try:
            self._run()
        except ZosError as exc:
            fatal = exc
            self.errors.append({"channel": None, "error": exc.message})
        summary = self._summary()
        with db_module.write_transaction(self.db):
            record_event(self.db, "backfill", counts_of(summary))
        return BackfillReport(summary, fatal)

    def _run(self) -> None:
        from zos_cli.observe.writer import ObservationWriter
        from zos_cli.salience import SalienceEngine
        from zos_cli.salience.pending import earn_pending

        self._close_interrupted()
        self_id = str(api.current_user(self.client)["id"])
        with db_module.write_transaction(self.db):
            db_module.remember_self_user_id(self.db, self_id)
        found = discovery.discover(self.client, guild_ids=self.options.guild_ids,
                                   channel_ids=self.options.channel_ids, archived_threads=True)
        self.skipped += found.skipped
        self.errors += found.errors
        engine = SalienceEngine(self.db, self.config, self_user_id=self_id)
        self.writer = ObservationWriter(self.db, self.config, source_type="backfill",
                                        source_id=self.run_id, engine=engine)
        self.writer.batch_label = f"backfill {self.run_id}"
        # Pages come newest first, channel after channel: new messages earn at the end, in
        # snowflake order across the run (salience/pending.py), not as they arrive.
        self.writer.defer_new_messages = True
        self.pages = PageWriter(self.db, self.config, self.client, self.writer, engine, self_id,
                                on_warning=self.on_warning)
        for channel in found.channels:
            if self.stop.is_set():
                break
            self._channel(channel)
        # (Stopped: the next export ingest, first thing, or backfill earns what is marked.)
        if not self.stop.is_set():
            earn_pending(self.db, self.config, engine, f"backfill {self.run_id}")

    def _close_interrupted(self) -> None:
        """ingest_log rows a killed backfill left 'running' (we hold the ingest lock)."""
        with db_module.write_transaction(self.db):
            ingest_log.mark_interrupted(
                self.db, "api", "interrupted: the backfill stopped before this channel was "
                "finished; its checkpoint keeps what was stored")

    # ------------------------------------------------------------------ one channel
    def _channel(self, channel: ChannelRecord) -> None:
        self.channels += 1
        point = store.checkpoint(self.db, channel.id)
        if point.complete:
            self.complete += 1
            return
        log_id = new_id()
        self._log(log_id, channel, "running")
        status, error = "completed", None
        try:
            done = self._pages(channel, point.oldest_message_id, log_id)
            self.complete += done
        except DiscordForbidden as exc:
            self.skipped.append({"channel": channel.id, "reason": exc.message})
            status, error = "failed", exc.message
        except DiscordRequestFailed as exc:
            self.errors.append({"channel": channel.id, "error": exc.message})
            status, error = "failed", exc.message
        except (KeyError, TypeError, ValueError) as exc:
            error = unexpected(exc)
            self.errors.append({"channel": channel.id, "error": error})
            status = "failed"
        except ZosError as exc:
            self._log(log_id, channel, "failed", exc.message)
            raise
        if status == "completed" and self.stop.is_set():
            status, error = "failed", "stopped (SIGTERM): the checkpoint keeps what was stored"
        self._log(log_id, channel, status, error)

    def _pages(self, channel: ChannelRecord, before: str | None, log_id: str) -> bool:
        """Pages back from `before` (None: the newest); True once the channel is complete."""
        while not self.stop.is_set():
            page = api.messages(self.client, channel.id, limit=PAGE, before=before)
            if self.pages.content_missing(channel, page):
                raise DiscordRequestFailed(CONTENT_INTENT_ERROR)
            # An empty first page is no proof of an empty channel: Discord answers one when the
            # bot lacks Read Message History. Not marked complete, it is read again next time.
            reached_start = len(page) < PAGE and (bool(page) or before is not None)
            kept = [m for m in page if self.since_id is None or int(m["id"]) >= self.since_id]
            reached_since = len(kept) < len(page)
            oldest = min((str(m["id"]) for m in kept), key=int, default=None)
            records = self.pages.records(kept)
            counts = lambda: self._update_log(log_id)  # noqa: E731
            self.pages.write(
                channel, records, source_id=log_id,
                also=lambda: (store.save_checkpoint(self.db, channel, oldest, reached_start
                                                    and not reached_since), counts()),
            )
            if reached_start or reached_since or oldest is None:
                return reached_start and not reached_since
            before = oldest
        return False

    # ------------------------------------------------------------------ ingest_log
    def _log(self, log_id: str, channel: ChannelRecord, status: str, error: str | None = None) -> None:
        with db_module.write_transaction(self.db):
            ingest_log.backfill_channel(self.db, log_id=log_id, channel_id=channel.id,
                                        status=status, error=error)
            self._update_log(log_id)

    def _update_log(self, log_id: str) -> None:
        ingest_log.record_counts(self.db, {log_id: self.writer.counts_for(log_id)})

    def _summary(self) -> dict:  # (the keys of empty_summary)
        counts = self.writer.counts if self.writer else {}
        return {
            "ingest_id": self.run_id,
            "channels": self.channels,
            "channels_complete": self.complete,
            "requests": self.client.requests,
            "messages_new": counts.get("messages_new", 0),
            "messages_seen": counts.get("messages_seen", 0),
            "reactions_new": counts.get("reactions_new", 0),
            "users": counts.get("users", 0),
            "rate_limited": self.client.rate_limited,
            "skipped_channels": discovery.one_per_channel(self.skipped),
            "errors": self.errors,
        }


def _since_snowflake(since: str | None) -> int | None:
    if not since:
        return None
    try:
        return time_to_snowflake(parse_time(since))
    except ValueError:
        pass
    try:  # a bare date: midnight UTC
        return time_to_snowflake(datetime.combine(date.fromisoformat(since.strip()), time(),
                                                  tzinfo=timezone.utc))
    except ValueError:
        raise UsageProblem(
            f"--since {since!r} is not an ISO-8601 time: give e.g. 2024-03-01 or 2024-03-01T12:00Z"
        ) from None


def empty_summary() -> dict:
    """The summary of a backfill that never started (what a failure before it reports)."""
    counts = ("channels", "channels_complete", "requests", "messages_new", "messages_seen",
              "reactions_new", "users", "rate_limited")
    return {"ingest_id": None, **dict.fromkeys(counts, 0), "skipped_channels": [],
            "errors": []}


def run_backfill(db: sqlite_utils.Database, config, token: DiscordToken, options: BackfillOptions, *,
                 max_wait: float | None = None, stop: threading.Event | None = None,
                 on_warning: Callable[[str], None] = log.warning,
                 **client_options) -> BackfillReport:
    """`zos ingest --token`: backfill the channels' history; the caller prints the summary,
    then raises the report's `fatal` error (or exits 1 when `errors` is not empty). Warnings
    for the person running it (a missing Message Content intent) go to `on_warning`."""
    wait = config.poll.max_wait_seconds if max_wait is None else max_wait
    client_options.setdefault("backoff_base", config.poll.retry_backoff_seconds)
    with DiscordClient(token, discord_api_base(config), max_wait=wait, **client_options) as client:
        return BackfillRun(db, config, client, options, stop=stop, on_warning=on_warning).run()
