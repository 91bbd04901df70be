"""`zos poll`: fetch what is new in every visible channel through the Discord REST API."""

from __future__ import annotations

import threading
from typing import Annotated, Optional

import typer

from zos_cli import output

from zos_cli.store import locks
from zos_cli.app_state import state
from zos_cli.commands.api_jobs import (discord_ids, note_skipped_channels, print_human_summary,
                                       raise_failures, stop_on_sigterm)
from zos_cli.errors import UsageProblem
from zos_cli.output import JsonFlag


def register(app: typer.Typer) -> None:
    app.command("poll")(poll)


def poll(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit (the default).")] = False,
    interval: Annotated[
        Optional[float],
        typer.Option("--interval", metavar="S", min=0.001,
                     help="Poll every S seconds until SIGTERM (the current write finishes first)."),
    ] = None,
    guild: Annotated[
        Optional[list[str]], typer.Option("--guild", metavar="ID", help="Only this guild (repeatable).")
    ] = None,
    channel: Annotated[
        Optional[list[str]],
        typer.Option("--channel", metavar="ID", help="Only this channel or thread (repeatable)."),
    ] = None,
    initial_messages: Annotated[
        Optional[int],
        typer.Option("--initial-messages", metavar="N", min=0, callback=output.at_most_max_count,
                     help="Newest messages read from a channel polled for the first time "
                          "(default poll.initial_messages, 1000)."),
    ] = None,
    max_wait: Annotated[
        Optional[float],
        typer.Option("--max-wait", metavar="S", min=0,
                     help="Longest rate-limit wait accepted; beyond it exit 75 "
                          "(default poll.max_wait_seconds, 60)."),
    ] = None,
    token: Annotated[
        Optional[str],
        typer.Option("--token", metavar="TOKEN", show_default=False,
                     help="Bot token (prefer the DISCORD_TOKEN environment variable)."),
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Fetch what is new in every visible channel (or --guild / --channel): new messages,
    edits, deletions and reactions; DMs only of users who consented. Exit 1 when some
    channels failed (the summary lists them), 75 on a rate-limit wait beyond --max-wait or a
    Cloudflare ban, 78 on a missing or rejected token."""
    from zos_cli.sources.discord.client import resolve_token
    from zos_cli.ingest.poll import PollOptions, empty_summary, run_poll

    if once and interval is not None:
        raise UsageProblem("--once and --interval cannot be used together: choose one")
    fmt = output.choose(json_)
    output.summary_on_failure(fmt, empty_summary(), "channel")
    secret = resolve_token(token)
    app_state = state(ctx)
    config = app_state.config
    options = PollOptions(
        guild_ids=discord_ids(guild, "--guild"),
        channel_ids=discord_ids(channel, "--channel"),
        initial_messages=config.poll.initial_messages if initial_messages is None else initial_messages,
    )
    stop = threading.Event()
    with app_state.database() as db, locks.job_lock(app_state.db_path, "poll"), \
            stop_on_sigterm(stop):
        report = run_poll(db, config, secret, options, interval=interval, max_wait=max_wait,
                          stop=stop, on_report=_printer(fmt, interval is not None),
                          on_warning=output.warn)
    raise_failures(report, "poll")


def _printer(fmt: output.Format, looping: bool):
    def show(report) -> None:
        summary = report.summary
        if looping and fmt is not output.Format.TABLE:
            output.print_document(summary, output.Format.NL)  # one line per pass
            return
        output.print_document(summary, fmt, human=_human)
        note_skipped_channels(summary)

    return show


def _human(summary: dict) -> None:
    print_human_summary(summary, "zos poll", "poll")
