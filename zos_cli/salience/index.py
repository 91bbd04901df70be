"""The engine's in-memory view of topics: balances, last earns, and who is related to whom.

Topics are loaded lazily: a server's topics one key at a time where a key is all that is
needed (a subject earn reads one topic), and a whole scope (a server's topics by a primary-key
range scan of `server:<s>:`, or all global topics) before an owner (below) earns, since its
receptive set must then be complete.

Propagation only ever reaches *receptive* related topics — warm (balance above the warm
threshold) and still below their cap; everything else would receive nothing. Topics with many
relations (server users → their dyads and user_in_channel topics, channels → their
user_in_channel topics and threads, global users → their server users and global dyads,
global dyads → their server dyads) are *owners* (relations.py): the index keeps, for each, the set of its
related topics that were receptive at the start of the current event, and (see offers.py)
their transfers are offered lazily. Every other relation is a handful of exact keys.

Other jobs may write the ledger while an engine lives (a reflection spends, a poll earns).
`sync()` runs at the start of each batch: ledger rows appended since the engine's last look
(rowid above its mark) have their topics re-read from the database; a ledger whose highest
rowid went down (a rolled-back batch, a rebuild) drops the whole view.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from zos_cli.salience.offers import OfferLog, fold
from zos_cli.salience.relations import (
    UNCACHED_KINDS,
    TopicParts,
    exact_related_keys,
    is_owner,
    owners_of,
    parse_stored,
)

# Memory is per topic (a long export has ~90k of them, mostly dyads), so every key and id the
# index keeps is interned: a key, the owners and related keys naming it, and the ids inside
# its parts are one string object, not one copy per place that names it.
_intern = sys.intern


def _scope(key: str) -> str | None:
    """The server id of a server-scoped key; None for a global key."""
    return key.split(":", 2)[1] if key.startswith("server:") else None


class TopicIndex:
    def __init__(self, db, config):
        self.db = db
        self.caps = config.salience.caps
        self.threshold = config.salience.warm_threshold
        self.sink = None  # called with what lazily offered transfers gave (see offers.fold)
        self._reset_state()

    def _reset_state(self) -> None:
        self.balance: dict[str, float] = {}
        self.active: set[str] = set()               # keys that have had an earn
        # key → (kind, cap, the owners whose sets it joins, whether it is an owner itself, its
        # topics.id — None until a new topic is numbered at the flush); the parsed key is not
        # kept (`topic(key)` splits it again): memory is per topic.
        self.info: dict[str, tuple[str, float, tuple[str, ...], bool, int | None]] = {}
        self._exact: dict[str, list[str]] = {}      # exact related keys, built once per key
        self._complete: set[str] = set()            # owners whose scope is loaded
        self.new: dict[str, tuple[str, str | None]] = {}  # created here: created_at, metadata
        self.receptive: dict[str, set[str]] = {}    # owner → members (no empty sets)
        self.seen: dict[str, dict[str, int]] = {}   # member → owner → offers folded in
        self.offers: dict[str, OfferLog] = {}       # owner → its offers since the last flush
        self.offer_seq = 0
        self.joins: list[str] = []                  # became receptive: join at the next event
        self.base: dict[str, float] = {}            # balance before this batch changed it
        self.event_start: dict[str, float] = {}     # balance before this event changed it
        self.dyad_partners: dict[str, set[str]] = defaultdict(set)  # via active server dyads
        self.servers: set[str] = {r[0] for r in self.db.execute("SELECT id FROM servers")}
        self._loaded: set[str | None] = set()
        self._missing: set[str] = set()   # keys looked up one by one and not found
        self.rowid_mark = self._max_rowid()

    def _max_rowid(self) -> int:
        return self.db.execute("SELECT coalesce(max(rowid), 0) FROM salience_ledger").fetchone()[0]

    # ------------------------------------------------------------ loading
    def ensure(self, key: str) -> None:
        """Know whether `key` exists (and its state): one primary-key lookup for a key of a
        server not loaded yet; the first global key loads every global topic (they are few
        next to server topics, and a server's earns look up many of them)."""
        if key in self.info or key in self._missing:
            return
        scope = _scope(key)
        if scope in self._loaded:
            return
        if scope is None:
            self._load(None)
            return
        row = self.db.execute("SELECT balance, last_activity_at, metadata, id FROM topics "
                              "WHERE key = ?", [key]).fetchone()
        if row is None:
            self._missing.add(key)
        else:
            self._register(key, *row)

    def ensure_scope(self, key: str) -> None:
        """Load every topic of `key`'s scope (all servers too for a global key)."""
        if key in self._complete and key.startswith("server:"):
            return  # (a global key re-checks: servers may have been added since)
        self._complete.add(key)
        scope = _scope(key)
        if scope is None:
            self.ensure_all_servers()
            self.ensure_global()
        elif scope not in self._loaded:
            self._load(scope)

    def ensure_global(self) -> None:
        if None not in self._loaded:
            self._load(None)

    def ensure_all_servers(self) -> None:
        for server_id in list(self.servers):
            if server_id not in self._loaded:
                self._load(server_id)

    def _load(self, scope: str | None) -> None:
        self._loaded.add(scope)
        if scope is None:
            ranges = [("dyad:", "dyad;"), ("self:", "self;"), ("user:", "user;")]
        else:
            self.servers.add(scope)
            ranges = [(f"server:{scope}:", f"server:{scope};")]
        for lo, hi in ranges:
            rows = self.db.execute(
                "SELECT key, balance, last_activity_at, metadata, id FROM topics "
                "WHERE key >= ? AND key < ?", [lo, hi])
            for key, balance, last, metadata, topic_id in rows:
                if key not in self.info:
                    self._register(key, balance, last, metadata, topic_id)

    def _register(self, key: str, balance: float, last: str | None, metadata: str | None,
                  topic_id: int | None) -> None:
        key = _intern(key)
        topic = parse_stored(key)
        parent = None
        if topic.kind == "thread" and metadata:
            parent = json.loads(metadata).get("parent_channel_id")
        owners = owners_of(topic, parent)
        cap = getattr(self.caps, topic.cap_field)
        self.info[key] = (_intern(topic.kind), cap, owners, is_owner(topic), topic_id)
        self.balance[key] = balance
        if owners and self.threshold < balance < cap:
            self._join(key)  # stored before this event: receptive from its start
        if last is not None:
            self.mark_active(key, last)

    # ------------------------------------------------------------ receptive sets
    def _join(self, key: str) -> None:
        seen = self.seen.setdefault(key, {})
        receptive = self.receptive
        for owner in self.info[key][2]:
            members = receptive.get(owner)
            if members is None:
                members = receptive[owner] = set()
            members.add(key)
            log = self.offers.get(owner)
            seen[owner] = log.end if log is not None else 0

    def _leave(self, key: str) -> None:
        receptive = self.receptive
        for owner in self.info[key][2]:
            members = receptive.get(owner)
            if members is not None:
                members.discard(key)
                if not members:
                    del receptive[owner]
        self.seen.pop(key, None)

    def begin_event(self) -> None:
        """Warmth is read at event boundaries: topics that became receptive join now."""
        self.event_start.clear()
        if self.joins:
            for key in self.joins:
                if key not in self.seen and self.threshold < self.balance[key] < self.info[key][1]:
                    self._join(key)
            self.joins.clear()

    def offer(self, owner: str, prop: float, spill: float, ref: int | None, at: str) -> None:
        """`owner` earned: each of its receptive members is offered `prop` then `spill`."""
        if not self.receptive.get(owner):
            return
        log = self.offers.get(owner)
        if log is None:
            log = self.offers[owner] = OfferLog()
        self.offer_seq += 1
        log.add(self.offer_seq, prop, spill, ref, at)

    def fold(self, key: str) -> None:
        """Fold into `key` the offers made to it since it last looked (it is a member)."""
        seen = self.seen.get(key)
        if not seen:
            return
        pending = []
        for owner, mark in seen.items():
            log = self.offers.get(owner)
            if log is not None and mark < log.end:
                pending.append((owner, log, mark))
                seen[owner] = log.end
        if pending:
            value = fold(key, self.balance[key], self.info[key][1], pending, self.sink)
            self.set(key, value)

    def fold_all(self) -> None:
        """Fold every pending offer (before a flush), then start the logs afresh."""
        for owner, log in list(self.offers.items()):
            if log.seqs:
                for member in list(self.receptive.get(owner, ())):
                    self.fold(member)
        self.offers = {owner: log.cleared() for owner, log in self.offers.items()}

    # ------------------------------------------------------------ reading
    def value(self, key: str) -> float:
        """The balance of `key` now (0 when it does not exist), offers folded in."""
        if key not in self.info:
            self.ensure(key)
            if key not in self.info:
                return 0.0
        if key in self.seen:
            self.fold(key)
        return self.balance[key]

    def topic(self, key: str) -> TopicParts:
        """The parts of a key the index knows (kind, server id, ids)."""
        return parse_stored(key)

    def exists(self, key: str) -> bool:
        if key not in self.info:
            self.ensure(key)
        return key in self.info

    def cap_of(self, key: str) -> float:
        return self.info[key][1]

    def is_warm(self, key: str) -> bool:
        return self.value(key) > self.threshold

    def is_active(self, key: str) -> bool:
        """Has had an earn (its last_activity_at is set)."""
        if key not in self.info:
            self.ensure(key)
        return key in self.active

    def warm_at_event_start(self, key: str) -> bool:
        return self.event_start.get(key, self.balance[key]) > self.threshold

    def exact_related(self, key: str, user_id: str | None = None) -> list[str]:
        """The related topics of `key` (docs/salience.md#related-topics) that are not kept as receptive sets."""
        cached = self._exact.get(key)
        if cached is not None:
            return cached
        kind, _cap, owners, _owner, _id = self.info[key]
        if kind in UNCACHED_KINDS:
            return exact_related_keys(self.topic(key), owners, user_id)
        related = [_intern(k) for k in exact_related_keys(self.topic(key), owners, user_id)]
        self._exact[key] = related
        return related

    def receptive_among(self, keys: list[str]) -> list[str]:
        """The keys that are warm at the start of this event and below their cap now (offers
        folded in), in their order: asked for the related topics of every earn."""
        found = []
        info_get, seen, balance = self.info.get, self.seen, self.balance
        start, threshold = self.event_start, self.threshold
        for key in keys:
            info = info_get(key)
            if info is None:
                self.ensure(key)
                info = info_get(key)
                if info is None:
                    continue
            if key in seen:
                self.fold(key)
            value = balance[key]
            if value < info[1] and start.get(key, value) > threshold:
                found.append(key)
        return found

    # ------------------------------------------------------------ changing
    def create(self, key: str, at: str, metadata: dict | None = None) -> None:
        """A topic the engine is about to write to (inserted at the next flush)."""
        if key in self.info:
            return
        self.ensure(key)
        if key in self.info:
            return
        text = json.dumps(metadata, sort_keys=True) if metadata else None
        self._missing.discard(key)
        self._register(key, 0.0, None, text, None)
        self.new[key] = (at, text)

    def number(self, key: str, topic_id: int) -> None:
        """A new topic's topics.id, given when the flush inserts it."""
        self.info[key] = self.info[key][:4] + (topic_id,)

    def topic_id(self, key: str) -> int:
        return self.info[key][4]

    def set(self, key: str, value: float, *, record: bool = True) -> None:
        """Change a balance (offers already folded in). `record=False` for warm rows, which
        count as there before the event, and for values re-read from the database."""
        _topic, cap, owners, _owner, _id = self.info[key]
        old = self.balance[key]
        if record:
            if key not in self.base:
                self.base[key] = old
            if key not in self.event_start:
                self.event_start[key] = old
        self.balance[key] = value
        if owners:
            receptive = self.threshold < value < cap
            if key in self.seen and not receptive:
                self._leave(key)
            elif receptive and key not in self.seen:
                if record:
                    self.joins.append(key)  # warmed by this event: receptive from the next
                else:
                    self._join(key)  # a warm row (or a stored value) counts as there before

    def mark_active(self, key: str, at: str) -> None:
        """`key` has had an earn (at `at`; the newest time is written by the batch)."""
        if key not in self.active:
            self.active.add(key)
            if self.info[key][0] == "dyad" and key.startswith("server:"):
                a, b = (_intern(i) for i in self.topic(key).ids)
                self.dyad_partners[a].add(b)
                self.dyad_partners[b].add(a)

    # ------------------------------------------------------------ other writers
    def sync(self) -> None:
        """Catch up with ledger rows other writers appended since the last look (called at
        the start of a batch, when nothing is pending)."""
        mark = self._max_rowid()
        if mark == self.rowid_mark:
            return
        if mark < self.rowid_mark:
            self._reset_state()  # rows disappeared (a rollback, a rebuild): start over
            return
        rows = self.db.execute(
            "SELECT key, balance, last_activity_at, metadata, id FROM topics WHERE key IN "
            "(SELECT topic_key FROM salience_ledger WHERE rowid > ?)", [self.rowid_mark])
        for key, balance, last, metadata, topic_id in rows:
            if key in self.info:
                self.set(key, balance, record=False)
                if last is not None:
                    self.mark_active(key, last)
            elif _scope(key) in self._loaded or key in self._missing:
                self._missing.discard(key)
                self._register(key, balance, last, metadata, topic_id)
        self.begin_event()
        self.rowid_mark = mark

    def flushed(self) -> None:
        """The pending topics and rows are in the database now."""
        self.new.clear()
        self.base.clear()
        self.rowid_mark = self._max_rowid()

    def drop(self) -> None:
        self._reset_state()
