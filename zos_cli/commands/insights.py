"""`zos insights list/show/search/export/runs/calls/delete`."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from zos_cli import output
from zos_cli.app_state import state
from zos_cli.errors import UsageProblem
from zos_cli.commands.topic_options import TOPIC_HELP, GlobalOpt, ServerOpt, label_config, topic_key
from zos_cli.output import JsonFlag, KeysFlag, NlFlag

# Library modules are imported inside each command so that `zos --help` stays fast.

app = typer.Typer(
    help="Query insights; full-text search; export; inspect layer runs and model calls.",
    no_args_is_help=True,
)

ScopeOpt = Annotated[Optional[str], typer.Option(
    "--scope", metavar="SCOPE", help="Only public, dm or derived insights (exactly that scope).")]
QuarantinedOpt = Annotated[bool, typer.Option(
    "--include-quarantined", help="Also show quarantined insights.")]
# Human tables (docs/labels.md#in-tables-and-json): the label first, ids and keys with --keys.
LIST_COLUMNS = ["id", "topic_key", "sources_scope_max", "effective_strength", "content"]
SEARCH_COLUMNS = ["id", "topic_key", "sources_scope_max", "rank", "snippet"]
RUN_COLUMNS = ["id", "layer_name", "status", "started_at", "insights_created", "cost_usd",
               "errors"]
IDS_AND_KEYS = ("id", "topic_key")
TopicOpt = Annotated[Optional[str], typer.Option("--topic", metavar="TOPIC", help=TOPIC_HELP)]
NO_INSIGHTS = "No insights yet: run `zos reflect --layer user` (see `zos reflect --list`)."
NO_MATCH = "No insights match: try without --topic, --category, --scope or --since."
AsOfOpt = Annotated[Optional[str], typer.Option(
    "--as-of", metavar="TIME",
    help="Effective strength at this ISO-8601 time, or `now` (default: the newest stored "
         "message's time).")]


def _half_lives(app_state):
    """The configured half-lives; None (the built-in ones) when there is no zos.toml, so that
    a listing does not import pydantic to read defaults (tests/test_startup.py)."""
    return app_state.config.insights if app_state.config_path is not None else None


@app.command("list")
def list_(
    ctx: typer.Context,
    topic: TopicOpt = None,
    server: ServerOpt = None,
    global_: GlobalOpt = False,
    category: Annotated[Optional[str], typer.Option(
        "--category", metavar="C", help="An insight category, e.g. user_reflection.")] = None,
    scope: ScopeOpt = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="T", help="Created at or after T (ISO-8601).")] = None,
    include_quarantined: QuarantinedOpt = False,
    limit: Annotated[int, typer.Option("--limit", callback=output.at_most_max_count, metavar="N", help="At most N (in the --sort order).")] = 50,
    sort: Annotated[str, typer.Option(
        "--sort", metavar="effective|strength|created",
        help="effective: strongest first after fading at --as-of (default); strength: by "
             "stored strength; created: newest first.")] = "effective",
    as_of: AsOfOpt = None,
    json_: JsonFlag = False,
    nl: NlFlag = False,
    keys: KeysFlag = False,
) -> None:
    """List insights, strongest first after fading (see --sort)."""
    from zos_cli.insights.queries import list_insights
    from zos_cli.labels import label_rows
    from zos_cli.salience.clock import resolve_as_of

    fmt = output.choose(json_, nl)
    app_state = state(ctx)
    with app_state.database() as db:
        topic = topic_key(app_state, db, topic, server, global_)
        rows = list_insights(db, topic=topic, category=category, scope=scope, since=since,
                             include_quarantined=include_quarantined, limit=limit, sort=sort,
                             as_of=resolve_as_of(db, as_of), settings=_half_lives(app_state))
        filtered = any(x is not None for x in (topic, category, scope, since))
        output.print_rows(label_rows(db, rows, config=label_config(app_state)), fmt,
                          columns=LIST_COLUMNS, keys=keys, key_columns=IDS_AND_KEYS,
                          empty=NO_MATCH if filtered else NO_INSIGHTS)


@app.command("show")
def show(ctx: typer.Context, insight_id: Annotated[str, typer.Argument(metavar="ID")],
         as_of: AsOfOpt = None, json_: JsonFlag = False, keys: KeysFlag = False) -> None:
    """One insight: provenance, layer run, model calls, supersedes chain, fading."""
    from zos_cli.insights.queries import get_insight
    from zos_cli.labels import Labeler, label_rows
    from zos_cli.salience.clock import resolve_as_of

    fmt = output.choose(json_)
    app_state = state(ctx)
    with app_state.database() as db:
        doc = get_insight(db, insight_id, as_of=resolve_as_of(db, as_of),
                          settings=_half_lives(app_state))
        labeler = Labeler(db, label_config(app_state))
        doc = next(label_rows(db, [doc], labeler=labeler))
        doc["sources"]["insights"] = list(label_rows(db, doc["sources"]["insights"],
                                                     labeler=labeler))
    output.print_document(doc, fmt, human=lambda d: _print_insight(d, keys))


def _print_insight(doc: dict, keys: bool) -> None:
    head = {k: doc[k] for k in ("id", "label", "topic_key", "category", "sources_scope_max",
                                "created_at", "strength", "effective_strength",
                                "confirmation_count", "last_confirmed_at", "confidence",
                                "importance",
                                "novelty", "valence", "quarantined", "subject", "supersedes",
                                "superseded_by", "open_questions", "conflicts_with")
            if keys or k != "topic_key"}
    head["layer run"] = (f"{doc['layer_run']['id']} ({doc['layer_run']['layer_name']}, "
                         f"{doc['layer_run']['status']})" if doc["layer_run"] else None)
    head["content"] = doc["content"]
    output.print_key_values(head, title="Insight")
    if doc["sources"]["messages"]:
        output.print_rows(doc["sources"]["messages"], output.Format.TABLE,
                          title="Source messages")
    if doc["sources"]["insights"]:
        output.print_rows(doc["sources"]["insights"], output.Format.TABLE,
                          title="Source insights", keys=keys)
    if doc["calls"]:
        output.print_rows(doc["calls"], output.Format.TABLE, title="Model calls",
                          columns=["id", "status", "model_name", "tokens_input",
                                   "tokens_output", "estimated_cost_usd", "latency_ms"])
    if doc["supersedes_chain"]:
        output.print_rows(doc["supersedes_chain"], output.Format.TABLE, title="Supersedes")


@app.command("search")
def search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(metavar="TEXT")],
    scope: ScopeOpt = None,
    include_quarantined: QuarantinedOpt = False,
    limit: Annotated[int, typer.Option("--limit", callback=output.at_most_max_count, metavar="N", min=0, help="At most N results.")] = 20,
    json_: JsonFlag = False,
    nl: NlFlag = False,
    keys: KeysFlag = False,
) -> None:
    """Full-text search over insight content, best match first."""
    from zos_cli.insights.queries import search_insights
    from zos_cli.labels import label_rows

    fmt = output.choose(json_, nl)
    app_state = state(ctx)
    with app_state.database() as db:
        rows = list(label_rows(db, search_insights(db, text, scope=scope, limit=limit,
                                                   include_quarantined=include_quarantined),
                               config=label_config(app_state)))
    output.print_rows(rows, fmt, columns=SEARCH_COLUMNS, keys=keys, key_columns=IDS_AND_KEYS,
                      empty=f"No insight matches {text!r}: try other words, or see `zos "
                            "insights list`.")


@app.command("export")
def export(
    ctx: typer.Context,
    format_: Annotated[str, typer.Option("--format", metavar="jsonl|md",
                                         help="JSON lines or Markdown.")] = "jsonl",
    topic: TopicOpt = None,
    server: ServerOpt = None,
    global_: GlobalOpt = False,
    scope: ScopeOpt = None,
    include_quarantined: QuarantinedOpt = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Export insights to stdout (JSON lines or Markdown grouped by topic; --json: one JSON
    array of the same objects, --nl: the JSON lines)."""
    import json

    from zos_cli.insights.queries import export_insights

    fmt = output.choose(json_, nl)
    if fmt is not output.Format.TABLE:
        if format_ != "jsonl":
            raise UsageProblem(f"--{fmt.value} exports JSON: leave out --format {format_}")
    app_state = state(ctx)
    with app_state.database() as db:
        topic = topic_key(app_state, db, topic, server, global_)
        lines = export_insights(db, format_, scope=scope, topic=topic,
                                include_quarantined=include_quarantined)
        if fmt is output.Format.JSON:
            output.print_rows((json.loads(line) for line in lines), fmt)
            return
        for line in lines:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()


@app.command("runs")
def runs(
    ctx: typer.Context,
    layer: Annotated[Optional[str], typer.Option("--layer", metavar="L", help="One layer.")] = None,
    limit: Annotated[int, typer.Option("--limit", callback=output.at_most_max_count, metavar="N", min=0, help="At most N runs.")] = 50,
    json_: JsonFlag = False,
    nl: NlFlag = False,
    keys: KeysFlag = False,
) -> None:
    """Layer runs, newest first: status, targets, insights, tokens, cost, errors."""
    from zos_cli.insights.queries import list_runs
    from zos_cli.labels import Labeler

    fmt = output.choose(json_, nl)
    app_state = state(ctx)
    with app_state.database() as db:
        rows = list_runs(db, layer=layer, limit=limit)
        labeler = Labeler(db, label_config(app_state))
        names = labeler.labels(k for r in rows for k in r["targets"])
    # A run has many topics: `target_labels` names each, `label` the first few.
    rows = [{**r, "target_labels": [names[k] for k in r["targets"]],
             "label": _first_few([names[k] for k in r["targets"]])} for r in rows]
    if fmt is output.Format.TABLE:
        rows = [{**r, "errors": len(r["errors"]), "tokens": r["tokens_input"] + r["tokens_output"]}
                for r in rows]
    output.print_rows(rows, fmt, empty="No layer runs yet: run `zos reflect --layer user` (see "
                      "`zos reflect --list`).", keys=keys, key_columns=IDS_AND_KEYS,
                      columns=None if fmt is not output.Format.TABLE else RUN_COLUMNS)


def _first_few(labels: list[str], shown: int = 3) -> str:
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more


@app.command("calls")
def calls(
    ctx: typer.Context,
    run: Annotated[Optional[str], typer.Option("--run", metavar="ID", help="One layer run.")] = None,
    limit: Annotated[int, typer.Option("--limit", callback=output.at_most_max_count, metavar="N", min=0, help="At most N calls.")] = 100,
    full: Annotated[bool, typer.Option("--full", help="Include prompt and response text.")] = False,
    json_: JsonFlag = False,
    nl: NlFlag = False,
) -> None:
    """Model calls, newest first: model, status, tokens, cost, latency, error."""
    from zos_cli.insights.queries import list_calls

    fmt = output.choose(json_, nl)
    with state(ctx).database() as db:
        rows = list_calls(db, run=run, limit=limit, full=full)
    output.print_rows(rows, fmt, columns=None if full else [
        "id", "layer_run_id", "topic_key", "model_name", "status", "tokens_input",
        "tokens_output", "estimated_cost_usd", "latency_ms", "error"],
        empty="No model calls yet: a `zos reflect` run with a model makes them.")


@app.command("delete")
def delete(
    ctx: typer.Context,
    insight_id: Annotated[str, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Delete one insight (its full-text row too); a tombstone and an event remain."""
    from zos_cli.insights.queries import delete_insight

    fmt = output.choose(json_)
    output.confirm(yes, f"this would delete insight {insight_id}")
    with state(ctx).database() as db:
        doc = delete_insight(db, insight_id)
    output.print_document(doc, fmt, human=lambda d: print(
        f"Deleted insight {d['deleted']} (tombstone {d['tombstone_id']})."))


@app.command("about")
def about(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(
        metavar="REF", help="A topic reference (@name, '#channel', @a+@b, subject:name) or a "
                            "topic key.")],
    format_: Annotated[Optional[str], typer.Option(
        "--format", metavar="md|json|prompt",
        help="md: for a person (default); json: one document; prompt: a compact block for a "
             "bot's system prompt (no ids, bounded by --max-tokens).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        "--max-tokens", metavar="N", min=1,
        help="The prompt block's bound in tokens (estimated; default 400). Only with "
             "--format prompt.")] = None,
    scope: Annotated[str, typer.Option(
        "--scope", metavar="SCOPE",
        help="Insights of exactly this scope: public (default), dm or derived.")] = "public",
    server: Annotated[Optional[str], typer.Option(
        "--server", metavar="ID|NAME",
        help="The server, when the reference's name is known in several.")] = None,
    global_: Annotated[bool, typer.Option(
        "--global", help="@name: the person's global topic (everywhere).")] = False,
    limit: Annotated[int, typer.Option(
        "--limit", metavar="N", min=0, callback=output.at_most_max_count,
        help="At most N insights (default 10).")] = 10,
    as_of: AsOfOpt = None,
    json_: JsonFlag = False,
) -> None:
    """A memory card: what zos holds about a person, pair, channel or subject — its strongest
    current insights, open questions, linked subjects, who it is closest to, and its salience
    with the trend over 30 days."""
    from zos_cli.insights import card_text
    from zos_cli.insights.cards import memory_card
    from zos_cli.salience.clock import resolve_as_of

    if json_ and format_ not in (None, "json"):
        raise UsageProblem(f"--json prints JSON: leave out --format {format_}")
    chosen = "json" if json_ else (format_ or "md")
    if chosen not in ("md", "json", "prompt"):
        raise UsageProblem(f"--format {chosen!r}: choose md, json or prompt")
    if max_tokens is not None and chosen != "prompt":
        raise UsageProblem("--max-tokens bounds --format prompt: add it, or leave --max-tokens out")
    app_state = state(ctx)
    config = app_state.config if app_state.config_path is not None else None
    with app_state.database() as db:
        card = memory_card(db, ref, as_of=resolve_as_of(db, as_of), scope=scope, server=server,
                           global_=global_, config=config, settings=_half_lives(app_state),
                           limit=limit)
    if chosen == "json":
        output.print_document(card.document(), output.Format.JSON)
        return
    text = (card_text.markdown(card) if chosen == "md"
            else card_text.prompt(card, max_tokens or card_text.DEFAULT_PROMPT_TOKENS))
    output.print_document({}, output.Format.TABLE, human=lambda _doc: sys.stdout.write(text))
