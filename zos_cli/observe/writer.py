"""The one writer: observed Discord records → tables + salience events.

Both sources feed it the same records (`zos_cli.records`): the export reader (`zos ingest`)
and the API client (`zos poll`, `zos ingest --token`). The caller holds a
`write_transaction`; each call writes one batch with `executemany` (see `observe/rows.py` and
`observe/people.py`), feeds the salience engine the events of what is NEW (new messages, new
reactions) in snowflake order, and flushes the engine's ledger rows inside the same
transaction (or, for a caller that holds several batches in one transaction, once before it
commits: `flush_each_batch`, `flush_salience`).

Rules (docs/ingest.md#idempotence-and-transactions, docs/privacy.md#dm-consent):
- upsert by snowflake; the newest observation (`observed_at`: an export's exportedAt, the
  fetch time) wins for content, edits, flags and reaction state; an older or equal one only
  records that it saw the message (`message_sources`);
- `reactions=None` means "not known in this observation": stored reactions are left alone; a
  list is the full current state (reactors no longer listed get `removed_at`);
- a DM channel is written only while `consent.dm_may_be_stored(participant_ids)` says so;
  otherwise its messages are only counted (`dm_skipped_without_consent`), nothing is written;
- users, roles and user_roles are written before the batch's events are applied, because the
  engine reads user_roles for the privacy gate inside this transaction.

What the engine is fed: each message's events come from `message_salience_events`, the
builder `zos salience rebuild` replays the tables with. The writer hands it a `MessageRow` of
the very values it writes to `messages`, `channels`, `mentions` and `role_mentions` (custom
emoji per occurrence as in `messages.custom_emoji_ids`, the reply parent's author from the
stored or just written parent), and a message's new reactions, which follow the message.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import NamedTuple

import sqlite_utils

from zos_cli.observe import people
from zos_cli.observe import rows
from zos_cli.observe.batch import BatchRows, SourceCounts
from zos_cli.privacy.consent import dm_may_be_stored
from zos_cli.store.db import self_user_id
from zos_cli.events import MessageRow, message_salience_events
from zos_cli.records import ChannelRecord, MessageRecord
from zos_cli.timeutil import now_stored

COUNT_KEYS = ("messages_new", "messages_seen", "reactions_new", "users", "channels",
              "dm_skipped_without_consent")


class Observation(NamedTuple):
    channel: ChannelRecord
    message: MessageRecord
    source_id: str          # the ingest_log id (export, backfill) or poll run id that saw it


def newer_observation(observed: str | None, stored: str | None) -> bool:
    """Whether an observation (its export time, or a poll's) replaces the one stored: only a
    newer one does (ingest/role_gate.py applies the same rule ahead of the writer)."""
    return observed is not None and (stored is None or observed > stored)


class ObservationWriter:
    """Writes observed messages; one per job run (it remembers what it already upserted)."""

    def __init__(self, db: sqlite_utils.Database, config, *, source_type: str, source_id: str,
                 engine, remember_people: bool = False):
        self.db = db
        self.config = config
        self.self_user_id = self_user_id(db, config)  # never a DM participant (docs/privacy.md#dm-consent)
        self.source_type = source_type        # 'export' | 'poll' | 'backfill'
        self.source_id = source_id
        self.engine = engine
        self.batch_label = f"{source_type} {source_id}"  # names the engine's ledger rows
        # The engine's ledger rows are flushed at the end of each write_batch, unless the
        # caller holds several batches in one transaction (fewer, more aggregated rows): it
        # sets flush_each_batch = False and calls flush_salience() before committing.
        self.flush_each_batch = True
        # New messages are marked `salience_pending` instead of earning now (a backfill, which
        # reads newest first, and a poll, which reads channel after channel, earn them in
        # event order at their end: salience/pending.py).
        self.defer_new_messages = False
        self.deferred_ids: list[str] = []  # the messages it marked so (a poll earns just those)
        self.engine_fed = False  # events given to the engine since its last flush
        self.by_source: dict[str, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COUNT_KEYS, 0))
        self.users_by_source: dict[str, set[str]] = defaultdict(set)
        self.channels_by_source: dict[str, set[str]] = defaultdict(set)
        self.channels_written: set[str] = set()
        self.servers_written: set[str] = set()
        # Users removed by `zos consent erase`: an old export read again must not bring
        # back their messages, reactions, mentions or name.
        self.erased: frozenset[str] = frozenset(r[0] for r in db.execute(
            "SELECT object_id FROM tombstones WHERE object_type = 'user'"))
        # Skip people rows this writer already wrote unchanged (see observe/people.py). Only
        # for a caller that writes no people rows of its own between batches and abandons
        # the writer when a batch fails.
        self.written_people = people.WrittenPeople() if remember_people else None

    # ------------------------------------------------------------------ counts
    @property
    def counts(self) -> dict[str, int]:
        """messages_new, messages_seen (observations of messages already stored),
        reactions_new, users and channels (distinct ones observed), and
        dm_skipped_without_consent (DM messages not written)."""
        total = dict.fromkeys(COUNT_KEYS, 0)
        for counts in self.by_source.values():
            for key in ("messages_new", "messages_seen", "reactions_new",
                        "dm_skipped_without_consent"):
                total[key] += counts[key]
        total["users"] = len(set().union(*self.users_by_source.values()))
        total["channels"] = len(set().union(*self.channels_by_source.values()))
        return total

    def counts_for(self, source_id: str) -> dict[str, int]:
        counts = dict(self.by_source[source_id])
        counts["users"] = len(self.users_by_source[source_id])
        counts["channels"] = len(self.channels_by_source[source_id])
        return counts

    # ------------------------------------------------------------------ entry points
    def write_messages(self, channel: ChannelRecord, messages: list[MessageRecord]) -> None:
        """One channel's messages (snowflake order), seen by this writer's own source."""
        self.write_batch([Observation(channel, m, self.source_id) for m in messages])

    def write_batch(self, observations: list[Observation]) -> None:
        """Observations in snowflake order, from any channels and sources (the same message
        may appear more than once: overlapping exports)."""
        if observations:
            _Batch(self, observations).run()

    def flush_salience(self) -> int:
        """Write the engine's pending rows (inside the caller's transaction); returns the
        number of ledger rows written."""
        if not self.engine_fed:
            return 0
        self.engine_fed = False
        # Each aggregated row names its own message range; the reason's prefix names the run.
        return self.engine.flush(self.batch_label)

    def mark_deleted(self, message_ids: list[str], at: str) -> int:
        """Messages Discord no longer has (poll noticed): stamp `deleted_at` once."""
        return rows.mark_deleted(self.db, message_ids, at)

    def forget_places(self, channel: ChannelRecord) -> None:
        """The transaction that wrote this channel's rows was rolled back: write its server
        and channel rows again with the next batch that holds them."""
        self.channels_written.discard(channel.id)
        self.servers_written.discard(channel.server_id)


class _Batch:
    """One call's work, in the order the rules need."""

    def __init__(self, writer: ObservationWriter, observations: list[Observation]):
        self.w = writer
        self.db = writer.db
        self.now = now_stored()
        self.observations = self._gate(observations)

    def run(self) -> None:
        if not self.observations:
            return
        remembered = self.w.written_people
        if remembered is not None:
            remembered.still_valid(self.db)
        try:
            self._choose()
            view = self._rows_view()
            rows.write_places(view)
            people.write_people(view)
            rows.write_messages(view)
            fresh_reactions = rows.write_reactions(view)
            rows.write_sources(view)
            self._feed_engine(fresh_reactions)
        except BaseException:
            if remembered is not None:
                remembered.forget()  # the transaction will not hold what it remembers
            raise

    def _rows_view(self) -> BatchRows:
        """What the table writes are given: this batch, and the writer's counts and caches."""
        w = self.w
        return BatchRows(
            db=self.db, config=w.config, source_type=w.source_type, now=self.now,
            observations=self.observations, effective=self.effective,
            new_id_set=self.new_id_set, updated_ids=self.updated_ids,
            counts=SourceCounts(w.by_source, w.users_by_source, w.channels_by_source),
            servers_written=w.servers_written, channels_written=w.channels_written,
            written_people=w.written_people)

    def _gate(self, observations: list[Observation]) -> list[Observation]:
        """The DM consent gate, asked once per DM channel per batch."""
        allowed: dict[str, bool] = {}
        kept = []
        for obs in observations:
            channel = obs.channel
            if channel.is_dm:
                ok = allowed.get(channel.id)
                if ok is None:
                    ok = allowed[channel.id] = dm_may_be_stored(
                        self.db, channel.participant_ids or [], self_id=self.w.self_user_id)
                if not ok:
                    self.w.by_source[obs.source_id]["dm_skipped_without_consent"] += 1
                    continue
            if self.w.erased:
                obs = self._without_erased(obs)
                if obs is None:
                    continue
            kept.append(obs)
        return kept

    def _without_erased(self, obs: Observation) -> Observation | None:
        erased = self.w.erased
        msg = obs.message
        if msg.author.id in erased:
            return None
        mentions = [m for m in msg.mentions if m.id not in erased]
        reactions = msg.reactions
        if reactions is not None:
            reactions = [replace(r, users=[u for u in r.users if u.id not in erased])
                         for r in reactions]
        if len(mentions) == len(msg.mentions) and reactions == msg.reactions:
            return obs
        return obs._replace(message=replace(msg, mentions=mentions, reactions=reactions))

    def _choose(self) -> None:
        """Per message id the newest observation (the later one on a tie), which are new,
        and which stored ones this batch updates."""
        chosen = {obs.message.id: obs for obs in self.observations}
        if len(chosen) != len(self.observations):  # the same message seen more than once
            chosen = {}
            for obs in self.observations:
                current = chosen.get(obs.message.id)
                if current is None or not newer_observation(current.message.observed_at,
                                                            obs.message.observed_at):
                    chosen[obs.message.id] = obs
        stored = rows.stored_observations(self.db, chosen)
        self.chosen = chosen
        self.new_ids = [mid for mid in chosen if mid not in stored]
        self.new_id_set = set(self.new_ids)
        self.updated_ids = [mid for mid, observed in stored.items()
                            if newer_observation(chosen[mid].message.observed_at, observed)]
        updated = set(self.updated_ids)
        self.effective = [obs for mid, obs in chosen.items()
                          if mid in self.new_id_set or mid in updated]
        by_source, new = self.w.by_source, self.new_id_set
        for obs in self.observations:
            mid = obs.message.id
            counts = by_source[obs.source_id]
            if mid in new and chosen[mid] is obs:
                counts["messages_new"] += 1
            else:
                counts["messages_seen"] += 1

    def _feed_engine(self, fresh_reactions: dict[str, list[tuple[str, str, str]]]) -> None:
        new, deferred = self.new_id_set, frozenset()
        if self.w.defer_new_messages and new:
            self.db.execute("UPDATE messages SET salience_pending = 1 "
                            "WHERE id IN (SELECT value FROM json_each(?))",
                            [rows.json_ids(new)])
            # Their events, reactions included, come when they are earned (from the rows).
            self.w.deferred_ids.extend(new)
            new, deferred = frozenset(), new
        waiting = [mid for mid in fresh_reactions if mid not in new and mid not in deferred]
        if waiting:  # marked, not yet earned: their reactions are earned with them
            deferred = deferred | {r[0] for r in self.db.execute(
                "SELECT id FROM messages WHERE salience_pending = 1 "
                "AND id IN (SELECT value FROM json_each(?))", [rows.json_ids(waiting)])}
        replies = [self.chosen[mid].message.reply_to_id for mid in new
                   if self.chosen[mid].message.reply_to_id]
        parents = {}
        if replies:
            parents = dict(self.db.execute(
                "SELECT id, author_id FROM messages WHERE id IN (SELECT value FROM json_each(?))",
                [rows.json_ids(replies)],
            ).fetchall())
        apply = self.w.engine.apply
        fed = False
        for mid, obs in self.chosen.items():
            if mid in deferred:
                continue
            is_new, reacted = mid in new, fresh_reactions.get(mid)
            if not is_new and not reacted:
                continue
            fed = True
            for event in message_salience_events(_row_of(obs, parents), reacted or (),
                                                 with_message=is_new):
                apply(event)
        if fed:
            self.w.engine_fed = True
            if self.w.flush_each_batch:
                self.w.flush_salience()


def _row_of(obs: Observation, parents: dict[str, str]) -> MessageRow:
    """The salience row of an observed message, from the same record values the batch writes
    to the tables (so that rebuild, reading them back, builds the same events)."""
    m, ch = obs.message, obs.channel
    # Positional, in the order of MessageRow's fields: keywords cost twice as much, once per
    # ingested message. Rebuild fills the row by keyword, so a field order gone wrong here
    # shows in tests/test_salience_event_builder.py (writer and rebuild events differ).
    return MessageRow(
        m.id, ch.server_id, ch.id,
        ch.type, ch.parent_id, ch.participant_ids,            # the channel's
        m.author.id, m.created_at, m.message_type,
        bool(m.attachments), bool(m.link_urls),               # has_media, has_links
        m.inline_custom_emoji_ids,
        parents.get(m.reply_to_id) if m.reply_to_id else None,  # reply_to_author_id
        [u.id for u in m.mentions] if m.mentions else (),
        m.role_mention_ids,
    )
