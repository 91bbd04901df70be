"""Reading salience: the top topics, one topic with its history, the ledger rows behind a
balance (the answer to "why did zos think about this?"), and the check that every maintained
balance equals the sum of its ledger rows."""

from __future__ import annotations

from zos_cli import topics
from zos_cli.errors import NotFound
from zos_cli.salience.index import TopicIndex

TOP_KEYS = ("topic_key", "category", "group", "balance", "last_activity_at")
LEDGER_KEYS = ("id", "created_at", "transaction_type", "amount", "reason", "source_topic",
               "layer_run_id")
CHECK_TOLERANCE = 1e-6
# A topic's ledger rows are found by its integer id (schema 0002: the index is on topic_id).
OF_TOPIC = "topic_id = (SELECT id FROM topics WHERE key = ?)"
SPARK = "▁▂▃▄▅▆▇█"


class TopicNotFound(NotFound):
    """A well-formed key that names no stored topic (exit 1)."""


def top(db, *, group: str | None = None, category: str | None = None,
        server_id: str | None = None, limit: int = 20) -> list[dict]:
    """Topics with a positive balance, highest first; equal balances (caps make many) by
    last activity, newest first, then by key. Reads the maintained balance (indexed), never
    the ledger."""
    where, params = ["balance > 0"], []
    for column, value in (("budget_group", group), ("category", category),
                          ("server_id", server_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = db.execute(
        "SELECT key, category, budget_group, balance, last_activity_at FROM topics "
        f"WHERE {' AND '.join(where)} ORDER BY balance DESC, last_activity_at DESC, key LIMIT ?",
        [*params, limit])
    return [dict(zip(TOP_KEYS, r)) for r in rows]


def _topic_row(db, key: str) -> dict:
    topics.parse(key)
    row = db.execute(
        "SELECT key, category, budget_group, server_id, is_global, balance, last_activity_at, "
        "created_at FROM topics WHERE key = ?", [key]).fetchone()
    if row is None:
        raise TopicNotFound(f"no topic {key} in the database: see `zos salience top` for the "
                            "topics zos knows")
    return dict(zip(("topic_key", "category", "group", "server_id", "is_global", "balance",
                     "last_activity_at", "created_at"), row))


def ledger(db, key: str, *, limit: int | None = 50) -> list[dict]:
    """The ledger rows of one topic, newest first."""
    _topic_row(db, key)
    sql = ("SELECT id, created_at, transaction_type, amount, reason, source_topic, layer_run_id "
           f"FROM salience_ledger WHERE {OF_TOPIC} ORDER BY created_at DESC, rowid DESC")
    params: list = [key]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [dict(zip(LEDGER_KEYS, r)) for r in db.execute(sql, params)]


def daily_balances(db, key: str) -> list[dict]:
    """The balance at the end of each UTC day that has ledger rows, oldest first."""
    running, out = 0.0, []
    for day, total in db.execute(
            "SELECT substr(created_at, 1, 10) AS day, sum(amount) FROM salience_ledger "
            f"WHERE {OF_TOPIC} GROUP BY day ORDER BY day", [key]):
        running += total
        out.append({"day": day, "balance": running})
    return out


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled from 0 to the largest value."""
    if not values:
        return ""
    high = max(max(values), 0.0)
    if high <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int(max(v, 0.0) / high * (len(SPARK) - 1) + 0.5))]
                   for v in values)


def show(db, config, key: str, *, days: int = 30) -> dict:
    """One topic: balance, cap, group, last activity, related topics (with their balances) and
    a sparkline of its end-of-day balance over its last `days` days with activity."""
    doc = _topic_row(db, key)
    topic = topics.parse(key)
    index = TopicIndex(db, config)
    index.ensure_scope(key)
    related = _related(index, key)
    history = daily_balances(db, key)
    recent = history[-days:]
    doc.update({
        "is_global": bool(doc["is_global"]),
        "cap": topics.cap_of(topic, config.salience.caps),
        "warm": doc["balance"] > config.salience.warm_threshold,
        "ledger_rows": db.execute(f"SELECT count(*) FROM salience_ledger WHERE {OF_TOPIC}",
                                  [key]).fetchone()[0],
        "related": [{"topic_key": r, "balance": index.value(r)} for r in related],
        "sparkline": sparkline([h["balance"] for h in recent]),
        "history": recent,
    })
    return doc


def _related(index: TopicIndex, key: str) -> list[str]:
    """Every stored related topic of `key` (warm or not), for display."""
    topic = index.topic(key)
    s, kind, ids = topic.server_id, topic.kind, topic.ids
    if s is None:
        index.ensure_all_servers()  # a global topic relates to server topics anywhere
    index.ensure_global()
    found = []
    for other, (_topic, _cap, owners, _owner, _id) in index.info.items():
        if key in owners:
            found.append(other)  # topics that list this one as their owner relate to it
    if s is None and kind == "dyad":
        found += [f"user:{ids[0]}", f"user:{ids[1]}"]
    elif s is not None and kind == "user":
        found.append(f"user:{ids[0]}")
    elif s is not None and kind == "dyad":
        found += [f"server:{s}:user:{ids[0]}", f"server:{s}:user:{ids[1]}",
                  f"dyad:{ids[0]}:{ids[1]}"]
    elif s is not None and kind == "user_in_channel":
        found += [f"server:{s}:user:{ids[1]}", f"server:{s}:channel:{ids[0]}"]
    elif s is not None and kind == "dyad_in_channel":
        found += [f"server:{s}:dyad:{ids[1]}:{ids[2]}", f"server:{s}:channel:{ids[0]}",
                  f"server:{s}:user:{ids[1]}", f"server:{s}:user:{ids[2]}"]
    elif kind == "thread":
        found += list(index.info[key][2])
    seen, out = set(), []
    for other in found:
        if other not in seen and other != key and other in index.info:
            seen.add(other)
            out.append(other)
    return out


def check(db, *, tolerance: float = CHECK_TOLERANCE) -> dict:
    """Prove that every topic's maintained balance equals the sum of its ledger rows, and
    that every ledger row's topic_key and topic_id name the same topic."""
    checked = db.execute("SELECT count(*) FROM topics").fetchone()[0]
    rows = db.execute(
        "SELECT t.key, t.balance, coalesce(s.total, 0.0) FROM topics t LEFT JOIN "
        "(SELECT topic_id, sum(amount) AS total FROM salience_ledger GROUP BY topic_id) s "
        "ON s.topic_id = t.id WHERE abs(t.balance - coalesce(s.total, 0.0)) > ? "
        "ORDER BY t.key", [tolerance]).fetchall()
    mismatches = [{"topic_key": k, "balance": b, "ledger_sum": total, "difference": b - total}
                  for k, b, total in rows]
    misfiled = [{"ledger_id": i, "topic_key": k, "topic_id": t} for i, k, t in db.execute(
        "SELECT l.id, l.topic_key, l.topic_id FROM salience_ledger l "
        "LEFT JOIN topics t ON t.id = l.topic_id "
        "WHERE t.key IS NULL OR t.key <> l.topic_key ORDER BY l.rowid LIMIT 100")]
    return {"ok": not mismatches and not misfiled, "topics_checked": checked,
            "ledger_rows": db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0],
            "tolerance": tolerance, "mismatches": mismatches, "misfiled_rows": misfiled}
