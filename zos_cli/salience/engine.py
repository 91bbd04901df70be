"""The salience engine: earns with caps, propagation, spillover and warming (DESIGN §5), kept
in memory for a batch and written as ledger rows by `flush`.

One engine per batch-writing job (an ingest run, a poll, a reflection, a rebuild). Events are
applied in event order; balances are computed per event, exactly as the pseudo-code says, and
only the *rows* are aggregated: within a batch, changes to one topic of one row type, one kind
(message, reply, … or the source topic of a transfer) and one UTC day become one row whose
reason names the batch, the count and the message-id range. Warm rows, reflection events
(subject_mention, self_run), decays and spends are always written one row each.
"""

from __future__ import annotations

from zos_cli.db import get_state
from zos_cli.events import LayerRunCompletedEvent, MessageEvent, ReactionEvent, SubjectNamedEvent
from zos_cli.ids import new_id
from zos_cli.salience.earns import Earn, earn_list
from zos_cli.salience.gate import PrivacyGate
from zos_cli.salience.index import TopicIndex
from zos_cli.salience.spending import reflection_amounts
from zos_cli.topics import parse, sorted_pair

ZERO = 1e-9  # a balance at or below this is "0" for the warming rules

_INSERT_TOPIC = (
    "INSERT INTO topics (key, category, budget_group, server_id, is_global, created_at, metadata) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
_INSERT_ROW = (
    "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, source_topic, "
    "layer_run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_TOUCH = (
    "UPDATE topics SET last_activity_at = ? WHERE key = ? "
    "AND (last_activity_at IS NULL OR last_activity_at < ?)"
)


class SalienceEngine:
    def __init__(self, db, config, *, aggregate: bool = True, self_user_id: str | None = None):
        self.db = db
        self.config = config
        s = config.salience
        self.propagation = s.propagation_factor
        self.spillover = s.spillover_factor
        self.threshold = s.warm_threshold
        self.warming = s.warming_amount
        self.aggregate = aggregate
        self.index = TopicIndex(db, config)
        self.gate = PrivacyGate(db, config)
        self.self_user_id = (self_user_id or config.discord.self_user_id
                             or get_state(db, "discord.self_user_id"))
        # (key, type, detail, day) → [amount, n, lo, hi, at, seq]
        self._groups: dict[tuple, list] = {}
        self._rows: list[tuple] = []            # rows written one each (…, at, seq)
        self._seq = 0                           # keeps a batch's rows in the order they arose
        self._event_start: dict[str, float] = {}  # balances before the event changed them
        self._base: dict[str, float] = {}       # key → balance before this batch changed it
        self._activity: dict[str, str] = {}     # key → newest earn time in this batch
        self._in_batch = False

    # ------------------------------------------------------------ events
    def apply(self, event) -> None:
        """Process one event (in event order); nothing is written until `flush`."""
        self._start_batch()
        earns = earn_list(event, self.config, self.gate, self_user_id=self.self_user_id)
        if not earns:
            return
        server_id = getattr(event, "server_id", None)
        if server_id is not None:
            self.index.servers.add(server_id)
        at = event.created_at
        ref = int(event.message_id) if hasattr(event, "message_id") else None
        single = isinstance(event, (SubjectNamedEvent, LayerRunCompletedEvent))
        run_id = getattr(event, "layer_run_id", None)
        self._event_start.clear()
        self._warm_before(event, earns, at)
        for earn in earns:
            self._earn(earn, at, ref, single, run_id)

    def earn(self, key: str, amount: float, at: str, *, kind: str = "earn",
             user_id: str | None = None) -> None:
        """DESIGN §5's earn(topic, a) on one topic (events go through `apply`, which calls
        this for each of their earns). `user_id`: who used an emoji (its related topic)."""
        self._start_batch()
        parse(key)
        if amount < 0:
            raise ValueError(f"an earn is never negative ({amount})")
        scope = _server_of(key)
        if scope is not None:
            self.index.servers.add(scope)
        self._event_start.clear()
        self._earn(Earn(key, amount, kind, user_id=user_id), at, None, False, None)

    def _start_batch(self) -> None:
        if not self._in_batch:
            self.index.sync()
            self._in_batch = True

    def _warm_before(self, event, earns: list[Earn], at: str) -> None:
        """The two warming rules for a global user, checked before the event's own earns."""
        if isinstance(event, MessageEvent) and event.server_id is None:
            if any(e.topic == f"user:{event.author_id}" for e in earns):
                self._warm_global_user(event.author_id, at, "warm: sent a DM")
            return
        if isinstance(event, MessageEvent):
            actor = event.author_id
        elif isinstance(event, ReactionEvent):
            actor = event.reactor_id
        else:
            return
        s = event.server_id
        here = f"server:{s}:user:{actor}"
        if not any(e.topic == here for e in earns) or self.index.is_active(here):
            return
        if any(self.index.is_active(f"server:{other}:user:{actor}")
               for other in sorted(self.index.servers) if other != s):
            self._warm_global_user(actor, at, f"warm: first active in a second server ({s})")

    def _warm_global_user(self, user_id: str, at: str, reason: str) -> None:
        key = f"user:{user_id}"
        if self.index.balance_of(key) > ZERO:
            return
        self._warm(key, at, reason)
        self._warm_dyads_of(user_id, at)

    def _warm_dyads_of(self, user_id: str, at: str) -> None:
        if not self.index.is_warm(f"user:{user_id}"):
            return
        self.index.ensure_all_servers()
        for partner in sorted(self.index.dyad_partners.get(user_id, ()), key=int):
            self._maybe_warm_global_dyad(user_id, partner, at)

    def _maybe_warm_global_dyad(self, a: str, b: str, at: str) -> None:
        a, b = sorted_pair(a, b)
        key = f"dyad:{a}:{b}"
        if self.index.balance_of(key) > ZERO:
            return
        if self.index.is_warm(f"user:{a}") and self.index.is_warm(f"user:{b}"):
            self._warm(key, at, "warm: both users warm")

    def _warm(self, key: str, at: str, reason: str) -> None:
        idx = self.index
        idx.create(key, at)
        balance = idx.balance[key]
        amount = min(self.warming, idx.cap_of(key) - balance)
        if amount > 0:
            self._single(None, key, "warm", amount, reason, None, None, at)
            self._set(key, balance + amount)

    # ------------------------------------------------------------ earn(topic, a)
    def _earn(self, earn: Earn, at: str, ref: int | None, single: bool, run_id: str | None) -> None:
        idx = self.index
        key, requested = earn.topic, earn.amount
        meta = {"parent_channel_id": earn.parent_channel_id} if earn.parent_channel_id else None
        idx.create(key, at, meta)
        topic, cap, _owners = idx.info[key]
        if topic.kind == "dyad" and topic.server_id is not None:
            self._maybe_warm_global_dyad(topic.ids[0], topic.ids[1], at)
        # Warmth is read before the transfers — and before this event's earlier earns: a topic
        # warmed by one earn of a message receives nothing from that message's later earns
        # (each topic of a media message holds exactly 1.2). Warm rows count as before.
        start = self._event_start
        related = [r for r in idx.related_receptive(key, earn.user_id)
                   if start.get(r, idx.balance[r]) > self.threshold]
        balance = idx.balance[key]
        start.setdefault(key, balance)
        credited = max(0.0, min(requested, cap - balance))
        overflow = requested - credited
        if single or not self.aggregate:
            detail = earn.kind + _message_range(ref, ref)
            if run_id:
                detail += f" (layer run {run_id})"
            self._single(None, key, "earn", credited, detail, None, run_id, at)
        else:
            self._group(key, "earn", credited, earn.kind, at, ref)
        self._set(key, balance + credited)
        idx.mark_active(key, at)
        if self._activity.get(key, "") < at:
            self._activity[key] = at
        share = self.propagation * requested
        for other in related:
            self._give(other, "propagate", share, key, at, ref)
        if overflow > 0:
            share = self.spillover * overflow
            for other in related:  # spilled amounts never spill again
                self._give(other, "spillover", share, key, at, ref)
        if (topic.kind == "user" and topic.server_id is None
                and balance <= self.threshold < balance + credited):
            self._warm_dyads_of(topic.ids[0], at)

    def _set(self, key: str, value: float) -> None:
        if key not in self._base:
            self._base[key] = self.index.balance[key]
        self.index.set_balance(key, value)

    def _give(self, key: str, row_type: str, amount: float, source: str, at: str,
              ref: int | None) -> None:
        idx = self.index
        balance = idx.balance[key]
        given = min(amount, idx.info[key][1] - balance)
        if given <= 0:
            return  # what a cap refuses evaporates
        self._event_start.setdefault(key, balance)
        if self.aggregate:
            self._group(key, row_type, given, source, at, ref)
        else:
            detail = f"{row_type} from {source}{_message_range(ref, ref)}"
            self._single(None, key, row_type, given, detail, source, None, at)
        self._set(key, balance + given)

    def _single(self, *row) -> None:
        self._seq += 1
        self._rows.append((*row, self._seq))

    def _group(self, key: str, row_type: str, amount: float, detail: str, at: str,
               ref: int | None) -> None:
        gkey = (key, row_type, detail, at[:10])
        g = self._groups.get(gkey)
        if g is None:
            self._seq += 1
            self._groups[gkey] = [amount, 1, ref, ref, at, self._seq]
            return
        g[0] += amount
        g[1] += 1
        if ref is not None:
            if g[2] is None or ref < g[2]:
                g[2] = ref
            if g[3] is None or ref > g[3]:
                g[3] = ref
        if at > g[4]:
            g[4] = at

    # ------------------------------------------------------------ replayed changes (rebuild)
    def apply_decay(self, key: str, at: str, *, rate: float | None = None,
                    row_id: str | None = None, reason: str | None = None) -> float:
        """One day's decay of `key` at `at`: −rate × its balance now. Returns the amount."""
        self._start_batch()
        if not self.index.exists(key):
            return 0.0
        rate = self.config.salience.decay_rate if rate is None else rate
        balance = self.index.balance[key]
        amount = -rate * balance if balance > 0 else 0.0
        # Written even when 0: the row records that this day has decayed.
        self._single(row_id, key, "decay", amount, reason or "decay", None, None, at)
        self._set(key, balance + amount)
        return amount

    def apply_reflection(self, key: str, tokens: int, at: str, *, layer_run_id: str | None,
                         ids: tuple[str | None, str | None, str | None] = (None, None, None),
                         reason: str | None = None) -> dict:
        """A reflection's spend / reset / retain rows on `key`, from its balance now."""
        self._start_batch()
        if not self.index.exists(key):
            return {"spent": 0.0, "reset": 0.0, "retain": 0.0}
        balance = self.index.balance[key]
        spent, reset, retain = reflection_amounts(balance, tokens, self.config)
        reason = reason or f"reflection {layer_run_id or '-'}: tokens={tokens}"
        for row_id, row_type, amount in zip(ids, ("spend", "reset", "retain"),
                                            (-spent, -reset, retain)):
            self._single(row_id, key, row_type, amount, reason, None, layer_run_id, at)
        self._set(key, balance - spent - reset + retain)
        return {"spent": spent, "reset": reset, "retain": retain}

    # ------------------------------------------------------------ writing
    def pending_rows(self) -> int:
        return len(self._groups) + len(self._rows)

    def flush(self, reason: str) -> int:
        """Write the new topics, the ledger rows and the last-activity times of the batch.

        The caller holds `write_transaction`. Returns the number of ledger rows written."""
        idx = self.index
        topic_rows = []
        for key, (created_at, metadata) in idx.new.items():
            topic = idx.info[key][0]
            topic_rows.append((key, topic.category, topic.group, topic.server_id,
                               int(topic.is_global), created_at, metadata))
        rows = []
        for (key, row_type, detail, _day), (amount, n, lo, hi, at, seq) in self._groups.items():
            source = detail if row_type in ("propagate", "spillover") else None
            what = f"{row_type} from {source}" if source else detail
            rows.append((new_id(), key, row_type, amount,
                         f"{reason}: {n} × {what}{_message_range(lo, hi)}", source, None, at, seq))
        for row_id, key, row_type, amount, detail, source, run_id, at, seq in self._rows:
            if row_type in ("earn", "propagate", "spillover", "warm"):
                detail = f"{reason}: {detail}"  # decays and spends keep their own reasons
            rows.append((row_id or new_id(), key, row_type, amount, detail, source, run_id, at,
                         seq))
        rows.sort(key=lambda r: (r[7], r[8]))
        rows = [r[:8] for r in self._exact_balances(rows)]
        conn = self.db.conn
        if topic_rows:
            conn.executemany(_INSERT_TOPIC, topic_rows)
        if rows:
            conn.executemany(_INSERT_ROW, rows)
        if self._activity:
            conn.executemany(_TOUCH, [(at, key, at) for key, at in self._activity.items()])
        self._groups.clear()
        self._rows.clear()
        self._activity.clear()
        self._base.clear()
        idx.flushed()
        self._in_batch = False
        return len(rows)

    def _exact_balances(self, rows: list[tuple]) -> list[tuple]:
        """Aggregated amounts are sums in a different order than the per-event arithmetic, so
        the trigger's running balance could end a few ulps away from the engine's (100 shown
        as 100.00000000000011). The last row of each topic absorbs that float noise — only
        when the correction is below 1e-9, so it never hides a real difference."""
        last_index: dict[str, int] = {}
        for i, row in enumerate(rows):
            last_index[row[1]] = i
        running = dict(self._base)
        out = list(rows)
        for i, row in enumerate(rows):
            key = row[1]
            if key not in running:
                continue
            if last_index[key] == i:
                target = self.index.balance[key]
                exact = target - running[key]
                if abs(exact - row[3]) < 1e-9 and running[key] + exact == target:
                    out[i] = (*row[:3], exact, *row[4:])
            else:
                running[key] += row[3]
        return out

    def discard(self) -> None:
        """Forget everything pending and everything cached (after the caller rolled back)."""
        self._base.clear()
        self._groups.clear()
        self._rows.clear()
        self._activity.clear()
        self.index.drop()
        self._in_batch = False


def _server_of(key: str) -> str | None:
    return key.split(":", 2)[1] if key.startswith("server:") else None


def _message_range(lo: int | None, hi: int | None) -> str:
    if lo is None:
        return ""
    return f" (message {lo})" if lo == hi else f" (messages {lo}..{hi})"
