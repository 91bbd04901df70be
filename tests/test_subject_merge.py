"""Merging subjects on the ledger (docs/salience.md#merges): a reference test that balances
are conserved up to the cap, `salience check` passes, the ledger explains the move, an event
records it, and `salience rebuild` replays merges at their times to the same balances."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli
from tests.fake_openai import FakeOpenAI, Reply, valid_answer
from tests.reflect_world import GUILD, SELF_ID, build_world
from zos_cli.config import Config, load_config
from zos_cli.reflect.run import RunOptions, run_layer

KILN = f"server:{GUILD}:subject:kiln"
GLAZE = f"server:{GUILD}:subject:glaze"
RAKU = f"server:{GUILD}:subject:raku"
CAP = 5.0


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def config(server, tmp_path) -> Config:
    """The same settings for the library calls and for the CLI (./zos.toml: tests run in
    tmp_path), with a small subject cap so that a merge meets it."""
    path = tmp_path / "zos.toml"
    path.write_text(f"""
[discord]
self_user_id = "{SELF_ID}"
[reflection]
retry_backoff_seconds = 0.01
[models.reflection]
model = "openai/fake-model"
api_base = "{server.base_url}"
max_tokens = 400
[salience.caps]
subject = {CAP}
""")
    return load_config(path)


@pytest.fixture
def world(db, tmp_path):
    return build_world(db, tmp_path, users=5, messages_each=3,
                       texts={"erin": "erin glazes a raku kiln"})


def name(db, server, config, user_id: str, subject: str) -> None:
    server.enqueue(Reply(content=valid_answer(subject=subject)))
    summary = run_layer(db, config, RunOptions(layer="user",
                                               topic=f"server:{GUILD}:user:{user_id}"))
    assert summary["status"] == "completed", summary


def balances(db) -> dict[str, float]:
    return dict(db.execute("SELECT key, round(balance, 9) FROM topics").fetchall())


def merge(cli, source: str, into: str) -> dict:
    r = cli("subjects", "merge", source, into, "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def rebuild(cli) -> dict:
    r = cli("salience", "rebuild", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def check(cli) -> dict:
    return json.loads(cli("salience", "check", "--json").stdout)


def test_a_merge_conserves_balances_up_to_the_cap_and_rebuild_replays_it(
        db, db_path, world, server, config):
    cli = Cli(db_path)
    ids = world.ids
    for who, subject in (("alice", "kiln"), ("bob", "kiln"), ("carol", "glaze"),
                         ("dave", "glaze")):
        name(db, server, config, ids[who], subject)
    before = balances(db)
    assert (before[KILN], before[GLAZE]) == (4.0, 4.0)

    doc = merge(cli, "glaze", "kiln")
    after = balances(db)
    # The reference: FROM gives all it holds, INTO takes up to its cap, nothing else moves.
    expected_into = min(CAP, before[KILN] + before[GLAZE])
    refused = before[KILN] + before[GLAZE] - expected_into
    assert (after[GLAZE], after[KILN]) == (0.0, expected_into)
    assert {k: v for k, v in after.items() if k not in (KILN, GLAZE)} == {
        k: v for k, v in before.items() if k not in (KILN, GLAZE)}
    assert sum(after.values()) == pytest.approx(sum(before.values()) - refused)
    assert (doc["balance_moved"], doc["balance_taken"], doc["refused_by_cap"]) == (4.0, 1.0, 3.0)
    assert (doc["into_balance_before"], doc["into_balance_after"], doc["cap"]) == (4.0, 5.0, CAP)
    assert check(cli)["ok"] is True

    # The ledger explains the move, on both sides, and history is not edited.
    into_rows = json.loads(cli("salience", "ledger", KILN, "--json").stdout)
    from_rows = json.loads(cli("salience", "ledger", GLAZE, "--json").stdout)
    assert into_rows[0]["transaction_type"] == "merge_in" and into_rows[0]["amount"] == 1.0
    assert into_rows[0]["source_topic"] == GLAZE
    assert into_rows[0]["reason"] == (f"subject merge {doc['merge_id']}: 4 moved from {GLAZE}, "
                                      "1 taken, 3 refused by the cap (5)")
    assert from_rows[0]["transaction_type"] == "merge_out" and from_rows[0]["amount"] == -4.0
    assert from_rows[0]["source_topic"] == KILN
    assert [r["transaction_type"] for r in from_rows[1:]] == ["earn", "earn"]
    (payload,) = db.execute("SELECT payload FROM events WHERE event_type = 'subject_merged' "
                            "AND id = ?", [doc["merge_id"]]).fetchone()
    event = json.loads(payload)
    assert (event["from_key"], event["into_key"], event["refused_by_cap"]) == (GLAZE, KILN, 3.0)

    # Rebuild replays the merge at its time: the same balances, and the check passes.
    done = rebuild(cli)
    assert done["merges_reapplied"] == 1
    assert balances(db) == after
    assert check(cli)["ok"] is True
    replayed = json.loads(cli("salience", "ledger", KILN, "--json").stdout)[0]
    assert (replayed["id"], replayed["reason"]) == (into_rows[0]["id"], into_rows[0]["reason"])


def test_rebuild_replays_merges_among_later_reflections(db, db_path, world, server, config):
    """A chain of merges with reflections between them (spends of the merged subject at the
    same instant, later names arriving through aliases): rebuild gives the same balances."""
    cli = Cli(db_path)
    ids = world.ids
    name(db, server, config, ids["alice"], "kiln")
    name(db, server, config, ids["bob"], "raku")
    name(db, server, config, ids["carol"], "raku")
    merge(cli, "raku", "kiln")                       # raku's 4 into kiln's 2: 5, 1 refused
    server.enqueue(Reply(content=valid_answer()))
    spent = run_layer(db, config, RunOptions(layer="subject"))   # kiln spends after the merge
    assert spent["targets"] == [KILN] and spent["status"] == "completed", spent
    name(db, server, config, ids["dave"], "raku")     # arrives at kiln
    name(db, server, config, ids["erin"], "glaze")
    merge(cli, "kiln", "glaze")                       # the chain: raku and kiln → glaze
    before = balances(db)
    rows = db.execute("SELECT subject, count(*) FROM insights WHERE subject IS NOT NULL "
                      "GROUP BY subject").fetchall()
    assert rows == [("glaze", 5)]
    assert db.execute("SELECT alias, subject FROM subject_aliases ORDER BY alias").fetchall() == [
        ("kiln", "glaze"), ("raku", "glaze")]
    assert check(cli)["ok"] is True

    done = rebuild(cli)
    assert done["merges_reapplied"] == 2 and done["spends_reapplied"] >= 1
    assert balances(db) == before
    assert check(cli)["ok"] is True
    # and once more: a rebuild of a rebuilt ledger changes nothing
    rebuild(cli)
    assert balances(db) == before


def test_a_merge_keeps_where_each_insight_was_filed(db, db_path, world, server, config):
    cli = Cli(db_path)
    ids = world.ids
    for who in ("alice", "bob"):
        name(db, server, config, ids[who], "raku")
    server.enqueue(Reply(content=valid_answer()))
    run_layer(db, config, RunOptions(layer="subject"))       # an insight about raku itself
    name(db, server, config, ids["carol"], "kiln")
    doc = merge(cli, "raku", "kiln")
    assert doc["insights_moved"] == 1
    (metadata,) = db.execute("SELECT metadata FROM insights WHERE topic_key = ?",
                             [KILN]).fetchone()
    assert json.loads(metadata)["merged_from"] == {"topic_key": RAKU, "subject": None,
                                                   "merge": doc["merge_id"]}
    renamed = [json.loads(m)["subject_was"] for (m,) in db.execute(
        "SELECT metadata FROM insights WHERE subject = 'kiln' AND "
        "json_extract(metadata, '$.subject_was') IS NOT NULL")]
    assert renamed == ["raku", "raku"]
