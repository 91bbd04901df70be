"""`zos subjects list/show/merge/rename/promote`: subjects and their lifecycle
(docs/subjects.md)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.errors import UsageProblem
from zos_cli.output import JsonFlag, KeysFlag, NlFlag

app = typer.Typer(
    help="Subjects the community returns to: provisional until established, merged, renamed.",
    no_args_is_help=True,
)

# merge, rename and promote take one lock: two operators merging at once would race.
SUBJECTS_JOB = "subjects"
LIST_COLUMNS = ["label", "name", "topic_key", "server_id", "state", "balance", "aliases",
                "insights", "last_activity_at"]

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="A subject name (as listed, or "
                                        "as written: `Board games` is board_games).")]
ServerOpt = Annotated[Optional[str], typer.Option(
    "--server", metavar="ID|NAME", help="The server (needed when the name is in several).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what it would do; change nothing.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    server: ServerOpt = None,
    provisional: Annotated[bool, typer.Option(
        "--provisional", help="Only subjects not established yet (never reflected on).")] = False,
    established: Annotated[bool, typer.Option(
        "--established", help="Only established subjects (what the subject layer takes).")] = False,
    keys: KeysFlag = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Every subject, highest balance first, with its state, aliases and insights."""
    fmt = output.choose(json_, nl)
    if provisional and established:
        raise UsageProblem("--provisional and --established cannot be used together: choose one")
    wanted = "provisional" if provisional else "established" if established else None
    from zos_cli.labels import label_rows
    from zos_cli.reflect.subjects import LIST_KEYS, list_subjects

    with state(ctx).database() as db:
        rows = list(label_rows(db, ({k: r[k] for k in LIST_KEYS}
                                    for r in list_subjects(db, server=server, state=wanted))))
    output.print_rows(rows, fmt, columns=LIST_COLUMNS, title="Subjects", keys=keys,
                      key_columns=("topic_key", "server_id"),
                      empty="No subjects yet: insights name them (run zos reflect or zos nightly).")


@app.command("show")
def show(ctx: typer.Context, name: NameArg, server: ServerOpt = None,
         json_: JsonFlag = False) -> None:
    """One subject: balance, state, aliases, key terms, insights and recent matching messages."""
    fmt = output.choose(json_)
    from zos_cli.reflect.subjects import show_subject

    app_state = state(ctx)
    with app_state.database() as db:
        doc = show_subject(db, app_state.config, name, server=server)
    output.print_document(doc, fmt, human=_print_show)


def _print_show(doc: dict) -> None:
    keys = ("name", "topic_key", "state", "balance", "aliases", "key_terms", "naming_targets",
            "insights", "last_activity_at")
    title = doc["name"] + (f" (as {doc['shown_as']}, an alias)" if doc["shown_as"] else "")
    output.print_key_values({k: doc[k] for k in keys}, title=title)
    if doc["insight_rows"]:
        output.print_rows(doc["insight_rows"], output.Format.TABLE, title="Insights")
    if doc["messages"]:
        output.print_rows(doc["messages"], output.Format.TABLE, title="Recent matching messages")


@app.command("merge")
def merge(
    ctx: typer.Context,
    from_: Annotated[str, typer.Argument(metavar="FROM", help="The subject merged away.")],
    into: Annotated[str, typer.Argument(metavar="INTO", help="The subject it becomes part of.")],
    server: ServerOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    json_: JsonFlag = False,
) -> None:
    """Merge FROM into INTO: its balance (up to INTO's cap) and insights move, FROM becomes an
    alias of INTO, and the ledger and an event record it."""
    _merge(ctx, from_, into, server, dry_run, yes, json_, rename=False)


@app.command("rename")
def rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(metavar="OLD", help="The subject's name now.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="Its new name (not a subject yet).")],
    server: ServerOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    json_: JsonFlag = False,
) -> None:
    """Rename a subject: a merge into a new name (OLD stays as an alias)."""
    _merge(ctx, old, new, server, dry_run, yes, json_, rename=True)


def _merge(ctx: typer.Context, from_: str, into: str, server: str | None, dry_run: bool,
           yes: bool, json_: bool, *, rename: bool) -> None:
    fmt = output.choose(json_)
    if not dry_run:
        verb = "rename" if rename else "merge"
        output.confirm(yes, f"this would {verb} subject {from_} into {into}, moving its balance "
                            "and insights (the ledger keeps the history)")
    from zos_cli.reflect.subject_merge import merge as merge_subjects
    from zos_cli.store import locks

    app_state = state(ctx)
    with app_state.database() as db:
        if dry_run:
            doc = merge_subjects(db, app_state.config, from_, into, server=server, rename=rename,
                                 dry_run=True)
        else:
            with locks.job_lock(app_state.db_path, SUBJECTS_JOB):
                doc = merge_subjects(db, app_state.config, from_, into, server=server,
                                     rename=rename)
    output.print_document(doc, fmt, human=_print_merge)


def _print_merge(doc: dict) -> None:
    verb = {"merge": "merged", "rename": "renamed"}[doc["action"]]
    head = f"Would have {verb}" if doc["dry_run"] else verb.capitalize()
    print(f"{head} {doc['from_key']} into {doc['into_key']}: balance {doc['balance_moved']:.2f} "
          f"moved, {doc['balance_taken']:.2f} taken (INTO {doc['into_balance_before']:.2f} → "
          f"{doc['into_balance_after']:.2f}, cap {doc['cap']:g}); {doc['insights_moved']} "
          f"insight(s) moved; {', '.join(doc['aliases_added'])} now arrive(s) at "
          f"{doc['into']} ({doc['state']}).")
    if doc["refused_by_cap"] > 0:
        print(f"The cap refused {doc['refused_by_cap']:.2f} of the balance.")


@app.command("promote")
def promote(ctx: typer.Context, name: NameArg, server: ServerOpt = None,
            json_: JsonFlag = False) -> None:
    """Establish a subject now (the subject layer reflects only on established subjects)."""
    fmt = output.choose(json_)
    from zos_cli.reflect.subject_merge import promote as promote_subject
    from zos_cli.store import locks

    app_state = state(ctx)
    with app_state.database() as db:
        with locks.job_lock(app_state.db_path, SUBJECTS_JOB):
            doc = promote_subject(db, name, server=server)
    output.print_document(doc, fmt, human=lambda d: print(
        f"{d['topic_key']} is established" + ("." if d["changed"] else " (it was already).")))
