"""Lazy propagation: what a topic with many relations offers its receptive related topics.

A channel's earn propagates 0.3 × a to *each* of its warm user_in_channel topics, a user's
earn to each of their warm dyads: in a busy community that is dozens of transfers per
message. Each receptive member receives the same offer (the propagation share, then the
spillover share) clipped by its own cap, and caps are the only thing that make the order
matter: a run of non-negative increments each clipped at the cap ends at
min(cap, balance + their sum). So the owner only appends its offer to a log (O(1)), and a
member folds in what it was offered since it last looked when it is next read (it earns, it
is a transfer target, its warmth is asked) or at the batch's flush:

- when the offers fit under the cap, the amounts per owner and row type are differences of
  prefix sums;
- when they do not, the offers of all its owners are walked in the order they were made
  (a global sequence number), exactly as per-event transfers would have been given.

Membership is decided at event boundaries (a topic warmed during an event joins at the start
of the next one), which is the engine's rule that warmth is read before an event's earns.
"""

from __future__ import annotations

from heapq import merge
from itertools import repeat


class OfferLog:
    """The offers of one owner since the last flush (prefix sums for O(1) differences)."""

    __slots__ = ("start", "end", "seqs", "props", "spills", "refs", "ats", "sum_props",
                 "sum_spills", "spill_counts")

    def __init__(self, start: int = 0):
        self.start = start          # absolute index of the first entry kept
        self.end = start            # absolute index after the last entry (read very often)
        self.seqs: list[int] = []
        self.props: list[float] = []
        self.spills: list[float] = []
        self.refs: list[int | None] = []
        self.ats: list[str] = []
        self.sum_props = [0.0]
        self.sum_spills = [0.0]
        self.spill_counts = [0]

    def add(self, seq: int, prop: float, spill: float, ref: int | None, at: str) -> None:
        self.end += 1
        self.seqs.append(seq)
        self.props.append(prop)
        self.spills.append(spill)
        self.refs.append(ref)
        self.ats.append(at)
        self.sum_props.append(self.sum_props[-1] + prop)
        self.sum_spills.append(self.sum_spills[-1] + spill)
        self.spill_counts.append(self.spill_counts[-1] + (1 if spill > 0 else 0))

    def cleared(self) -> OfferLog:
        return OfferLog(self.end)


def fold(member: str, balance: float, cap: float, pending: list[tuple[str, OfferLog, int]],
         sink) -> float:
    """Fold the offers `pending` ([(owner, log, first unseen absolute index)]) into a member
    holding `balance`; report each (row type, owner) amount to `sink(member, row_type,
    row_type, amount, count, first_ref, last_ref, last_at, owner)` (PendingRows.group).
    Returns the new balance."""
    total = 0.0
    for _owner, log, seen in pending:
        i = seen - log.start
        total += (log.sum_props[-1] - log.sum_props[i]) + (log.sum_spills[-1] - log.sum_spills[i])
    if balance + total <= cap:
        for owner, log, seen in pending:
            i = seen - log.start
            first, last, at = log.refs[i], log.refs[-1], log.ats[-1]
            prop = log.sum_props[-1] - log.sum_props[i]
            if prop > 0:
                sink(member, "propagate", "propagate", prop, len(log.seqs) - i, first, last, at,
                     owner)
            spill = log.sum_spills[-1] - log.sum_spills[i]
            if spill > 0:
                sink(member, "spillover", "spillover", spill,
                     log.spill_counts[-1] - log.spill_counts[i], first, last, at, owner)
        return balance + total
    # The cap is reached on the way: walk the offers in the order they were made (each log is
    # in that order already: merge them) until it is; what a cap refuses evaporates.
    walks = [_walk(owner, log, seen - log.start) for owner, log, seen in pending]
    given: dict[tuple[str, str], list] = {}
    for _seq, owner, prop, spill, ref, at in walks[0] if len(walks) == 1 else merge(*walks):
        for row_type, offered in (("propagate", prop), ("spillover", spill)):
            amount = min(offered, cap - balance)
            if amount <= 0:
                continue
            balance += amount
            g = given.get((row_type, owner))
            if g is None:
                given[(row_type, owner)] = [amount, 1, ref, ref, at]
            else:
                g[0] += amount
                g[1] += 1
                g[3] = ref
                g[4] = at
        if balance >= cap:
            break  # full: every later offer evaporates
    for (row_type, owner), (amount, n, first, last, at) in given.items():
        sink(member, row_type, row_type, amount, n, first, last, at, owner)
    return balance


def _walk(owner: str, log: OfferLog, i: int):
    return zip(log.seqs[i:], repeat(owner), log.props[i:], log.spills[i:], log.refs[i:],
               log.ats[i:])
