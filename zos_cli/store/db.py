"""Opening the database, and the one way zos writes to it.

Opening policy (documented in docs/configuration.md#locks-and-concurrency):
- foreign keys on; WAL journal so readers never block the writer;
- busy_timeout 10 s so concurrent jobs wait for each other instead of failing;
- synchronous NORMAL: in WAL mode a power cut can lose the last transactions, never corrupt
  the file, and commits are much faster than FULL;
- the connection is in autocommit mode and every write goes through `write_transaction`,
  which starts with BEGIN IMMEDIATE (sqlite-utils' `atomic()` is a deferred BEGIN, which can
  fail with SQLITE_BUSY half-way through instead of waiting up front).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from zos_cli.store import migrations
from zos_cli.errors import MigrationError, NoDatabase
from zos_cli.store.paths import make_folder_of

BUSY_TIMEOUT_MS = 10_000


def connect(path: str | Path, *, create: bool = False) -> sqlite_utils.Database:
    """Open (or with `create`, create) the database file with zos's pragmas."""
    path = Path(path)
    if str(path) != ":memory:":
        if not create:
            ensure_not_missing(path)
        make_folder_of(path)
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if str(path) != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise  # (the busy path of the one error path: exit 75)
        raise NoDatabase(f"cannot open {path} as a database ({exc}): give --db a SQLite file "
                         "zos may write, or a new path for `zos init-db`") from None
    except sqlite3.DatabaseError as exc:  # a file that is not SQLite
        raise NoDatabase(f"{path} is not a zos database ({exc}): give --db the right file, "
                         "or a new path for `zos init-db`") from None
    return sqlite_utils.Database(conn)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Another connection holds the database (past the busy timeout)."""
    text = str(exc)
    return "locked" in text or "busy" in text


def busy_message(exc: sqlite3.OperationalError) -> str:
    return f"the database is busy ({exc}): another job holds it; try again"


def open_database(path: str | Path) -> sqlite_utils.Database:
    """Open an existing, fully migrated database, as every command but init-db/migrate does.

    Raises NoDatabase (66) when the file is missing and MigrationError (78) when its schema is
    behind or ahead of the code.
    """
    db = connect(path)
    try:
        state = migrations.status(db)
    except Exception:
        db.close()
        raise
    if state.newer_than_code:
        db.close()
        raise MigrationError(
            f"{path} is at schema version {state.current}, newer than this zos "
            f"(knows up to {state.latest}): upgrade zos"
        )
    if state.pending:
        db.close()
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in state.pending)
        raise MigrationError(f"{path} has pending migrations ({names}): run `zos migrate`")
    return db


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


@contextmanager
def triggers_suspended(db, *names: str) -> Iterator[None]:
    """Drop the named triggers for the block and make them again from their stored SQL after
    it, inside the caller's write transaction: a rollback brings them back too, so no other
    connection ever sees them missing. For bulk writes that keep the triggers' invariant
    themselves (SQLite runs a trigger as a sub-program per row, costlier than the insert)."""
    conn = db.conn if hasattr(db, "conn") else db
    placeholders = ", ".join("?" * len(names))
    saved = conn.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                         f"AND name IN ({placeholders})", names).fetchall()
    for name, _sql in saved:
        conn.execute(f"DROP TRIGGER [{name}]")
    try:
        yield
    finally:
        for _name, sql in saved:
            conn.execute(sql)


@contextmanager
def secure_delete(db: sqlite_utils.Database) -> Iterator[None]:
    """`PRAGMA secure_delete` on for the block (SQLite zeroes what it deletes, in the row's
    page and in freed pages), back to what it was afterwards."""
    before = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.execute(f"PRAGMA secure_delete = {int(before)}")


def table_counts(db: sqlite_utils.Database, tables: list[str]) -> dict[str, int]:
    return {t: db.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0] for t in tables}


# zos_state key: zos's own Discord account as poll or a backfill last learned it from the API.
SELF_USER_ID_STATE = "discord.self_user_id"


def self_user_id(db: sqlite_utils.Database, config) -> str | None:
    """zos's own Discord account: `discord.self_user_id` in zos.toml, else the one poll or a
    backfill learned from the API (None while neither is known). The one definition: the
    DM gate leaves it out of participants, salience and reflection treat it as zos."""
    configured = config.discord.self_user_id if config is not None else None
    return configured or get_state(db, SELF_USER_ID_STATE)


def remember_self_user_id(db: sqlite_utils.Database, user_id: str) -> None:
    """What the API says zos's account is (caller holds a write transaction)."""
    set_state(db, SELF_USER_ID_STATE, user_id)


def get_state(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM zos_state WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def set_state(db: sqlite_utils.Database, key: str, value: str) -> None:
    """Caller holds a write transaction."""
    from zos_cli.timeutil import now_stored

    db.execute(
        "INSERT INTO zos_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [key, value, now_stored()],
    )


def ensure_not_missing(path: str | Path) -> None:
    if not Path(path).exists():
        raise NoDatabase(f"no database at {path}: run `zos init-db` to create it")

