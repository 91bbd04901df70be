"""Ids: the ULIDs of everything zos creates (they sort by creation time), and the check of
Discord's own ids."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # the ULID alphabet
MAX_SNOWFLAKE = 2**64 - 1  # Discord ids are unsigned 64-bit numbers


def is_discord_id(value: object) -> bool:
    """A Discord id (snowflake) as text: ASCII digits (`str.isdigit` alone also takes '²' and
    full-width digits), no leading zero, at most 2^64 - 1."""
    return (isinstance(value, str) and value.isdigit() and value.isascii() and value[0] != "0"
            and (len(value) < 20 or (len(value) == 20 and int(value) <= MAX_SNOWFLAKE)))


# The last two characters of an id, for every value of its low 10 bits.
_LOW_PAIRS = [CROCKFORD[i >> 5] + CROCKFORD[i & 31] for i in range(1024)]


def new_id() -> str:
    from ulid import ULID  # imported on first use: it costs startup time of commands that never need it

    return str(ULID())


def _encode(value: int, chars: int) -> str:
    out = []
    for _ in range(chars):
        out.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_ids(n: int) -> list[str]:
    """`n` ULIDs at once, for bulk inserts: monotonic ULIDs (the spec's way to make many in
    one millisecond) — the current time, then an 80-bit random start incremented by one per
    id. They sort in the order they were made (so an index on them is appended to, not
    written all over), and cost a list lookup and a concatenation each."""
    return [i for block in _id_blocks(n) for i in block]


def iter_new_ids(n: int) -> Iterator[str]:
    """new_ids(n), made 1,024 at a time as they are used (for very large inserts)."""
    for block in _id_blocks(n):
        yield from block


def _id_blocks(n: int) -> Iterator[list[str]]:
    if n <= 0:
        return
    prefix = new_id()[:10]  # the 48-bit timestamp part
    value = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up without overflow
    end = value + n
    while value < end:
        high = prefix + _encode(value >> 10, 14)
        stop = min(end, (value | 1023) + 1)  # up to the next change of the high part
        low = value & 1023
        yield [high + pair for pair in _LOW_PAIRS[low:low + stop - value]]
        value = stop


def json_ids(ids) -> str:
    """Ids as the JSON array that SQL's `json_each` reads (and the id-list columns hold)."""
    return json.dumps(list(ids))
