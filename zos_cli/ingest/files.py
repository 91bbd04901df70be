"""Which files an ingest reads, reading them whole for their size and sha256, how much of each
is read ahead while they are merged, and the history of what was read (`zos ingest
--history`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from zos_cli.errors import UsageProblem

STDIN = "-"
MERGE_BUFFER_BYTES = 32 << 20  # read-ahead shared by the files merged at once


def discover(paths: list[str]) -> list[str]:
    """Files to read, in a stable order: each PATH as given, folders walked recursively for
    `*.json` (asset folders `*_Files` skipped). Missing paths are a usage error."""
    found: dict[str, None] = {}
    missing = []
    for raw in paths:
        if raw == STDIN:
            found.setdefault(STDIN, None)
            continue
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.endswith("_Files"))
                for name in sorted(files):
                    if name.lower().endswith(".json"):
                        found.setdefault(str(Path(root) / name), None)
        elif path.is_file():
            found.setdefault(str(path), None)
        else:
            missing.append(raw)
    if missing:
        raise UsageProblem(f"no such file or folder: {', '.join(missing)}")
    return list(found)


def merge_chunk_bytes(files: int) -> int:
    """The read-ahead of each of `files` files merged at once (MERGE_BUFFER_BYTES shared)."""
    return max(64 << 10, min(1 << 20, MERGE_BUFFER_BYTES // max(1, files)))


def spool(stream: BinaryIO) -> tuple[BinaryIO, int, str]:
    spool = tempfile.TemporaryFile(prefix="zos-ingest-stdin-")
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        spool.write(chunk)
        size += len(chunk)
    spool.seek(0)
    return spool, size, digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ingest_history(db, *, limit: int | None = None) -> list[dict]:
    """What was imported when: one row per file of every ingest, newest first (`warnings`:
    the list of what was odd in the file but read on)."""
    keys = ("id", "kind", "path", "status", "size", "sha256", "messages_new", "messages_seen",
            "reactions_new", "users", "channels", "dm_skipped_without_consent", "error",
            "warnings", "started_at", "finished_at")
    sql = f"SELECT {', '.join(keys)} FROM ingest_log ORDER BY started_at DESC, id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = [dict(zip(keys, row)) for row in db.execute(sql)]
    for row in rows:
        row["warnings"] = json.loads(row["warnings"] or "[]")
    return rows
