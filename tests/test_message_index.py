"""messages_fts, the full-text index of messages (docs/subjects.md#the-message-index): keyed by
snowflake so VACUUM keeps it, following edits and deletions, holding a DM only while its consent
holds, and leaving no byte of a removed text behind (canaries through grant, revoke, forget and
erase, checked in the raw bytes as the forget tests do)."""

from __future__ import annotations

import sqlite3

from tests.conftest import Cli
from tests.conftest import scan_files as scan
from tests.exports import Export, dm_export, message, snowflake, user
from tests.reflect_world import DM_CHANNEL, GUILD, SELF_ID, build_world, config_for
from zos_cli.ingest.run import ingest_exports
from zos_cli.observe.rows import mark_deleted
from zos_cli.privacy.message_index import match_expression
from zos_cli.store import db as database
from zos_cli.store import migrations

# One token (the tokenizer folds case), starting with letters no other word of these tests
# starts with: an FTS5 leaf stores a term after the prefix it shares with the previous term,
# so the scan looks for the part after the first letter, which every stored copy holds.
DM_CANARY = "Qzxvdmcanary"
PUBLIC_CANARY = "Qzxvpubcanary"
NOTHING = {"db": 0, "-wal": 0, "-shm": 0}
INDEX_TABLES = {"messages_fts_data": "block", "messages_fts_idx": "term",
                "messages_fts_content": "c0", "messages_fts_docsize": "sz",
                "messages_fts_config": "v"}


def needle(canary: str) -> str:
    return canary[1:].lower()


def matches(db, query: str) -> list[str]:
    """The message ids the index finds for an FTS5 query."""
    return [r[0] for r in db.execute(
        "SELECT m.id FROM messages_fts f JOIN messages m ON m.id = CAST(f.rowid AS TEXT) "
        "WHERE messages_fts MATCH ? ORDER BY f.rowid", [query])]


def index_bytes(db) -> bytes:
    """Every byte the index's own tables hold (the messages table is not the index)."""
    out = b""
    for table, column in INDEX_TABLES.items():
        for (value,) in db.execute(f"SELECT {column} FROM {table}"):
            out += value if isinstance(value, bytes) else str(value).encode()
    return out


def dm_world(db, tmp_path, texts):
    return build_world(db, tmp_path, users=3, messages_each=2, dm_with="bob", dm_texts=texts,
                       texts={"carol": f"{PUBLIC_CANARY} carol writes about glazes"})


def test_rows_are_keyed_by_snowflake_and_a_vacuum_keeps_them(db, db_path, tmp_path):
    world = build_world(db, tmp_path, users=3, messages_each=3)
    indexed = [str(r[0]) for r in db.execute("SELECT rowid FROM messages_fts ORDER BY rowid")]
    assert indexed == sorted(world.message_ids, key=int)
    found = matches(db, '"kilns"')
    # A table keyed by TEXT gets its rows renumbered by VACUUM once rows were deleted in the
    # middle: the index keeps its own key, the snowflake, so it still finds the same messages.
    with database.write_transaction(db):
        db.execute("DELETE FROM messages WHERE id = ?", [world.message_ids[1]])
    db.execute("VACUUM")
    assert matches(db, '"kilns"') == [m for m in found if m != world.message_ids[1]]
    assert db.execute("SELECT count(*) FROM messages_fts").fetchone()[0] == len(found) - 1


def test_an_edit_replaces_the_text_and_a_deletion_takes_it_out(db, tmp_path):
    alice, bob = user("101", "alice"), user("102", "bob")
    first, second = snowflake(1), snowflake(2)
    old = Export(exported_at="2024-03-02T00:00:00+00:00", messages=[
        message(first, alice, "the bisque firing went well"),
        message(second, bob, "my stoneware cracked")])
    ingest_exports(db, config_for(), [str(old.write(tmp_path / "old.json"))])
    assert matches(db, '"bisque"') == [first]
    new = Export(exported_at="2024-03-09T00:00:00+00:00", messages=[
        message(first, alice, "the raku firing went well", edited="2024-03-01T12:05:00+00:00"),
        message(second, bob, "my stoneware cracked")])
    ingest_exports(db, config_for(), [str(new.write(tmp_path / "new.json"))])
    assert matches(db, '"bisque"') == [] and matches(db, '"raku"') == [first]
    with database.write_transaction(db):
        assert mark_deleted(db, [second], "2024-03-10T00:00:00.000000+00:00") == 1
    assert matches(db, '"stoneware"') == []
    # A later observation of the deleted message does not put it back.
    again = Export(exported_at="2024-03-11T00:00:00+00:00", messages=[
        message(second, bob, "my stoneware cracked twice", edited="2024-03-01T12:09:00+00:00")])
    ingest_exports(db, config_for(), [str(again.write(tmp_path / "again.json"))])
    assert matches(db, '"stoneware"') == []


def test_a_dm_is_indexed_while_consent_holds_and_revoke_takes_every_byte_out(
        db, db_path, tmp_path):
    world = dm_world(db, tmp_path, (f"{DM_CANARY} about my kiln", "noted",
                                    f"a second {DM_CANARY} line"))
    cli = Cli(db_path)
    dm_ids = world.dm_message_ids
    assert matches(db, DM_CANARY.lower()) == [dm_ids[0], dm_ids[2]]
    assert needle(DM_CANARY).encode() in index_bytes(db)   # negative control: the scan sees it

    r = cli("consent", "revoke", "bob", "--json")
    assert r.exit_code == 0, r.stderr
    assert matches(db, DM_CANARY.lower()) == [] and matches(db, '"noted"') == []
    assert needle(DM_CANARY).encode() not in index_bytes(db)
    # The messages stay stored (revoke is not forget), and public ones stay found.
    assert db.execute("SELECT count(*) FROM messages WHERE channel_id = ?",
                      [DM_CHANNEL]).fetchone()[0] == 3
    assert matches(db, PUBLIC_CANARY.lower()) != []

    r = cli("consent", "grant", "bob", "--json")
    assert r.exit_code == 0, r.stderr
    assert matches(db, DM_CANARY.lower()) == [dm_ids[0], dm_ids[2]]
    assert matches(db, '"noted"') == [dm_ids[1]]


def test_forget_leaves_no_byte_of_a_dm_in_the_index_or_the_file(db, db_path, tmp_path):
    dm_world(db, tmp_path, (f"{DM_CANARY} about my kiln", "noted"))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert scan(db_path, needle(DM_CANARY))["db"] >= 2   # the content copy and the term
    r = Cli(db_path)("consent", "revoke", "bob", "--forget", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert matches(db, DM_CANARY.lower()) == []
    assert scan(db_path, needle(DM_CANARY)) == NOTHING
    assert matches(db, PUBLIC_CANARY.lower()) != []


def test_forget_after_a_revoke_leaves_no_byte_either(db, db_path, tmp_path):
    dm_world(db, tmp_path, (f"{DM_CANARY} about my kiln", "noted"))
    cli = Cli(db_path)
    assert cli("consent", "revoke", "bob").exit_code == 0
    r = cli("consent", "revoke", "bob", "--forget", "--yes")
    assert r.exit_code == 0, r.stderr
    assert scan(db_path, needle(DM_CANARY)) == NOTHING


def test_erase_leaves_no_byte_of_the_users_messages_or_dms(db, db_path, tmp_path):
    dm_world(db, tmp_path, (f"{DM_CANARY} about my kiln", "noted"))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert scan(db_path, needle(PUBLIC_CANARY))["db"] >= 2
    r = Cli(db_path)("consent", "erase", "carol", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert matches(db, PUBLIC_CANARY.lower()) == []
    assert scan(db_path, needle(PUBLIC_CANARY)) == NOTHING
    r = Cli(db_path)("consent", "erase", "bob", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert scan(db_path, needle(DM_CANARY)) == NOTHING
    assert matches(db, '"writes"') == []        # carol's words, gone with her
    assert matches(db, '"alice talks"') != []   # the others' stay


def test_the_migration_indexes_what_may_be_used(tmp_path):
    """A database at schema 9 with public messages, a consented DM (its participant list
    naming zos, whose id zos_state knows), a DM whose consent was revoked, a group DM one of
    whose people never consented, a deleted message and an empty one: 0010 indexes the public
    and the consented only. (The rows are written as SQL: this code's writer keeps the index
    of schema 10.)"""
    path = tmp_path / "old.db"
    db = database.connect(path, create=True)
    folder = tmp_path / "schema9"
    folder.mkdir()
    for migration in migrations.load()[:9]:
        (folder / migration.path.name).write_bytes(migration.path.read_bytes())
    migrations.apply(db, path, folder=folder)
    at = "2024-03-01T12:00:00.000000+00:00"
    with database.write_transaction(db):
        db.execute("INSERT INTO servers (id, name, created_at, updated_at) VALUES (?, 'g', ?, ?)",
                   [GUILD, at, at])
        for uid in ("101", "102", "103", "104", SELF_ID):
            db.execute("INSERT INTO users (id, name) VALUES (?, ?)", [uid, f"u{uid}"])
        channels = [("2001", GUILD, "text", None), ("3001", None, "dm", f'["102", "{SELF_ID}"]'),
                    ("3002", None, "dm", '["103"]'), ("3003", None, "group_dm", '["102", "104"]')]
        for cid, server, kind, people in channels:
            db.execute("INSERT INTO channels (id, server_id, type, participant_ids, updated_at) "
                       "VALUES (?, ?, ?, ?, ?)", [cid, server, kind, people, at])
        messages = [
            (snowflake(1), "2001", GUILD, "101", "kilns everywhere", None),
            (snowflake(2), "2001", GUILD, "101", "", None),
            (snowflake(3), "2001", GUILD, "103", "a deleted kiln", at),
            (snowflake(4), "3001", None, "102", "bob's kiln in a dm", None),
            (snowflake(5), "3001", None, SELF_ID, "zos answers", None),
            (snowflake(6), "3002", None, "103", "carol's kiln in a dm", None),
            (snowflake(7), "3003", None, "102", "a group kiln", None),
        ]
        for mid, cid, server, author, text, deleted in messages:
            db.execute(
                "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at, "
                "message_type, visibility_scope, ingested_at, deleted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'Default', ?, ?, ?)",
                [mid, cid, server, author, text, at, "public" if server else "dm", at, deleted])
        for cid, who, revoked in (("c2", "102", None), ("c3", "103", at)):
            db.execute("INSERT INTO consents (id, user_id, consent_type, granted_at, revoked_at) "
                       "VALUES (?, ?, 'dm_read', ?, ?)", [cid, who, at, revoked])
        db.execute("INSERT INTO zos_state (key, value, updated_at) VALUES "
                   "('discord.self_user_id', ?, ?)", [SELF_ID, at])

    migrations.apply(db, path)
    assert [str(r[0]) for r in db.execute("SELECT rowid FROM messages_fts ORDER BY rowid")] == [
        snowflake(1), snowflake(4), snowflake(5)]
    assert matches(db, '"kiln" OR "kilns"') == [snowflake(1), snowflake(4)]
    db.close()


def test_match_expressions_quote_every_phrase():
    assert match_expression(["board_games", "Glaze", 'say "no"', "!!", "glaze"]) == (
        '"board games" OR "Glaze" OR "say ""no"""')
    assert match_expression(["", "—"]) is None
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(content)")
    conn.execute("INSERT INTO t VALUES ('they said no to board games')")
    hostile = match_expression(['NEAR(a b)', 'x" OR content:*', "board games"])
    # (nothing of the phrases is read as query syntax: only "board games" matches)
    assert conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", [hostile]).fetchone() == (1,)
