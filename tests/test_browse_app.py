"""`zos browse`'s app in-process (the same Datasette app the command serves): the connection
cannot write, messages_fts is used when the store has it, the scope is in the SQL, and the
labels of every kind of topic."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3

import pytest

from tests.browse_world import DM_CANARY, make_store
from tests.reflect_world import GATE_ROLE, GUILD, SELF_ID
from zos_cli.browse.labels import Aliases, BrowseLabels
from zos_cli.config import Config

GUILD_NAME = "Test Guild"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("browse-app"))


def _app(store, scope="public"):
    from zos_cli.browse.serve import BrowseOptions, build

    config = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                    "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    return build(store.db_path, BrowseOptions(scope=scope), config=config,
                 self_user_id=SELF_ID)


def test_the_served_connection_cannot_write(store):
    ds = _app(store)
    database = ds.get_database("zos")
    before = sqlite3.connect(store.db_path).execute("SELECT count(*) FROM messages").fetchone()

    async def attempts():
        errors = []
        for write in ("DELETE FROM messages", "CREATE TABLE t (x)",
                      "INSERT INTO zos_state (key, value, updated_at) VALUES ('k', 'v', 'now')"):
            try:
                await database.execute_fn(lambda conn, w=write: conn.execute(w))
            except sqlite3.OperationalError as exc:
                errors.append(str(exc))
        try:
            await database.execute_write("DELETE FROM messages")
        except sqlite3.OperationalError as exc:
            errors.append(str(exc))
        return errors

    errors = asyncio.run(attempts())
    assert len(errors) == 4 and all("readonly" in e or "read-only" in e for e in errors)
    after = sqlite3.connect(store.db_path).execute("SELECT count(*) FROM messages").fetchone()
    assert before == after


def test_messages_fts_is_used_when_the_store_has_it(tmp_path, store):
    """The subjects work adds messages_fts (rowid = the message id); search then ranks by it,
    within scope all the same."""
    copy = tmp_path / "fts.db"
    source = sqlite3.connect(store.db_path)
    source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    source.close()
    shutil.copy(store.db_path, copy)
    conn = sqlite3.connect(copy)
    conn.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(content)")
    conn.execute("INSERT INTO messages_fts (rowid, content) "
                 "SELECT CAST(id AS INTEGER), content FROM messages")
    conn.commit()
    conn.close()
    fts_store = type(store)(copy, store.config_path, store.ids, store.dm_insight,
                            store.public_insight)

    async def search(ds, q):
        response = await ds.client.get(f"/zos/search_messages.json?_shape=array&q={q}")
        assert response.status_code == 200, response.text
        return response.json()

    public = _app(fts_store)
    assert "messages_fts MATCH" in public.metadata("queries", database="zos")[
        "search_messages"]["sql"]
    assert asyncio.run(search(public, "recipe")) == []
    assert len(asyncio.run(search(public, "glazes"))) > 0
    dm = _app(fts_store, "dm")
    assert [r["message"] for r in asyncio.run(search(dm, "recipe"))] == [
        f"{DM_CANARY} my glaze recipe is a secret"]


def test_the_scope_is_written_into_the_sql(store):
    def sql(scope):
        return _app(store, scope).metadata("queries", database="zos")["person_insights"]["sql"]

    assert "IN ('public') AND i.quarantined = 0" in sql("public")
    assert "IN ('public', 'dm') AND i.quarantined = 0" in sql("dm")
    assert "IN ('public', 'dm', 'derived') AND i.quarantined = 0" in sql("derived")


def test_labels_of_every_kind(store):
    config = Config.model_validate({"servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    conn = sqlite3.connect(store.db_path)
    labels = BrowseLabels(conn, config, Aliases(), SELF_ID)
    a, b, d = store.ids["alice"], store.ids["bob"], store.ids["dave"]
    expected = {
        f"server:{GUILD}:user:{a}": f"Alice ({GUILD_NAME})",
        f"server:{GUILD}:channel:2001": f"#general ({GUILD_NAME})",
        f"server:{GUILD}:dyad:{a}:{b}": f"Alice ↔ Bob ({GUILD_NAME})",
        f"server:{GUILD}:user_in_channel:2001:{a}": "Alice in #general",
        f"server:{GUILD}:dyad_in_channel:2001:{a}:{b}": "Alice ↔ Bob in #general",
        f"server:{GUILD}:emoji:5001": ":party:",
        f"server:{GUILD}:subject:kiln": f"subject kiln ({GUILD_NAME})",
        f"user:{a}": "Alice (everywhere)",
        f"server:{GUILD}:user:{d}": f"<chat_1> ({GUILD_NAME})",
        f"user:{d}": "<chat_1> (everywhere)",
        f"server:{GUILD}:user:777777": f"<chat_2> ({GUILD_NAME})",   # erased: no users row
        "self:zos": "zos (everywhere)",
        "not a key": "not a key",
    }
    assert labels.topic_labels(expected) == expected
    assert labels.user(SELF_ID, GUILD) == "zos"
    assert labels.channel("3001") == "direct messages"
    conn.close()
