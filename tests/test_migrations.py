"""The migration runner: fresh, re-run, upgrade with data, failure rollback, newer, checksum, backup."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from zos_cli.store import db as database
from zos_cli.store import migrations
from zos_cli.errors import MigrationError, NoDatabase


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


V1 = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
V2 = """
ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'untagged';
CREATE INDEX idx_notes_tag ON notes (tag);
CREATE TRIGGER notes_upper AFTER INSERT ON notes BEGIN
    UPDATE notes SET tag = upper(NEW.tag) WHERE id = NEW.id;
END;
"""


def _tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_fresh_database_gets_every_migration(tmp_path):
    db = database.connect(tmp_path / "a.db", create=True)
    summary = migrations.apply(db, tmp_path / "a.db")
    assert summary["from_version"] == 0
    assert summary["applied"] == [m.label for m in migrations.load()]
    state = migrations.status(db)
    assert state.pending == [] and state.current == state.latest
    row = db.execute("SELECT version, name, length(checksum), applied_at FROM _schema_version").fetchone()
    assert row[:3] == (1, "initial", 64)


def test_rerun_is_a_no_op(tmp_path):
    path = tmp_path / "a.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    before = db.execute("SELECT * FROM _schema_version").fetchall()
    again = migrations.apply(db, path)
    assert again["applied"] == [] and again["backup"] is None
    assert db.execute("SELECT * FROM _schema_version").fetchall() == before


def test_upgrade_keeps_data_and_backs_up(tmp_path):
    path = tmp_path / "a.db"
    folder = _folder(tmp_path, {"0001_notes.sql": V1})
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    db.execute("INSERT INTO notes (body) VALUES ('kept')")
    _folder(tmp_path, {"0002_tags.sql": V2})
    summary = migrations.apply(db, path, folder=folder)
    assert summary["applied"] == ["0002_tags"]
    assert db.execute("SELECT body, tag FROM notes").fetchall() == [("kept", "untagged")]
    backup = Path(summary["backup"])
    assert backup.exists() and not backup.with_name(backup.name + ".tmp").exists()
    with sqlite3.connect(backup) as copy:  # the backup opens and holds the old version's data
        assert copy.execute("SELECT body FROM notes").fetchall() == [("kept",)]
        assert copy.execute("SELECT max(version) FROM _schema_version").fetchone() == (1,)
    assert migrations.list_backups(path) == [backup]


def test_no_backup_flag_and_empty_database_skip_backup(tmp_path):
    path = tmp_path / "a.db"
    folder = _folder(tmp_path, {"0001_notes.sql": V1})
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    _folder(tmp_path, {"0002_tags.sql": V2})
    assert migrations.apply(db, path, folder=folder)["backup"] is None  # no data: nothing to keep
    _folder(tmp_path, {"0003_more.sql": "CREATE TABLE more (x);"})
    db.execute("INSERT INTO notes (body) VALUES ('x')")
    assert migrations.apply(db, path, folder=folder, make_backup=False)["backup"] is None
    assert migrations.list_backups(path) == []


def test_failure_inside_a_migration_rolls_back(tmp_path):
    path = tmp_path / "a.db"
    folder = _folder(tmp_path, {"0001_notes.sql": V1})
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    _folder(tmp_path, {"0002_broken.sql": "CREATE TABLE half (x);\nINSERT INTO nowhere VALUES (1);"})
    with pytest.raises(MigrationError, match="migration 0002_broken failed and was rolled back: "
                                             "no such table: nowhere"):
        migrations.apply(db, path, folder=folder)
    assert "half" not in _tables(db.conn)
    assert migrations.status(db, folder).current == 1


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "a.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    db.execute("INSERT INTO _schema_version VALUES (999, 'future', 'x', '2099')")
    db.close()
    with pytest.raises(MigrationError, match=r"newer than this zos .*: upgrade zos"):
        database.open_database(path)
    with pytest.raises(MigrationError, match="upgrade zos"):
        migrations.apply(database.connect(path), path)
    # `zos status` still opens it (to say so), and its table says so too, not only --json.
    from tests.conftest import Cli

    table = Cli(path)("status").stdout
    assert "999 (newer than this zos, which knows up to 10: upgrade zos)" in table


def test_changed_checksum_is_refused(tmp_path):
    path = tmp_path / "a.db"
    folder = _folder(tmp_path, {"0001_notes.sql": V1})
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    (folder / "0001_notes.sql").write_text(V1 + "\n-- edited")
    with pytest.raises(MigrationError, match="migration 0001_notes was changed after it was applied"):
        migrations.status(db, folder)


def test_pending_migrations_are_refused_by_open_database(tmp_path):
    path = tmp_path / "a.db"
    database.connect(path, create=True).close()  # a file with no schema at all
    with pytest.raises(MigrationError, match=r"has pending migrations \(0001_initial, "
                       r"0002_ledger_topic_id, 0003_llm_call_sources, 0004_ingest_log_channel_id, "
                       r"0005_profile_observed_at, 0006_salience_pending, 0007_analysis, "
                       r"0008_insight_confirmation, 0009_self_concept, 0010_subjects\): "
                       r"run `zos migrate`"):
        database.open_database(path)


def test_missing_database(tmp_path):
    with pytest.raises(NoDatabase, match="run `zos init-db`"):
        database.open_database(tmp_path / "none.db")


def test_split_statements_keeps_trigger_bodies():
    parts = migrations.split_statements(V2 + "\n-- trailing comment\n")
    assert len(parts) == 3 and parts[2].startswith("CREATE TRIGGER") and parts[2].endswith("END;")


def test_python_migration(tmp_path):
    path = tmp_path / "a.db"
    folder = _folder(tmp_path, {"0001_notes.sql": V1})
    (folder / "0002_fill.py").write_text(
        "def upgrade(conn):\n    conn.execute(\"INSERT INTO notes (body) VALUES ('moved')\")\n")
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    assert db.execute("SELECT body FROM notes").fetchall() == [("moved",)]


def _released_checksum_recorded(db, version: int) -> None:
    former, _ = migrations.COMMENT_ONLY_EDITS[version]
    db.execute("UPDATE _schema_version SET checksum = ? WHERE version = ?", [former, version])
    db.conn.commit()


def test_a_database_from_before_a_comment_only_edit_still_opens(tmp_path):
    """0001 and 0006 had their comments edited (citations moved into docs/); databases made
    with the released files recorded the former checksums and must keep opening."""
    path = tmp_path / "a.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    for version in migrations.COMMENT_ONLY_EDITS:
        _released_checksum_recorded(db, version)
    state = migrations.status(db)
    assert not state.pending
    db.close()
    database.open_database(path).close()


def test_a_former_checksum_is_refused_once_the_statements_change(tmp_path):
    path = tmp_path / "a.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    _released_checksum_recorded(db, 1)
    folder = tmp_path / "schema"
    folder.mkdir()
    for m in migrations.load():
        text = m.path.read_text(encoding="utf-8")
        if m.version == 1:
            text = text.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
        (folder / m.path.name).write_text(text, encoding="utf-8")
    with pytest.raises(MigrationError, match="migration 0001_initial was changed after it was applied"):
        migrations.status(db, folder)
