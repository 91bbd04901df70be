"""What the table writes (`rows`, `people`) are given of one writer batch: a public, typed view
the writer builds per `write_batch` call, so they depend on these fields and not on the
writer's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils

    from zos_cli.observe.people import WrittenPeople
    from zos_cli.observe.writer import Observation


@dataclass
class SourceCounts:
    """The writer's running counts per source (an ingest_log id or a poll run id): the
    table writes add to them; `ObservationWriter.counts_for` reads them."""

    by_source: dict[str, dict[str, int]]      # source → messages_new, reactions_new, …
    users_by_source: dict[str, set[str]]      # source → the users it saw
    channels_by_source: dict[str, set[str]]   # source → the channels it saw

    def add(self, source_id: str, key: str, n: int = 1) -> None:
        self.by_source[source_id][key] += n

    def users_seen(self, source_id: str) -> set[str]:
        return self.users_by_source[source_id]

    def channels_seen(self, source_id: str) -> set[str]:
        return self.channels_by_source[source_id]


@dataclass
class BatchRows:
    """One batch as the table writes see it. The caller holds the write transaction."""

    db: sqlite_utils.Database
    config: Any
    source_type: str                     # 'export' | 'poll' | 'backfill'
    now: str                             # the batch's write time (stored form)
    observations: list[Observation]      # allowed by the DM gate, erased users left out
    effective: list[Observation]         # new and newer-than-stored, snowflake order
    new_id_set: set[str]                 # message ids not stored before this batch
    updated_ids: list[str]               # stored message ids this batch replaces
    counts: SourceCounts
    servers_written: set[str]            # server and channel rows this writer wrote
    channels_written: set[str]           # (not written again by a later batch)
    written_people: WrittenPeople | None  # see people.WrittenPeople
