"""What the two Discord API commands share — `zos poll` and `zos ingest --token` (the
backfill): their id flags, SIGTERM as "finish the write in progress, then stop", the summary's
skipped channels and errors, and how per-channel failures end the command.

Not a command itself (it registers nothing): the command modules import it, never each other.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from zos_cli import output
from zos_cli.errors import JobFailed, UsageProblem
from zos_cli.ids import is_discord_id


def raise_failures(report, job: str) -> None:
    """A fatal error as itself; per-channel errors as one JobFailed naming the first."""
    if report.fatal is not None:
        raise report.fatal
    errors = report.summary["errors"]
    if errors:
        first = errors[0]
        raise JobFailed(f"{job} finished with {len(errors)} error(s); first: "
                        f"{first['channel'] or job}: {first['error']}")


def discord_ids(values: list[str] | None, flag: str) -> list[str]:
    """The ids given with a repeatable flag, each once, in order (a non-id is a usage error)."""
    for value in values or []:
        if not is_discord_id(value):
            raise UsageProblem(f"{flag} {value!r} is not a Discord id (digits only)")
    return list(dict.fromkeys(values or []))


@contextmanager
def stop_on_sigterm(stop: threading.Event):
    """SIGTERM sets `stop`: the job finishes the write in progress, then ends (exit 0)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def note_skipped_channels(summary: dict) -> None:
    for item in summary["skipped_channels"]:
        output.note(f"skipped channel {item['channel']}: {item['reason']}")


def print_human_summary(summary: dict, title: str, job: str) -> None:
    """The summary as key/values (lists as their lengths), then each error as a warning."""
    shown = {k: (len(v) if isinstance(v, list) else v) for k, v in summary.items()}
    output.print_key_values(shown, title=title)
    for item in summary["errors"]:
        output.warn(f"{item['channel'] or job}: {item['error']}")
