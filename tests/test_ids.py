"""Bulk ULIDs: valid, distinct, in the order they were made."""

from __future__ import annotations

from ulid import ULID

from zos_cli.ids import new_id, new_ids


def test_bulk_ids_are_monotonic_ulids_of_now():
    ids = new_ids(3000)  # crosses a change of the high part at least twice
    assert len(set(ids)) == 3000 and ids == sorted(ids)
    values = [int(ULID.from_str(i)) for i in ids]
    assert all(b - a == 1 for a, b in zip(values, values[1:]))
    single = new_id()
    assert abs(ULID.from_str(ids[0]).milliseconds - ULID.from_str(single).milliseconds) < 5000


def test_no_ids():
    assert new_ids(0) == [] and new_ids(-1) == []


def test_ids_made_as_used_are_the_same_kind():
    from zos_cli.ids import iter_new_ids

    ids = list(iter_new_ids(2500))
    assert len(set(ids)) == 2500 and ids == sorted(ids)


def test_discord_ids_are_ascii_digits_within_64_bits():
    from zos_cli.ids import is_discord_id

    assert is_discord_id("175928847299117063") and is_discord_id("18446744073709551615")
    for bad in ("", "0", "0123", "²", "１２３", "12a", " 12", "18446744073709551616",
                "123456789012345678901", None, 123):
        assert not is_discord_id(bad), bad
