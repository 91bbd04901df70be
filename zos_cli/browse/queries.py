"""What `zos browse` serves: the scope rule, and the canned queries (the only SQL a visitor
can run) with their descriptions.

The scope is fixed when the server starts (`--scope`), written into each query's SQL as
literals: no URL parameter can widen it. Every query reads through the SQL functions the
plugin defines on each connection (plugin.py): `zos_label(key)`, `zos_user(user_id,
server_id)`, `zos_channel(channel_id, server_id)`, `zos_hidden(user_id)`, `zos_readable(content,
server_id, message_id)`, `zos_fts(text)`, `zos_as_of()` and `effective_strength(…)`.
"""

from __future__ import annotations

from zos_cli import strength
from zos_cli.errors import UsageProblem

SCOPES = ("public", "dm", "derived")
# `--scope` widens: dm adds DMs and dm insights, derived adds what mixes both.
INSIGHT_SCOPES = {"public": ("public",), "dm": ("public", "dm"),
                  "derived": ("public", "dm", "derived")}
MESSAGE_SCOPES = {"public": ("public",), "dm": ("public", "dm"), "derived": ("public", "dm")}


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise UsageProblem(f"--scope {scope!r}: choose public, dm or derived")
    return scope


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"  # (fixed words, never input)


def insight_filter(scope: str, alias: str = "i") -> str:
    """The WHERE clause every insight passes: in scope, never quarantined."""
    return (f"{alias}.sources_scope_max IN {_in(INSIGHT_SCOPES[scope])} "
            f"AND {alias}.quarantined = 0")


def message_filter(scope: str, alias: str = "m") -> str:
    return f"{alias}.visibility_scope IN {_in(MESSAGE_SCOPES[scope])} AND {alias}.deleted_at IS NULL"


EFFECTIVE = (f"round({strength.SQL_FUNCTION}(i.strength, i.category, "
             f"{strength.CLOCK_FROM_SQL}, zos_as_of()), 3)")

# A person by name: any of their names (LIKE: case-insensitive, % as a wildcard) or their id;
# never someone the privacy gate hides, or an erased user.
_PERSON = """person AS (
    SELECT DISTINCT u.id FROM users u
    LEFT JOIN user_server_tracking t ON t.user_id = u.id
    WHERE :person <> '' AND (u.id = :person OR u.name LIKE :person
        OR u.display_name LIKE :person OR t.nickname LIKE :person)
      AND NOT zos_hidden(u.id))"""
# The topics that are about a person: theirs, their pairs, theirs and their pairs' in a channel.
_ABOUT = """(i.topic_key = 'user:' || p.id OR i.topic_key GLOB 'server:*:user:' || p.id
        OR i.topic_key GLOB 'dyad:' || p.id || ':*' OR i.topic_key GLOB 'dyad:*:' || p.id
        OR i.topic_key GLOB 'server:*:dyad:' || p.id || ':*'
        OR i.topic_key GLOB 'server:*:dyad:*:' || p.id
        OR i.topic_key GLOB 'server:*:user_in_channel:*:' || p.id
        OR i.topic_key GLOB 'server:*:dyad_in_channel:*:' || p.id || ':*'
        OR i.topic_key GLOB 'server:*:dyad_in_channel:*:*:' || p.id)"""


def canned_queries(scope: str) -> dict[str, dict]:
    """Datasette's `queries` block for the store: name → title, description, SQL."""
    insights = insight_filter(scope)
    messages = message_filter(scope)
    # messages_fts (migration 0010) holds exactly the messages that may be used; its rowid is
    # the message id as an integer.
    message_search = f"""SELECT m.created_at, zos_channel(m.channel_id, m.server_id) AS channel,
    zos_user(m.author_id, m.server_id) AS author,
    zos_readable(m.content, m.server_id, m.id) AS message, m.visibility_scope AS scope
FROM messages_fts f JOIN messages m ON m.id = CAST(f.rowid AS TEXT)
WHERE messages_fts MATCH zos_fts(:q) AND {messages}
ORDER BY f.rank LIMIT 100"""
    return {
        "top_salience": {
            "title": "Top salience",
            "description": "What zos pays attention to: topics by balance, highest first "
                           "(as `zos salience top`). Leave the category empty for every kind "
                           "(users, dyads, channels, subjects, emoji, …).",
            "sql": f"""SELECT t.key AS topic, t.category, round(t.balance, 2) AS balance,
    t.last_activity_at,
    (SELECT count(*) FROM insights i WHERE i.topic_key = t.key AND {insights}) AS insights
FROM topics t
WHERE t.balance > 0 AND (:category = '' OR t.category = :category)
ORDER BY t.balance DESC, t.last_activity_at DESC, t.key LIMIT 200""",
        },
        "person_insights": {
            "title": "A person's insights",
            "description": "What zos understood about one person: insights on them, their "
                           "pairs and their channels, strongest first after fading. Give a "
                           "name, display name, nickname or id (% matches anything).",
            "sql": f"""WITH {_PERSON}
SELECT i.topic_key AS topic, i.content AS insight, {EFFECTIVE} AS effective_strength,
    i.category, i.sources_scope_max AS scope, i.created_at
FROM insights i JOIN person p ON {_ABOUT}
WHERE {insights}
ORDER BY effective_strength DESC, i.created_at DESC LIMIT 200""",
        },
        "topic_ledger": {
            "title": "Why is this topic hot?",
            "description": "A topic's salience ledger, newest first, with the balance after "
                           "each row (as `zos salience ledger`): what earned, spread, spent "
                           "or decayed. Open it from a topic's page, or give its key.",
            "sql": """SELECT * FROM (
    SELECT row_number() OVER running AS row, l.created_at, l.transaction_type,
        round(l.amount, 4) AS amount, round(sum(l.amount) OVER running, 4) AS balance_after,
        l.source_topic, l.reason
    FROM salience_ledger l
    WHERE l.topic_id = (SELECT id FROM topics WHERE key = :topic)
    WINDOW running AS (ORDER BY l.created_at, l.rowid))
ORDER BY row DESC LIMIT 500""",
        },
        "recent_runs": {
            "title": "Recent layer runs and their cost",
            "description": "Reflection runs, newest first (as `zos insights runs`): layer, "
                           "status, targets, insights made, tokens and cost.",
            "sql": """SELECT started_at, layer_name AS layer, status, model,
    json_array_length(targets) AS targets, insights_created,
    tokens_input + tokens_output AS tokens, round(cost_usd, 6) AS cost_usd,
    json_array_length(coalesce(error, '[]')) AS errors,
    round(sum(cost_usd) OVER (ORDER BY started_at DESC, id DESC), 6) AS cost_so_far_usd
FROM layer_runs ORDER BY started_at DESC, id DESC LIMIT 200""",
        },
        "pending_analyses": {
            "title": "Pending analyses",
            "description": "Shared images, files and links that `zos analyze` has not read "
                           "(or read without success), by channel and status.",
            "sql": f"""SELECT kind, zos_channel(channel_id, server_id) AS channel, status, reason,
    count(*) AS items, max(attempts) AS most_attempts, max(created_at) AS newest_message
FROM (
    SELECT 'image or file' AS kind, m.channel_id, m.server_id, a.status,
        a.skip_reason AS reason, a.attempts, m.created_at
    FROM media_analysis a JOIN messages m ON m.id = a.message_id
    WHERE a.status <> 'ok' AND {messages}
    UNION ALL
    SELECT 'link', m.channel_id, m.server_id, a.status, a.skip_reason, a.attempts, m.created_at
    FROM link_analysis a JOIN messages m ON m.id = a.message_id
    WHERE a.status <> 'ok' AND {messages})
GROUP BY kind, channel_id, server_id, status, reason
ORDER BY status = 'pending' DESC, items DESC LIMIT 500""",
        },
        "search_insights": {
            "title": "Search insights",
            "description": "Full-text search over insight text (as `zos insights search`), "
                           "best match first.",
            "sql": f"""SELECT i.topic_key AS topic,
    snippet(insights_fts, 1, '[', ']', '…', 24) AS insight,
    {EFFECTIVE} AS effective_strength, i.sources_scope_max AS scope, i.created_at
FROM insights_fts JOIN insights i ON i.id = insights_fts.insight_id
WHERE insights_fts MATCH zos_fts(:q) AND {insights}
ORDER BY bm25(insights_fts) LIMIT 100""",
        },
        "search_messages": {
            "title": "Search messages",
            "description": "Messages that contain these words, best match first.",
            "sql": message_search,
        },
    }


def metadata(scope: str, store_name: str) -> dict:
    """Datasette's metadata: titles, descriptions, the queries; no arbitrary SQL."""
    return {
        "title": "zos",
        "description": f"What zos holds, read-only. Scope: {scope_text(scope)}.",
        "allow_sql": False,
        "databases": {store_name: {
            "title": "zos store",
            "description": "Views of the store: canned queries only (raw tables are not "
                           "served).",
            "allow_sql": False,
            # (the SQL stays one click away: "show")
            "queries": {name: {**query, "hide_sql": True}
                        for name, query in canned_queries(scope).items()},
        }},
    }


def scope_text(scope: str) -> str:
    return {
        "public": "public — no direct messages, no dm or derived insights",
        "dm": "public and dm — direct messages and dm insights are shown",
        "derived": "everything — direct messages, dm and derived insights are shown",
    }[scope]
