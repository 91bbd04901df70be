"""`zos init-db`, `zos migrate`, `zos status`."""

from __future__ import annotations

from typing import Annotated

import typer

from zos_cli import output

from zos_cli.store import locks
from zos_cli.app_state import state
from zos_cli.commands.topic_options import label_config
from zos_cli.output import JsonFlag, KeysFlag

# Library modules are imported inside each command so that `zos --help` stays fast.


def register(app: typer.Typer) -> None:
    app.command("init-db")(init_db)
    app.command("migrate")(migrate)
    app.command("status")(status)


def init_db(ctx: typer.Context, json_: JsonFlag = False) -> None:
    """Create the database file (and its folder) in WAL mode and apply every migration.

    Safe to re-run: an up-to-date database is left as it is."""
    app_state = state(ctx)
    fmt = output.choose(json_)
    path = app_state.db_path
    created = not path.exists()
    from zos_cli.store import db as database
    from zos_cli.store import migrations

    with locks.job_lock(path, locks.MIGRATE):
        db = database.connect(path, create=True)
        try:
            summary = migrations.apply(db, path, make_backup=True)
        finally:
            db.close()
    doc = {"database": str(path), "created": created, **summary}
    output.print_document(doc, fmt, human=_print_init)


def _print_init(doc: dict) -> None:
    if doc["applied"]:
        verb = "Created" if doc["created"] else "Updated"
        print(f"{verb} {doc['database']} at schema version {doc['to_version']} "
              f"(applied {', '.join(doc['applied'])}).")
    else:
        print(f"{doc['database']} is up to date (schema version {doc['to_version']}).")
    if doc.get("backup"):
        print(f"Backup: {doc['backup']}")


def migrate(
    ctx: typer.Context,
    status_only: Annotated[
        bool, typer.Option("--status", help="List applied and pending migrations; change nothing.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be applied.")] = False,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Skip the VACUUM INTO backup taken before migrating.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Apply pending migrations, after a backup of a database that holds data."""
    app_state = state(ctx)
    fmt = output.choose(json_)
    path = app_state.db_path
    from zos_cli.store import db as database
    from zos_cli.store import migrations

    database.ensure_not_missing(path)
    if status_only:
        db = database.connect(path)
        try:
            st = migrations.status(db)
        finally:
            db.close()
        applied = {row["version"]: row for row in st.applied}
        rows = [
            {
                "version": row["version"],
                "name": row["name"],
                "state": "applied",
                "applied_at": row["applied_at"],
            }
            for row in st.applied
        ] + [
            {"version": m.version, "name": m.name, "state": "pending", "applied_at": None}
            for m in st.pending
            if m.version not in applied
        ]
        output.print_rows(rows, fmt, columns=["version", "name", "state", "applied_at"])
        return
    with locks.job_lock(path, locks.MIGRATE):
        db = database.connect(path)
        try:
            summary = migrations.apply(db, path, make_backup=not no_backup, dry_run=dry_run)
        finally:
            db.close()
    output.print_document({"database": str(path), **summary}, fmt, human=_print_migrate)


def _print_migrate(doc: dict) -> None:
    if not doc["applied"]:
        print(f"Nothing to migrate: {doc['database']} is at schema version {doc['from_version']}.")
        return
    verb = "Would apply" if doc["dry_run"] else "Applied"
    print(f"{verb} {', '.join(doc['applied'])} "
          f"(schema {doc['from_version']} → {doc['to_version']}).")
    if doc.get("backup"):
        print(f"Backup: {doc['backup']}")


def status(ctx: typer.Context, json_: JsonFlag = False, keys: KeysFlag = False) -> None:
    """One screen: database, schema version, counts, last ingest/poll/reflect, top salience."""
    app_state = state(ctx)
    fmt = output.choose(json_)
    path = app_state.db_path
    from zos_cli.store import db as database
    from zos_cli.store.status import collect_status

    from zos_cli.labels import label_rows

    db = database.connect(path)  # status also reports pending migrations, so no version gate
    try:
        doc = collect_status(db, path)
        if doc["top_salience"]:  # (empty while migrations are pending)
            doc["top_salience"] = list(label_rows(db, doc["top_salience"],
                                                  config=label_config(app_state)))
    finally:
        db.close()
    output.print_document(doc, fmt, human=lambda d: _print_status(d, keys))


def _print_status(doc: dict, keys: bool) -> None:
    summary = {
        "database": doc["database"],
        "size": f"{doc['size_bytes'] / 1024:.1f} KiB",
        "schema version": (f"{doc['schema_version']} (newer than this zos, which knows up to "
                           f"{doc['latest_schema_version']}: upgrade zos)"
                           if doc["newer_than_code"] else doc["schema_version"]),
        "pending migrations": ", ".join(doc["pending_migrations"]) or "none",
        **{k: v for k, v in doc["counts"].items()},
        "last ingest": _describe_ingest(doc["last_ingest"], doc.get("last_ingest_run")),
        "last poll": doc["last_poll_at"] or "never",
        "last reflect": _describe_reflect(doc["last_reflect"]),
        "last nightly": _describe_nightly(doc.get("last_nightly")),
    }
    if doc.get("analysis"):
        a = doc["analysis"]
        summary["analysis"] = (
            f"media {a['media_analysed']} analysed, {a['media_pending']} pending; links "
            f"{a['links_analysed']} analysed, {a['links_pending']} pending (`zos analyze`)")
    if doc["salience_pending_messages"]:
        summary["not yet earned"] = (
            f"{doc['salience_pending_messages']} messages (a running poll or backfill earns "
            "its own at its end; what a killed or failed poll left, the next poll; what a "
            "stopped backfill left, the next `zos ingest`)")
    output.print_key_values(summary, title="zos status")
    if doc["top_salience"]:
        output.print_rows(doc["top_salience"], output.Format.TABLE, title="Top salience",
                          keys=keys)
    if doc["pending_migrations"]:
        output.note("Run `zos migrate` to apply the pending migrations.")


def _describe_ingest(row: dict | None, run: dict | None) -> str:
    """The last `zos ingest` run with its totals, unless a file logged later (an API
    backfill) is newer: then that file."""
    if run and (not row or (row["finished_at"] or "") <= run["finished_at"]):
        failed = f", {run['errors']} failed" if run["errors"] else ""
        return (f"{run['finished_at']} {run['files']} files: {run['messages_new']} new "
                f"messages, {run['messages_seen']} already stored, "
                f"{run['files_skipped_unchanged']} unchanged{failed}")
    if not row:
        return "never"
    return f"{row['finished_at']} {row['path']} ({row['status']}, {row['messages_new']} new)"


def _describe_nightly(night: dict | None) -> str:
    if not night:
        return "never"
    counts: dict[str, list[str]] = {}
    for step in night["steps"]:
        counts.setdefault(step["status"], []).append(step["step"])
    steps = ", ".join(f"{len(names)} {status}" + ("" if status in ("completed", "skipped")
                                                   else f" ({', '.join(names)})")
                      for status, names in counts.items())
    return f"{night['finished_at']} cost {night['cost_usd']:.4f} USD: {steps}"


def _describe_reflect(row: dict | None) -> str:
    if not row:
        return "never"
    return f"{row['started_at']} layer {row['layer']} ({row['status']})"
