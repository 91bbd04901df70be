"""zos's own small migration runner.

Migrations are numbered files in `schema/` (`0001_initial.sql`; a `.py` file with an
`upgrade(conn)` function only where data must move). Each one runs in one BEGIN IMMEDIATE
transaction together with its row in `_schema_version`, statement by statement
(`executescript` would commit the open transaction first), so a failure leaves the database at
its old version with no partial tables.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from zos_cli.store.audit import record_event
from zos_cli.errors import MigrationError, NoDatabase
from zos_cli.timeutil import now, now_stored

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")
VERSION_TABLE = "_schema_version"

# Files whose comments were edited after release (their citations moved into docs/). A database
# that recorded the former checksum still opens, but only while the file's statements are the
# released ones: the second value is the sha256 of the file with its comments stripped.
COMMENT_ONLY_EDITS: dict[int, tuple[str, str]] = {
    1: ("071539320a73e3d4ee76ad724921d494078e7cf40d9cddb0a6b2c3db2c4c8890",
        "b87c4a12e6e71b7249a32bb3a294c8c7f12f8e7c9da9fe63e2272c39e9ef35f6"),
    6: ("1969667ea66b337267858758e24a5818c8eeed3b2b5bdcb5d456509a8b305099",
        "1685bae607be304036a9339774132ff02c6ca17b9b4e441208dc50f0ef7db5ff"),
}

log = logging.getLogger("zos.migrate")


def schema_dir() -> Path:
    """Inside an installed wheel the schema sits at zos_cli/schema; in a checkout, at ./schema."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "schema"
    if packaged.is_dir():
        return packaged
    return package.parent / "schema"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass
class MigrationState:
    current: int
    latest: int
    applied: list[dict] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    newer_than_code: bool = False


def load(folder: Path | None = None) -> list[Migration]:
    folder = folder or schema_dir()
    found: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        m = _FILE.match(path.name)
        if not m:
            continue
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d} in {folder}")
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, m.group(2), path, checksum)
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies keep their inner `;`)."""
    statements, buffer = [], ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer).strip(" \n\t;"):
                statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer).strip(" \n\t;"):
        raise MigrationError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _applied_rows(conn: sqlite3.Connection) -> list[dict]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [VERSION_TABLE]
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute(
        f"SELECT version, name, checksum, applied_at FROM {VERSION_TABLE} ORDER BY version"
    ).fetchall()
    return [dict(zip(("version", "name", "checksum", "applied_at"), r)) for r in rows]


def status(db, folder: Path | None = None) -> MigrationState:
    """What is applied and what is pending. Raises MigrationError on a changed checksum."""
    conn = db.conn if hasattr(db, "conn") else db
    known = load(folder)
    by_version = {m.version: m for m in known}
    applied = _applied_rows(conn)
    latest = known[-1].version if known else 0
    current = applied[-1]["version"] if applied else 0
    newer = any(row["version"] not in by_version for row in applied)
    for row in applied:
        m = by_version.get(row["version"])
        if m and m.checksum != row["checksum"] and not _comment_only_edit(m, row["checksum"]):
            raise MigrationError(
                f"migration {m.label} was changed after it was applied "
                f"(checksum {row['checksum'][:12]} in the database, {m.checksum[:12]} in "
                f"{m.path}): restore the original file and add a new migration instead"
            )
    done = {row["version"] for row in applied}
    pending = [m for m in known if m.version not in done]
    return MigrationState(current, latest, applied, pending, newer)


def _comment_only_edit(m: Migration, recorded: str) -> bool:
    """The recorded checksum is the file's released one, and only comments changed since."""
    edit = COMMENT_ONLY_EDITS.get(m.version)
    if edit is None or recorded != edit[0]:
        return False
    statements = _strip_comments(m.path.read_text(encoding="utf-8"))
    return hashlib.sha256(statements.encode()).hexdigest() == edit[1]


def holds_data(conn: sqlite3.Connection) -> bool:
    """Any row but the migrations' own (their version rows and `migration` events)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE '%_fts%' AND name <> ?",
            [VERSION_TABLE],
        )
    ]
    for table in tables:
        where = " WHERE event_type <> 'migration'" if table == "events" else ""
        if conn.execute(f"SELECT 1 FROM [{table}]{where} LIMIT 1").fetchone():
            return True
    return False


def backup(conn: sqlite3.Connection, db_path: Path, version: int) -> Path:
    """`VACUUM INTO` a temporary name beside the database, fsync it, then rename it."""
    stamp = now().strftime("%Y%m%dT%H%M%S%fZ")
    final = db_path.with_name(f"{db_path.name}.backup-v{version:04d}-{stamp}")
    temporary = final.with_name(final.name + ".tmp")
    conn.execute("VACUUM INTO ?", [str(temporary)])
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return final


def list_backups(db_path: Path) -> list[Path]:
    return sorted(db_path.parent.glob(f"{db_path.name}.backup-*"))


def apply(
    db,
    db_path: Path | None = None,
    *,
    folder: Path | None = None,
    make_backup: bool = True,
    dry_run: bool = False,
) -> dict:
    """Apply every pending migration, each in its own transaction. Returns a summary."""
    conn = db.conn if hasattr(db, "conn") else db
    state = status(conn, folder)
    if state.newer_than_code:
        raise MigrationError(
            f"the database is at schema version {state.current}, newer than this zos "
            f"(knows up to {state.latest}): upgrade zos"
        )
    summary = {
        "from_version": state.current,
        "to_version": state.pending[-1].version if state.pending else state.current,
        "applied": [m.label for m in state.pending],
        "backup": None,
        "dry_run": dry_run,
    }
    if dry_run or not state.pending:
        if not state.pending:
            summary["applied"] = []
        return summary
    if state.current == 0 and not dry_run:
        _refuse_a_foreign_database(conn, db_path)
    if make_backup and db_path is not None and state.current > 0 and holds_data(conn):
        summary["backup"] = str(backup(conn, Path(db_path), state.current))
        log.info("backup of schema version %s: %s", state.current, summary["backup"])
    for migration in state.pending:
        started = now()
        _apply_one(conn, migration)
        log.info("applied migration %s in %.2f s", migration.label,
                 (now() - started).total_seconds())
    return summary


def _refuse_a_foreign_database(conn: sqlite3.Connection, db_path: Path | None) -> None:
    """A SQLite file at schema version 0 that already holds tables is another program's:
    zos does not build its schema into it."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name <> ? ORDER BY name LIMIT 4", [VERSION_TABLE])]
    if tables:
        raise NoDatabase(f"{db_path or 'the database'} is not a zos database (it holds tables "
                         f"{', '.join(tables)}): give --db a new file or a zos database")


def _apply_one(conn: sqlite3.Connection, migration: Migration) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        if migration.path.suffix == ".sql":
            for statement in split_statements(migration.path.read_text(encoding="utf-8")):
                conn.execute(statement)
        else:
            spec = importlib.util.spec_from_file_location(f"zos_migration_{migration.version}",
                                                          migration.path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.upgrade(conn)
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} (version, name, checksum, applied_at) VALUES (?,?,?,?)",
            [migration.version, migration.name, migration.checksum, now_stored()],
        )
        has_events = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if has_events:
            record_event(conn, "migration", {"applied": migration.label})
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise MigrationError(f"migration {migration.label} failed and was rolled back: {exc}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
