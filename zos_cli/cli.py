"""The root Typer app: global options, command registration, and the one error path."""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from zos_cli import __version__, cli_coercion, output
from zos_cli.app_state import AppState
from zos_cli.errors import EXIT_FAILED, EXIT_TEMPORARY, ZosError

cli_coercion.install()  # typer builds pydantic coercion only for values that need it


# Each command (or command group) of the root, in help order, and the module under
# zos_cli/commands that defines it: a module with `register(app)` adds its commands, one with
# `app` is the group of that name. (tests/test_startup.py checks this against the modules.)
COMMAND_MODULES = {
    "init-db": "database",
    "migrate": "database",
    "status": "database",
    "ingest": "ingest",
    "poll": "poll",
    "analyze": "analyze",
    "reflect": "reflect",
    "nightly": "nightly",
    "salience": "salience",
    "insights": "insights",
    "consent": "consent",
    "self": "self_concept",
    "browse": "browse",
    "subjects": "subjects",
}

# Settings of the root that typer hands down to every command it builds from it.
_BUILD_SETTINGS = {"pretty_exceptions_enable": False, "rich_markup_mode": None,
                   "add_completion": False}


def build_commands(module_name: str) -> dict:
    """The click commands of one command module, built as typer builds them under the root."""
    module = importlib.import_module(f"zos_cli.commands.{module_name}")
    holder = typer.Typer(**_BUILD_SETTINGS)
    if hasattr(module, "register"):
        module.register(holder)
    else:
        holder.add_typer(module.app, name=module_name)
    return dict(typer.main.get_group(holder).commands)


class LazyCommands(MutableMapping):
    """The root's commands by name. A command module is imported, and typer builds its
    commands (inspecting every signature), only when one of them is looked up: `zos salience
    top` pays for the salience group alone, not for all nine. Listing the names (help, "did
    you mean") builds nothing; `items()` or `values()` builds them all."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules: dict[str, str | None] = dict(modules)
        self._built: dict = {}

    def __getitem__(self, name: str):
        if name not in self._built:
            module = self._modules.get(name)
            if module is None:
                raise KeyError(name)
            self._built.update(build_commands(module))
        return self._built[name]

    def __setitem__(self, name: str, command) -> None:
        self._modules.setdefault(name, None)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules


class ZosGroup(TyperGroup):
    """The root group. Its commands are built when first looked up (LazyCommands), for
    startup time.

    The one error path: typed errors become `Error: …` on stderr and their exit code, with
    no traceback (unless ZOS_DEBUG=1). Living in the root group, it serves the console script
    and in-process test runs alike."""

    def __init__(self, **attrs) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(COMMAND_MODULES)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # (names only: TyperGroup's would build every command)

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
    # Usage errors as click prints them, ending in one `Error: …` line (docs/configuration.md#output), not a
    # framed box a script cannot match (rich_markup_mode=None: help is then plain text too);
    # no pretty exceptions, no completion options.
    **_BUILD_SETTINGS,
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
