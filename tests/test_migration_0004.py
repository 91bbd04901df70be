"""Schema 0004: ingest_log rows name their channel; older DM rows get it from the file name."""

from __future__ import annotations

import shutil

from zos_cli.store import db as database
from zos_cli.store import migrations

T = "2024-03-01T12:00:00.000000+00:00"


def test_old_dm_rows_get_their_channel_from_the_file_name(tmp_path):
    folder = tmp_path / "v3"
    folder.mkdir()
    for name in ("0001_initial.sql", "0002_ledger_topic_id.sql", "0003_llm_call_sources.sql"):
        shutil.copy(migrations.schema_dir() / name, folder)
    path = tmp_path / "zos.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path, folder=folder)
    rows = [("a", "exports/Direct Messages - priya_k [1180554999988877766].json", '["733"]'),
            ("b", "exports/renamed-dm.json", '["733"]'),
            ("c", "exports/Guild - general [1093876544121149511].json", None)]
    with database.write_transaction(db):
        for row_id, file, participants in rows:
            db.execute("INSERT INTO ingest_log (id, kind, path, status, dm_participant_ids, "
                       "started_at) VALUES (?, 'export', ?, 'completed', ?, ?)",
                       [row_id, file, participants, T])
    assert migrations.apply(db, path)["applied"] == ["0004_ingest_log_channel_id",
                                                     "0005_profile_observed_at",
                                                     "0006_salience_pending",
                                                     "0007_analysis",
                                                     "0008_insight_confirmation", "0009_self_concept",
                                                     "0010_subjects"]
    assert db.execute("SELECT id, channel_id FROM ingest_log ORDER BY id").fetchall() == [
        ("a", "1180554999988877766"), ("b", None), ("c", None)]
