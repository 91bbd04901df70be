"""`zos ingest PATH...`: a run over DiscordChatExporter exports.

1. Discover the files (folders recursively, `*_Files` asset folders skipped; `-` is stdin,
   spooled to a temporary file so it can be hashed and re-read).
2. Per file: an unchanged file (same size and sha256 as a completed ingest) is skipped at once,
   unless it holds a DM whose participants have gained consent since. A DM export is read
   once first to learn its participants; without every participant's consent it is only
   counted (and its participant ids kept in ingest_log, so it is re-read after consent). The
   files of a server with a privacy-gate role are read once first too (ingest/role_gate.py).
3. The messages of all remaining files are merged in snowflake order (a k-way merge of the
   file streams: memory stays bounded) and written by the one writer in chunks of 2,000, in
   transactions of `--batch-size` messages (the salience engine flushes its aggregated ledger
   rows once per transaction), with the per-file counts in `ingest_log` updated in the same
   transaction. Killed at any moment and run again, the store ends as an uninterrupted run
   would: a transaction is all or nothing, and messages already stored earn nothing the
   second time.
4. A bad file stops at its first problem (what came before it is kept), is reported with its
   location, and the other files go on. What is odd but readable (a repeated id, a
   `messageCount` that disagrees) is a warning: the file is read on and logged completed.
"""

from __future__ import annotations

import gc
import heapq
import logging
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from zos_cli.ingest import files as ingest_files
from zos_cli.ingest import log as ingest_log
from zos_cli.store import db as db_module
from zos_cli.store.audit import counts_of, record_event
from zos_cli.errors import TemporaryFailure
from zos_cli.ids import new_id
from zos_cli.ingest.dm_gate import (consent_needed, gate_dms, read_dm_participants,
                                    unchanged_dm_may_be_stored)
from zos_cli.ingest.files import STDIN, discover, ingest_history, sha256_of, spool
from zos_cli.ingest.role_gate import settle_gate
from zos_cli.observe.writer import COUNT_KEYS, Observation, ObservationWriter
from zos_cli.records import ChannelRecord
from zos_cli.sources.export import ExportError, ExportFile
from zos_cli.timeutil import now_stored

BATCH_MESSAGES = 10_000        # messages per transaction (--batch-size)
WRITE_CHUNK_MESSAGES = 2000    # messages per writer call: what is held in memory at once
MAX_OPEN_FILES = 256          # files merged at once; more are merged group by group
WAL_PAGES_DURING_RUN = 10_000
CACHE_KIB_DURING_RUN = 8 << 10
GC_THRESHOLDS_DURING_RUN = (50_000, 20, 100)

log = logging.getLogger("zos.ingest")  # --verbose: files, transactions, counts (never content)


@dataclass
class FilePlan:
    label: str                     # as reported: the path found, or '-'
    path: Path
    handle: BinaryIO | None = None  # stdin's spooled copy
    size: int = 0
    sha256: str | None = None
    log_id: str = field(default_factory=new_id)
    export: ExportFile | None = None
    channel: ChannelRecord | None = None
    status: str = "running"
    error: str | None = None
    dm_skipped: int = 0
    dm_participants: list[str] | None = None
    dm_messages: int = 0           # a DM file's messages (counted when its participants are read)
    dm_counterpart_unknown: bool = False  # a 1:1 DM whose other side cannot be identified
    dm_probable_self_id: str | None = None  # its other side while zos's account is unknown
    skipped_channel_id: str | None = None  # an unchanged file's channel (from its last log row)
    warnings: list[str] = field(default_factory=list)  # the reader's, of the file's last read
    started_at: str = field(default_factory=now_stored)


class IngestRun:
    """One `zos ingest` run over export files."""

    def __init__(self, db: sqlite_utils.Database, config, *, batch_messages: int = BATCH_MESSAGES,
                 progress=None, stdin: BinaryIO | None = None):
        self.db = db
        self.config = config
        self.batch_messages = batch_messages
        self.progress = progress
        self.stdin = stdin
        self.run_id = new_id()
        self.plans: list[FilePlan] = []
        self.skipped_unchanged = 0
        self.committed = dict.fromkeys(COUNT_KEYS, 0)  # the counts of committed transactions
        self.self_user_id = db_module.self_user_id(db, config)

    # ------------------------------------------------------------------ the run
    def run(self, paths: list[str]) -> dict:
        started = time.monotonic()
        files = discover(paths)
        self._close_interrupted()
        for label in files:
            self._plan(label)
        gate_dms(self.db, self.plans, self._log_start, self._log_final)
        active = [p for p in self.plans if p.status == "running"]
        from zos_cli.salience import SalienceEngine
        from zos_cli.salience.pending import earn_pending

        engine = SalienceEngine(self.db, self.config)
        groups = _groups(active)
        engine.gate.settle(settle_gate(self.db, self.config, groups))
        # remember_people: this run writes no people rows of its own, and a failed
        # transaction ends it (the writer is not used again).
        writer = ObservationWriter(self.db, self.config, source_type="export",
                                   source_id=self.run_id, engine=engine, remember_people=True)
        writer.batch_label = f"ingest {self.run_id}"
        writer.flush_each_batch = False  # once per transaction (_write_in_transactions)
        # Each batch dirties a few MB of pages; checkpointing the WAL after every commit
        # (SQLite's 1,000-page default) costs more than the inserts. Let it grow to ~40 MB
        # during the run and checkpoint once at the end.
        default = self.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        self.db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES_DURING_RUN}")
        # The author, mention and reactor indexes take rows all over: with SQLite's default
        # 2 MB page cache their pages are evicted (spilled to the WAL when dirty) and read
        # back within a transaction. 8 MB keeps most of them hot: ~15% less time in SQLite
        # on 200k messages, for 6 MB more memory.
        cache = self.db.execute("PRAGMA cache_size").fetchone()[0]
        self.db.execute(f"PRAGMA cache_size = {-CACHE_KIB_DURING_RUN}")
        # A run allocates millions of short-lived containers (records, events, rows) and
        # keeps a large, long-lived salience index: at the default thresholds the cycle
        # collector runs every 700 allocations and re-scans that index often, ~10% of a run.
        # Nothing here forms cycles that must be freed promptly.
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS_DURING_RUN)
        try:
            # Marks a stopped backfill or poll left are earned first (pending.py).
            earn_pending(self.db, self.config, engine, writer.batch_label)
            for group in groups:
                self._merge_and_write(group, writer)
            summary = self._finish(writer, files, time.monotonic() - started)
        except sqlite3.OperationalError as exc:
            if not db_module.is_busy(exc):
                raise
            # Another job held the database past the busy timeout: the transactions
            # committed stay (the next run goes on from them); say what they hold.
            message = db_module.busy_message(exc)
            raise TemporaryFailure(message, summary=self._so_far(
                files, time.monotonic() - started, message)) from exc
        finally:
            gc.set_threshold(*gc_thresholds)
            self.db.execute(f"PRAGMA cache_size = {int(cache)}")
            self.db.execute(f"PRAGMA wal_autocheckpoint = {int(default)}")
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            for plan in self.plans:
                if plan.export is not None:
                    plan.export.close()
        return summary

    def _close_interrupted(self) -> None:
        """Rows left 'running' by a killed run (we hold the ingest lock, so none is live)."""
        with db_module.write_transaction(self.db):
            ingest_log.mark_interrupted(
                self.db, "export", "interrupted: the run stopped before this file was finished")

    # ------------------------------------------------------------------ per file
    def _plan(self, label: str) -> None:
        plan = FilePlan(label=label, path=Path(label))
        self.plans.append(plan)
        if label == STDIN:
            plan.handle, plan.size, plan.sha256 = spool(self.stdin or sys.stdin.buffer)
        else:
            try:
                plan.size = plan.path.stat().st_size
            except OSError as exc:  # gone or unreadable since it was found
                plan.status, plan.error = "failed", f"cannot be read ({exc.strerror})"
                self._log_final(plan)
                return
        if self._unchanged(plan):
            return
        plan.export = ExportFile(plan.path, plan.label, handle=plan.handle)
        try:
            header = plan.export.open()
            plan.channel = header.channel
            if plan.channel.is_dm:
                try:
                    read_dm_participants(self.db, plan, self.self_user_id)
                finally:  # (a refused DM is not read again: its warnings are these)
                    plan.warnings = plan.export.warnings
        except ExportError as exc:
            plan.status, plan.error = "failed", exc.detail
            self._log_final(plan)
            return
        plan.export.release_handle()
        if not plan.channel.is_dm:  # (a DM is logged once every file is read: _gate_dms)
            self._log_start(plan)
        log.info("%s: %s bytes, %s channel %s", plan.label, f"{plan.size:,}",
                 plan.channel.type, plan.channel.id)

    def _unchanged(self, plan: FilePlan) -> bool:
        """Same size and sha256 as a completed ingest: skip, unless a DM it skipped may now
        be stored. The file is hashed only when a completed ingest of its size exists."""
        rows = ingest_log.completed_exports_of_size(self.db, plan.size)
        if not rows:
            return False
        plan.sha256 = plan.sha256 or sha256_of(plan.path)
        match = next((r for r in rows if r[0] == plan.sha256), None)
        if match is None or unchanged_dm_may_be_stored(self.db, plan, match, self.self_user_id):
            return False
        plan.status = "skipped"
        self.skipped_unchanged += 1
        log.info("%s: skipped: same size and sha256 as ingest_log row %s", plan.label, match[3])
        self._log_final(plan)
        return True

    # ------------------------------------------------------------------ merge and write
    def _merge_and_write(self, group: list[FilePlan], writer: ObservationWriter) -> None:
        chunk = ingest_files.merge_chunk_bytes(len(group))
        size = min(WRITE_CHUNK_MESSAGES, self.batch_messages)
        if len(group) == 1:
            # One file: already in its order, and it holds each id once (the reader skips a
            # repeated id), so no merge keys and no check between chunks.
            observations = self._observations(group[0], chunk)
            chunks = iter(lambda: list(islice(observations, size)), [])
        else:
            chunks = self._merged_chunks(group, chunk, size)
        self._write_in_transactions(chunks, writer)

    def _merged_chunks(self, group: list[FilePlan], chunk: int, size: int
                       ) -> Iterator[list[Observation]]:
        streams = [self._stream(i, plan, chunk) for i, plan in enumerate(group)]
        batch: list[Observation] = []
        last_id = None
        for snowflake, _, obs in heapq.merge(*streams):
            # Never split one message id across chunks (overlapping exports): the writer
            # picks the newest observation among those it is given together.
            if len(batch) >= size and snowflake != last_id:
                yield batch
                batch = []
            batch.append(obs)
            last_id = snowflake
        if batch:
            yield batch

    def _observations(self, plan: FilePlan, chunk: int) -> Iterator[Observation]:
        """One file's messages as observations, in file order; a read error marks the file
        failed and ends its stream (what came before is kept)."""
        plan.export.set_chunk_bytes(chunk)
        channel, log_id = plan.channel, plan.log_id
        try:
            for record in plan.export.messages():
                yield Observation(channel, record, log_id)
        except ExportError as exc:
            plan.status, plan.error = "failed", exc.detail
        finally:
            plan.warnings = plan.export.warnings
            if plan.handle is None:
                plan.export.release_handle()

    def _stream(self, index: int, plan: FilePlan, chunk: int) -> Iterator[tuple]:
        """`_observations` keyed for the k-way merge: (snowflake, file index, observation)."""
        for obs in self._observations(plan, chunk):
            yield int(obs.message.id), index, obs

    def _write_in_transactions(self, chunks: Iterator[list[Observation]],
                               writer: ObservationWriter) -> None:
        """Chunks of observations, written by the writer one chunk at a time (memory stays
        that of a chunk) in transactions of about `batch_messages` messages each: the
        salience engine flushes once per transaction, so a larger one aggregates more of its
        ledger rows. A transaction is all or nothing: killed, a run loses only the one in
        progress, and the next run redoes it exactly."""
        pending = next(chunks, None)
        while pending is not None:
            written = 0
            touched: set[str] = set()
            with db_module.write_transaction(self.db):
                while pending is not None and written < self.batch_messages:
                    writer.write_batch(pending)
                    written += len(pending)
                    touched.update(obs.source_id for obs in pending)
                    if self.progress is not None:
                        self.progress.advance(len(pending))
                    pending = next(chunks, None)
                ledger_rows = writer.flush_salience()
                ingest_log.record_counts(
                    self.db, {log_id: writer.counts_for(log_id) for log_id in touched})
            self.committed = writer.counts
            log.info("committed %s messages and %s ledger rows", f"{written:,}", f"{ledger_rows:,}")

    # ------------------------------------------------------------------ ingest_log and summary
    @staticmethod
    def _logged_path(plan: FilePlan) -> str:
        """The path kept in ingest_log: absolute, so that what the file's folder holds (a
        `--media` export's assets, read by zos analyze) is found from any working directory
        later. Reports and logs keep the path as given."""
        if plan.label == STDIN:
            return plan.label
        try:
            return str(plan.path.absolute())
        except OSError:  # the working directory is gone
            return plan.label

    def _log_start(self, plan: FilePlan) -> None:
        with db_module.write_transaction(self.db):
            ingest_log.start_export_file(
                self.db, log_id=plan.log_id, path=self._logged_path(plan), size=plan.size,
                sha256=plan.sha256, dm_participant_ids=plan.dm_participants,
                started_at=plan.started_at, channel_id=plan.channel.id)

    def _log_final(self, plan: FilePlan) -> None:
        with db_module.write_transaction(self.db):
            self._upsert_final(plan, dict.fromkeys(ingest_log.LOGGED_COUNTS, 0))

    def _upsert_final(self, plan: FilePlan, counts: dict) -> None:
        if plan.status == "failed" and plan.sha256 is None and plan.label != STDIN:
            try:  # (a bad file is logged with its hash too: which version of it failed)
                plan.sha256 = sha256_of(plan.path)
            except OSError:
                pass
        ingest_log.finish_export_file(
            self.db, log_id=plan.log_id, path=self._logged_path(plan), size=plan.size,
            sha256=plan.sha256, status=plan.status, counts=counts, dm_skipped=plan.dm_skipped,
            dm_participant_ids=plan.dm_participants, error=plan.error,
            started_at=plan.started_at,
            channel_id=plan.channel.id if plan.channel is not None else plan.skipped_channel_id,
            warnings=plan.warnings, dm_probable_self_id=plan.dm_probable_self_id)

    def _so_far(self, files: list[str], seconds: float, error: str) -> dict:
        """The summary of a run stopped midway: what its committed transactions hold, the
        files that failed so far, and `error` last."""
        errors = [{"file": p.label, "error": p.error} for p in self.plans if p.status == "failed"]
        summary = {"ingest_id": self.run_id, "files": len(files),
                   "files_skipped_unchanged": self.skipped_unchanged, **self.committed,
                   "errors": [*errors, {"file": None, "error": error}], **self._notes(),
                   "seconds": round(seconds, 3)}
        summary["dm_skipped_without_consent"] += sum(p.dm_skipped for p in self.plans)
        return summary

    def _notes(self) -> dict:
        """What the summary tells besides counts and errors: the files' warnings, and who
        the DMs not stored wait for."""
        return {"warnings": [{"file": p.label, "warning": w}
                             for p in self.plans for w in p.warnings],
                "dm_consent_needed": consent_needed(self.db, self.plans, self.self_user_id)}

    def _finish(self, writer: ObservationWriter, files: list[str], seconds: float) -> dict:
        totals = writer.counts
        errors = []
        with db_module.write_transaction(self.db):
            for plan in self.plans:
                if plan.status == "failed":
                    errors.append({"file": plan.label, "error": plan.error})
                    log.info("%s: failed: %s", plan.label, plan.error)
                if plan.status not in ("running", "failed") or plan.export is None:
                    continue
                if plan.status == "running":
                    plan.status = "completed"
                    plan.sha256 = plan.sha256 or plan.export.sha256
                counts = writer.counts_for(plan.log_id)
                self._upsert_final(plan, counts)
                log.info("%s: %s, %s new messages, %s already stored, %s new reactions",
                         plan.label, plan.status, counts["messages_new"], counts["messages_seen"],
                         counts["reactions_new"])
            summary = {
                "ingest_id": self.run_id,
                "files": len(files),
                "files_skipped_unchanged": self.skipped_unchanged,
                **{k: totals[k] for k in COUNT_KEYS},
                "errors": errors,
                **self._notes(),
                "seconds": round(seconds, 3),
            }
            summary["dm_skipped_without_consent"] += sum(p.dm_skipped for p in self.plans)
            record_event(self.db, "ingest", counts_of(summary))
        return summary


def _groups(plans: list[FilePlan]) -> list[list[FilePlan]]:
    """Files merged together: all of them, or (beyond MAX_OPEN_FILES) groups that keep each
    server's files together where they fit, so event order holds within a server."""
    if len(plans) <= MAX_OPEN_FILES:
        return [plans] if plans else []
    ordered = sorted(plans, key=lambda p: (p.channel.server_id or "", p.channel.id))
    return [ordered[i:i + MAX_OPEN_FILES] for i in range(0, len(ordered), MAX_OPEN_FILES)]


def empty_summary() -> dict:
    """The summary of a run that wrote nothing (what a failure before the run reports)."""
    return {"ingest_id": None, "files": 0, "files_skipped_unchanged": 0,
            **dict.fromkeys(COUNT_KEYS, 0), "errors": [], "warnings": [],
            "dm_consent_needed": [], "seconds": 0.0}


def ingest_exports(db: sqlite_utils.Database, config, paths: list[str], *, progress=None,
                   stdin: BinaryIO | None = None, batch_messages: int = BATCH_MESSAGES) -> dict:
    """Ingest export files and folders (`-` for stdin); returns the run summary:
    ingest_id, files, files_skipped_unchanged, messages_new, messages_seen, reactions_new,
    users, channels, dm_skipped_without_consent, errors [{file, error}],
    warnings [{file, warning}], dm_consent_needed [{user_id, name, probably_zos}], seconds."""
    return IngestRun(db, config, batch_messages=batch_messages, progress=progress,
                     stdin=stdin).run(paths)


__all__ = ["ingest_exports", "ingest_history", "discover", "IngestRun"]
