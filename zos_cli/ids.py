"""Ids for everything zos creates: ULIDs, which sort by creation time."""


def new_id() -> str:
    from ulid import ULID  # imported on first use: it costs startup time of commands that never need it

    return str(ULID())


# RFC 4648 base32 → Crockford base32 (the ULID alphabet), for new_ids.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_ids(n: int) -> list[str]:
    """`n` ULIDs at once (for bulk inserts: ~20× faster than calling new_id n times). They
    share the current millisecond; 80 random bits each, encoded in one C-level pass."""
    import base64
    import os

    if n <= 0:
        return []
    prefix = new_id()[:10]  # the 48-bit timestamp part
    text = base64.b32encode(os.urandom(10 * n)).translate(_CROCKFORD).decode("ascii")
    return [prefix + text[i:i + 16] for i in range(0, 16 * n, 16)]
