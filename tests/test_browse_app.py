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
from zos_cli.browse.labels import BrowseLabels, ServeLabels
from zos_cli.config import Config

GUILD_NAME = "Test Guild"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("browse-app"))


def _app(store, scope="public"):
    from zos_cli.browse.serve import BrowseOptions, build

    config = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                    "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    return build(store.db_path, BrowseOptions(scope=scope), config=config)


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


def test_message_search_ranks_by_messages_fts_within_scope(store):
    """Search uses the message index (rowid = the message id), within scope all the same."""
    fts_store = store

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


def _copy(store, folder):
    """A copy of the store's file (its WAL checkpointed first)."""
    source = sqlite3.connect(store.db_path)
    source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    source.close()
    copy = folder / "copy.db"
    shutil.copy(store.db_path, copy)
    return copy


def test_names_come_from_the_label_library_through_one_labeler(tmp_path, store):
    from zos_cli.browse.serve import read_only
    from zos_cli.labels import topic_labels
    from zos_cli.privacy.purge import erase_user
    from zos_cli.store import db as database

    copy = _copy(store, tmp_path)
    config = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                    "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    shared = ServeLabels(read_only(copy), config)
    one = BrowseLabels(read_only(copy), shared)
    two = BrowseLabels(read_only(copy), shared)   # (another of Datasette's threads)
    a, b, c, d = (store.ids[n] for n in ("alice", "bob", "carol", "dave"))
    named = [f"server:{GUILD}:user:{a}", f"server:{GUILD}:dyad:{a}:{b}", f"user:{b}",
             f"server:{GUILD}:user_in_channel:2001:{a}", f"server:{GUILD}:emoji:5001"]
    plain = database.open_database(copy)
    assert one.topic_labels(named) == topic_labels(plain, named, config=config)
    assert one.topic(named[0]) == f"Alice ({GUILD_NAME})"
    # Dave lacks the gate role: the same <chat_N> whichever connection asks.
    assert one.user(d, GUILD) == "<chat_1>" == two.user(d, None)
    assert two.topic(f"server:{GUILD}:dyad:{a}:{d}") == f"Alice ↔ <chat_1> ({GUILD_NAME})"
    assert one.hidden(d) and not one.hidden(a)
    assert (one.user(a, GUILD), one.user(b, None), one.user(SELF_ID, GUILD)) == ("Alice", "Bob",
                                                                              "zos")
    assert (one.channel("2001", GUILD), one.channel("3001", None)) == ("#general",
                                                                       "direct messages")
    # A mention of him, as markup or as exports write it (@Name), is <chat_1> too.
    message_id = plain.execute("SELECT id FROM messages WHERE author_id = ? LIMIT 1",
                               [a]).fetchone()[0]
    plain.execute("INSERT INTO mentions (message_id, user_id) VALUES (?, ?)", [message_id, d])
    assert one.readable(f"thanks @Dave and <@{d}> in <#2001>", GUILD, message_id) == (
        "thanks @<chat_1> and @<chat_1> in #general")
    # An erased user is <chat_N> once the store says so (a new Labeler after the change).
    erase_user(plain, c)
    plain.close()
    assert one.hidden(c) and one.user(c, GUILD).startswith("<chat_")
    assert "Carol" not in one.topic(f"server:{GUILD}:dyad:{b}:{c}")
