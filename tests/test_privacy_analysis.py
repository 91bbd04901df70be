"""Forget and erase take what `zos analyze` read with the messages it read it from: canaries in
an image's description, a page's title, summary and meta description, and the model calls that
produced them (tied by llm_call_sources) and the reflections that quoted them, checked byte by
byte in the database files. The analysis columns are filled with SQL here, standing in for
`zos analyze`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli
from tests.conftest import scan_files as scan
from tests.exports import Export, attachment, dm_export, message, role, snowflake, user
from tests.fake_openai import FakeOpenAI, echo_reply
from tests.reflect_world import SELF_ID
from zos_cli.config import Config
from zos_cli.ingest.run import ingest_exports
from zos_cli.privacy import consent
from zos_cli.reflect.run import RunOptions, run_layer
from zos_cli.store import db as database

CANARY = "QZXV-analysis-canary"
NOTHING = {"db": 0, "-wal": 0, "-shm": 0}
MEMBER = role("7001", "member")
ALICE = user("101", "alice", roles=[MEMBER])
BOB = user("55", "bob", roles=[MEMBER])
CAROL = user("66", "carol", roles=[MEMBER])
ZOS = user(SELF_ID, "zos", bot=True)


def model_config(server=None) -> Config:
    doc: dict = {"discord": {"self_user_id": SELF_ID},
                 "reflection": {"retry_backoff_seconds": 0.01}}
    if server is not None:
        doc["models"] = {"reflection": {"model": "openai/fake-model",
                                        "api_base": server.base_url, "max_tokens": 400}}
    return Config.model_validate(doc)


@pytest.fixture
def model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI(default=echo_reply) as fake:
        yield fake


def ingest(db, folder, *exports: tuple[str, Export]) -> None:
    paths = [str(export.write(folder / name)) for name, export in exports]
    summary = ingest_exports(db, model_config(), paths)
    assert not summary["errors"] and summary["messages_new"], summary


def public_world(db, folder) -> None:
    """#general: alice shares a public page; carol (for erase) a photo and a page."""
    general = Export()
    general.add(message(snowflake(1), ALICE, "glaze notes https://glaze.example/wiki"))
    general.add(message(snowflake(2), CAROL, "my studio", attachments=[
        attachment("41", "studio.png")]))
    general.add(message(snowflake(3), CAROL, "my diary https://carol.example/diary"))
    general.add(message(snowflake(4), ALICE, "nice studio"))
    ingest(db, folder, ("general.json", general))
    fill_link(db, "https://glaze.example/wiki", "Glaze wiki", "Public glaze recipes.")


def dm_world(db, folder, user_: dict = BOB, channel: str = "3001", start: int = 10,
             image: str = "secret-kiln.png", url: str = "https://private.example/diary"
             ) -> list[str]:
    consent.grant(db, user_["id"])
    dm = dm_export(channel, user_["name"])
    name = user_["name"]  # (each DM's own words: forget also searches prompts for them)
    ids = [dm.add(message(snowflake(start), user_, f"{name}'s kiln plans", attachments=[
               attachment(str(start * 10), image)]))["id"],
           dm.add(message(snowflake(start + 1), user_, f"{name} reads {url}"))["id"],
           dm.add(message(snowflake(start + 2), ZOS, f"thanks for sharing, {name}"))["id"]]
    ingest(db, folder, (f"dm-{channel}.json", dm))
    return ids


def fill_media(db, message_id: str, description: str, sha256: str = "ab" * 32) -> str:
    db.execute("UPDATE media_analysis SET status = 'ok', content_type = 'image/png', "
               "width = 640, height = 480, sha256 = ?, description = ?, "
               "analyzer = 'openai/fake-vision' WHERE message_id = ?",
               [sha256, description, message_id])
    return db.execute("SELECT id FROM media_analysis WHERE message_id = ?",
                      [message_id]).fetchone()[0]


def fill_link(db, url: str, title: str, summary: str, meta: str | None = None) -> list[str]:
    db.execute("UPDATE link_analysis SET status = 'ok', normalized_url = url, title = ?, "
               "summary = ?, description = ?, analyzer = 'offline' WHERE url = ?",
               [title, summary, meta, url])
    return [r[0] for r in db.execute("SELECT id FROM link_analysis WHERE url = ?", [url])]


def analysis_call(db, call_id: str, source_type: str, source_ids: list[str], *, prompt: str,
                  response: str | None, error: str | None = None, status: str = "ok") -> None:
    """A model call of `zos analyze`, as the seam records it (no run, no topic)."""
    db.execute("INSERT INTO llm_calls (id, model_profile, model_provider, model_name, prompt, "
               "response, status, error, created_at) VALUES (?, 'vision', 'openai', "
               "'fake-vision', ?, ?, ?, ?, '2024-03-09T00:00:00Z')",
               [call_id, prompt, response, status, error])
    for source_id in source_ids:
        db.execute("INSERT INTO llm_call_sources (call_id, source_type, source_id) "
                   "VALUES (?, ?, ?)", [call_id, source_type, source_id])
    if response:
        db.execute("INSERT INTO llm_cache (cache_key, model_name, response, created_at) "
                   "VALUES (?, 'fake-vision', ?, '2024-03-09T00:00:00Z')",
                   [f"key-{call_id}", response])


def analysed_dm(db, folder, canary: str = CANARY, **kw) -> dict[str, str]:
    """A DM whose image and link were analysed (with `canary` in every text), the calls that
    did it, and returns their ids."""
    image_msg, link_msg, _ = dm_world(db, folder, **kw)
    media_id = fill_media(db, image_msg, f"A sketch of a kiln labelled {canary}-image.")
    url = kw.get("url", "https://private.example/diary")
    [link_id] = fill_link(db, url, f"{canary}-title", f"A diary page about {canary}-summary.",
                          meta=f"{canary}-meta")
    analysis_call(db, f"call-image-{media_id}", "media", [media_id],
                  prompt=json.dumps([{"type": "text", "text": "Describe this image."},
                                     {"type": "image_url", "image_url": {
                                         "url": "data:image/png;base64,iVBORw0KGgo="}}]),
                  response=json.dumps({"description": f"A sketch of a kiln labelled "
                                                      f"{canary}-image."}))
    analysis_call(db, f"call-link-{link_id}", "link", [link_id],
                  prompt=f"BEGIN DATA\n{canary}-title\n{canary}-page text\nEND DATA",
                  response=json.dumps({"summary": f"A diary page about {canary}-summary."}))
    analysis_call(db, f"call-failed-{link_id}", "link", [link_id],
                  prompt=f"BEGIN DATA\n{canary}-page text\nEND DATA", response=None,
                  status="error", error=f"400: the input {canary}-page text was refused")
    return {"media": media_id, "link": link_id, "image_message": image_msg}


def test_forget_leaves_no_byte_of_what_was_read_from_a_dm(db, db_path, tmp_path, model):
    public_world(db, tmp_path)
    analysed_dm(db, tmp_path)
    # A reflection that quoted the description and the page (echoed into its insight).
    summary = run_layer(db, model_config(model), RunOptions(layer="user", topic="user:55"))
    assert summary["status"] == "completed", summary
    sent = model.requests[0].body["messages"][-1]["content"]
    assert f"[image: \"A sketch of a kiln labelled {CANARY}-image.\"]" in sent
    assert f"[link: \"{CANARY}-title — A diary page about {CANARY}-summary.\"]" in sent
    assert CANARY in db.execute("SELECT content FROM insights").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert scan(db_path, CANARY)["db"] > 0   # negative control: the scan finds them

    r = Cli(db_path)("consent", "revoke", "bob", "--forget", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    purge = json.loads(r.stdout)["purge"]
    assert purge["messages"] == 3 and purge["analyses"] == 2 and purge["insights"] == 1
    assert purge["llm_calls_scrubbed"] == 4          # three analysis calls, one reflection
    assert scan(db_path, CANARY) == NOTHING
    # Public life goes on: alice's page keeps what was read of it.
    assert db.execute("SELECT title FROM link_analysis WHERE url = ?",
                      ["https://glaze.example/wiki"]).fetchone() == ("Glaze wiki",)
    assert db.execute("SELECT count(*) FROM media_analysis").fetchone() == (1,)  # carol's
    kept = db.execute("SELECT count(*) FROM llm_calls WHERE prompt IS NOT NULL").fetchone()
    assert kept == (0,)


def test_erase_leaves_no_byte_of_what_was_read_from_a_users_public_messages(db, db_path,
                                                                             tmp_path):
    public_world(db, tmp_path)
    studio = db.execute("SELECT id FROM media_analysis WHERE file_name = 'studio.png'"
                        ).fetchone()[0]
    db.execute("UPDATE media_analysis SET status = 'ok', content_type = 'image/png', "
               "description = ? WHERE id = ?", [f"Carol's studio, {CANARY}-studio", studio])
    [diary] = fill_link(db, "https://carol.example/diary", f"{CANARY} diary",
                        f"{CANARY} summary", meta=f"{CANARY} meta")
    analysis_call(db, "call-studio", "media", [studio], prompt="Describe this image.",
                  response=json.dumps({"description": f"Carol's studio, {CANARY}-studio"}))
    analysis_call(db, "call-diary", "link", [diary], prompt=f"BEGIN DATA\n{CANARY}\nEND DATA",
                  response=json.dumps({"summary": f"{CANARY} summary"}))
    # The offline reflector names them in a channel insight.
    assert Cli(db_path)("reflect", "--layer", "channel", "--topic",
                        "server:1001:channel:2001").exit_code == 0
    assert CANARY in db.execute("SELECT group_concat(content) FROM insights").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert scan(db_path, CANARY)["db"] > 0

    r = Cli(db_path)("consent", "erase", "carol", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    purge = json.loads(r.stdout)["purge"]
    assert purge["analyses"] == 2 and purge["llm_calls_scrubbed"] == 2
    assert scan(db_path, CANARY) == NOTHING
    assert db.execute("SELECT count(*) FROM link_analysis").fetchone() == (1,)   # alice's


def test_a_description_shared_by_sha256_stays_where_its_message_remains(db, db_path, tmp_path,
                                                                         model):
    bob = analysed_dm(db, tmp_path)
    # Carol posted the same picture in her own DM: its description was copied to her row
    # (the same bytes are described once per scope), and a reflection quoted it.
    carol_image, _, _ = dm_world(db, tmp_path, user_=CAROL, channel="3002", start=30,
                                 image="same-kiln.png", url="https://other.example/")
    shared = f"A sketch of a kiln labelled {CANARY}-image."
    fill_media(db, carol_image, shared)
    summary = run_layer(db, model_config(model), RunOptions(layer="user", topic="user:66"))
    assert summary["status"] == "completed", summary
    carols_call = db.execute("SELECT call_id FROM llm_call_sources WHERE source_id = ?",
                             [carol_image]).fetchone()[0]

    r = Cli(db_path)("consent", "revoke", "bob", "--forget", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert db.execute("SELECT count(*) FROM media_analysis WHERE id = ?",
                      [bob["media"]]).fetchone() == (0,)
    assert db.execute("SELECT description FROM media_analysis WHERE message_id = ?",
                      [carol_image]).fetchone() == (shared,)
    # Carol's reflection, which quoted her own copy, is not taken for bob's.
    prompt = db.execute("SELECT prompt FROM llm_calls WHERE id = ?", [carols_call]).fetchone()
    assert prompt[0] and f"{CANARY}-image" in prompt[0]
    # What only bob's rows said is gone.
    for only_bobs in (f"{CANARY}-title", f"{CANARY}-summary", f"{CANARY}-meta",
                      f"{CANARY}-page"):
        assert scan(db_path, only_bobs) == NOTHING, only_bobs


@pytest.mark.parametrize("how", ["forget", "erase"])
def test_the_purge_removes_analysis_rows_with_foreign_keys_off(db_path, tmp_path, how):
    db = database.connect(db_path)
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        public_world(db, tmp_path)
        analysed_dm(db, tmp_path)
        if how == "forget":
            consent.revoke_and_forget(db, "55", db_path=db_path)
        else:
            consent.erase(db, "55", db_path=db_path)
        for table in ("media_analysis", "link_analysis", "message_sources", "role_mentions"):
            orphans = db.execute(f"SELECT count(*) FROM {table} WHERE message_id NOT IN "
                                 "(SELECT id FROM messages)").fetchone()[0]
            assert orphans == 0, table
        assert db.execute("SELECT count(*) FROM link_analysis").fetchone()[0] == 2  # public
        assert scan(db_path, CANARY) == NOTHING
    finally:
        db.close()


def test_calls_are_found_by_what_they_carried_even_without_sources(db, db_path, tmp_path):
    # A call whose llm_call_sources row is missing (recorded by a run killed between the two
    # writes, say) is still found by the texts only the removed rows held.
    analysed_dm(db, tmp_path)
    db.execute("DELETE FROM llm_call_sources")
    r = Cli(db_path)("consent", "revoke", "bob", "--forget", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    scrubbed = json.loads(r.stdout)["purge"]["llm_calls_scrubbed"]
    assert scrubbed == 2     # the ones whose response holds a removed row's text
    # (the failed call's text never reached a row; only its sources row could find it)
    assert scan(db_path, f"{CANARY}-image") == NOTHING
    assert scan(db_path, f"{CANARY}-summary") == NOTHING
