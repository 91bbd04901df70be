"""`zos self show/history/diff/accept/revert/set`: zos's self-concept
(docs/reflection.md#the-self-concept)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.output import JsonFlag, NlFlag

app = typer.Typer(
    help="zos's self-concept: the versioned document every reflection prompt starts with.",
    no_args_is_help=True,
)

# Writes take one lock: two operators accepting and setting at once would race for "active".
SELF_JOB = "self"
SHOW_KEYS = ("version", "content", "source", "state", "created_at", "layer_run_id")
VersionArg = Annotated[int, typer.Argument(metavar="V", help="A version number (see `zos self history`).")]


def _shown(row: dict) -> dict:
    return {k: row[k] for k in SHOW_KEYS}


@app.command("show")
def show(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Show the active self-concept (the shipped default becomes version 1 if none is stored)."""
    fmt = output.choose(json_)
    from zos_cli.reflect import self_concept
    from zos_cli.store import locks

    app_state = state(ctx)
    with app_state.database() as db:
        with locks.job_lock(app_state.db_path, SELF_JOB):
            row = self_concept.ensure_default(db)
    output.print_document(_shown(row), fmt, human=_print_version)


def _print_version(doc: dict) -> None:
    print(f"Version {doc['version']} ({doc['source']}, {doc['state']}, {doc['created_at']}):\n")
    print(doc["content"])


@app.command("history")
def history(ctx: typer.Context, json_: JsonFlag = False, nl: NlFlag = False) -> None:
    """List every version, newest first, with its source, state and reason."""
    fmt = output.choose(json_, nl)
    from zos_cli.reflect import self_concept

    with state(ctx).database() as db:
        rows = self_concept.history(db)
    output.print_rows(rows, fmt, columns=["version", "source", "state", "created_at",
                                          "layer_run_id", "reason"],
                      empty="No self-concept stored yet: `zos self show` stores the default.")


@app.command("diff")
def diff(
    ctx: typer.Context,
    first: Annotated[Optional[int], typer.Argument(
        metavar="[V1]", help="The older version (default: the active one).")] = None,
    second: Annotated[Optional[int], typer.Argument(
        metavar="[V2]", help="The newer version (default: the newest proposed one).")] = None,
    json_: JsonFlag = False,
) -> None:
    """A unified diff between two versions: by default the active one and the newest proposal
    (one version given: the active one and it)."""
    fmt = output.choose(json_)
    from zos_cli.reflect import self_concept

    with state(ctx).database() as db:
        doc = self_concept.diff(db, first, second)
    output.print_document(doc, fmt, human=lambda d: print(d["diff"] or "No difference."))


@app.command("accept")
def accept(ctx: typer.Context, version: VersionArg, json_: JsonFlag = False) -> None:
    """Make a proposed version active (the active one becomes superseded)."""
    _write(ctx, json_, lambda db, _config, sc: sc.accept(db, version))


@app.command("revert")
def revert(ctx: typer.Context, version: VersionArg, json_: JsonFlag = False) -> None:
    """Make an older version active again, as a new version with its text."""
    _write(ctx, json_, lambda db, _config, sc: sc.revert(db, version))


@app.command("set")
def set_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A UTF-8 markdown file.")],
    json_: JsonFlag = False,
) -> None:
    """Store FILE as the operator's version, active at once (at most [self] prompt_tokens)."""
    _write(ctx, json_, lambda db, config, sc: sc.set_from_file(db, config, file))


def _write(ctx: typer.Context, json_: bool, do) -> None:
    fmt = output.choose(json_)
    from zos_cli.reflect import self_concept
    from zos_cli.store import locks

    app_state = state(ctx)
    with app_state.database() as db:
        with locks.job_lock(app_state.db_path, SELF_JOB):
            row = do(db, app_state.config, self_concept)
    output.print_document(_shown(row), fmt, human=lambda d: print(
        f"Version {d['version']} ({d['source']}) is now the active self-concept."))


def register(root: typer.Typer) -> None:
    # (The group is `self`, a name no Python module can have.)
    root.add_typer(app, name="self")
