"""`zos consent grant/revoke/list/status`: DM-reading consent (docs/privacy.md#consent-commands)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.commands.topic_options import label_config
from zos_cli.output import JsonFlag, KeysFlag, NlFlag

app = typer.Typer(
    help="DM-reading consent: a DM is stored only while every participant has consented.",
    no_args_is_help=True,
)

UserArg = Annotated[str, typer.Argument(metavar="USER", help="A Discord user id or a known @name.")]
TypeOpt = Annotated[str, typer.Option("--type", help="Consent type.")]
AtOpt = Annotated[Optional[str], typer.Option(
    "--at", metavar="TIME", help="When it happened (ISO-8601; default now).")]
# The table: the person's label first (user_name is in --json), ids with --keys.
LIST_COLUMNS = ["user_id", "consent_type", "granted_at", "revoked_at", "server_id", "note"]


@app.command("grant")
def grant(
    ctx: typer.Context,
    user: UserArg,
    consent_type: TypeOpt = "dm_read",
    server: Annotated[Optional[str], typer.Option(
        "--server", metavar="ID", help="The server where consent was given.")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Free text kept with it.")] = None,
    at: AtOpt = None,
    json_: JsonFlag = False,
) -> None:
    """Record that USER consents to zos reading their DMs (a new row; nothing overwritten)."""
    fmt = output.choose(json_)
    from zos_cli.privacy import consent

    app_state = state(ctx)
    with app_state.database() as db:
        row = consent.grant(db, user, consent_type=consent_type, server_id=server, note=note,
                            at=at, config=app_state.config)
    output.print_document(row, fmt, human=_said(
        "Granted {consent_type} for {user_id} at {granted_at}.",
        "{user_id} already has an active {consent_type} consent (since {granted_at})."))
    if row["changed"]:
        output.note("DM exports skipped for lack of consent are read again by the next "
                    "`zos ingest` of the same files.")


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]
BackupsOpt = Annotated[bool, typer.Option(
    "--include-backups", help="Also delete the migration backups beside the database "
    "(they were made before the forget and still hold the content).")]


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    user: UserArg,
    consent_type: TypeOpt = "dm_read",
    at: AtOpt = None,
    forget: Annotated[bool, typer.Option(
        "--forget", help="Also erase USER's DM channels (both sides), what was made from them, "
                         "and the model calls that carried them.")] = False,
    include_backups: BackupsOpt = False,
    yes: YesOpt = False,
    json_: JsonFlag = False,
) -> None:
    """Stop reading USER's DMs: the active grant gets its revoked_at (kept as history), and
    insights made from their DMs are quarantined. With --forget, those are erased for good."""
    fmt = output.choose(json_)
    from zos_cli.privacy import consent

    app_state = state(ctx)
    with app_state.database() as db:
        if forget:
            output.confirm(yes, f"this would erase every DM of {user} and what was made "
                                "from them, for good")
            doc = consent.revoke_and_forget(db, user, consent_type=consent_type, at=at,
                                            db_path=app_state.db_path,
                                            include_backups=include_backups)
        else:
            doc = consent.revoke(db, user, consent_type=consent_type, at=at)
    output.print_document(doc, fmt, human=_print_revoke)


@app.command("erase")
def erase(ctx: typer.Context, user: UserArg, include_backups: BackupsOpt = False,
          yes: YesOpt = False, json_: JsonFlag = False) -> None:
    """Remove everything about USER: DMs, public messages, reactions, mentions, their topics
    and ledger rows, insights about them or made from their messages (tombstones keep ids)."""
    fmt = output.choose(json_)
    from zos_cli.privacy import consent

    app_state = state(ctx)
    with app_state.database() as db:
        output.confirm(yes, f"this would erase everything zos holds about {user}, for good")
        doc = consent.erase(db, user, db_path=app_state.db_path, include_backups=include_backups)
    output.print_document(doc, fmt, human=lambda d: _print_purge(d["purge"]))


def _print_revoke(doc: dict) -> None:
    if doc["changed"]:
        print(f"Revoked {doc['consent_type']} for {doc['user_id']} at {doc['revoked_at']}; "
              f"{doc['insights_quarantined']} insights quarantined.")
    else:
        print(f"{doc['user_id']} has no active {doc['consent_type']} consent: nothing to revoke.")
    if "purge" in doc:
        _print_purge(doc["purge"])


def _print_purge(report: dict) -> None:
    counts = {k: v for k, v in report.items()
              if isinstance(v, int) and k != "tombstones"}
    output.print_key_values(counts, title=f"Purge report ({report['kind']} {report['user_id']})")
    print(f"{report['tombstones']} tombstones record what was deleted (ids only).")
    for path in report["backups_deleted"]:
        print(f"Deleted backup {path}")
    # Part of the report, not a warning: a script reading stdout must learn it too.
    for path in report["backups"]:
        print(f"Backup made before this, still holding the content: {path} (delete it, or "
              "rerun with --include-backups)")


@app.command("list")
def list_(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Only consents in force.")] = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
    keys: KeysFlag = False,
) -> None:
    """Every grant (newest first), with when it was revoked."""
    fmt = output.choose(json_, nl)
    from zos_cli import topics
    from zos_cli.labels import label_rows
    from zos_cli.privacy import consent

    app_state = state(ctx)
    with app_state.database() as db:
        rows = list(label_rows(db, consent.list_consents(db, active_only=active), key="user_id",
                               topic_of=topics.user, config=label_config(app_state)))
    output.print_rows(rows, fmt, columns=LIST_COLUMNS, title="Consents", keys=keys,
                      key_columns=("user_id", "server_id"),
                      empty="No consents in force: `zos consent grant @name` records one."
                      if active else "No consents recorded: `zos consent grant @name` records "
                      "one.")


@app.command("status")
def status(ctx: typer.Context, user: UserArg, consent_type: TypeOpt = "dm_read",
           json_: JsonFlag = False) -> None:
    """Whether USER's consent is in force now, with its history."""
    fmt = output.choose(json_)
    from zos_cli.privacy import consent

    with state(ctx).database() as db:
        doc = consent.consent_status(db, user, consent_type=consent_type)
    output.print_document(doc, fmt, human=_print_status)


def _said(changed: str, unchanged: str):
    def render(doc: dict) -> None:
        print((changed if doc["changed"] else unchanged).format(**doc))
    return render


def _print_status(doc: dict) -> None:
    who = f"{doc['user_id']} (@{doc['user_name']})" if doc["user_name"] else doc["user_id"]
    if doc["active"]:
        print(f"{who}: {doc['consent_type']} active since {doc['granted_at']}.")
    elif doc["revoked_at"]:
        print(f"{who}: {doc['consent_type']} revoked at {doc['revoked_at']}.")
    else:
        print(f"{who}: no {doc['consent_type']} consent.")
    if doc["history"]:
        output.print_rows(doc["history"], output.Format.TABLE,
                          columns=["granted_at", "revoked_at", "server_id", "note"],
                          title="History")
