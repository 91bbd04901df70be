"""`zos salience rebuild`: recompute the ledger from the stored messages with the current
weights (docs/salience.md#rebuild).

The replay, in one write transaction (readers see the old ledger until it commits):
1. Keep aside what did not come from messages: reflection spends (spend/reset/retain, with the
   token count their reason records), decay rows, the earns of reflection events
   (`subject_mention` on subject topics, `self_run` on self:zos — written one row per event),
   and subject merges (a merge_out row and its merge_in row).
2. Empty the ledger and reset every topic to balance 0 and no activity (topics themselves stay:
   insights refer to them).
3. Replay, merged by time: every stored message in snowflake order (each with its reactions
   right after it), the kept reflection events, spends and merges, and the kept decay rows.
   Ties at the same instant: messages, then reflection events, spends and merges (in the
   order they were written), then decays. Messages go through the same event builder and
   engine as ingest
   (`message_salience_events`, fed a `MessageRow` of the stored columns). DM messages are
   replayed only while consent allows (`dm_may_be_stored`).
   A kept spend is re-applied from the replayed balance and its recorded tokens; a kept decay
   row becomes `decay_rate` × the replayed balance on that day, keeping its id and time; a
   kept merge moves the replayed balance again (salience/merge.py), keeping its ids and time.
Warm, earn, propagate and spillover rows are all recomputed. Roles, consents and zos's own
account are read as they are now.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import time
from collections import defaultdict

from zos_cli.store import db as db_module
from zos_cli.privacy.consent import dm_may_be_stored
from zos_cli.store.db import self_user_id
from zos_cli.events import (LayerRunCompletedEvent, MessageRow, SubjectNamedEvent,
                            message_salience_events)
from zos_cli.ids import new_id
from zos_cli.ids import json_ids
from zos_cli.records import DM_TYPES
from zos_cli.salience.batch import zero_balances
from zos_cli.salience.engine import PASSIVE_STATE, SalienceEngine
from zos_cli.salience.merge import MERGE_ID_IN_REASON
from zos_cli.salience.spending import TOKENS_IN_REASON
from zos_cli.topics import parse, self_topic, server_kind_glob

log = logging.getLogger("zos.salience")

CUSTOM_EMOJI = re.compile(r"<a?:[A-Za-z0-9_~]+:(\d+)>")
CHUNK = 2000          # messages read (with their reactions and mentions) per step
FLUSH_EVERY = 20_000  # events between engine flushes (rows aggregate within a flush)

_KEEP = (
    "CREATE TEMP TABLE rebuild_kept AS SELECT rowid AS rid, id, topic_key, transaction_type, "
    "amount, reason, layer_run_id, created_at, source_topic FROM salience_ledger "
    "WHERE transaction_type IN ('spend', 'reset', 'retain', 'decay', 'merge_out', 'merge_in') "
    f"OR (transaction_type = 'earn' AND (topic_key = '{self_topic()}' "
    f"    OR topic_key GLOB '{server_kind_glob('subject')}'))"
)
_SELECT = (
    "SELECT m.id, m.channel_id, m.server_id, m.author_id, m.content, m.created_at, "
    "m.message_type, m.reply_to_id, m.has_media, m.has_links, m.custom_emoji_ids, "
    "c.type, c.parent_id, c.participant_ids FROM messages m JOIN channels c ON c.id = m.channel_id "
)
_ORDER = "ORDER BY length(m.id), m.id"
_MESSAGES = _SELECT + _ORDER
_SOME_MESSAGES = _SELECT + "WHERE m.id IN (SELECT value FROM json_each(?)) " + _ORDER


def rebuild(db, config, *, progress=None) -> dict:
    """Recompute the whole ledger (see the module docstring). Takes its own write transaction.
    `progress(n)` is called with the number of messages replayed so far."""
    started = time.monotonic()
    run_id = new_id()
    with db_module.write_transaction(db):
        before = db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0]
        db.execute("DROP TABLE IF EXISTS temp.rebuild_kept")
        db.execute(_KEEP)
        _empty_ledger(db)
        engine = SalienceEngine(db, config)
        stats = _replay(db, config, engine, f"rebuild {run_id}", progress)
        db.execute("DROP TABLE temp.rebuild_kept")
        after = db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0]
    log.info("rebuild %s: %s ledger rows before, %s after (%s)", run_id, before, after,
             ", ".join(f"{k} {v}" for k, v in stats.items()))
    return {"rebuild_id": run_id, **stats, "ledger_rows_before": before,
            "ledger_rows_after": after, "seconds": round(time.monotonic() - started, 3)}


def _empty_ledger(db) -> None:
    """Delete every ledger row and zero every topic. The delete trigger would update a topic
    per deleted row; it is dropped for the delete and recreated from its own stored SQL in the
    same transaction, and the balances are then set to 0 — exactly the sum of an empty ledger
    (subtracting row by row would leave float dust)."""
    with db_module.triggers_suspended(db, "salience_ledger_ad"):
        db.execute("DELETE FROM salience_ledger")
    zero_balances(db)
    db.execute("DELETE FROM zos_state WHERE key = ?", [PASSIVE_STATE])  # replayed too
    # Messages a backfill stored to earn later are replayed with all the others.
    db.execute("UPDATE messages SET salience_pending = 0 WHERE salience_pending = 1")


def _kept_events(db):
    """Reflection earns and spends (few: kept in memory) merged with decays (streamed), each
    as ((time, priority, rowid), item)."""
    spends: dict[tuple, dict] = {}
    actions = []
    merges, merged_in = [], {}
    for rid, row_id, key, row_type, amount, reason, run, at, source in db.execute(
            "SELECT rid, id, topic_key, transaction_type, amount, reason, layer_run_id, "
            "created_at, source_topic FROM rebuild_kept WHERE transaction_type <> 'decay' "
            "ORDER BY rid"):
        if row_type == "earn":
            actions.append(((at, 1, rid), ("reflection_earn", key, run)))
            continue
        if row_type == "merge_out":
            found = MERGE_ID_IN_REASON.match(reason or "")
            merges.append((at, rid, row_id, key, source, found.group(1) if found else row_id))
            continue
        if row_type == "merge_in":
            merged_in[(key, source, at)] = row_id
            continue
        group = (key, run, at)
        spend = spends.get(group)
        if spend is None or row_type in spend["ids"]:
            spend = spends[group] = {"ids": {}, "tokens": None, "amount": 0.0, "reason": None}
            actions.append(((at, 1, rid), ("spend", key, run, spend)))
        spend["ids"][row_type] = row_id
        if row_type == "spend":
            found = TOKENS_IN_REASON.search(reason or "")
            spend["tokens"] = int(found.group(1)) if found else None
            spend["amount"] = -amount
            spend["reason"] = reason
    # A merge in its place among the reflection events and spends of its instant (the order
    # they were written in): a reflection of its time made after it saw the merged balance.
    for at, rid, out_id, from_key, into_key, merge_id in merges:
        in_id = merged_in.get((into_key, from_key, at))
        actions.append(((at, 1, rid), ("merge", from_key, into_key, (out_id, in_id), merge_id)))
    actions.sort(key=lambda a: a[0])
    decays = (((at, 2, rid), ("decay", key, row_id, reason)) for rid, row_id, key, reason, at in
              db.execute("SELECT rid, id, topic_key, reason, created_at FROM rebuild_kept "
                         "WHERE transaction_type = 'decay' ORDER BY created_at, rid"))
    return heapq.merge(actions, decays, key=lambda a: a[0])


def _grouped(db, sql: str, ids: str) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for message_id, *rest in db.execute(sql, [ids]):
        out[message_id].append(rest[0] if len(rest) == 1 else tuple(rest))
    return out


def message_events(db, stats: dict, self_id: str | None, ids: list[str] | None = None):
    """Every stored message (or those of `ids`) in snowflake order as ((time, 0, n), [message
    event, reaction events…]), read in chunks with their mentions, role mentions, reactions
    and reply parents."""
    cursor = (db.conn.execute(_MESSAGES) if ids is None
              else db.conn.execute(_SOME_MESSAGES, [json_ids(ids)]))
    may_store: dict[str, bool] = {}
    n = 0
    while True:
        chunk = cursor.fetchmany(CHUNK)
        if not chunk:
            return
        ids = json_ids(r[0] for r in chunk)
        inside = "WHERE message_id IN (SELECT value FROM json_each(?))"
        mentions = _grouped(db, f"SELECT message_id, user_id FROM mentions {inside} "
                                "ORDER BY message_id, user_id", ids)
        roles = _grouped(db, f"SELECT message_id, role_id FROM role_mentions {inside} "
                             "ORDER BY message_id, role_id", ids)
        reactions = _grouped(db, f"SELECT message_id, user_id, emoji, emoji_id FROM reactions "
                                 f"{inside} ORDER BY message_id, user_id, emoji, emoji_id", ids)
        parents = dict(db.execute(
            "SELECT id, author_id FROM messages WHERE id IN (SELECT value FROM json_each(?))",
            [json_ids(r[7] for r in chunk if r[7])]).fetchall())
        for (mid, channel_id, server_id, author, content, at, mtype, reply_to, media, links,
             emoji_json, ctype, parent_id, participants_json) in chunk:
            participants = None
            if ctype in DM_TYPES:
                participants = json.loads(participants_json or "[]")
                if channel_id not in may_store:
                    may_store[channel_id] = dm_may_be_stored(db, participants,
                                                             self_id=self_id)
                if not may_store[channel_id]:
                    stats["dm_messages_skipped"] += 1
                    continue
            if emoji_json is not None:
                emoji = json.loads(emoji_json)
            else:  # rows written before the column existed: read the markup in the text
                emoji = CUSTOM_EMOJI.findall(content or "") if "<" in (content or "") else ()
            events = message_salience_events(MessageRow(
                id=mid, server_id=server_id, channel_id=channel_id, channel_type=ctype,
                channel_parent_id=parent_id, channel_participant_ids=participants,
                author_id=author, created_at=at, message_type=mtype, has_media=media,
                has_links=links, custom_emoji_ids=emoji,
                reply_to_author_id=parents.get(reply_to) if reply_to else None,
                mentioned_user_ids=mentions.get(mid, ()), mentioned_role_ids=roles.get(mid, ()),
            ), reactions.get(mid, ()))
            n += 1
            yield (at, 0, n), events


def _replay(db, config, engine: SalienceEngine, reason: str, progress) -> dict:
    stats = {"messages_replayed": 0, "reactions_replayed": 0, "dm_messages_skipped": 0,
             "reflection_earns_reapplied": 0, "spends_reapplied": 0, "decays_reapplied": 0,
             "merges_reapplied": 0, "ledger_rows_written": 0}
    events = message_events(db, stats, self_user_id(db, config))
    messages = ((key, ("message", batch)) for key, batch in events)
    pending = 0
    for (at, _priority, _n), item in heapq.merge(messages, _kept_events(db),
                                                 key=lambda a: a[0]):
        # A merge's rows get a flush of their own: a flush writes its rows topic by topic,
        # and the next rebuild orders a merge among the rows of its instant by rowid.
        if item[0] == "merge" and pending:
            stats["ledger_rows_written"] += engine.flush(reason)
            pending = 0
        pending += apply_item(engine, config, at, item, stats)
        if pending >= FLUSH_EVERY or item[0] == "merge":
            stats["ledger_rows_written"] += engine.flush(reason)
            pending = 0
            if progress:
                progress(stats["messages_replayed"])
    stats["ledger_rows_written"] += engine.flush(reason)
    return stats


def apply_item(engine: SalienceEngine, config, at: str, item: tuple, stats: dict) -> int:
    """Replay one merged item; returns how many changes it made (for flushing)."""
    kind = item[0]
    if kind == "message":
        events = item[1]
        for event in events:
            engine.apply(event)
        stats["messages_replayed"] += 1
        stats["reactions_replayed"] += len(events) - 1
        return len(events)
    if kind == "reflection_earn":
        _, key, run = item
        topic = parse(key)
        if topic.kind == "subject":
            engine.apply(SubjectNamedEvent(topic.server_id, topic.ids[0], at))
        else:
            engine.apply(LayerRunCompletedEvent(at, layer_run_id=run))
        stats["reflection_earns_reapplied"] += 1
        return 1
    if kind == "spend":
        _, key, run, spend = item
        tokens = spend["tokens"]
        if tokens is None:  # written without its token count: spend its recorded amount again
            per_token = config.salience.cost_per_token
            tokens = round(spend["amount"] / per_token) if per_token else 0
        ids = tuple(spend["ids"].get(t) for t in ("spend", "reset", "retain"))
        engine.apply_reflection(key, tokens, at, layer_run_id=run, ids=ids, reason=spend["reason"])
        stats["spends_reapplied"] += 1
        return 3
    if kind == "merge":
        _, from_key, into_key, ids, merge_id = item
        engine.apply_merge(from_key, into_key, at, merge_id=merge_id, ids=ids)
        stats["merges_reapplied"] += 1
        return 2
    _, key, row_id, reason = item
    engine.apply_decay(key, at, row_id=row_id, reason=reason)
    stats["decays_reapplied"] += 1
    return 1
