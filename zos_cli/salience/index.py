"""The engine's in-memory view of topics: balances, last earns, and who is related to whom.

Topics are loaded lazily, one scope at a time (a server's topics by a primary-key range scan of
`server:<s>:`, or all global topics), the first time the engine touches a key of that scope.

Propagation only ever reaches *receptive* related topics — warm (balance above the warm
threshold) and still below their cap; everything else would receive nothing. So instead of
enumerating, say, every user_in_channel topic of a busy channel on each message, the index
keeps for each topic with many relations (server users, channels, global users, global dyads)
the set of its related topics that are receptive right now, and updates those sets whenever a
balance crosses the threshold or a cap.

Other jobs may write the ledger while an engine lives (a reflection spends, a poll earns).
`sync()` runs at the start of each batch: ledger rows appended since the engine's last look
(rowid above its mark) have their topics re-read from the database; a ledger whose highest
rowid went down (a rolled-back batch, a rebuild) drops the whole view.
"""

from __future__ import annotations

import json
from collections import defaultdict

from zos_cli.topics import Topic


def _scope(key: str) -> str | None:
    """The server id of a server-scoped key; None for a global key."""
    return key.split(":", 2)[1] if key.startswith("server:") else None


def _fast_parse(key: str) -> Topic:
    """Keys read back from the database were validated when built: split, do not re-check."""
    parts = key.split(":")
    if parts[0] == "server":
        return Topic(parts[2], parts[1], tuple(parts[3:]))
    return Topic(parts[0], None, tuple(parts[1:]))


def _owners(topic: Topic, parent_channel_id: str | None) -> tuple[str, ...]:
    """The topics whose relation lists include this one (only those kept as receptive sets,
    plus a thread's parent channel)."""
    s, kind, ids = topic.server_id, topic.kind, topic.ids
    if s is None:
        if kind == "dyad":
            return (f"user:{ids[0]}", f"user:{ids[1]}")
        return ()
    if kind == "dyad":
        return (f"server:{s}:user:{ids[0]}", f"server:{s}:user:{ids[1]}", f"dyad:{ids[0]}:{ids[1]}")
    if kind == "user_in_channel":
        return (f"server:{s}:user:{ids[1]}", f"server:{s}:channel:{ids[0]}")
    if kind == "user":
        return (f"user:{ids[0]}",)
    if kind == "thread" and parent_channel_id:
        return (f"server:{s}:channel:{parent_channel_id}",)
    return ()


class TopicIndex:
    def __init__(self, db, config):
        self.db = db
        self.caps = config.salience.caps
        self.threshold = config.salience.warm_threshold
        self._reset_state()

    def _reset_state(self) -> None:
        self.balance: dict[str, float] = {}
        self.last_activity: dict[str, str | None] = {}
        self.info: dict[str, tuple[Topic, float, tuple[str, ...]]] = {}  # topic, cap, owners
        self.new: dict[str, tuple[str, str | None]] = {}  # created here: created_at, metadata
        self.receptive: dict[str, set[str]] = defaultdict(set)
        self.dyad_partners: dict[str, set[str]] = defaultdict(set)  # via active server dyads
        self.servers: set[str] = {r[0] for r in self.db.execute("SELECT id FROM servers")}
        self._loaded: set[str | None] = set()
        self.rowid_mark = self._max_rowid()

    def _max_rowid(self) -> int:
        return self.db.execute("SELECT coalesce(max(rowid), 0) FROM salience_ledger").fetchone()[0]

    # ------------------------------------------------------------ loading
    def ensure(self, key: str) -> None:
        scope = _scope(key)
        if scope not in self._loaded:
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
                "SELECT key, balance, last_activity_at, metadata FROM topics "
                "WHERE key >= ? AND key < ?", [lo, hi])
            for key, balance, last, metadata in rows:
                if key not in self.info:
                    self._register(key, balance, last, metadata)

    def _register(self, key: str, balance: float, last: str | None, metadata: str | None) -> None:
        topic = _fast_parse(key)
        parent = None
        if topic.kind == "thread" and metadata:
            parent = json.loads(metadata).get("parent_channel_id")
        owners = _owners(topic, parent)
        cap = getattr(self.caps, topic.cap_field)
        self.info[key] = (topic, cap, owners)
        self.balance[key] = balance
        self.last_activity[key] = None
        if self.threshold < balance < cap:
            for owner in owners:
                self.receptive[owner].add(key)
        if last is not None:
            self.mark_active(key, last)

    # ------------------------------------------------------------ reading
    def balance_of(self, key: str) -> float:
        value = self.balance.get(key)
        if value is None:
            self.ensure(key)
            value = self.balance.get(key, 0.0)
        return value

    def exists(self, key: str) -> bool:
        if key not in self.info:
            self.ensure(key)
        return key in self.info

    def cap_of(self, key: str) -> float:
        return self.info[key][1]

    def is_warm(self, key: str) -> bool:
        return self.balance_of(key) > self.threshold

    def is_active(self, key: str) -> bool:
        """Has had an earn (its last_activity_at is set)."""
        if key not in self.info:
            self.ensure(key)
        return self.last_activity.get(key) is not None

    def is_receptive(self, key: str) -> bool:
        value = self.balance_of(key)
        return key in self.info and self.threshold < value < self.info[key][1]

    def related_receptive(self, key: str, user_id: str | None = None) -> list[str]:
        """The related topics of `key` (DESIGN §5) that are warm and below their cap now."""
        topic, _cap, owners = self.info[key]
        s, kind, ids = topic.server_id, topic.kind, topic.ids
        if s is None:
            if kind in ("user", "dyad"):
                self.ensure_all_servers()  # its server topics may live in any server
            if kind == "user":
                candidates = list(self.receptive.get(key, ()))
            elif kind == "dyad":
                candidates = [f"user:{ids[0]}", f"user:{ids[1]}", *self.receptive.get(key, ())]
            else:
                candidates = []
        elif kind == "user":
            candidates = [*self.receptive.get(key, ()), f"user:{ids[0]}"]
        elif kind == "dyad":
            a, b = ids
            candidates = [f"server:{s}:user:{a}", f"server:{s}:user:{b}", f"dyad:{a}:{b}"]
        elif kind == "channel":
            candidates = list(self.receptive.get(key, ()))
        elif kind == "thread":
            candidates = list(owners)
        elif kind == "user_in_channel":
            candidates = [f"server:{s}:user:{ids[1]}", f"server:{s}:channel:{ids[0]}"]
        elif kind == "dyad_in_channel":
            c, a, b = ids
            candidates = [f"server:{s}:dyad:{a}:{b}", f"server:{s}:channel:{c}",
                          f"server:{s}:user:{a}", f"server:{s}:user:{b}"]
        elif kind == "emoji" and user_id:
            candidates = [f"server:{s}:user:{user_id}"]
        else:
            candidates = []  # subjects, roles and self relate to nothing
        return [r for r in candidates if self.is_receptive(r)]

    # ------------------------------------------------------------ changing
    def create(self, key: str, at: str, metadata: dict | None = None) -> None:
        """A topic the engine is about to write to (inserted at the next flush)."""
        if key in self.info:
            return
        self.ensure(key)
        if key in self.info:
            return
        text = json.dumps(metadata, sort_keys=True) if metadata else None
        self._register(key, 0.0, None, text)
        self.new[key] = (at, text)

    def set_balance(self, key: str, value: float) -> None:
        _topic, cap, owners = self.info[key]
        old = self.balance[key]
        self.balance[key] = value
        was = self.threshold < old < cap
        now = self.threshold < value < cap
        if was != now:
            for owner in owners:
                if now:
                    self.receptive[owner].add(key)
                else:
                    self.receptive[owner].discard(key)

    def mark_active(self, key: str, at: str) -> None:
        last = self.last_activity.get(key)
        if last is None or at > last:
            self.last_activity[key] = at
        if last is None:
            topic = self.info[key][0]
            if topic.kind == "dyad" and topic.server_id is not None:
                a, b = topic.ids
                self.dyad_partners[a].add(b)
                self.dyad_partners[b].add(a)

    # ------------------------------------------------------------ other writers
    def sync(self) -> None:
        """Catch up with ledger rows other writers appended since the last look."""
        mark = self._max_rowid()
        if mark == self.rowid_mark:
            return
        if mark < self.rowid_mark:
            self._reset_state()  # rows disappeared (a rollback, a rebuild): start over
            return
        rows = self.db.execute(
            "SELECT key, balance, last_activity_at, metadata FROM topics WHERE key IN "
            "(SELECT topic_key FROM salience_ledger WHERE rowid > ?)", [self.rowid_mark])
        for key, balance, last, metadata in rows:
            if key in self.info:
                self.set_balance(key, balance)
                if last is not None:
                    self.mark_active(key, last)
            elif _scope(key) in self._loaded:
                self._register(key, balance, last, metadata)
        self.rowid_mark = mark

    def flushed(self) -> None:
        """The pending topics and rows are in the database now."""
        self.new.clear()
        self.rowid_mark = self._max_rowid()

    def drop(self) -> None:
        self._reset_state()
