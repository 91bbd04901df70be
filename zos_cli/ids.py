"""Ids for everything zos creates: ULIDs, which sort by creation time."""

from ulid import ULID


def new_id() -> str:
    return str(ULID())
