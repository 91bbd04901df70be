"""`zos poll`: what is new in every visible channel, through the REST API.

Per channel, one request for its newest 100 messages serves two purposes:
- what is new: the messages after the channel's cursor (when more than a page arrived, the
  gap is read with `after=` pages, oldest first, each written with its cursor advance);
- recent changes: among those 100, stored messages whose edit time or reaction counts
  differ are written again (the reactors of the emoji whose count moved re-read), and
  stored ones missing are marked deleted.
A channel without a cursor starts with its newest `initial_messages`; deeper history is
`zos ingest --token`. Threads archived since the previous poll are polled too (see
`archived`). An idle poll of C channels costs C message requests, plus a few per guild for
discovery and one per channel that holds threads for its recently archived ones.

In servers with a privacy-gate role, members' roles are refreshed at most every
`poll.roles_refresh_minutes` and newcomers' roles are learned before their messages are
stored (see `roles`). DMs are read only for users with an active `dm_read` consent.
"""

from __future__ import annotations

import sqlite3
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.store.audit import counts_of, record_event
from zos_cli.config import discord_api_base
from zos_cli.privacy.consent import dm_may_be_stored
from zos_cli.sources.discord import api
from zos_cli.ingest import archived
from zos_cli.sources.discord import discovery
from zos_cli.ingest import member_roles as roles
from zos_cli.ingest import cursors as store
from zos_cli.sources.discord.client import DiscordClient, DiscordToken
from zos_cli.sources.discord.errors import DiscordForbidden, DiscordRequestFailed
from zos_cli.ingest.pages import CONTENT_INTENT_ERROR, PageWriter
from zos_cli.errors import TemporaryFailure, ZosError
from zos_cli.ids import new_id
from zos_cli.records import ChannelRecord
from zos_cli.timeutil import normalize, now_stored

# Warnings for the person running the job go to `on_warning`; without one, here.
log = logging.getLogger("zos.poll")

PAGE = api.PAGE
SUMMARY_KEYS = ("channels", "requests", "messages_new", "reactions_new", "rate_limited",
                "skipped_channels", "errors")


def empty_summary() -> dict:
    """The summary of a poll that never started (what a failure before it reports)."""
    return {"poll_id": None, **{k: [] if k in ("skipped_channels", "errors") else 0
                                for k in SUMMARY_KEYS}}


@dataclass
class PollOptions:
    guild_ids: list[str] = field(default_factory=list)
    channel_ids: list[str] = field(default_factory=list)
    initial_messages: int = 1000


@dataclass
class PollReport:
    summary: dict
    fatal: ZosError | None = None     # 401 (78), rate-limit wait or ban (75): the run stopped


class PollRun:
    """One pass over every channel. `stop` (set by SIGTERM) ends it between writes."""

    def __init__(self, db: sqlite_utils.Database, config, client: DiscordClient,
                 options: PollOptions | None = None, *, stop: threading.Event | None = None,
                 on_warning: Callable[[str], None] = log.warning):
        self.db = db
        self.on_warning = on_warning
        self.config = config
        self.client = client
        self.options = options or PollOptions()
        self.stop = stop or threading.Event()
        self.poll_id = new_id()
        self.skipped: list[dict] = []
        self.errors: list[dict] = []
        self.channels = self.edited = self.deleted = 0
        self.pages: PageWriter | None = None
        self.writer = None
        self._idle: list[str] = []
        self.started_at = now_stored()       # before any thread list: the archived-thread mark
        self._walks: list[archived.Walk] = []
        self._guilds: list[str] = []
        self._polled: set[str] = set()       # channels read to the end (or forbidden)

    # ------------------------------------------------------------------ the run
    def run(self) -> PollReport:
        requests_before, limited_before = self.client.requests, self.client.rate_limited
        fatal = None
        try:
            self._run()
        except ZosError as exc:
            if isinstance(exc, DiscordRequestFailed) and not isinstance(exc, DiscordForbidden):
                self.errors.append({"channel": None, "error": exc.message})
            else:
                fatal = exc
        except sqlite3.OperationalError as exc:
            # Another job held the database past the busy timeout: what was committed stays,
            # and the summary says what this poll did before it stopped (exit 75).
            if not db_module.is_busy(exc):
                raise
            fatal = TemporaryFailure(db_module.busy_message(exc))
        summary = self._summary(self.client.requests - requests_before,
                                self.client.rate_limited - limited_before)
        try:
            with db_module.write_transaction(self.db):
                if self._idle:
                    store.touch_polled(self.db, self._idle)
                archived.save(self.db, self._walks, self._guilds, self.started_at,
                              self._polled)
                record_event(self.db, "poll", counts_of(summary))
        except sqlite3.OperationalError as exc:
            if not db_module.is_busy(exc):
                raise
            fatal = fatal or TemporaryFailure(db_module.busy_message(exc))
        if fatal is not None:
            summary["errors"].append({"channel": None, "error": fatal.message})
        return PollReport(summary, fatal)

    def _run(self) -> None:
        from zos_cli.observe.writer import ObservationWriter
        from zos_cli.salience import SalienceEngine
        from zos_cli.salience.pending import earn_pending, poll_leftovers

        me = api.current_user(self.client)
        self_id = str(me["id"])
        with db_module.write_transaction(self.db):
            db_module.remember_self_user_id(self.db, self_id)
        targets = self._targets(self_id)
        engine = SalienceEngine(self.db, self.config, self_user_id=self_id)
        writer = ObservationWriter(self.db, self.config, source_type="poll", source_id=self.poll_id,
                                   engine=engine)
        writer.batch_label = f"poll {self.poll_id}"
        # Channels are read one after another: new messages earn at the end, in snowflake
        # order across the run (salience/pending.py), not channel by channel; with them,
        # what a killed or failed poll left marked.
        writer.defer_new_messages = True
        writer.deferred_ids.extend(poll_leftovers(self.db))
        self.writer = writer
        self.pages = PageWriter(self.db, self.config, self.client, writer, engine, self_id,
                                on_warning=self.on_warning)
        self._refresh_roles(targets)
        for channel in targets:
            if self.stop.is_set():
                break
            self.channels += 1
            errors = len(self.errors)
            try:
                self._poll_channel(channel)
                if len(self.errors) == errors and not self.stop.is_set():
                    self._polled.add(channel.id)
            except DiscordForbidden as exc:
                self.skipped.append({"channel": channel.id, "reason": exc.message})
                self._polled.add(channel.id)  # (not retried for its archived-thread mark)
            except DiscordRequestFailed as exc:
                self.errors.append({"channel": channel.id, "error": exc.message})
            except (KeyError, TypeError, ValueError) as exc:
                self.errors.append({"channel": channel.id, "error": unexpected(exc)})
        earn_pending(self.db, self.config, engine, writer.batch_label, ids=writer.deferred_ids)

    def _targets(self, self_id: str) -> list[ChannelRecord]:
        opts = self.options
        only = set(opts.channel_ids) if opts.channel_ids else None
        dms = discovery.Discovery()
        if not opts.guild_ids:
            dms = discovery.dm_channels(self.db, self.client, self_id, only)
        guild_channel_ids = [c for c in opts.channel_ids if c not in {d.id for d in dms.channels}]
        found = discovery.Discovery()
        if not opts.channel_ids or guild_channel_ids:
            found = discovery.discover(self.client, guild_ids=opts.guild_ids,
                                       channel_ids=guild_channel_ids or None)
        self.skipped += found.skipped + dms.skipped
        self.errors += found.errors + dms.errors
        self._archived_threads(found)
        return found.channels + dms.channels

    def _archived_threads(self, found: discovery.Discovery) -> None:
        """Add the threads archived since each parent's mark (guild discovery only: `--channel`
        reads just the channels named, as it reads none of their active threads)."""
        self._guilds = list(found.guilds)
        self._walks = [archived.start(self.db, parent) for parent in found.parents]
        for walk in self._walks:
            if self.stop.is_set():
                return
            parent = walk.parent.id
            try:
                for thread in archived.threads(self.client, walk):
                    found.add(thread)
            except DiscordForbidden as exc:
                self.skipped.append({"channel": parent, "reason": f"archived threads: {exc.message}"})
            except DiscordRequestFailed as exc:
                self.errors.append({"channel": parent, "error": f"archived threads: {exc.message}"})
            except (KeyError, TypeError, ValueError) as exc:
                self.errors.append({"channel": parent, "error": unexpected(exc)})

    def _refresh_roles(self, targets: list[ChannelRecord]) -> None:
        minutes = self.config.poll.roles_refresh_minutes
        for server_id in sorted({c.server_id for c in targets if c.server_id}, key=int):
            guild = self.pages.gate_for(server_id)
            if guild is None or not roles.refresh_due(self.db, server_id, minutes):
                continue
            try:
                self.pages.role_changes += roles.refresh_server(self.db, self.client, guild)
            except DiscordRequestFailed as exc:
                # Roles stay as last known; the gate keeps treating unknown users as outsiders.
                self.errors.append({"channel": f"guild:{server_id}", "error": f"roles: {exc.message}"})

    # ------------------------------------------------------------------ one channel
    def _poll_channel(self, channel: ChannelRecord) -> None:
        if channel.is_dm and not dm_may_be_stored(self.db, channel.participant_ids or []):
            return  # consent revoked since discovery: not even a request
        newest = api.messages(self.client, channel.id, limit=PAGE)
        if self.pages.content_missing(channel, newest):
            self.errors.append({"channel": channel.id, "error": CONTENT_INTENT_ERROR})
            return
        # A channel holding messages already (an export, `ingest --token`) goes on from its
        # newest one: no gap between that history and what polls read.
        cursor = store.cursor(self.db, channel.id) or store.newest_stored(self.db, channel.id)
        if cursor is None:
            self._first_poll(channel, newest)
            return
        if len(newest) == PAGE and int(newest[-1]["id"]) > int(cursor):
            # More than a page arrived since the last poll: read the gap oldest first.
            if not self._catch_up(channel, cursor, int(newest[-1]["id"])):
                return
            cursor = store.cursor(self.db, channel.id)
        new = [m for m in newest if int(m["id"]) > int(cursor)]
        self._write_window(channel, new, newest)

    def _first_poll(self, channel: ChannelRecord, newest: list[dict]) -> None:
        wanted = self.options.initial_messages
        collected = list(newest)
        page = newest
        while len(collected) < wanted and len(page) == PAGE and not self.stop.is_set():
            # (A page's order is not to be trusted: page on from its oldest id.)
            oldest = min(int(m["id"]) for m in page)
            page = api.messages(self.client, channel.id, limit=PAGE, before=str(oldest))
            if self.pages.content_missing(channel, page):
                self.errors.append({"channel": channel.id, "error": CONTENT_INTENT_ERROR})
                return
            collected += page
        if self.stop.is_set():
            return
        unique = {m["id"]: m for m in collected}.values()
        chosen = sorted(unique, key=lambda m: int(m["id"]))[-wanted:] if wanted else []
        if not chosen:
            if newest:  # initial_messages = 0: start from now
                self._write(channel, [], newest[0])
            return
        for start in range(0, len(chosen), PAGE):
            chunk = chosen[start:start + PAGE]
            self._write(channel, chunk, chunk[-1])
            if self.stop.is_set():
                return

    def _catch_up(self, channel: ChannelRecord, cursor: str, window_oldest: int) -> bool:
        """`after=` pages from the cursor up to the newest window; False when stopped."""
        after = cursor
        while not self.stop.is_set():
            page = api.messages(self.client, channel.id, limit=PAGE, after=after)
            if self.pages.content_missing(channel, page):
                self.errors.append({"channel": channel.id, "error": CONTENT_INTENT_ERROR})
                return False
            fresh = sorted((m for m in page if int(m["id"]) > int(after)), key=lambda m: int(m["id"]))
            before_window = [m for m in fresh if int(m["id"]) < window_oldest]
            if before_window:
                self._write(channel, before_window, before_window[-1])
            if len(page) < PAGE or len(before_window) < len(fresh) or not fresh:
                return True
            after = str(fresh[-1]["id"])
        return False

    def _write_window(self, channel: ChannelRecord, new: list[dict], window: list[dict]) -> None:
        """New messages plus what changed among the stored ones of the newest page."""
        changed, deleted = [], []
        reactions_changed: dict[str, set[tuple[str, str]]] = {}  # message → emojis to read
        if window:
            # Compared with the stored messages in the page's span only: a newer one may have
            # been stored meanwhile by another job (it is not deleted), and a page shorter
            # than PAGE is the whole channel (an older stored one missing from it is).
            oldest = min(window, key=lambda m: int(m["id"]))
            newest = max(window, key=lambda m: int(m["id"]))
            span_start = (None if len(window) < PAGE
                          else (str(oldest["id"]), normalize(oldest["timestamp"])))
            stored = store.stored_window(self.db, channel.id, span_start,
                                         (str(newest["id"]), normalize(newest["timestamp"])))
            ids = {str(m["id"]) for m in window}
            deleted = sorted((mid for mid in stored if mid not in ids), key=int)
            for m in window:
                known = stored.get(str(m["id"]))
                if known is None:
                    continue
                edited = normalize(m["edited_timestamp"]) if m.get("edited_timestamp") else None
                counts = _reaction_counts(m)
                react = counts != known.reactions
                if react:
                    # Only the emojis whose count moved are read again (one request each at
                    # least); one no longer on the message has no one to read.
                    reactions_changed[str(m["id"])] = {
                        key for key, n in counts.items() if known.reactions.get(key) != n}
                if react or edited != known.edited_at:
                    changed.append(m)
        if not new and not changed and not deleted:
            self._idle.append(channel.id)
            return
        new_ids = {str(m["id"]) for m in new}
        self.edited += sum(1 for m in changed if str(m["id"]) not in reactions_changed)
        self.deleted += len(deleted)
        last = max(new, key=lambda m: int(m["id"])) if new else None
        self._write(channel, new + [m for m in changed if str(m["id"]) not in new_ids], last,
                    reactions_for={**reactions_changed, **dict.fromkeys(new_ids)},
                    deleted=deleted)

    def _write(self, channel: ChannelRecord, messages: list[dict], last: dict | None, *,
               reactions_for: dict[str, set[tuple[str, str]] | None] | None = None,
               deleted: list[str] = ()) -> None:
        records = self.pages.records(messages, reactions_for=reactions_for)
        last_id = str(last["id"]) if last else None
        last_at = normalize(last["timestamp"]) if last else None
        self.pages.write(channel, records, deleted=deleted,
                         also=lambda: store.save_cursor(self.db, channel, last_id, last_at))

    # ------------------------------------------------------------------ summary
    def _summary(self, requests: int, rate_limited: int) -> dict:
        counts = self.writer.counts if self.writer is not None else {}
        changes = self.pages.role_changes if self.pages else []
        return {
            "poll_id": self.poll_id,
            "channels": self.channels,
            "requests": requests,
            "messages_new": counts.get("messages_new", 0),
            "reactions_new": counts.get("reactions_new", 0),
            "rate_limited": rate_limited,
            "skipped_channels": discovery.one_per_channel(self.skipped),
            "errors": self.errors,
            "messages_edited": self.edited,
            "messages_deleted": self.deleted,
            "dm_skipped_without_consent": counts.get("dm_skipped_without_consent", 0),
            "role_changes": [c.as_dict() for c in changes],
        }


def unexpected(exc: Exception) -> str:
    """A Discord answer without a field zos relies on: reported for its channel, not a crash."""
    return f"unexpected answer from Discord ({type(exc).__name__}: {exc}); the channel was left as it was"


def _reaction_counts(message: dict) -> dict[tuple[str, str], int]:
    """Per emoji, the count Discord reports, to compare with the count it reported when the
    reactors were last read (`store.stored_window`): a change means someone reacted or took a
    reaction back, and only then are the reactors read again."""
    from zos_cli.sources.discord.convert import reaction_counts

    return {key: n for key, n in reaction_counts(message).items() if n}


def poll_once(db: sqlite_utils.Database, config, client: DiscordClient,
              options: PollOptions | None = None, *, stop: threading.Event | None = None,
              on_warning: Callable[[str], None] = log.warning) -> PollReport:
    """One poll; the report's summary has the keys of docs/discord.md#poll-summary (`SUMMARY_KEYS`) and more."""
    return PollRun(db, config, client, options, stop=stop, on_warning=on_warning).run()


def poll_every(db: sqlite_utils.Database, config, client: DiscordClient, options: PollOptions,
               interval: float, stop: threading.Event, on_report,
               on_warning: Callable[[str], None] = log.warning) -> PollReport:
    """Poll, wait `interval` seconds, poll again, until `stop` is set (SIGTERM: the current
    write finishes first) or a run stops on a fatal error. `on_report` gets every report."""
    while True:
        report = poll_once(db, config, client, options, stop=stop, on_warning=on_warning)
        on_report(report)
        if report.fatal is not None or stop.wait(interval):
            return report


def run_poll(db: sqlite_utils.Database, config, token: DiscordToken, options: PollOptions, *,
             interval: float | None = None, max_wait: float | None = None,
             stop: threading.Event | None = None, on_report=lambda report: None,
             on_warning: Callable[[str], None] = log.warning, **client_options) -> PollReport:
    """`zos poll`: once (interval None) or every `interval` seconds until `stop`. Returns the
    last report; the caller raises its `fatal` error after printing the summary. Warnings
    for the person running it (a missing Message Content intent) go to `on_warning`."""
    stop = stop or threading.Event()
    wait = config.poll.max_wait_seconds if max_wait is None else max_wait
    client_options.setdefault("backoff_base", config.poll.retry_backoff_seconds)
    with DiscordClient(token, discord_api_base(config), max_wait=wait, **client_options) as client:
        if interval is None:
            report = poll_once(db, config, client, options, stop=stop, on_warning=on_warning)
            on_report(report)
            return report
        return poll_every(db, config, client, options, interval, stop, on_report, on_warning)
