"""The salience engine: earns with caps, propagation, spillover and warming (docs/salience.md#the-arithmetic-of-an-earn), kept
in memory for a batch and written as ledger rows by `flush` (see batch.py for the rows).

One engine per batch-writing job (an ingest run, a poll, a reflection, a rebuild). Events are
applied in event order and balances are computed per event, as the pseudo-code says. Two
readings of it, documented in docs/salience.md#warm-topics:
- warmth is read before the transfers of an earn *and* before the event's earlier earns: a
  topic warmed by one earn of a message receives nothing from that message's later earns (so
  each topic of a media message holds exactly 1.2); warm rows count as before the event;
- transfers to the many related topics of an owner (a user's dyads, a channel's
  user_in_channel topics, …) are offered lazily and folded in when read (see offers.py): the
  same balances, without dozens of transfers per message. With `aggregate=False` (one row
  per change) they are given one by one.
"""

from __future__ import annotations

import json

from zos_cli.store.db import get_state, set_state
from zos_cli.store.db import self_user_id as resolve_self_user_id
from zos_cli.events import LayerRunCompletedEvent, MessageEvent, ReactionEvent, SubjectNamedEvent
from zos_cli.salience import batch
from zos_cli.salience.earns import Earn, earn_list
from zos_cli.salience.gate import PrivacyGate
from zos_cli.salience.index import TopicIndex
from zos_cli.salience.spending import reflection_amounts
from zos_cli.topics import parse, sorted_pair

ZERO = 1e-9  # a balance at or below this is "0" for the warming rules
# zos_state key: the server user topics active only by others' reactions (see __init__).
PASSIVE_STATE = "salience.passive_server_users"


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
        self.pending = batch.PendingRows()
        self.index.sink = self.pending.transfer  # what lazily offered transfers gave
        self.gate = PrivacyGate(db, config)
        # (A job that just asked the API which account it is passes that.)
        self.self_user_id = self_user_id or resolve_self_user_id(db, config)
        self._in_batch = False
        # Server user topics that earned only as the author of a reacted-to message (a
        # welcome wave on a join message): that is not being active there. Stored with each
        # batch (zos_state), so that a later job, a resumed one, sees what an earlier wrote.
        self._passive: set[str] = set()
        self._passive_stored: frozenset[str] = frozenset()

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
        passive = None
        if isinstance(event, ReactionEvent):
            passive = f"server:{server_id}:user:{event.message_author_id}"
            if self.index.is_active(passive) and passive not in self._passive:
                passive = None
        self.index.begin_event()
        here = self._warm_before(event, earns, at)
        for earn in earns:
            self._earn(earn, at, ref, single, run_id)
        if passive is not None and self.index.is_active(passive):
            self._passive.add(passive)
        if here is not None:
            self._passive.discard(here)  # the user authored or reacted here: active

    def earn(self, key: str, amount: float, at: str, *, kind: str = "earn",
             user_id: str | None = None) -> None:
        """The earn(topic, a) of docs/salience.md#the-arithmetic-of-an-earn on one topic, as an event of its own (events go through
        `apply`). `user_id`: who used an emoji (its related topic)."""
        self._start_batch()
        topic = parse(key)
        if amount < 0:
            raise ValueError(f"an earn is never negative ({amount})")
        if topic.server_id is not None:
            self.index.servers.add(topic.server_id)
        self.index.begin_event()
        self._earn(Earn(key, amount, kind, user_id=user_id), at, None, False, None)

    def _start_batch(self) -> None:
        if not self._in_batch:
            self.index.sync()
            stored = get_state(self.db, PASSIVE_STATE)
            self._passive_stored = frozenset(json.loads(stored) if stored else ())
            self._passive = set(self._passive_stored)
            self._in_batch = True

    # ------------------------------------------------------------ warming
    def _acted(self, key: str) -> bool:
        """Whether a server user topic's user has been active there: authored or reacted
        (docs/salience.md#warming), not only received reactions (those topics are `_passive`)."""
        return self.index.is_active(key) and key not in self._passive

    def _warm_before(self, event, earns: list[Earn], at: str) -> str | None:
        """The two warming rules for a global user, checked before the event's own earns;
        returns the actor's server user topic when the event earns it."""
        if isinstance(event, MessageEvent) and event.server_id is None:
            if any(e.topic == f"user:{event.author_id}" for e in earns):
                self._warm_global_user(event.author_id, at, "warm: sent a DM")
            return None
        if isinstance(event, MessageEvent):
            actor = event.author_id
        elif isinstance(event, ReactionEvent):
            actor = event.reactor_id
        else:
            return None
        s = event.server_id
        here = f"server:{s}:user:{actor}"
        if self._acted(here):
            return here  # (already active: the usual case, so asked first)
        if not any(e.topic == here for e in earns):
            return None
        if any(self._acted(f"server:{other}:user:{actor}")
               for other in sorted(self.index.servers) if other != s):
            self._warm_global_user(actor, at, f"warm: first active in a second server ({s})")
        return here

    def _warm_global_user(self, user_id: str, at: str, reason: str) -> None:
        if self.index.value(f"user:{user_id}") > ZERO:
            return
        self._warm(f"user:{user_id}", at, reason)
        self._warm_dyads_of(user_id, at)

    def _warm_dyads_of(self, user_id: str, at: str) -> None:
        if not self.index.is_warm(f"user:{user_id}"):
            return
        self.index.ensure_all_servers()
        for partner in sorted(self.index.dyad_partners.get(user_id, ()), key=int):
            self._maybe_warm_global_dyad(user_id, partner, at)

    def _maybe_warm_global_dyad(self, a: str, b: str, at: str, *, in_order: bool = False) -> None:
        if not in_order:
            a, b = sorted_pair(a, b)
        key = f"dyad:{a}:{b}"
        if self.index.value(key) > ZERO:
            return
        if self.index.is_warm(f"user:{a}") and self.index.is_warm(f"user:{b}"):
            self._warm(key, at, "warm: both users warm")

    def _warm(self, key: str, at: str, reason: str) -> None:
        idx = self.index
        idx.create(key, at)
        balance = idx.value(key)
        amount = min(self.warming, idx.cap_of(key) - balance)
        if amount > 0:
            self.pending.single(None, key, "warm", amount, reason, None, None, at)
            idx.set(key, balance + amount, record=False)  # counts as there before the event

    # ------------------------------------------------------------ earn(topic, a)
    def _earn(self, earn: Earn, at: str, ref: int | None, single: bool, run_id: str | None) -> None:
        idx = self.index
        key, requested, earn_kind, user_id, parent_channel_id = earn
        info = idx.info.get(key)
        if info is None:
            meta = {"parent_channel_id": parent_channel_id} if parent_channel_id else None
            idx.create(key, at, meta)
            info = idx.info[key]
        kind, cap, _owners, owner, _id = info
        is_global = not key.startswith("server:")
        if kind == "dyad" and not is_global:
            _, _, _, a, b = key.split(":")  # (a dyad key's ids are in order)
            self._maybe_warm_global_dyad(a, b, at, in_order=True)
        if owner:
            idx.ensure_scope(key)  # its receptive set must be complete
        related = idx.receptive_among(idx.exact_related(key, user_id))
        if owner and not self.aggregate:
            related += idx.receptive_among(list(idx.receptive.get(key, ())))
        if key in idx.seen:
            idx.fold(key)
        balance = idx.balance[key]
        credited = max(0.0, min(requested, cap - balance))
        overflow = requested - credited
        pending = self.pending
        if single or not self.aggregate:
            detail = earn_kind + batch.message_range(ref, ref)
            if run_id:
                detail += f" (layer run {run_id})"
            pending.single(None, key, "earn", credited, detail, None, run_id, at)
        else:
            pending.earned(key, earn_kind, credited, ref, at)
        if credited:  # (most earns meet a full topic: its balance and sets stay as they are)
            idx.set(key, balance + credited)
        if key not in idx.active:
            idx.mark_active(key, at)
        activity = pending.activity
        if activity.get(key, "") < at:
            activity[key] = at
        share = self.propagation * requested
        spill = self.spillover * overflow if overflow > 0 else 0.0
        if related:
            for other in related:
                self._give(other, "propagate", share, key, at, ref)
            if spill:
                for other in related:  # spilled amounts never spill again
                    self._give(other, "spillover", spill, key, at, ref)
        if owner and self.aggregate:
            idx.offer(key, share, spill, ref, at)
        if (kind == "user" and is_global
                and balance <= self.threshold < balance + credited):
            self._warm_dyads_of(idx.topic(key).ids[0], at)

    def _give(self, key: str, row_type: str, amount: float, source: str, at: str,
              ref: int | None) -> None:
        idx = self.index
        # The balance as receptive_among() just read it, offers folded in: nothing is offered
        # between that and the transfers of the same earn (offers come after them).
        balance = idx.balance[key]
        given = min(amount, idx.info[key][1] - balance)
        if given <= 0:
            return  # what a cap refuses evaporates
        if self.aggregate:
            self.pending.transfer(key, row_type, given, 1, ref, ref, at, source)
        else:
            detail = f"{row_type} from {source}{batch.message_range(ref, ref)}"
            self.pending.single(None, key, row_type, given, detail, source, None, at)
        idx.set(key, balance + given)

    # ------------------------------------------------------------ replayed changes (rebuild)
    def apply_decay(self, key: str, at: str, *, rate: float | None = None,
                    row_id: str | None = None, reason: str | None = None) -> float:
        """One day's decay of `key` at `at`: −rate × its balance now. Returns the amount."""
        self._start_batch()
        if not self.index.exists(key):
            return 0.0
        self.index.begin_event()
        rate = self.config.salience.decay_rate if rate is None else rate
        balance = self.index.value(key)
        amount = -rate * balance if balance > 0 else 0.0
        # Written even when 0: the row records that this day has decayed.
        self.pending.single(row_id, key, "decay", amount, reason or "decay", None, None, at)
        self.index.set(key, balance + amount)
        return amount

    def apply_reflection(self, key: str, tokens: int, at: str, *, layer_run_id: str | None,
                         ids: tuple[str | None, str | None, str | None] = (None, None, None),
                         reason: str | None = None) -> dict:
        """A reflection's spend / reset / retain rows on `key`, from its balance now."""
        self._start_batch()
        if not self.index.exists(key):
            return {"spent": 0.0, "reset": 0.0, "retain": 0.0}
        self.index.begin_event()
        balance = self.index.value(key)
        spent, reset, retain = reflection_amounts(balance, tokens, self.config)
        reason = reason or f"reflection {layer_run_id or '-'}: tokens={tokens}"
        for row_id, row_type, amount in zip(ids, ("spend", "reset", "retain"),
                                            (-spent, -reset, retain)):
            self.pending.single(row_id, key, row_type, amount, reason, None, layer_run_id, at)
        self.index.set(key, balance - spent - reset + retain)
        return {"spent": spent, "reset": reset, "retain": retain}

    def apply_merge(self, from_key: str, into_key: str, at: str, *, merge_id: str,
                    ids: tuple[str | None, str | None] = (None, None)) -> dict:
        """A subject merge replayed (salience/merge.py): FROM's balance now out, into INTO
        as much as its cap lets in. Returns {moved, taken, refused}."""
        from zos_cli.salience.merge import merge_amounts, reasons

        self._start_batch()
        idx = self.index
        if not idx.exists(from_key):
            return {"moved": 0.0, "taken": 0.0, "refused": 0.0}
        idx.create(into_key, at)
        idx.begin_event()
        amounts = merge_amounts(idx.value(from_key), idx.value(into_key), idx.cap_of(into_key))
        out_reason, in_reason = reasons(from_key, into_key, amounts, merge_id)
        self.pending.single(ids[0], from_key, "merge_out", -amounts.moved, out_reason, into_key,
                            None, at)
        self.pending.single(ids[1], into_key, "merge_in", amounts.taken, in_reason, from_key,
                            None, at)
        idx.set(from_key, amounts.from_before - amounts.moved)
        idx.set(into_key, amounts.into_before + amounts.taken)
        return {"moved": amounts.moved, "taken": amounts.taken, "refused": amounts.refused}

    # ------------------------------------------------------------ writing
    def pending_rows(self) -> int:
        return len(self.pending)

    def flush(self, reason: str) -> int:
        """Write the new topics, the ledger rows and the last-activity times of the batch.

        The caller holds `write_transaction`. Returns the number of ledger rows written."""
        idx = self.index
        idx.fold_all()
        topic_rows = []
        # New topics are numbered here, under the write lock, after the highest stored id.
        last_id = self.db.execute("SELECT coalesce(max(id), 0) FROM topics").fetchone()[0]
        for topic_id, (key, (created_at, metadata)) in enumerate(idx.new.items(), last_id + 1):
            topic = idx.topic(key)
            idx.number(key, topic_id)
            topic_rows.append((key, topic.category, topic.group, topic.server_id,
                               int(topic.is_global), created_at, metadata, topic_id))
        for key, topic_id in batch.write_topics(self.db, topic_rows):
            idx.number(key, topic_id)  # another writer made it meanwhile: its id, not ours
        rows = self.pending.rows(reason, idx.topic_id)
        written = batch.write(self.db, rows, self.pending.activity, idx.topic_id, idx.base,
                              idx.balance)
        self.pending.clear()
        idx.flushed()
        if self._passive != self._passive_stored:
            set_state(self.db, PASSIVE_STATE, json.dumps(sorted(self._passive)))
        self._in_batch = False
        return written

    def discard(self) -> None:
        """Forget everything pending and everything cached (after the caller rolled back)."""
        self.pending.clear()
        self.index.drop()
        self._in_batch = False
