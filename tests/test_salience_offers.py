"""Folding lazily offered transfers (salience/offers.py) gives what giving every offer one by
one, in the order they were made, gives: the same rows (type, owner, count, message range,
time) and the same amounts — on both paths, under the cap and filling it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_cli.salience.offers import OfferLog, fold


def one_by_one(balance: float, cap: float, offers: list[tuple]) -> tuple[float, list[tuple]]:
    """The reference: each offer's propagate then spillover share, clipped by the cap."""
    given: dict[tuple[str, str], list] = {}
    for _seq, owner, prop, spill, ref, at in sorted(offers):
        for row_type, offered in (("propagate", prop), ("spillover", spill)):
            amount = min(offered, cap - balance)
            if amount <= 0:
                continue
            balance += amount
            g = given.setdefault((row_type, owner), [0.0, 0, ref, ref, at])
            g[0] += amount
            g[1] += 1
            g[3], g[4] = ref, at
    return balance, [(t, o, *g) for (t, o), g in given.items()]


offer_lists = st.lists(
    st.tuples(st.sampled_from(["owner:a", "owner:b", "owner:c"]),
              st.sampled_from([0.3, 0.45, 0.6, 1.5]),
              st.sampled_from([0.0, 0.0, 0.25, 1.0, 2.5])),
    min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(offers=offer_lists, balance=st.floats(1.0, 79.0), cap=st.sampled_from([40.0, 80.0]),
       already=st.integers(0, 5))
def test_fold_equals_giving_each_offer_in_order(offers, balance, cap, already):
    balance = min(balance, cap - 0.01)
    logs: dict[str, OfferLog] = {}
    made = []
    for seq, (owner, prop, spill) in enumerate(offers, start=1):
        ref, at = 1000 + seq, f"2024-03-01T00:00:{seq:02d}.000000+00:00"
        logs.setdefault(owner, OfferLog(start=already)).add(seq, prop, spill, ref, at)
        made.append((seq, owner, prop, spill, ref, at))
    rows = []
    folded = fold("member", balance, cap,
                  [(owner, log, log.start) for owner, log in logs.items()],
                  lambda *args: rows.append(args))
    expected_balance, expected = one_by_one(balance, cap, made)
    assert folded == pytest.approx(expected_balance, abs=1e-9)
    got = {(r[1], r[7]): (r[2], r[3], r[4], r[5], r[6]) for r in rows}
    want = {(t, o): (amount, n, first, last, at) for t, o, amount, n, first, last, at in expected}
    assert set(got) == set(want)
    for key, (amount, n, first, last, at) in want.items():
        assert got[key][0] == pytest.approx(amount, abs=1e-9)
        assert got[key][1:] == (n, first, last, at)


def test_a_member_filled_half_way_gets_nothing_after():
    log = OfferLog()
    for seq in range(1, 11):
        log.add(seq, 1.0, 0.0, 100 + seq, f"t{seq:02d}")
    rows = []
    assert fold("m", 35.5, 40.0, [("owner", log, 0)], lambda *a: rows.append(a)) == 40.0
    assert rows == [("m", "propagate", 4.5, 5, 101, 105, "t05", "owner")]
