"""What zos's own pages show: the front page, and a page per person or topic with its
balance over time. Each function reads through one connection (with the plugin's SQL
functions defined) and returns plain data for a template; the scope decides every insight
and message shown, as in the canned queries."""

from __future__ import annotations

from urllib.parse import quote

from zos_cli import topics
from zos_cli.browse.chart import balance_points
from zos_cli.browse.labels import BrowseLabels
from zos_cli.browse.queries import EFFECTIVE, insight_filter, message_filter

TOPIC_PATH = "/-/zos/topic/"
WHERE_FROM_DAYS = 30


def topic_href(key: str) -> str:
    return TOPIC_PATH + quote(key, safe=":")


def _topic_rows(conn, labels: BrowseLabels, scope: str, where: str, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT t.key, t.category, t.balance, t.last_activity_at, "
        f"(SELECT count(*) FROM insights i WHERE i.topic_key = t.key AND {insight_filter(scope)}) "
        f"FROM topics t WHERE t.balance > 0 AND {where} "
        "ORDER BY t.balance DESC, t.last_activity_at DESC, t.key LIMIT ?", [limit]).fetchall()
    return [{"key": k, "label": labels.topic(k), "href": topic_href(k), "kind": _kind(k),
             "balance": b, "last_activity_at": at, "insights": n}
            for k, _category, b, at, n in rows]


def _kind(key: str) -> str:
    try:
        return topics.parse(key).label
    except topics.InvalidTopicKey:
        return ""


def _insights(conn, labels: BrowseLabels, scope: str, where: str, params: list,
              limit: int) -> list[dict]:
    rows = conn.execute(
        f"SELECT i.topic_key, i.content, {EFFECTIVE}, i.category, i.sources_scope_max, "
        f"i.created_at FROM insights i WHERE {insight_filter(scope)} AND {where} "
        "ORDER BY 3 DESC, i.created_at DESC LIMIT ?", [*params, limit]).fetchall()
    return [{"topic": labels.topic(k), "href": topic_href(k), "content": content,
             "effective_strength": eff, "category": category, "scope": s, "created_at": at}
            for k, content, eff, category, s, at in rows]


def home(conn, labels: BrowseLabels, scope: str) -> dict:
    """The front page: who and what is salient, the strongest insights, a few counts."""
    count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "people": _topic_rows(conn, labels, scope, "t.category = 'users'", 15),
        "topics": _topic_rows(conn, labels, scope, "t.category <> 'users'", 15),
        "insights": _insights(conn, labels, scope, "1", [], 8),
        "counts": {
            "messages": count(f"SELECT count(*) FROM messages m WHERE {message_filter(scope)}"),
            "insights": count(f"SELECT count(*) FROM insights i WHERE {insight_filter(scope)}"),
            "topics": count("SELECT count(*) FROM topics WHERE balance > 0"),
            "data_clock": conn.execute("SELECT zos_as_of()").fetchone()[0],
        },
    }


def topic_page(conn, labels: BrowseLabels, scope: str, key: str) -> dict | None:
    """One topic (a person's page when it is a user): None when no such topic is stored."""
    if not topics.is_valid(key):
        return None
    row = conn.execute("SELECT category, balance, last_activity_at, created_at, server_id "
                       "FROM topics WHERE key = ?", [key]).fetchone()
    if row is None:
        return None
    category, balance, last_activity, created, server_id = row
    topic = topics.parse(key)
    label = labels.topic(key)
    return {
        "key": key, "label": label, "kind": topic.label, "category": category,
        "server": labels.server(server_id), "balance": balance,
        "last_activity_at": last_activity, "created_at": created,
        "history": balance_points(conn, key),
        "insights": _insights(conn, labels, scope, "i.topic_key = ?", [key], 50),
        "where_from": _where_from(conn, labels, key),
        "closest": _closest(conn, labels, topic) if topic.kind == "user" else [],
        "ledger_href": "/zos/topic_ledger?topic=" + quote(key, safe=""),
        "person_href": ("/zos/person_insights?person=" + topic.ids[0]
                        if topic.kind == "user" else None),
    }


def _where_from(conn, labels: BrowseLabels, key: str) -> list[dict]:
    """The ledger of the last 30 days of this topic's activity, summed by kind and source."""
    rows = conn.execute(
        "SELECT transaction_type, source_topic, sum(amount), count(*) FROM salience_ledger "
        "WHERE topic_id = (SELECT id FROM topics WHERE key = ?) AND created_at >= "
        f"strftime('%Y-%m-%dT%H:%M:%f', (SELECT last_activity_at FROM topics WHERE key = ?), "
        f"'-{WHERE_FROM_DAYS} days') "
        "GROUP BY 1, 2 ORDER BY abs(sum(amount)) DESC LIMIT 20", [key, key]).fetchall()
    return [{"type": kind, "source": labels.topic(source) if source else "",
             "source_href": topic_href(source) if source else None,
             "amount": amount, "rows": n} for kind, source, amount, n in rows]


def _closest(conn, labels: BrowseLabels, topic: topics.Topic) -> list[dict]:
    """A person's pairs (dyads) in the same place, by balance."""
    user_id = topic.ids[0]
    patterns = topics.user_globs(user_id, ("dyad",), server_id=topic.server_id)
    where = " OR ".join("key GLOB ?" for _ in patterns)
    rows = conn.execute(f"SELECT key, balance FROM topics WHERE ({where}) AND balance > 0 "
                        "ORDER BY balance DESC LIMIT 10", patterns).fetchall()
    return [{"label": labels.topic(k), "href": topic_href(k), "balance": b} for k, b in rows]
