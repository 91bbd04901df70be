"""The root Typer app: global options, command registration, and the one error path."""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from zos_cli import __version__, output
from zos_cli.app_state import AppState
from zos_cli.errors import EXIT_FAILED, EXIT_TEMPORARY, ZosError


class ZosGroup(TyperGroup):
    """The one error path: typed errors become `Error: …` on stderr and their exit code, with
    no traceback (unless ZOS_DEBUG=1). Living in the root group, it serves the console script
    and in-process test runs alike."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ZosError, sqlite3.OperationalError) as exc:
            if os.environ.get("ZOS_DEBUG") == "1":
                raise
            raise typer.Exit(_report(exc))
        finally:
            output.log_lines(False)  # (in-process callers, such as tests, run on afterwards)


app = typer.Typer(
    name="zos",
    cls=ZosGroup,
    help="zos: watch Discord communities, keep a salience ledger, reflect into insights.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Usage errors as click prints them, ending in one `Error: …` line (docs/configuration.md#output), not a
    # framed box a script cannot match; help is then plain text too.
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"zos {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        Optional[str],
        typer.Option("--db", metavar="PATH", help="Database file (env ZOS_DB; default ./data/zos.db)."),
    ] = None,
    config: Annotated[
        Optional[str],
        typer.Option(
            "--config", metavar="PATH", help="Config file (env ZOS_CONFIG; default ./zos.toml if present)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, warnings or hints.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log lines on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """zos: watch Discord communities, keep a salience ledger, reflect into insights."""
    ctx.obj = AppState(db_flag=db, config_flag=config, quiet=quiet, verbose=verbose)
    output.settings.quiet = quiet
    output.settings.verbose = verbose
    output.settings.failure_summary = None
    output.log_lines(verbose)


def _register() -> None:
    from zos_cli.commands import consent, database, ingest, insights, poll, reflect, salience

    for module in (database, ingest, poll, reflect):
        module.register(app)
    for name, module in (("salience", salience), ("insights", insights), ("consent", consent)):
        app.add_typer(module.app, name=name)


_register()


def _report(exc: BaseException) -> int:
    """Print the one `Error: …` line (after the job's JSON summary, when it asked for one:
    output.summary_on_failure); return the exit code."""
    message, code = _describe(exc)
    output.print_failure_summary(message, getattr(exc, "summary", None))
    output.error(message)
    return code


def _describe(exc: ZosError | sqlite3.OperationalError) -> tuple[str, int]:
    if isinstance(exc, ZosError):
        return exc.message, exc.exit_code
    from zos_cli.store.db import busy_message, is_busy

    if is_busy(exc):
        return busy_message(exc), EXIT_TEMPORARY
    return f"database error: {exc} (set ZOS_DEBUG=1 for details)", EXIT_FAILED


def main() -> None:
    try:
        app(prog_name="zos")
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
