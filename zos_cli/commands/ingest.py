"""`zos ingest PATH...` (DiscordChatExporter exports), `zos ingest --history`, and the API
backfill (`--token/--channel/--guild/--since`)."""

from __future__ import annotations

import threading
from typing import Annotated, Optional

import typer

from zos_cli import output

from zos_cli.store import locks
from zos_cli.app_state import state
from zos_cli.commands.api_jobs import (discord_ids, note_skipped_channels, print_human_summary,
                                       raise_failures, stop_on_sigterm)
from zos_cli.errors import InputDataError, UsageProblem
from zos_cli.output import JsonFlag, NlFlag

SUMMARY_ROWS = ("files", "files_skipped_unchanged", "messages_new", "messages_seen",
                "reactions_new", "users", "channels", "dm_skipped_without_consent", "seconds")
HISTORY_COLUMNS = ["started_at", "path", "status", "messages_new", "messages_seen",
                   "reactions_new", "dm_skipped_without_consent", "error"]


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def ingest(
    ctx: typer.Context,
    paths: Annotated[Optional[list[str]], typer.Argument(
        metavar="PATH...",
        help="Export files or folders (searched recursively for *.json); - reads stdin.",
        show_default=False)] = None,
    history: Annotated[bool, typer.Option(
        "--history", help="List what was imported when (one row per file) and exit.")] = False,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", metavar="N", callback=output.at_most_max_count, min=1, help="With --history: at most N rows.")] = None,
    batch_messages: Annotated[int, typer.Option(
        "--batch-size", metavar="N", min=1, max=100_000,
        help="Messages per transaction (written 2,000 at a time): larger transactions write "
             "fewer, more aggregated ledger rows and run faster; a killed run redoes only "
             "the transaction in progress.")] = 10_000,
    token: Annotated[Optional[str], typer.Option(
        "--token", metavar="TOKEN", show_default=False,
        help="Backfill through the Discord API with this bot token (else DISCORD_TOKEN).")] = None,
    channel: Annotated[Optional[list[str]], typer.Option(
        "--channel", metavar="ID",
        help="API backfill: this channel and its threads (repeatable).")] = None,
    guild: Annotated[Optional[list[str]], typer.Option(
        "--guild", metavar="ID",
        help="API backfill: every channel and thread of this guild (repeatable).")] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="T", help="API backfill: stop at messages older than T.")] = None,
    max_wait: Annotated[Optional[float], typer.Option(
        "--max-wait", metavar="S", min=0,
        help="API backfill: longest rate-limit wait accepted; beyond it exit 75 "
             "(default poll.max_wait_seconds, 60).")] = None,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Import DiscordChatExporter JSON exports: files, folders (recursive) or - for stdin;
    or, with --token/--channel/--guild, backfill history through the Discord API.

    Idempotent: messages already stored are only recorded as seen, and an unchanged file
    (same size and sha256) is skipped. Bad files are reported (exit 65) after the others
    are ingested; the summary is printed either way."""
    fmt = output.choose(json_, nl)
    api = token is not None or channel or guild or since is not None or max_wait is not None
    if history:
        if paths or api:
            raise UsageProblem("--history lists past ingests: give it no PATH and no API "
                               "backfill option")
        _history(ctx, fmt, limit)
        return
    summary_format = output.Format.JSON if fmt is output.Format.NL else fmt  # one document
    if not api:  # (a usage error prints the summary too, like the other failures)
        from zos_cli.ingest.run import empty_summary

        output.summary_on_failure(summary_format, empty_summary(), "file")
    if limit is not None:
        raise UsageProblem("--limit goes with --history")
    if api:
        if paths:
            raise UsageProblem("give export PATHs or an API backfill (--token/--channel/"
                               "--guild/--since/--max-wait), not both")
        _backfill(ctx, token=token, channel=channel, guild=guild, since=since,
                  max_wait=max_wait, fmt=summary_format)
        return
    if not paths:
        raise UsageProblem("give export files or folders to ingest (or - for stdin), "
                           "or --history")
    _ingest_exports(ctx, paths, summary_format, batch_messages)


def _history(ctx: typer.Context, fmt: output.Format, limit: int | None) -> None:
    from zos_cli.ingest.run import ingest_history

    with state(ctx).database() as db:
        rows = ingest_history(db, limit=limit)
    output.print_rows(rows, fmt, columns=HISTORY_COLUMNS, title="Ingest history",
                      empty="Nothing ingested yet.")


def _ingest_exports(ctx: typer.Context, paths: list[str], fmt: output.Format,
                    batch_messages: int) -> None:
    from zos_cli.ingest.run import ingest_exports

    app_state = state(ctx)
    with app_state.database() as db, locks.job_lock(app_state.db_path, "ingest"), \
            output.progress("Ingesting", unit="messages") as bar:
        summary = ingest_exports(db, app_state.config, paths, progress=bar,
                                 batch_messages=batch_messages)
    output.print_document(summary, fmt, human=_print_summary)
    if summary["files"] == 0:
        output.warn(f"no *.json export files in {', '.join(paths)}")
    errors = summary["errors"]
    if errors:
        for problem in errors[:-1]:
            output.error(f"{problem['file']}: {problem['error']}")
        last = errors[-1]
        raise InputDataError(f"{last['file']}: {last['error']}")


def _print_summary(doc: dict) -> None:
    output.print_key_values({k: doc[k] for k in SUMMARY_ROWS}, title="Ingest summary")
    for problem in doc["warnings"]:
        output.warn(f"{problem['file']}: {problem['warning']}")
    if doc["dm_skipped_without_consent"]:
        output.note(_dm_hint(doc["dm_consent_needed"]))


def _dm_hint(waiting: list[dict]) -> str:
    """Who the DMs not stored wait for, by name where a server channel showed it."""
    lines = ["DM messages were not stored: every participant needs a `zos consent grant USER`; "
             "then run the same ingest again."]
    people = [(f"@{p['name']} ({p['user_id']})" if p["name"] else p["user_id"])
              + (" (probably zos itself)" if p["probably_zos"] else "") for p in waiting]
    if people:
        lines.append(f"Still without consent: {', '.join(people)}.")
    lines.extend(f"{p['user_id']} is probably zos's own account (the other side of the DM, "
                 "while discord.self_user_id is unset): it needs no consent; set "
                 f"`self_user_id = \"{p['user_id']}\"` under [discord] in zos.toml (a zos poll "
                 "also learns it)." for p in waiting if p["probably_zos"])
    return "\n".join(lines)


def _backfill(ctx: typer.Context, *, token: str | None, channel: list[str] | None,
              guild: list[str] | None, since: str | None, max_wait: float | None,
              fmt: output.Format) -> None:
    """`zos ingest --token [--channel ID...] [--guild ID] [--since T]`: backfill history
    through the API under the `ingest` lock."""
    from zos_cli.ingest.backfill import BackfillOptions, empty_summary, run_backfill
    from zos_cli.sources.discord.client import resolve_token

    output.summary_on_failure(fmt, empty_summary(), "channel")
    secret = resolve_token(token)
    options = BackfillOptions(discord_ids(channel, "--channel"), discord_ids(guild, "--guild"),
                              since)
    app_state = state(ctx)
    stop = threading.Event()
    with app_state.database() as db, locks.job_lock(app_state.db_path, "ingest"), \
            stop_on_sigterm(stop):
        report = run_backfill(db, app_state.config, secret, options, max_wait=max_wait, stop=stop,
                              on_warning=output.warn)
    output.print_document(report.summary, fmt, human=_print_backfill_summary)
    note_skipped_channels(report.summary)
    raise_failures(report, "backfill")


def _print_backfill_summary(summary: dict) -> None:
    print_human_summary(summary, "zos ingest --token", "backfill")
