"""Times: UTC, stored as ISO-8601 text with microseconds and +00:00 so strings sort as times."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

DISCORD_EPOCH_MS = 1420070400000

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def to_stored(dt: datetime) -> str:
    """The stored form of a datetime: `2024-03-01T12:00:00.000000+00:00`."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        utc = dt.astimezone(timezone.utc)
    except OverflowError:  # (9999-12-31T23:00-05:00 is in year 10000 in UTC)
        raise ValueError("outside the years 1–9999 once in UTC") from None
    return utc.isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """Parse ISO-8601 with any offset and any number of fractional digits (Discord exports
    carry 0, 3 or 7). A missing offset means UTC. Raises ValueError on anything else."""
    m = _ISO.match(text.strip())
    if not m:
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros, tz
    )


def normalize(text: str) -> str:
    """Any accepted ISO-8601 text to the stored UTC form."""
    return to_stored(parse_time(text))


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_stored() -> str:
    return to_stored(now())


def snowflake_time(snowflake: str | int) -> datetime:
    """The creation time encoded in a Discord snowflake."""
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def time_to_snowflake(dt: datetime) -> int:
    """The smallest snowflake created at `dt` (for `before=`/`after=` cursors)."""
    ms = int(dt.timestamp() * 1000) - DISCORD_EPOCH_MS
    return max(ms, 0) << 22
