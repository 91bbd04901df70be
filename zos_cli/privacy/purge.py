"""Verified forgetting: `consent revoke --forget` and `consent erase`.

What goes with a message: its reactions, mentions, role mentions, sources, and what `zos analyze`
read of its attachments and links (media_analysis, link_analysis) together with the model calls
that described or summarised them. Both delete inside one BEGIN IMMEDIATE transaction with `secure_delete` on (SQLite zeroes
what it deletes, in the row's page and in freed pages), then merge the full-text indexes (of
insights, and of messages: a deleted message leaves messages_fts by trigger) so no
old segment keeps a deleted term, and end with a TRUNCATE checkpoint so the WAL keeps no page
of the content. Tombstones and the event record ids and counts only, never content.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlite_utils

from zos_cli.store import migrations
from zos_cli.store.audit import record_event, record_tombstone
from zos_cli.store.db import secure_delete, write_transaction
from zos_cli.errors import TemporaryFailure
from zos_cli.privacy import message_index
from zos_cli.privacy.provenance import dm_channel_ids, dm_message_ids, insights_derived_from
from zos_cli.privacy.quarantine import user_topic_patterns
from zos_cli.topics import user_globs

log = logging.getLogger("zos.privacy")

# Message text shorter than this is not searched for in stored prompts (too likely to match
# unrelated text); such calls are still found through the insights they produced.
MIN_SEARCHED_TEXT = 6


@dataclass
class PurgeReport:
    user_id: str
    kind: str                        # "forget" or "erase"
    messages: int = 0
    reactions: int = 0
    mentions: int = 0
    insights: int = 0
    analyses: int = 0                # media_analysis and link_analysis rows
    llm_calls_scrubbed: int = 0
    llm_cache_entries: int = 0
    self_concept_versions: int = 0
    topics: int = 0
    ledger_rows: int = 0
    channels: int = 0
    users: int = 0
    tombstones: int = 0
    backups: list[str] = field(default_factory=list)
    backups_deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def forget_dm(db: sqlite_utils.Database, user_id: str, *, db_path: Path | None = None,
              include_backups: bool = False) -> PurgeReport:
    """Erase the user's DM channels (both sides), their reactions, every insight whose
    provenance touches them, and the model calls and cache entries that carried them."""
    report = PurgeReport(user_id=user_id, kind="forget")
    channels = dm_channel_ids(db, user_id)
    with secure_delete(db), write_transaction(db):
        messages = dm_message_ids(db, channels)
        _purge(db, report, messages, topic_keys=[], reason=f"consent revoked with forget: {user_id}")
        for channel in channels:
            db.execute("DELETE FROM channels WHERE id = ?", [channel])
            _tombstone(db, report, "channel", channel, "forget")
        report.channels = len(channels)
        _event(db, "forget", report)
    _finish(db, report, db_path, include_backups)
    return report


def erase_user(db: sqlite_utils.Database, user_id: str, *, db_path: Path | None = None,
               include_backups: bool = False) -> PurgeReport:
    """Everything about a user: their DMs as in forget, their public messages, reactions,
    mentions, topics and ledger rows, insights about them or made from their messages."""
    report = PurgeReport(user_id=user_id, kind="erase")
    channels = dm_channel_ids(db, user_id)
    with secure_delete(db), write_transaction(db):
        messages = dm_message_ids(db, channels) + [r[0] for r in db.execute(
            "SELECT id FROM messages WHERE author_id = ? AND server_id IS NOT NULL", [user_id])]
        patterns = user_topic_patterns(user_id) + user_globs(
            user_id, ("user_in_channel", "dyad_in_channel"))
        where = " OR ".join("key GLOB ?" for _ in patterns)
        topics = [r[0] for r in db.execute(f"SELECT key FROM topics WHERE {where}", patterns)]
        _purge(db, report, messages, topic_keys=topics, reason=f"user erased: {user_id}")
        report.reactions += db.execute(
            "DELETE FROM reactions WHERE user_id = ?", [user_id]).rowcount
        report.mentions += db.execute(
            "DELETE FROM mentions WHERE user_id = ?", [user_id]).rowcount
        for topic in topics:
            report.ledger_rows += db.execute(
                "DELETE FROM salience_ledger WHERE topic_id = "
                "(SELECT id FROM topics WHERE key = ?)", [topic]).rowcount
            db.execute("DELETE FROM reflection_marks WHERE topic_key = ?", [topic])
            db.execute("DELETE FROM topics WHERE key = ?", [topic])
            _tombstone(db, report, "topic", topic, "erase")
        report.topics = len(topics)
        for channel in channels:
            db.execute("DELETE FROM channels WHERE id = ?", [channel])
            _tombstone(db, report, "channel", channel, "erase")
        report.channels = len(channels)
        # A DM export's file name names the other side ("Direct Messages - priya_k […].json");
        # its warnings name message ids of the erased DM.
        db.execute(
            "UPDATE ingest_log SET path = 'erased DM export ' || id, warnings = NULL "
            "WHERE kind = 'export' AND "
            "(channel_id IN (SELECT value FROM json_each(?)) OR EXISTS (SELECT 1 FROM "
            "json_each(coalesce(dm_participant_ids, '[]')) WHERE value = ?))",
            [json.dumps(channels), user_id])
        report.users = db.execute("DELETE FROM users WHERE id = ?", [user_id]).rowcount
        _tombstone(db, report, "user", user_id, "erase")
        _event(db, "erase", report)
    _finish(db, report, db_path, include_backups)
    return report


def _purge(db, report: PurgeReport, message_ids: list[str], *, topic_keys: list[str],
           reason: str) -> None:
    topic_insights: list[str] = []
    for topic in topic_keys:
        topic_insights.extend(r[0] for r in db.execute(
            "SELECT id FROM insights WHERE topic_key = ?", [topic]))
    insights = insights_derived_from(db, message_ids, topic_insights)
    shared = _analyses_of(db, message_ids)
    texts = (_texts(db, "messages", message_ids) + _texts(db, "insights", sorted(insights))
             + shared.texts)
    calls = _scrub_model_traces(db, report, {"message": message_ids, "insight": sorted(insights),
                                             "media": shared.media_ids, "link": shared.link_ids},
                                texts)
    _purge_self_concept(db, report, calls)
    for insight in sorted(insights):
        db.execute("UPDATE insights SET supersedes = NULL WHERE supersedes = ?", [insight])
        db.execute("UPDATE insights SET superseded_by = NULL WHERE superseded_by = ?", [insight])
        db.execute("DELETE FROM insights WHERE id = ?", [insight])
        _tombstone(db, report, "insight", insight, reason)
    report.insights = len(insights)
    # The analysis rows (and the other rows hanging off a message) are deleted by name rather
    # than left to ON DELETE CASCADE, which does nothing on a connection with foreign keys off.
    report.analyses = _delete_of_messages(db, "media_analysis", message_ids)
    report.analyses += _delete_of_messages(db, "link_analysis", message_ids)
    _delete_of_messages(db, "role_mentions", message_ids)
    _delete_of_messages(db, "message_sources", message_ids)
    for message in message_ids:
        report.reactions += db.execute(
            "DELETE FROM reactions WHERE message_id = ?", [message]).rowcount
        report.mentions += db.execute(
            "DELETE FROM mentions WHERE message_id = ?", [message]).rowcount
        db.execute("DELETE FROM messages WHERE id = ?", [message])
        _tombstone(db, report, "message", message, reason)
    report.messages = len(message_ids)


@dataclass
class _Analyses:
    media_ids: list[str]
    link_ids: list[str]
    texts: list[str]      # what they said that no remaining row says


def _analyses_of(db, message_ids: list[str]) -> _Analyses:
    """The media_analysis and link_analysis rows of these messages, and the texts read from
    them (image descriptions; page titles, summaries and meta descriptions) to search stored
    prompts for. A text that a row of a remaining message holds too — a description shared by
    sha256, a page shared by URL — stays with that row and is not searched: the calls that
    carried it for the remaining message are not about the removed one."""
    ids = json.dumps(message_ids)
    media = db.execute("SELECT id, description FROM media_analysis WHERE message_id IN "
                       "(SELECT value FROM json_each(?))", [ids]).fetchall()
    links = db.execute("SELECT id, title, summary, description FROM link_analysis WHERE "
                       "message_id IN (SELECT value FROM json_each(?))", [ids]).fetchall()
    said = sorted({text for row in [*media, *links] for text in row[1:]
                   if text and len(text) >= MIN_SEARCHED_TEXT})
    kept: set[str] = set()
    if said:
        texts = json.dumps(said)
        for column, table in (("description", "media_analysis"), ("title", "link_analysis"),
                              ("summary", "link_analysis"), ("description", "link_analysis")):
            kept.update(r[0] for r in db.execute(
                f"SELECT {column} FROM {table} WHERE {column} IN (SELECT value FROM "
                "json_each(?)) AND message_id NOT IN (SELECT value FROM json_each(?))",
                [texts, ids]))
    return _Analyses([r[0] for r in media], [r[0] for r in links],
                     [t for t in said if t not in kept])


def _delete_of_messages(db, table: str, message_ids: list[str]) -> int:
    return db.execute(f"DELETE FROM {table} WHERE message_id IN "
                      "(SELECT value FROM json_each(?))", [json.dumps(message_ids)]).rowcount


def _texts(db, table: str, ids: list[str]) -> list[str]:
    texts = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        texts.extend(r[0] for r in db.execute(
            f"SELECT content FROM {table} WHERE id IN ({marks})", chunk)
            if r[0] and len(r[0]) >= MIN_SEARCHED_TEXT)
    return texts


def _variants(text: str) -> set[str]:
    """The text as stored raw and as it appears inside a JSON string (prompts and responses
    are stored as JSON, where newlines and quotes are escaped)."""
    return {text, json.dumps(text, ensure_ascii=False)[1:-1], json.dumps(text)[1:-1]}


def _calls_that_read(db, sources: dict[str, list[str]]) -> set[str]:
    """The model calls whose prompt carried any of these sources (source type → ids): the
    messages and insights of a reflection, the images and links `zos analyze` sent (a call
    that described an image or summarised a page names its media_analysis or link_analysis
    rows)."""
    calls: set[str] = set()
    for source_type, ids in sources.items():
        calls.update(r[0] for r in db.execute(
            "SELECT call_id FROM llm_call_sources WHERE source_type = ? AND source_id IN "
            "(SELECT value FROM json_each(?))", [source_type, json.dumps(list(ids))]))
    return calls


def _scrub_model_traces(db, report: PurgeReport, sources: dict[str, list[str]],
                        texts: list[str]) -> set[str]:
    """Model calls that read these sources (llm_call_sources: messages, insights, analysed
    media and links), that produced these insights, or whose prompt or response carries any
    of these texts (calls recorded before llm_call_sources existed) lose their prompt and
    response. Cache entries for the same topics, or carrying the texts, are deleted (a cache
    entry only saves a model call). Returns the calls scrubbed."""
    calls = _calls_that_read(db, sources)
    topics: set[str] = set()
    for insight in sources["insight"]:
        for call, topic in db.execute(
                "SELECT c.id, i.topic_key FROM insights i LEFT JOIN llm_calls c "
                "ON c.layer_run_id = i.layer_run_id AND c.topic_key = i.topic_key "
                "WHERE i.id = ?", [insight]):
            topics.add(topic)
            if call:
                calls.add(call)
    cache_keys = {r[0] for topic in topics for r in db.execute(
        "SELECT cache_key FROM llm_cache WHERE topic_key = ?", [topic])}
    for text in texts:
        for variant in _variants(text):
            calls.update(r[0] for r in db.execute(
                "SELECT id FROM llm_calls WHERE instr(prompt, ?) > 0 OR instr(response, ?) > 0 "
                "OR instr(error, ?) > 0", [variant, variant, variant]))
            cache_keys.update(r[0] for r in db.execute(
                "SELECT cache_key FROM llm_cache WHERE instr(response, ?) > 0", [variant]))
    for call in sorted(calls):
        (response,) = db.execute("SELECT response FROM llm_calls WHERE id = ?", [call]).fetchone()
        if response:
            cache_keys.update(r[0] for r in db.execute(
                "SELECT cache_key FROM llm_cache WHERE response = ?", [response]))
        db.execute("UPDATE llm_calls SET prompt = NULL, response = NULL, error = NULL "
                   "WHERE id = ?", [call])
        _tombstone(db, report, "llm_call", call, report.kind)
    for key in sorted(cache_keys):
        db.execute("DELETE FROM llm_cache WHERE cache_key = ?", [key])
        _tombstone(db, report, "llm_cache", key, report.kind)
    _scrub_run_errors(db, calls, texts)
    report.llm_calls_scrubbed = len(calls)
    report.llm_cache_entries = len(cache_keys)
    return calls


def _purge_self_concept(db, report: PurgeReport, calls: set[str]) -> None:
    """A self-concept version that the self layer wrote in a run whose model calls carried
    what is forgotten may paraphrase it, and so may a later version that copied its text (a
    revert): both go. If the active version goes, the newest version that was active before it
    becomes active again, so prompts never carry the forgotten text."""
    runs = sorted({r[0] for call in calls for r in db.execute(
        "SELECT layer_run_id FROM llm_calls WHERE id = ?", [call]) if r[0]})
    if not runs:
        return
    contents = [r[0] for r in db.execute(
        "SELECT content FROM self_concept WHERE source = 'layer' AND layer_run_id IN "
        "(SELECT value FROM json_each(?))", [json.dumps(runs)])]
    if not contents:
        return
    doomed = db.execute(
        "SELECT version, state FROM self_concept WHERE content IN "
        "(SELECT value FROM json_each(?)) AND source != 'shipped'",
        [json.dumps(contents)]).fetchall()
    # (Counted in the event, not tombstoned: tombstones name the kinds of 0001's CHECK.)
    for version, _state in doomed:
        db.execute("DELETE FROM self_concept WHERE version = ?", [version])
    if any(state == "active" for _version, state in doomed):
        db.execute(
            "UPDATE self_concept SET state = 'active', reason = coalesce(reason || ' ', '') || "
            "'(active again: a later version was forgotten)' WHERE version = "
            "(SELECT max(version) FROM self_concept WHERE state = 'superseded')")
    report.self_concept_versions = len(doomed)


ERROR_REMOVED = "(error text removed: it may have quoted content that was forgotten)"


def _scrub_run_errors(db, calls: set[str], texts: list[str]) -> None:
    """A layer run keeps its targets' errors, and a provider's error may quote what the call
    sent (a 400 echoing its input): the errors of targets whose calls were scrubbed lose their
    text, and so does any error carrying one of the texts."""
    targets_of: dict[str, set] = {}
    for call in calls:
        row = db.execute("SELECT layer_run_id, topic_key FROM llm_calls WHERE id = ?",
                         [call]).fetchone()
        if row and row[0]:
            targets_of.setdefault(row[0], set()).add(row[1])
    variants = {v for text in texts for v in _variants(text)}
    for variant in variants:
        for (run_id,) in db.execute("SELECT id FROM layer_runs WHERE instr(error, ?) > 0",
                                    [variant]):
            targets_of.setdefault(run_id, set())
    for run_id, targets in targets_of.items():
        row = db.execute("SELECT error FROM layer_runs WHERE id = ?", [run_id]).fetchone()
        if not row or not row[0]:
            continue
        entries = json.loads(row[0])
        for entry in entries:
            said = json.dumps(entry.get("error") or "")
            if entry.get("target") in targets or any(
                    v in said or v in (entry.get("error") or "") for v in variants):
                entry["error"] = ERROR_REMOVED
        db.execute("UPDATE layer_runs SET error = ? WHERE id = ?", [json.dumps(entries), run_id])


def _tombstone(db, report: PurgeReport, object_type: str, object_id: str, reason: str) -> None:
    record_tombstone(db, object_type, object_id, reason)
    report.tombstones += 1


def _event(db, event_type: str, report: PurgeReport) -> None:
    counts = {k: v for k, v in report.as_dict().items() if isinstance(v, (int, str))}
    record_event(db, event_type, counts)
    log.info("%s: %s", event_type, ", ".join(f"{k} {v}" for k, v in counts.items()))


def _finish(db, report: PurgeReport, db_path: Path | None, include_backups: bool) -> None:
    """Merge the FTS indexes (deleted terms leave no old segment) and truncate the WAL. (The
    deleted messages left messages_fts by its delete trigger.)"""
    with secure_delete(db), write_transaction(db):
        db.execute("INSERT INTO insights_fts (insights_fts) VALUES ('optimize')")
        message_index.optimize(db)
    _truncate_wal(db)
    if db_path is not None:
        backups = migrations.list_backups(Path(db_path))
        report.backups = [str(p) for p in backups]
        if include_backups:
            for backup in backups:
                backup.unlink()
            report.backups_deleted = report.backups
            report.backups = []


def _truncate_wal(db) -> None:
    """Copy the WAL into the database and empty it, so that no old page image of what was
    deleted stays in zos.db-wal. Another connection reading an older snapshot holds the
    checkpoint back: SQLite waits for it as long as a write waits for a lock (the busy
    timeout), and past that the purge is not called done."""
    busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise TemporaryFailure(
            "the deletion is committed, but another connection is still reading an older "
            "snapshot, so the old pages stay in the write-ahead log (zos.db-wal) for now: run "
            "the same command again once other zos jobs and readers of the database have "
            "finished")
