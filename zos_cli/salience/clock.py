"""The clock salience runs on: by default the data's clock, the newest stored message's time,
so an imported export neither decays nor looks stale against today's date."""

from __future__ import annotations

import re

from zos_cli import timeutil
from zos_cli.errors import UsageProblem

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def data_clock(db) -> str | None:
    """The created_at of the newest stored message, or None when there is none.

    One indexed lookup per server (messages are indexed by (server_id, created_at)), instead
    of a scan of the whole table."""
    row = db.execute(
        "SELECT max(t) FROM ("
        " SELECT (SELECT max(created_at) FROM messages WHERE server_id = s.id) AS t FROM servers s"
        " UNION ALL SELECT max(created_at) FROM messages WHERE server_id IS NULL)"
    ).fetchone()
    return row[0] if row else None


def resolve_as_of(db, text: str | None) -> str:
    """`--as-of`: None → the data's clock (the wall clock when nothing is stored); `now` →
    the wall clock; otherwise an ISO-8601 time (any offset), returned in the stored form."""
    if text is None:
        return data_clock(db) or timeutil.now_stored()
    if text.strip().lower() == "now":
        return timeutil.now_stored()
    if _DATE.match(text.strip()):
        text = text.strip() + "T00:00:00+00:00"  # a date alone: the start of that UTC day
    try:
        return timeutil.normalize(text)
    except ValueError:
        raise UsageProblem(
            f"--as-of {text!r} is not a time: give an ISO-8601 time such as "
            "2024-03-01T12:00:00+00:00, or `now`"
        ) from None
