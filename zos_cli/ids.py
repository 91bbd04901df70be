"""Ids for everything zos creates: ULIDs, which sort by creation time."""


def new_id() -> str:
    from ulid import ULID  # imported on first use: it costs startup time of commands that never need it

    return str(ULID())
