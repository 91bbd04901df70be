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

from array import array
from bisect import bisect_left, bisect_right

# Message ids are unsigned 64-bit numbers (export_schema.check_snowflake refuses larger ones),
# kept in an unsigned array; the largest is taken as "no message" (Discord reaches it in the
# 23rd century, and it would only leave a range out of a reason).
NO_REF = 2**64 - 1


class OfferLog:
    """The offers of one owner since the last flush (prefix sums for O(1) differences), in
    typed arrays: an ingest transaction holds tens of thousands of offers, at 64 bytes each
    instead of ~270 as lists of Python numbers."""

    __slots__ = ("start", "end", "seqs", "props", "spills", "refs", "ats", "sum_props",
                 "sum_spills", "spill_counts")

    def __init__(self, start: int = 0):
        self.start = start          # absolute index of the first entry kept
        self.end = start            # absolute index after the last entry (read very often)
        self.seqs = array("q")
        self.props = array("d")
        self.spills = array("d")
        self.refs = array("Q")      # message ids; NO_REF for an offer without one
        self.ats: list[str] = []
        self.sum_props = array("d", [0.0])
        self.sum_spills = array("d", [0.0])
        self.spill_counts = array("q", [0])

    def add(self, seq: int, prop: float, spill: float, ref: int | None, at: str) -> None:
        self.end += 1
        self.seqs.append(seq)
        self.props.append(prop)
        self.spills.append(spill)
        self.refs.append(NO_REF if ref is None else ref)
        self.ats.append(at)
        self.sum_props.append(self.sum_props[-1] + prop)
        self.sum_spills.append(self.sum_spills[-1] + spill)
        self.spill_counts.append(self.spill_counts[-1] + (1 if spill > 0 else 0))

    def ref(self, i: int) -> int | None:
        ref = self.refs[i]
        return None if ref == NO_REF else ref

    def spill_span(self, i: int, k: int) -> tuple[int, int]:
        """The first and last of entries i..k-1 that offered a spillover (there is one)."""
        counts = self.spill_counts
        return bisect_right(counts, counts[i], i) - 1, bisect_left(counts, counts[k], i) - 1

    def cleared(self) -> OfferLog:
        return OfferLog(self.end)


def fold(member: str, balance: float, cap: float, pending: list[tuple[str, OfferLog, int]],
         sink) -> float:
    """Fold the offers `pending` ([(owner, log, first unseen absolute index)]) into a member
    holding `balance`; report each (row type, owner) amount to `sink(member, row_type, amount,
    count, first_ref, last_ref, last_at, owner)` (PendingRows.transfer).
    Returns the new balance."""
    total = 0.0
    for _owner, log, seen in pending:
        i = seen - log.start
        total += (log.sum_props[-1] - log.sum_props[i]) + (log.sum_spills[-1] - log.sum_spills[i])
    if balance + total <= cap:
        for owner, log, seen in pending:
            i, k = seen - log.start, len(log.seqs)
            prop = log.sum_props[k] - log.sum_props[i]
            if prop > 0:
                sink(member, "propagate", prop, k - i, log.ref(i), log.ref(k - 1),
                     log.ats[k - 1], owner)
            spill = log.sum_spills[k] - log.sum_spills[i]
            if spill > 0:
                first, last = log.spill_span(i, k)
                sink(member, "spillover", spill,
                     log.spill_counts[k] - log.spill_counts[i], log.ref(first), log.ref(last),
                     log.ats[last], owner)
        return balance + total
    return _fold_to_cap(member, balance, cap, pending, sink)


def _fold_to_cap(member: str, balance: float, cap: float,
                 pending: list[tuple[str, OfferLog, int]], sink) -> float:
    """The cap is reached on the way. Given offer by offer in the order they were made (a
    global sequence number), every offer before the one that fills the member is given in
    full, that one in part, the later ones not at all (what a cap refuses evaporates). So:
    find that offer by bisection over the sequence numbers (the prefix sums tell what the
    offers up to any point add up to), take the full ones per owner from the prefix sums,
    and clip the filling one — the rows and amounts a walk over every offer would give,
    without the walk (a member can have thousands of offers pending at a flush)."""
    parts = [(owner, log, seen - log.start) for owner, log, seen in pending]

    def through(q: int) -> float:
        """What the offers made up to sequence number q add up to."""
        total = 0.0
        for _owner, log, i in parts:
            k = bisect_right(log.seqs, q, i)
            total += (log.sum_props[k] - log.sum_props[i]) + (log.sum_spills[k] - log.sum_spills[i])
        return total

    lo = min(log.seqs[i] for _owner, log, i in parts)
    hi = max(log.seqs[-1] for _owner, log, _i in parts)
    while lo < hi:
        mid = (lo + hi) // 2
        if balance + through(mid) >= cap:
            hi = mid
        else:
            lo = mid + 1
    filling = lo
    # Before the filling offer: everything, per owner from the prefix sums.
    given = []  # [first seq given, 0 propagate / 1 spillover, row, owner, amount, n, refs, at]
    for owner, log, i in parts:
        k = bisect_left(log.seqs, filling, i)
        if k == i:
            continue
        prop = log.sum_props[k] - log.sum_props[i]
        if prop > 0:
            given.append([log.seqs[i], 0, "propagate", owner, prop, k - i,
                          log.ref(i), log.ref(k - 1), log.ats[k - 1]])
        spill = log.sum_spills[k] - log.sum_spills[i]
        if spill > 0:
            first, last = log.spill_span(i, k)
            given.append([log.seqs[first], 1, "spillover", owner, spill,
                          log.spill_counts[k] - log.spill_counts[i], log.ref(first),
                          log.ref(last), log.ats[last]])
    # The filling offer: its shares up to what is left below the cap (summed as the search
    # summed, so the two agree on where the cap is reached). The member ends full.
    held = balance + through(filling - 1)
    for owner, log, i in parts:
        j = bisect_left(log.seqs, filling, i)
        if j == len(log.seqs) or log.seqs[j] != filling:
            continue
        for order, (row_type, offered) in enumerate((("propagate", log.props[j]),
                                                     ("spillover", log.spills[j]))):
            amount = min(offered, cap - held)
            if amount <= 0:
                continue
            held += amount
            row = next((g for g in given if g[2] == row_type and g[3] == owner), None)
            if row is None:
                given.append([filling, order, row_type, owner, amount, 1,
                              log.ref(j), log.ref(j), log.ats[j]])
            else:
                row[4] += amount
                row[5] += 1
                row[7], row[8] = log.ref(j), log.ats[j]
        break
    given.sort(key=lambda g: (g[0], g[1]))  # the order a walk would have met them
    for _seq, _order, row_type, owner, amount, n, first_ref, last_ref, at in given:
        sink(member, row_type, amount, n, first_ref, last_ref, at, owner)
    return cap  # (the rows' amounts add up to it but for float noise; see batch.write)
