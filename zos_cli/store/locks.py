"""Per-job locks: one lock file per job kind beside the database, taken with fcntl.flock.

A second run of the same job exits 75 at once. Different jobs run side by side (WAL, BEGIN
IMMEDIATE and the busy timeout keep them correct). `migrate` waits for no one: it refuses
while any other job holds its lock, and jobs refuse to start while a migration runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from zos_cli.errors import JobBusy, NoDatabase
from zos_cli.store.paths import make_folder_of

MIGRATE = "migrate"


def lock_path(db_path: str | Path, job: str) -> Path:
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.name}.{job}.lock")


def _take(path: Path, mode: int):
    make_folder_of(path)
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise NoDatabase(f"cannot make the lock file {path} ({exc.strerror}): give --db a path "
                         "zos may write") from None
    try:
        fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextmanager
def job_lock(db_path: str | Path, job: str) -> Iterator[Path]:
    """Hold the lock of `job` (e.g. "ingest", "poll", "reflect-user") for the block."""
    path = lock_path(db_path, job)
    with ExitStack() as stack:
        handle = _take(path, fcntl.LOCK_EX)
        if handle is None:
            if job != MIGRATE and _migrating(db_path):  # (it holds every job's lock meanwhile)
                raise JobBusy(_MIGRATING.format(db_path=db_path))
            raise JobBusy(
                f"another `zos {_command_of(job)}` is already running on {db_path} "
                f"(lock {path} is held): try again when it finishes"
            )
        stack.callback(handle.close)
        # A migration holds its lock exclusively while it runs: start nothing beside it. Asked
        # with this job's own lock held, so a migration starting now finds that lock taken:
        # one of the two refuses, never neither.
        if job != MIGRATE and _migrating(db_path):
            raise JobBusy(_MIGRATING.format(db_path=db_path))
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        if job == MIGRATE:
            _refuse_if_others_run(stack, Path(db_path))
        yield path


_MIGRATING = "a `zos migrate` is running on {db_path}: try again when it finishes"


def _migrating(db_path: str | Path) -> bool:
    probe = _take(lock_path(db_path, MIGRATE), fcntl.LOCK_SH)
    if probe is None:
        return True
    probe.close()
    return False


def _command_of(job: str) -> str:
    if job.startswith("reflect-"):
        return f"reflect --layer {job[len('reflect-'):]}"
    return job


def _refuse_if_others_run(stack: ExitStack, db_path: Path) -> None:
    migrate = lock_path(db_path, MIGRATE)
    for other in sorted(db_path.parent.glob(f"{db_path.name}.*.lock")):
        if other == migrate:
            continue
        handle = _take(other, fcntl.LOCK_EX)
        if handle is None:
            job = other.name[len(db_path.name) + 1 : -len(".lock")]
            raise JobBusy(
                f"`zos {_command_of(job)}` is running on {db_path} (lock {other} is held): "
                "migrate refuses to run beside other jobs; try again when it finishes"
            )
        stack.callback(handle.close)
