"""The one output helper: rich tables for people, `--json` documents and `--nl` lines for tools.

stdout carries data only. Warnings, hints and progress go to stderr (docs/configuration.md#output): silent with
`--quiet`, and silent when stderr is not a terminal (cron mail stays empty on success) unless
`--verbose` asks for stderr lines. `--verbose` also turns on the log lines of the `zos.*`
loggers (what each job does, step by step: ids and counts, never content or tokens).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zos_cli.errors import UsageProblem

# rich is imported where a table or a styled line is drawn: a command that prints JSON, or
# nothing, never pays for it (startup time).
if TYPE_CHECKING:
    from rich.console import Console


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    NL = "nl"


# The largest count a command takes (--limit, --max-targets, …): what SQLite can hold.
MAX_COUNT = 2**63 - 1


def at_most_max_count(value: int | None) -> int | None:
    """Option callback for counts: a number SQLite cannot hold is a usage error (exit 2), not
    an OverflowError deep in a query. (A callback, not `max=`: the help shows no 19 digits.)"""
    if value is not None and value > MAX_COUNT:
        raise typer.BadParameter(f"{value} is too large (at most {MAX_COUNT})")
    return value

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
KeysFlag = Annotated[bool, typer.Option(
    "--keys", help="Also show topic keys in the table (--json and --nl always have them).")]
NlFlag = Annotated[
    bool, typer.Option("--nl", help="Print newline-delimited JSON, one object per line.")
]


class _Settings:
    quiet = False
    verbose = False
    failure_summary: tuple[dict, str, Format] | None = None  # see summary_on_failure


settings = _Settings()


def stdout() -> Console:
    from rich.console import Console

    # The terminal's width; when piped, COLUMNS if set, else wide (200), so tables are not
    # folded at 80 columns. Cells are data: `:100:` in a topic key is not an emoji code, `[x]`
    # in text is not markup.
    columns = os.environ.get("COLUMNS", "")
    width = None if sys.stdout.isatty() else int(columns) if columns.isdigit() else 200
    return Console(file=sys.stdout, soft_wrap=False, width=width, emoji=False, markup=False)


def stderr() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def choose(json_flag: bool, nl_flag: bool = False) -> Format:
    if json_flag and nl_flag:
        raise UsageProblem("--json and --nl cannot be used together: choose one")
    if json_flag:
        return Format.JSON
    if nl_flag:
        return Format.NL
    return Format.TABLE


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# Human tables (docs/labels.md#in-tables-and-json): a row's `label` comes first and its topic
# key only with --keys; a column of short cells keeps them on one line, longer ones wrap (at
# spaces, else folded); stored times are shown to the minute; long field names get a short
# header (the JSON keys stay as they are).
KEY_COLUMNS = ("topic_key",)
SHORT_CELL = 16
HEADERS = {"sources_scope_max": "scope", "effective_strength": "effective",
           "last_activity_at": "last active", "transaction_type": "type",
           "insights_created": "insights", "target_count": "targets", "layer_name": "layer",
           "source_label": "from"}
_STORED_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d):\d\d(\.\d+)?\+00:00")


def table_columns(columns: Sequence[str], rows: Sequence[dict], *, keys: bool = False,
                  key_columns: Sequence[str] = KEY_COLUMNS, label_first: bool = True) -> list[str]:
    """The columns a person sees: `label` first when the rows have one, and the key columns
    only with --keys."""
    cols = list(columns)
    if label_first and any("label" in row for row in rows):
        cols = ["label"] + [c for c in cols if c != "label"]
    return [c for c in cols if keys or c not in key_columns]


def print_rows(
    rows: Iterable[dict],
    fmt: Format,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    empty: str = "Nothing to show.",
    keys: bool = False,
    key_columns: Sequence[str] = KEY_COLUMNS,
    label_first: bool = True,
) -> None:
    """A listing: a JSON array (`[]` when empty), one JSON object per line, or a table (see
    table_columns; `empty` is said on stderr when there are no rows)."""
    if fmt is Format.JSON:
        # The first row is asked for before anything is written: a listing that refuses its
        # arguments (raised when its generator starts) leaves stdout empty, not a lone "[".
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            sys.stdout.write("[]\n")
        else:
            sys.stdout.write("[\n  " + to_json(first))
            for row in rows:
                sys.stdout.write(",\n  " + to_json(row))
            sys.stdout.write("\n]\n")
        sys.stdout.flush()
        return
    if fmt is Format.NL:
        for row in rows:
            sys.stdout.write(to_json(row) + "\n")
        sys.stdout.flush()
        return
    rows = list(rows)
    if not rows:
        note(empty)
        return
    from rich.table import Table

    cols = table_columns(columns or rows[0].keys(), rows, keys=keys, key_columns=key_columns,
                         label_first=label_first)
    table = Table(title=title, show_lines=False)
    cells = [[_table_cell(row.get(c)) for c in cols] for row in rows]
    for i, col in enumerate(cols):
        header = HEADERS.get(col, col)
        short = max(len(header), *(len(line) for r in cells for line in r[i].splitlines() or [""]))
        table.add_column(header, no_wrap=short <= SHORT_CELL, overflow="fold")
    for r in cells:
        table.add_row(*r)
    stdout().print(table)


def _table_cell(value: Any) -> str:
    text = _cell(value)
    return _STORED_TIME.sub(r"\1 \2", text) if isinstance(value, str) else text


def print_document(
    doc: dict, fmt: Format, *, human: Callable[[dict], None] | None = None, title: str | None = None
) -> None:
    """One object: JSON (--nl: on one line), or a human rendering (by default a key/value
    table)."""
    settings.failure_summary = None  # the command's own summary stands
    if fmt in (Format.JSON, Format.NL):
        indent = 2 if fmt is Format.JSON else None
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str, indent=indent) + "\n")
        sys.stdout.flush()
        return
    if human is not None:
        human(doc)
        return
    print_key_values(doc, title=title)


def summary_on_failure(fmt: Format, empty: dict, subject: str) -> None:
    """docs/configuration.md#output: a failed command still prints its JSON summary (with `errors`). A job calls
    this before it starts: should it fail before printing a summary of its own (its lock
    held, the database missing or busy, a rejected token), the error path prints `empty` with
    the error as `{subject: null, error}` — stdout then always holds one document for the
    tool reading it. Printing a document clears it."""
    settings.failure_summary = None if fmt is Format.TABLE else (empty, subject, fmt)


def print_failure_summary(message: str, summary: dict | None = None) -> None:
    """The error path's half of summary_on_failure: the job's own `summary` so far when it
    stopped midway and has one, else the empty one with the error."""
    pending, settings.failure_summary = settings.failure_summary, None
    if pending is not None:
        empty, subject, fmt = pending
        print_document(summary or {**empty, "errors": [{subject: None, "error": message}]}, fmt)


def print_key_values(doc: dict, *, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in doc.items():
        table.add_row(key, _cell(value))
    stdout().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (dict, list)):
        return to_json(value)
    return str(value)


def confirm(yes: bool, action: str) -> None:
    """The one guard of destructive commands: `action` says what would happen ("this would
    delete …"). With --yes it goes ahead; on a terminal it asks; without one it refuses
    (exit 2), so cron never destroys anything by accident."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem(f"{action}: add --yes to confirm (there is no terminal to ask)")
    if not typer.confirm(f"{action[0].upper()}{action[1:]}. Continue?", default=False, err=True):
        raise UsageProblem("cancelled: nothing was changed")


def _speaks() -> bool:
    """Whether warnings and hints are printed: on a terminal, or when --verbose asks for
    stderr lines; never with --quiet."""
    return not settings.quiet and (settings.verbose or sys.stderr.isatty())


def note(message: str) -> None:
    """A hint or informational line on stderr (see _speaks)."""
    if _speaks():
        stderr().print(message, markup=False)


def warn(message: str) -> None:
    if _speaks():
        stderr().print(f"Warning: {message}", markup=False, style="yellow")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def log_lines(enabled: bool) -> None:
    """--verbose: the `zos.*` loggers' INFO lines on stderr, timestamped. Only zos's own
    loggers: httpx and litellm log request URLs and payload details of their own."""
    logger = logging.getLogger("zos")
    for handler in [h for h in logger.handlers
                    if isinstance(h, (_StderrHandler, logging.NullHandler))]:
        logger.removeHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO if enabled else logging.WARNING)
    if enabled:
        handler: logging.Handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()  # (else logging's last resort prints warnings)
    logger.addHandler(handler)


def error(message: str) -> None:
    """Always printed: the one error line."""
    print(f"Error: {message}", file=sys.stderr)


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **kwargs: Any) -> None:
        pass


class _RichProgress:
    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def update(self, **kwargs: Any) -> None:
        self._progress.update(self._task, **kwargs)


@contextmanager
def progress(description: str, total: float | None = None, unit: str = "items") -> Iterator:
    """A progress bar on stderr with a rate, only when stderr is a terminal and not --quiet."""
    if settings.quiet or not sys.stderr.isatty():
        yield _NoProgress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second; blank until rich has measured a speed (it is None at first)."""

        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} {unit}/s")

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               RateColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=stderr(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield _RichProgress(bar, task)
