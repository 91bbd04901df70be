"""`zos browse`: the store, read-only, in a local web page (docs/browse.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from zos_cli import output
from zos_cli.app_state import state

# Library modules are imported inside the command so that `zos --help` stays fast.


def register(app: typer.Typer) -> None:
    app.command("browse")(browse)


def browse(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDRESS",
        help="Address to listen on. Keep the default: anyone who can reach another address "
             "reads what the scope shows, with no login.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", metavar="N", min=0, max=65535, help="Port (0: any free one).")] = 8001,
    open_: Annotated[bool, typer.Option(
        "--open", help="Open the page in the default web browser.")] = False,
    scope: Annotated[str, typer.Option(
        "--scope", metavar="SCOPE",
        help="public (default): no DMs, no dm or derived insights; dm: adds DMs and dm "
             "insights; derived: adds derived insights too.")] = "public",
) -> None:
    """Serve the store read-only with Datasette (`pip install 'zos[browse]'`): names, insights,
    salience charts and canned queries. Prints the URL; Ctrl-C stops it."""
    from zos_cli.browse.queries import check_scope
    from zos_cli.browse.serve import BrowseOptions, require_datasette, serve

    require_datasette()
    check_scope(scope)
    app_state = state(ctx)
    with app_state.database():  # (66 when missing, 78 when not migrated)
        path = app_state.db_path
        config = app_state.config
    half_lives = config.insights if app_state.config_path is not None else None

    def listening(url: str) -> None:
        print(url, flush=True)
        output.note(f"zos browse: {path} read-only, scope {scope}; Ctrl-C stops it")

    serve(path, BrowseOptions(host=host, port=port, scope=scope, open_browser=open_),
          config=config, half_lives=half_lives, on_listening=listening,
          warn=output.warn, access_log=app_state.verbose)
