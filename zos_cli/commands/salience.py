"""`zos salience top/show/ledger/decay/budget/check/rebuild`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from zos_cli import output

from zos_cli.store import locks
from zos_cli.app_state import state
from zos_cli.errors import JobFailed, UsageProblem
from zos_cli.commands.topic_options import TOPIC_HELP, GlobalOpt, ServerOpt, label_config, topic_key
from zos_cli.output import JsonFlag, KeysFlag, NlFlag
from zos_cli.topics import CATEGORIES, GROUPS  # (a light module: --help stays fast)

# Library modules are imported inside each command so that `zos --help` stays fast.

app = typer.Typer(
    help="What zos pays attention to: balances, the ledger behind them, decay, the budget.",
    no_args_is_help=True,
)

SALIENCE_JOB = "salience"  # the lock of the commands that rewrite the ledger (decay, rebuild)

KeyArg = Annotated[str, typer.Argument(metavar="TOPIC", help=TOPIC_HELP)]
# The ledger as a table: ids and keys only with --keys.
LEDGER_COLUMNS = ["created_at", "transaction_type", "amount", "reason", "source_label"]
LEDGER_COLUMNS_WITH_KEYS = ["id", *LEDGER_COLUMNS, "source_topic", "layer_run_id"]


def _choice(flag: str, value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise UsageProblem(f"{flag} {value!r} is not a {what}: choose one of {', '.join(allowed)}")
    return value


@app.command("top")
def top(
    ctx: typer.Context,
    group: Annotated[Optional[str], typer.Option(
        "--group", help=f"Only this budget group ({', '.join(GROUPS)}).")] = None,
    category: Annotated[Optional[str], typer.Option(
        "--category", help="Only this topic category (users, dyads, channels, …).")] = None,
    server: Annotated[Optional[str], typer.Option(
        "--server", metavar="ID|NAME", help="Only topics of this server.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", callback=output.at_most_max_count, min=1, help="How many topics.")] = 20,
    json_: JsonFlag = False,
    nl: NlFlag = False,
    keys: KeysFlag = False,
) -> None:
    """The topics with the highest balances."""
    fmt = output.choose(json_, nl)
    _choice("--group", group, GROUPS, "budget group")
    _choice("--category", category, CATEGORIES, "topic category")
    from zos_cli.labels import label_rows, resolve_server
    from zos_cli.salience.queries import TOP_KEYS, top as top_topics

    app_state = state(ctx)
    with app_state.database() as db:
        server_id = resolve_server(db, server) if server is not None else None
        rows = list(label_rows(db, top_topics(db, group=group, category=category,
                                              server_id=server_id, limit=limit),
                               config=label_config(app_state)))
    output.print_rows(rows, fmt, columns=TOP_KEYS, title="Top salience", keys=keys,
                      empty="No topic has a balance yet: run `zos ingest PATH` on an export "
                            "first.")


@app.command("show")
def show(
    ctx: typer.Context,
    key: KeyArg,
    days: Annotated[int, typer.Option("--days", min=1, help="Days of history in the sparkline.")] = 30,
    server: ServerOpt = None,
    global_: GlobalOpt = False,
    json_: JsonFlag = False,
    keys: KeysFlag = False,
) -> None:
    """One topic: balance, cap, group, last activity, related topics and a balance sparkline."""
    fmt = output.choose(json_)
    from zos_cli.labels import Labeler, label_rows
    from zos_cli.salience.queries import show as show_topic

    app_state = state(ctx)
    with app_state.database() as db:
        doc = show_topic(db, app_state.config, topic_key(app_state, db, key, server, global_),
                         days=days)
        labeler = Labeler(db, label_config(app_state))
        doc = next(label_rows(db, [doc], labeler=labeler))
        doc["related"] = list(label_rows(db, doc["related"], labeler=labeler))
    output.print_document(doc, fmt, human=lambda d: _print_show(d, keys))


def _print_show(doc: dict, keys: bool) -> None:
    shown = ("label", "topic_key", "category", "group", "balance", "cap", "warm",
             "last_activity_at", "created_at", "ledger_rows")
    summary = {k: doc[k] for k in shown if keys or k != "topic_key"}
    output.print_key_values(summary, title=doc["label"])
    if doc["history"]:
        print(f"balance by day ({doc['history'][0]['day']} … {doc['history'][-1]['day']}): "
              f"{doc['sparkline']}")
    if doc["related"]:
        output.print_rows(doc["related"], output.Format.TABLE, title="Related topics", keys=keys)


@app.command("ledger")
def ledger(
    ctx: typer.Context,
    key: KeyArg,
    limit: Annotated[int, typer.Option(
        "--limit", metavar="N", callback=output.at_most_max_count, min=0, help="Newest rows to show (0: all of them).")] = 50,
    server: ServerOpt = None,
    global_: GlobalOpt = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
    keys: KeysFlag = False,
) -> None:
    """The ledger rows behind a topic's balance, newest first: why zos thought about it."""
    fmt = output.choose(json_, nl)
    from zos_cli.labels import Labeler, label_rows
    from zos_cli.salience.queries import ledger as ledger_rows

    app_state = state(ctx)
    with app_state.database() as db:
        key = topic_key(app_state, db, key, server, global_)
        labeler = Labeler(db, label_config(app_state))
        label = labeler.labels([key])[key]
        rows = [{**r, "label": label} for r in label_rows(
            db, ledger_rows(db, key, limit=limit or None), key="source_topic",
            field_name="source_label", labeler=labeler)]
        if fmt is output.Format.TABLE and not keys:  # the keys in a reason, as labels
            rows = [{**r, "reason": labeler.readable(r["reason"])} for r in rows]
    output.print_rows(rows, fmt, columns=LEDGER_COLUMNS_WITH_KEYS if keys else LEDGER_COLUMNS,
                      title=f"Ledger of {key if keys else label}", label_first=False,
                      empty=f"{label} has no ledger rows.")


@app.command("decay")
def decay(
    ctx: typer.Context,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="TIME",
        help="ISO-8601 time, or `now` (default: the newest stored message's time).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would decay; write nothing.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Decay idle topics: 1% a day after 7 whole idle days (idempotent per day)."""
    fmt = output.choose(json_)
    from zos_cli.salience.clock import resolve_as_of
    from zos_cli.salience.decay import decay as run_decay

    app_state = state(ctx)
    with app_state.database() as db:
        when = resolve_as_of(db, as_of)
        if dry_run:
            doc = run_decay(db, app_state.config, when, dry_run=True)
        else:
            with locks.job_lock(app_state.db_path, SALIENCE_JOB):
                doc = run_decay(db, app_state.config, when)
    output.print_document(doc, fmt, human=_print_decay)


def _print_decay(doc: dict) -> None:
    verb = "Would decay" if doc["dry_run"] else "Decayed"
    print(f"{verb} {doc['topics_decayed']} topic(s) as of {doc['as_of']}: {doc['rows']} row(s), "
          f"{doc['amount']:.2f} in all.")
    if doc["topics"]:
        output.print_rows(doc["topics"], output.Format.TABLE)


@app.command("budget")
def budget(ctx: typer.Context, json_: JsonFlag = False, keys: KeysFlag = False) -> None:
    """The next nightly allocation per budget group, and the topics it would take."""
    fmt = output.choose(json_)
    from zos_cli.labels import Labeler
    from zos_cli.salience.selection import budget_plan

    app_state = state(ctx)
    with app_state.database() as db:
        doc = budget_plan(db, app_state.config, layers=_layers(db, app_state.config))
        labeler = Labeler(db, label_config(app_state))
        for part in (*doc["groups"], *doc["layers"]):  # each target's label beside the keys
            names = labeler.labels(part["targets"])
            part["target_labels"] = [names[k] for k in part["targets"]]
    output.print_document(doc, fmt, human=lambda d: _print_budget(d, keys))


def _layers(db, config) -> list[dict]:
    """Each reflection layer's next targets, when the reflection package is installed."""
    try:
        from zos_cli.reflect.targets import next_targets
    except ImportError:
        return []
    return next_targets(db, config)


def _print_budget(doc: dict, keys: bool) -> None:
    print(f"Nightly budget: {doc['nightly_targets']} targets (+{doc['self_targets']} self), "
          f"topics with balance ≥ {doc['min_salience']:g}.")
    targets = "targets" if keys else "target_labels"
    rows = [{"group": g["group"], "share": g["share"], "base": g["base"], "demand": g["demand"],
             "allocated": g["allocated"], "targets": ", ".join(g[targets])}
            for g in doc["groups"]]
    output.print_rows(rows, output.Format.TABLE, title="Groups")
    if doc["layers"]:
        layers = [{"layer": x["layer"], "categories": ",".join(x["categories"]),
                   "targets": ", ".join(x[targets])} for x in doc["layers"]]
        output.print_rows(layers, output.Format.TABLE, title="Per layer")


@app.command("check")
def check(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Prove every topic's balance equals the sum of its ledger rows, and every row names one
    topic by key and id (exit 1 if not)."""
    fmt = output.choose(json_)
    from zos_cli.salience.queries import check as check_ledger

    with state(ctx).database() as db:
        doc = check_ledger(db)
    output.print_document(doc, fmt, human=_print_check)
    if doc["misfiled_rows"]:  # first: such a row also makes two balances differ
        ids = ", ".join(m["ledger_id"] for m in doc["misfiled_rows"][:5])
        more = "…" if len(doc["misfiled_rows"]) > 5 else ""
        raise JobFailed(f"{len(doc['misfiled_rows'])} ledger row(s) whose topic_id does not "
                        f"name their topic_key ({ids}{more}): run `zos salience rebuild` to "
                        "write them again")
    if doc["mismatches"]:
        keys = ", ".join(m["topic_key"] for m in doc["mismatches"][:5])
        more = "…" if len(doc["mismatches"]) > 5 else ""
        raise JobFailed(f"{len(doc['mismatches'])} topic balance(s) differ from their ledger "
                        f"sum ({keys}{more}): run `zos salience rebuild` to recompute them")


def _print_check(doc: dict) -> None:
    if doc["ok"]:
        print(f"OK: {doc['topics_checked']} topics, {doc['ledger_rows']} ledger rows; every "
              "balance equals the sum of its ledger rows.")
    if doc["mismatches"]:
        output.print_rows(doc["mismatches"], output.Format.TABLE, title="Balances that differ")
    if doc["misfiled_rows"]:
        output.print_rows(doc["misfiled_rows"], output.Format.TABLE,
                          title="Ledger rows whose topic_id names another topic")


@app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Recompute every earn from the stored messages with the current weights, re-applying
    past reflection spends and decays at their times."""
    fmt = output.choose(json_)
    output.confirm(yes, "rebuild rewrites the whole salience ledger")
    from zos_cli.salience.rebuild import rebuild as run_rebuild

    app_state = state(ctx)
    with app_state.database() as db:
        with locks.job_lock(app_state.db_path, SALIENCE_JOB), \
                output.progress("Replaying messages", unit="messages") as bar:
            done = [0]

            def advance(n: int) -> None:
                bar.advance(n - done[0])
                done[0] = n

            doc = run_rebuild(db, app_state.config, progress=advance)
    output.print_document(doc, fmt, title="Salience rebuilt")
