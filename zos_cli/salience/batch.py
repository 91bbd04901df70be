"""The rows of one engine batch, and writing them.

Within a batch the earns of one topic become one row, whatever their kinds (message, reply,
mention, …), and its propagate (or spillover) transfers another — per topic and row type, as
docs/salience.md#aggregated-rows allows: the reason names the batch, the count of each kind or the sources, and the
message-id range; the row is stamped with the newest event time it covers.
Warm rows, reflection events (subject_mention, self_run), decays and spends are written one row
each. With `aggregate=False` every change is its own row.

This module is the one that inserts and updates `topics` and `salience_ledger` rows: the
engine's batches, and (below) decay's and a reflection's rows, the topic rows a reflection
needs, a subject merge's rows and a subject's state, and the zeroed balances a rebuild starts
from. Every function runs inside the caller's write transaction.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter

from zos_cli.store.db import triggers_suspended
from zos_cli.ids import iter_new_ids

# Topic ids are given (the engine numbers new topics and knows the others), so the schema's
# fill-in triggers (topics_id_ai, salience_ledger_topic_id) never run for the engine's rows.
INSERT_TOPIC = (
    "INSERT INTO topics (key, category, budget_group, server_id, is_global, created_at, metadata, "
    "id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
INSERT_ROW = (
    "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, source_topic, "
    "layer_run_id, created_at, topic_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The ledger's insert triggers, which the bulk insert does the work of (schema 0002).
INSERT_TRIGGERS = ("salience_ledger_ai", "salience_ledger_topic_id")
_BY_TOPIC_TIME_SEQ = itemgetter(9, 7, 8)  # a row's topic id, time and sequence
_PREFIXED = ("earn", "propagate", "spillover", "warm")  # decays and spends keep their reasons


def message_range(lo: int | None, hi: int | None) -> str:
    if lo is None:
        return ""
    return f" (message {lo})" if lo == hi else f" (messages {lo}..{hi})"


def describe_sources(row_type: str, sources: str | dict[str, float]) -> str:
    """The reason's words for an aggregated transfer row: its one source, or the largest
    three of its several sources and how many more."""
    if type(sources) is str:
        return f"{row_type} from {sources}"
    ranked = sorted(sources, key=lambda k: (-sources[k], k))
    more = f" and {len(ranked) - 3} more" if len(ranked) > 3 else ""
    return f"{row_type} from {len(ranked)} topics: {', '.join(ranked[:3])}{more}"


class PendingRows:
    def __init__(self):
        # (key, propagate or spillover) → [amount, n, lo, hi, at, seq, source or
        # {source: amount}]: the transfer rows
        self.groups: dict[tuple, list] = {}
        # key → [amount, n, lo, hi, at, seq, kind or {kind: n}]: the earn rows
        self.earns: dict[str, list] = {}
        self.singles: list[tuple] = []    # (id, key, type, amount, detail, source, run, at, seq)
        self.activity: dict[str, str] = {}  # key → newest earn time in this batch
        self.seq = 0                      # keeps the rows in the order they arose

    def __len__(self) -> int:
        return len(self.earns) + len(self.groups) + len(self.singles)

    def single(self, row_id, key, row_type, amount, detail, source, run_id, at) -> None:
        self.seq += 1
        self.singles.append((row_id, key, row_type, amount, detail, source, run_id, at, self.seq))

    def transfer(self, key: str, row_type: str, amount: float, n: int, lo: int | None,
                 hi: int | None, at: str, source: str) -> None:
        """`n` transfers of `row_type` (propagate or spillover) from `source` into `key`."""
        gkey = (key, row_type)
        g = self.groups.get(gkey)
        if g is None:
            self.seq += 1
            # The source: one key (most rows have one), a dict once there are more.
            self.groups[gkey] = [amount, n, lo, hi, at, self.seq, source]
            return
        sources = g[6]
        if type(sources) is dict:
            sources[source] = sources.get(source, 0.0) + amount
        elif sources != source:
            g[6] = {sources: g[0], source: amount}
        g[0] += amount
        g[1] += n
        if lo is not None and (g[2] is None or lo < g[2]):
            g[2] = lo
        if hi is not None and (g[3] is None or hi > g[3]):
            g[3] = hi
        if at > g[4]:
            g[4] = at

    def earned(self, key: str, kind: str, amount: float, ref: int | None, at: str) -> None:
        """One earn of `kind` on `key` (counted per kind in the row's reason)."""
        g = self.earns.get(key)
        if g is None:
            self.seq += 1
            self.earns[key] = [amount, 1, ref, ref, at, self.seq, kind]
            return
        kinds = g[6]
        if type(kinds) is dict:
            kinds[kind] = kinds.get(kind, 0) + 1
        elif kinds != kind:
            g[6] = {kinds: g[1], kind: 1}
        g[0] += amount
        g[1] += 1
        if ref is not None:
            if g[2] is None or ref < g[2]:
                g[2] = ref
            if g[3] is None or ref > g[3]:
                g[3] = ref
        if at > g[4]:
            g[4] = at

    def touch(self, key: str, at: str) -> None:
        if self.activity.get(key, "") < at:
            self.activity[key] = at

    def rows(self, reason: str, topic_id) -> list[list]:
        """Every pending row as [id or None, key, type, amount, reason, source, run, at, seq,
        topic id] (`topic_id(key)`), by topic id (see `write`), then in the order the changes
        happened.
        An aggregated row's reason is left as its parts (see reason_text): the text is made
        while the row is inserted, so a transaction's tens of thousands of reasons are never
        all in memory at once."""
        rows = []
        append = rows.append
        groups = self.groups
        while groups:  # emptied as the rows are made: the two are not in memory together
            (key, row_type), (amount, n, lo, hi, at, seq, sources) = groups.popitem()
            source = sources if type(sources) is str else None  # source_topic: one or none
            append([None, key, row_type, amount, (reason, row_type, row_type, n, sources, lo, hi),
                    source, None, at, seq, topic_id(key)])
        earns = self.earns
        while earns:
            key, (amount, n, lo, hi, at, seq, kinds) = earns.popitem()
            append([None, key, "earn", amount, (reason, "earn", kinds, n, None, lo, hi), None,
                    None, at, seq, topic_id(key)])
        for row_id, key, row_type, amount, detail, source, run_id, at, seq in self.singles:
            if row_type in _PREFIXED:
                detail = f"{reason}: {detail}"
            rows.append([row_id, key, row_type, amount, detail, source, run_id, at, seq,
                         topic_id(key)])
        rows.sort(key=_BY_TOPIC_TIME_SEQ)
        return rows

    def clear(self) -> None:
        self.earns.clear()
        self.groups.clear()
        self.singles.clear()
        self.activity.clear()


def reason_text(reason) -> str:
    """A row's reason: as given, or an aggregated row's text from its parts — "<batch>: 3 ×
    message (messages 11..15)", "<batch>: 2 × reply, 1 × mention (messages 12..14)",
    "<batch>: 2 × propagate from <source> (message 15)"."""
    if type(reason) is not tuple:
        return reason
    batch_reason, row_type, detail, n, sources, lo, hi = reason
    if sources:
        what = f"{n} × {describe_sources(row_type, sources)}"
    elif type(detail) is dict:
        what = ", ".join(f"{count} × {kind}" for kind, count in detail.items())
    else:
        what = f"{n} × {detail}"
    return f"{batch_reason}: {what}{message_range(lo, hi)}"


def write_topics(db, topic_rows: list[tuple]) -> list[tuple[str, int]]:
    """Insert the batch's new topics, numbered by the engine (the caller holds the write
    transaction). Returns [] — or, when another writer made some of them since the engine
    looked, the (key, id) each of them has in the database."""
    if not topic_rows:
        return []
    with triggers_suspended(db, "topics_id_ai"):  # the ids are given
        inserted = db.conn.executemany(INSERT_TOPIC, topic_rows).rowcount
    if inserted == len(topic_rows):
        return []
    keys = [row[0] for row in topic_rows]
    found = []
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        found += db.execute(f"SELECT key, id FROM topics WHERE key IN ({marks})", chunk).fetchall()
    return found


def write(db, rows: list[list], activity: dict[str, str], topic_id,
          base: dict[str, float] | None = None, target: dict[str, float] | None = None) -> int:
    """Insert the batch's ledger rows, as PendingRows.rows gives them (the caller holds the
    write transaction); returns rows written. `topic_id(key)` is a topic's topics.id.

    Rows come by topic id, so that each batch walks the ledger's (topic_id, created_at) index
    from one end to the other instead of jumping about in it. The ledger's insert triggers
    are suspended meanwhile (they cost more than the insert itself): the rows carry their
    topic ids, and each touched topic is then updated once: its balance plus its rows' amounts
    one by one in insertion order — SQL evaluates `balance + ? + ?` from the left, so this is
    exactly the value the balance trigger would have left — and its last-activity time, in the
    same statement.

    `base` and `target` (key → balance before the batch, and the engine's balance after it)
    make the amounts exact: aggregated amounts are sums in another order than the per-event
    arithmetic, so the running balance could end a few ulps away from the engine's (100 shown
    as 100.00000000000011). The last row of each topic in `base` absorbs that float noise —
    only when the correction is below 1e-9, so it never hides a real difference. All of this
    is one pass over the rows, made while they are inserted."""
    amounts: dict[int, list[float]] = {}
    conn = db.conn
    if rows:
        with triggers_suspended(db, *INSERT_TRIGGERS):
            conn.executemany(INSERT_ROW, _insert_params(rows, amounts, base or {}, target or {}))
    for arity, params in _topic_updates(amounts, activity, topic_id):
        conn.executemany(_update_sql(arity), params)
    return len(rows)


def _insert_params(rows: list[list], amounts: dict[int, list[float]], base: dict[str, float],
                   target: dict[str, float]):
    """The INSERT parameters of `write`, row by row; on the way, each topic's amounts in
    order (its rows are consecutive), the last one made exact."""
    fresh = iter_new_ids(sum(1 for r in rows if r[0] is None))
    last = len(rows) - 1
    values: list[float] = []
    for i, r in enumerate(rows):
        tid = r[9]
        if not values:
            amounts[tid] = values
        if i == last or rows[i + 1][9] != tid:  # the topic's last row of the batch
            key = r[1]
            running = base.get(key)
            if running is not None:
                for amount in values:
                    running += amount
                exact = target[key] - running
                if abs(exact - r[3]) < 1e-9 and running + exact == target[key]:
                    r[3] = exact
            values.append(r[3])
            values = []
        else:
            values.append(r[3])
        yield (r[0] or next(fresh), r[1], r[2], r[3], reason_text(r[4]), r[5], r[6], r[7], tid)


_MAX_TERMS = 32  # amounts per UPDATE (SQLite bounds expression depth); more take several


@lru_cache(maxsize=None)
def _update_sql(arity: int) -> str:
    at, topic_id = f"?{arity + 1}", f"?{arity + 2}"
    return (f"UPDATE topics SET balance = balance{' + ?' * arity}, last_activity_at = CASE "
            f"WHEN {at} > coalesce(last_activity_at, '') THEN {at} ELSE last_activity_at END "
            f"WHERE id = {topic_id}")


def _topic_updates(amounts: dict[int, list[float]], activity: dict[str, str],
                   topic_id) -> list[tuple[int, list]]:
    """The UPDATEs of `write` (`amounts`: topic id → its rows' amounts in order), grouped by
    their number of amounts, in rounds: a topic with more than _MAX_TERMS rows has its later
    amounts in a later round, so they are still added in insertion order. Each group is in
    topic-id order (the topics' own order on disk)."""
    activity = {topic_id(key): at for key, at in activity.items()}
    for tid in activity:
        if tid not in amounts:
            amounts[tid] = []  # (none in practice: every earn writes a row)
    updates = []
    start = 0
    while amounts:
        by_arity: dict[int, list[tuple]] = {}
        for tid, values in amounts.items():
            chunk = values[start:start + _MAX_TERMS]
            at = activity.get(tid) if start == 0 else None
            by_arity.setdefault(len(chunk), []).append((*chunk, at, tid))
        updates.extend(sorted(by_arity.items()))
        start += _MAX_TERMS
        amounts = {k: v for k, v in amounts.items() if len(v) > start}
    return updates


# ---------------------------------------------------------------- rows written outside a batch
_INSERT_DECAY = (
    "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, created_at, "
    "topic_id) VALUES (?, ?, 'decay', ?, ?, ?, ?)"
)
_INSERT_REFLECTION = (
    "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
    "layer_run_id, created_at, topic_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT id FROM topics WHERE key = ?2))"
)


_INSERT_MERGE = (
    "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
    "source_topic, created_at, topic_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT id FROM topics WHERE key = ?2))"
)


def insert_merge_rows(db, rows: list[tuple]) -> None:
    """A subject merge's merge_out and merge_in rows (id, topic key, transaction type, amount,
    reason, source topic, created_at); the insert triggers keep the balances."""
    db.conn.executemany(_INSERT_MERGE, rows)


def insert_decays(db, rows: list[tuple]) -> None:
    """Decay rows (id, topic key, amount, reason, created_at, topic id). The caller has the
    insert triggers suspended and sets the balance itself (`set_balance`)."""
    db.conn.executemany(_INSERT_DECAY, rows)


def set_balance(db, topic_id: int, balance: float) -> None:
    db.execute("UPDATE topics SET balance = ? WHERE id = ?", [balance, topic_id])


def insert_reflection_rows(db, rows: list[tuple]) -> None:
    """A reflected target's spend/reset/retain rows (id, topic key, transaction type, amount,
    reason, layer run id, created_at); the insert triggers keep the balance."""
    db.conn.executemany(_INSERT_REFLECTION, rows)


def zero_balances(db) -> None:
    """Every topic's balance 0 and no activity: what an empty ledger sums to (a rebuild)."""
    db.execute("UPDATE topics SET balance = 0.0, last_activity_at = NULL")


def ensure_topic(db, key: str, created_at: str) -> None:
    """A topic's row, if it has none yet (balance 0, no ledger rows, so balance == ledger
    still holds): synthesis may write to a global topic nothing has earned on yet."""
    from zos_cli import topics

    t = topics.parse(key)
    db.execute(
        "INSERT OR IGNORE INTO topics (key, category, budget_group, server_id, is_global, "
        "provisional, balance, created_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?)",
        [t.key, t.category, t.group, t.server_id, int(t.is_global), created_at],
    )


def mark_established(db, keys: list[str]) -> None:
    """Subject topics promoted: named by insights about enough targets, or by an operator."""
    if keys:
        db.execute(f"UPDATE topics SET provisional = 0 WHERE key IN "
                   f"({', '.join('?' for _ in keys)})", keys)


def mark_provisional(db, keys: list[str]) -> None:
    """Subject topics a reflection brought into being: named by a model, not yet confirmed
    by anything else."""
    if keys:
        db.execute(f"UPDATE topics SET provisional = 1 WHERE key IN "
                   f"({', '.join('?' for _ in keys)})", keys)
