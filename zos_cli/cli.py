"""The root Typer app: global options, command registration, and the one error path."""

from __future__ import annotations

import logging
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


app = typer.Typer(
    name="zos",
    cls=ZosGroup,
    help="zos: watch Discord communities, keep a salience ledger, reflect into insights.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
    if verbose:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
        )


def _register() -> None:
    from zos_cli.commands import consent, database, ingest, insights, poll, reflect, salience

    for module in (database, ingest, poll, reflect):
        module.register(app)
    for name, module in (("salience", salience), ("insights", insights), ("consent", consent)):
        app.add_typer(module.app, name=name)


_register()


def _report(exc: BaseException) -> int | None:
    """Print the one `Error: …` line for an error we know; return its exit code."""
    if isinstance(exc, ZosError):
        output.error(exc.message)
        return exc.exit_code
    if isinstance(exc, sqlite3.OperationalError):
        from zos_cli.db import is_busy

        if is_busy(exc):
            output.error(f"the database is busy ({exc}): another job holds it; try again")
            return EXIT_TEMPORARY
        output.error(f"database error: {exc} (set ZOS_DEBUG=1 for details)")
        return EXIT_FAILED
    return None


def main() -> None:
    try:
        app(prog_name="zos")
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
