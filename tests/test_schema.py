"""The schema is the contract of docs/database.md#data-model: tables, columns, CHECKs, foreign keys, indexes, FTS."""

from __future__ import annotations

import sqlite3

import pytest

from zos_cli.timeutil import now_stored

T = "2024-03-01T12:00:00.000000+00:00"

CONTRACT = {
    "servers": "id privacy_gate_role focus threads_as_topics chattiness_config",
    "users": "id name display_name is_bot first_dm_acknowledged first_dm_at",
    "user_server_tracking": "user_id server_id",
    "roles": "id server_id name",
    "user_roles": "user_id role_id",
    "channels": "id server_id type parent_id",
    "messages": "id channel_id server_id author_id content created_at edited_at message_type "
    "visibility_scope reactions_aggregate reply_to_id thread_id has_media has_links "
    "ingested_at deleted_at",
    "reactions": "message_id user_id emoji is_custom removed_at",
    "mentions": "message_id user_id",
    "poll_state": "channel_id last_message_id last_message_at last_polled_at",
    "backfill_state": "channel_id oldest_message_id complete",
    "media_analysis": "id message_id",
    "link_analysis": "id message_id",
    "ingest_log": "path size sha256 started_at finished_at messages_new warnings "
    "dm_probable_self_id",
    "message_sources": "message_id first_seen_at last_seen_at",
    "topics": "key category server_id is_global provisional last_activity_at metadata",
    "salience_ledger": "id topic_key transaction_type amount reason source_topic created_at",
    "insights": "id topic_key category content sources_scope_max layer_run_id supersedes "
    "quarantined salience_spent strength_adjustment strength confidence importance novelty "
    "valence_joy valence_concern valence_curiosity valence_warmth valence_tension valence_awe "
    "valence_grief valence_longing valence_peace valence_gratitude context_channel "
    "context_thread subject participants conflicts_with conflict_resolved "
    "synthesis_source_ids open_questions expires_at metadata superseded_by",
    "insight_sources": "insight_id source_type source_id",
    "layer_runs": "id layer_name layer_hash status started_at completed_at as_of targets "
    "tokens_input tokens_output cost_usd error",
    "llm_calls": "id layer_run_id topic_key model_profile model_provider model_name prompt "
    "response tokens_input tokens_output estimated_cost_usd latency_ms status created_at",
    "llm_cache": "cache_key response",
    "consents": "id user_id consent_type granted_at revoked_at server_id note",
    "tombstones": "object_type object_id deleted_at reason",
    "events": "event_type payload created_at",
    "chattiness_ledger": "id",
    "speech_pressure": "id",
    "conversation_log": "id",
    "draft_history": "id",
}

INDEXES = [
    ("messages", ["channel_id", "created_at"]),
    ("messages", ["author_id", "created_at"]),
    ("messages", ["server_id", "created_at"]),
    ("topics", ["category"]),
    ("salience_ledger", ["topic_id", "created_at"]),  # 0002: by the integer topic id
    ("insights", ["topic_key", "created_at"]),
    ("insights", ["category", "created_at"]),
    ("insights", ["expires_at"]),
    ("insights", ["quarantined"]),
    ("insights", ["layer_run_id"]),
    ("insights", ["superseded_by"]),  # 0012: what a reconciliation retired an insight for
    ("insight_sources", ["source_id"]),
    ("layer_runs", ["layer_name", "started_at"]),
    ("llm_calls", ["layer_run_id"]),
    ("llm_calls", ["created_at"]),
    ("llm_calls", ["model_profile"]),
]


@pytest.mark.parametrize("table", sorted(CONTRACT))
def test_table_has_contract_columns(db, table):
    assert db[table].exists(), table
    columns = {c.name for c in db[table].columns}
    missing = set(CONTRACT[table].split()) - columns
    assert not missing, f"{table} lacks {missing}"


def test_views_exist(db):
    assert set(db.view_names()) >= {"topic_salience", "active_insights"}
    assert [c.name for c in db["topic_salience"].columns] == [
        "topic_key", "balance", "last_activity_at"]


@pytest.mark.parametrize("table,columns", INDEXES)
def test_listed_indexes_exist(db, table, columns):
    assert columns in [idx.columns for idx in db[table].indexes], (table, columns)


def _world(db):
    db.execute("INSERT INTO servers (id, name, created_at, updated_at) VALUES ('1','s',?,?)", [T, T])
    db.execute("INSERT INTO users (id, name) VALUES ('10','ann')")
    db.execute("INSERT INTO channels (id, server_id, type, updated_at) VALUES ('100','1','text',?)", [T])
    db.execute(
        "INSERT INTO messages (id, channel_id, server_id, author_id, created_at, message_type, "
        "visibility_scope, ingested_at) VALUES ('1000','100','1','10',?,'Default','public',?)", [T, T])
    db.execute("INSERT INTO topics (key, category, budget_group, server_id, is_global, created_at) "
               "VALUES ('server:1:user:10','users','social','1',0,?)", [T])
    db.execute("INSERT INTO layer_runs (id, layer_name, layer_hash, status, started_at, as_of) "
               "VALUES ('R1','user','h','running',?,?)", [T, T])


def _insight(**over):
    row = dict(id="I1", topic_key="server:1:user:10", category="user_reflection", content="c",
               sources_scope_max="public", confidence=0.5, importance=0.5, novelty=0.5,
               valence_joy=0.5, created_at=T)
    row.update(over)
    return row


BAD_ROWS = [
    ("servers", dict(id="2", threads_as_topics=2, created_at=T, updated_at=T)),
    ("users", dict(id="11", is_bot=5)),
    ("channels", dict(id="101", server_id="1", type="chatroom", updated_at=T)),
    ("channels", dict(id="102", server_id=None, type="text", updated_at=T)),  # guild channel needs a server
    ("messages", dict(id="1001", channel_id="100", server_id="1", author_id="10", created_at=T,
                      message_type="Default", visibility_scope="secret", ingested_at=T)),
    ("messages", dict(id="1002", channel_id="100", server_id="1", author_id="10", created_at=T,
                      message_type="Default", visibility_scope="public", has_media=3, ingested_at=T)),
    ("reactions", dict(message_id="1000", user_id="10", emoji="x", emoji_id="", is_custom=1)),
    ("topics", dict(key="k", category="people", budget_group="social", server_id="1",
                    is_global=0, created_at=T)),
    ("topics", dict(key="k2", category="users", budget_group="cosmic", server_id="1",
                    is_global=0, created_at=T)),
    ("salience_ledger", dict(id="L1", topic_key="server:1:user:10", transaction_type="gift",
                             amount=1.0, created_at=T)),
    ("layer_runs", dict(id="R2", layer_name="user", layer_hash="h", status="sleeping",
                        started_at=T, as_of=T)),
    ("insights", _insight(sources_scope_max="secret")),
    ("insights", _insight(confidence=1.5)),
    ("insights", _insight(strength_adjustment=20)),
    ("insights", _insight(valence_joy=None)),   # the "at least one valence" CHECK
    ("insights", _insight(quarantined=7)),
    ("insight_sources", dict(insight_id="I0", source_type="rumour", source_id="x")),
    ("llm_calls", dict(id="C1", status="great", created_at=T)),
    ("consents", dict(id="K1", user_id="10", consent_type="spy", granted_at=T)),
    ("tombstones", dict(id="X1", object_type="feeling", object_id="1", deleted_at=T, reason="r")),
    ("backfill_state", dict(channel_id="100", complete=3)),
]


@pytest.mark.parametrize("table,row", BAD_ROWS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(BAD_ROWS)])
def test_check_constraints_reject_bad_rows(db, table, row):
    _world(db)
    if table == "insight_sources":
        db["insights"].insert(_insight(id="I0"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        db[table].insert(row)


BAD_REFERENCES = [
    ("messages", dict(id="1003", channel_id="999", server_id="1", author_id="10", created_at=T,
                      message_type="Default", visibility_scope="public", ingested_at=T)),
    ("messages", dict(id="1004", channel_id="100", server_id="1", author_id="999", created_at=T,
                      message_type="Default", visibility_scope="public", ingested_at=T)),
    ("reactions", dict(message_id="999", user_id="10", emoji="x", is_custom=0)),
    ("mentions", dict(message_id="1000", user_id="999")),
    ("salience_ledger", dict(id="L2", topic_key="nope", transaction_type="earn", amount=1, created_at=T)),
    ("insights", _insight(topic_key="nope")),
    ("insights", _insight(layer_run_id="nope")),
    ("insight_sources", dict(insight_id="nope", source_type="message", source_id="1000")),
    ("user_roles", dict(user_id="10", role_id="nope", server_id="1", seen_at=T)),
    ("poll_state", dict(channel_id="nope")),
]


@pytest.mark.parametrize("table,row", BAD_REFERENCES,
                         ids=[f"{t}-{i}" for i, (t, _) in enumerate(BAD_REFERENCES)])
def test_foreign_keys_reject_dangling_rows(db, table, row):
    _world(db)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        db[table].insert(row)


def test_good_rows_are_accepted(db):
    _world(db)
    db["insights"].insert(_insight(layer_run_id="R1"))
    db["salience_ledger"].insert(dict(id="L3", topic_key="server:1:user:10",
                                      transaction_type="earn", amount=2.5, created_at=T))
    assert db.execute("SELECT balance FROM topic_salience").fetchone()[0] == 2.5
    assert db.execute("SELECT count(*) FROM active_insights").fetchone()[0] == 1


def _fts(db, term):
    return [r[0] for r in db.execute(
        "SELECT insight_id FROM insights_fts WHERE insights_fts MATCH ?", [term])]


def test_fts_follows_insert_update_delete(db):
    _world(db)
    db["insights"].insert(_insight(content="loves sourdough baking"))
    assert _fts(db, "sourdough") == ["I1"]
    db.execute("UPDATE insights SET content = 'prefers rye' WHERE id = 'I1'")
    assert _fts(db, "sourdough") == []
    assert _fts(db, "rye") == ["I1"]
    db.execute("DELETE FROM insights WHERE id = 'I1'")
    assert _fts(db, "rye") == []


def test_pragmas(db):
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_times_sort_as_strings():
    assert now_stored().endswith("+00:00")
    assert len(now_stored()) == len(T)


def test_migration_0007_keeps_call_sources_and_widens_their_kinds(tmp_path):
    """0007 makes llm_call_sources again to accept 'media' and 'link': the rows recorded
    before it survive, and an unknown kind is still refused."""
    import sqlite3

    from zos_cli.store import db as database
    from zos_cli.store import migrations

    path = tmp_path / "a.db"
    db = database.connect(path, create=True)
    folder = tmp_path / "schema"
    folder.mkdir()
    for m in migrations.load():
        if m.version < 7:
            (folder / m.path.name).write_bytes(m.path.read_bytes())
    migrations.apply(db, path, folder=folder)
    db.execute("INSERT INTO llm_calls (id, prompt, status, created_at) VALUES ('c1', 'p', 'ok', 't')")
    db.execute("INSERT INTO llm_call_sources VALUES ('c1', 'message', 'm1')")
    db.conn.commit()
    migrations.apply(db, path)
    assert db.execute("SELECT * FROM llm_call_sources").fetchall() == [("c1", "message", "m1")]
    db.execute("INSERT INTO llm_call_sources VALUES ('c1', 'media', 'x')")
    db.execute("INSERT INTO llm_call_sources VALUES ('c1', 'link', 'y')")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO llm_call_sources VALUES ('c1', 'table', 'z')")
    columns = {r[1] for r in db.execute("PRAGMA table_info(media_analysis)")}
    assert {"status", "skip_reason", "local_path", "sha256", "width", "height",
            "duration_seconds", "analyzer", "attempts", "error"} <= columns
    columns = {r[1] for r in db.execute("PRAGMA table_info(link_analysis)")}
    assert {"normalized_url", "status", "skip_reason", "http_status", "attempts", "description",
            "content_type", "analyzer", "fetched_at", "error"} <= columns
