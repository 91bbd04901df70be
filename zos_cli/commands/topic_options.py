"""What the commands that take a topic share (registers nothing): the `--server` and
`--global` options of a topic reference, turning a reference into a key, and the config the
labels read their privacy-gate roles from (docs/labels.md)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ServerOpt = Annotated[Optional[str], typer.Option(
    "--server", metavar="ID|NAME",
    help="The server of a reference (@name, '#channel', …) whose name is in several.")]
GlobalOpt = Annotated[bool, typer.Option(
    "--global", help="With @name or @a+@b: the user's (or pair's) global topic.")]
TOPIC_HELP = ("A topic key (server:1:user:2) or a reference: @name, '#channel', channel:name, "
              "@a+@b, subject:name.")


def label_config(app_state):
    """The zos.toml Config when there is one (its privacy-gate roles), else None: the labels
    then read the roles stored on the servers, and a listing never imports pydantic."""
    return app_state.config if app_state.config_path is not None else None


def topic_key(app_state, db, ref: str | None, server: str | None = None,
              global_: bool = False) -> str | None:
    """The key a topic argument names (a key as it is, or a resolved reference); None for
    an optional --topic left out (then --server and --global have nothing to go with)."""
    from zos_cli.errors import UsageProblem
    from zos_cli.labels import resolve_reference

    if ref is None:
        if server is not None or global_:
            raise UsageProblem("--server and --global go with --topic: add --topic @name "
                               "(or another reference)")
        return None
    return resolve_reference(db, ref, config=label_config(app_state), server=server,
                             global_=global_)
