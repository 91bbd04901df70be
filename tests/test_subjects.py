"""Subjects with a lifecycle (docs/subjects.md): provisional → established, the subject layer,
key terms, aliases, and every `zos subjects` command (keys, exit codes, the lock), through
reflections against the fake OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli
from tests.fake_openai import FakeOpenAI, Reply, valid_answer
from tests.reflect_world import GUILD, SELF_ID, build_world
from zos_cli.config import Config
from zos_cli.errors import UsageProblem
from zos_cli.events import SubjectNamedEvent
from zos_cli.reflect.run import RunOptions, run_layer
from zos_cli.salience import SalienceEngine
from zos_cli.store import db as database
from zos_cli.store import locks

KILN = f"server:{GUILD}:subject:kiln"
GLAZE = f"server:{GUILD}:subject:glaze_chemistry"
LIST_KEYS = ["name", "topic_key", "server_id", "state", "balance", "aliases", "insights",
             "last_activity_at"]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as fake:
        yield fake


def model_config(server, **subjects) -> Config:
    return Config.model_validate({
        "discord": {"self_user_id": SELF_ID},
        "reflection": {"retry_backoff_seconds": 0.01},
        "models": {"reflection": {"model": "openai/fake-model", "api_base": server.base_url,
                                  "max_tokens": 400}},
        "subjects": subjects,
    })


@pytest.fixture
def world(db, tmp_path):
    # dave never writes "kiln": his messages are found by the key term alone
    return build_world(db, tmp_path, users=4, messages_each=3,
                       texts={"dave": "dave tried a bisque firing today"})


def name(db, server, config, who: str, subject: str, terms=(), count: int = 1) -> dict:
    server.enqueue(Reply(content=valid_answer(count, subject=subject,
                                              subject_terms=list(terms))))
    summary = run_layer(db, config, RunOptions(layer="user",
                                               topic=f"server:{GUILD}:user:{who}"))
    assert summary["status"] == "completed", summary
    return summary


def state(db, key: str) -> tuple:
    return db.execute("SELECT provisional, balance FROM topics WHERE key = ?", [key]).fetchone()


@pytest.fixture
def named(db, world, server):
    """kiln named by insights about alice and bob (established), glaze chemistry by carol's
    (provisional)."""
    config = model_config(server)
    name(db, server, config, world.ids["alice"], "Kiln", ["bisque firing"])
    name(db, server, config, world.ids["bob"], "kiln")
    name(db, server, config, world.ids["carol"], "Glaze chemistry")
    return config


# ---------------------------------------------------------------- lifecycle
def test_a_subject_is_established_once_insights_about_two_targets_name_it(db, world, server):
    config = model_config(server)
    # two insights, one target
    name(db, server, config, world.ids["alice"], "Kiln", ["bisque firing", "Bisque firing"], 2)
    assert state(db, KILN) == (1, 2.0)
    terms = db.execute("SELECT subject, subject_terms FROM insights").fetchall()
    assert terms == [("kiln", '["bisque firing"]')] * 2
    name(db, server, config, world.ids["bob"], "kiln")
    assert state(db, KILN) == (0, 4.0)
    event = db.execute("SELECT count(*) FROM events WHERE event_type = 'subject_promoted'")
    assert event.fetchone() == (0,)  # (promotion by the rule is the topic's state, not an event)


def test_promote_after_is_a_setting(db, world, server):
    config = model_config(server, promote_after=3)
    for who in ("alice", "bob"):
        name(db, server, config, world.ids[who], "kiln")
    assert state(db, KILN)[0] == 1
    name(db, server, config, world.ids["carol"], "kiln")
    assert state(db, KILN)[0] == 0


def test_the_subject_layer_takes_established_subjects_whatever_their_balance(
        db, world, server, named):
    assert state(db, KILN) == (0, 4.0) and state(db, GLAZE) == (1, 2.0)  # both below 10
    summary = run_layer(db, named, RunOptions(layer="subject"))
    assert summary["status"] == "completed", summary
    assert summary["targets"] == [KILN]
    prompt = server.requests[-1].prompt_text
    # found by the name (and its plural: "kilns") and by the key term ("bisque firing")
    assert "alice talks about kilns" in prompt and "dave tried a bisque firing" in prompt
    assert "bob talks about kilns" in prompt


def test_a_provisional_subject_is_never_reflected_on(db, db_path, world, server, named):
    with pytest.raises(UsageProblem, match="provisional subject, never reflected on"):
        run_layer(db, named, RunOptions(layer="subject", topic=GLAZE))
    assert subject_targets(db_path) == [KILN]
    r = Cli(db_path)("subjects", "promote", "glaze chemistry", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"name": "glaze_chemistry", "topic_key": GLAZE,
                                    "server_id": GUILD, "state": "established", "changed": True}
    assert subject_targets(db_path) == [KILN, GLAZE]    # highest balance first
    assert Cli(db_path)("subjects", "promote", "glaze_chemistry", "--json").exit_code == 0
    assert db.execute("SELECT payload FROM events WHERE event_type = 'subject_promoted'"
                      ).fetchall() == [(json.dumps({"by": "operator", "topic_key": GLAZE}),)]


def subject_targets(db_path) -> list[str]:
    """The subject layer's next targets, as `zos salience budget` shows them."""
    budget = json.loads(Cli(db_path)("salience", "budget", "--json").stdout)
    (layer,) = [x for x in budget["layers"] if x["layer"] == "subject"]
    return layer["targets"]


# ---------------------------------------------------------------- listing and showing
def test_list_rows_have_exactly_the_documented_keys(db, db_path, world, server, named):
    cli = Cli(db_path)
    rows = json.loads(cli("subjects", "list", "--json").stdout)
    keys = ["name", "topic_key", "label", *LIST_KEYS[2:]]   # label right after the key
    assert [list(r) for r in rows] == [keys, keys]
    kiln, glaze = rows
    assert kiln == {"name": "kiln", "topic_key": KILN, "label": "subject kiln (Test Guild)",
                    "server_id": GUILD,
                    "state": "established", "balance": 4.0, "aliases": [], "insights": 2,
                    "last_activity_at": kiln["last_activity_at"]}
    assert kiln["last_activity_at"] and glaze["name"] == "glaze_chemistry"
    assert [r["name"] for r in json.loads(cli("subjects", "list", "--provisional", "--json")
                                          .stdout)] == ["glaze_chemistry"]
    nl = cli("subjects", "list", "--established", "--nl", "--server", "Test Guild").stdout
    assert [json.loads(line)["name"] for line in nl.splitlines()] == ["kiln"]
    assert json.loads(cli("subjects", "list", "--server", "42", "--json").stdout) == []
    r = cli("subjects", "list", "--provisional", "--established")
    assert r.exit_code == 2 and "cannot be used together" in r.stderr
    r = cli("subjects", "list", "--server", "No Such Guild")
    assert r.exit_code == 2 and "no server of that name: the closest is Test Guild" in r.stderr
    table = cli("subjects", "list").stdout
    assert "kiln" in table and "established" in table


def test_show_gives_terms_insights_and_matching_messages(db, db_path, world, server, named):
    r = Cli(db_path)("subjects", "show", "Kiln", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["key_terms"] == ["bisque firing"] and doc["naming_targets"] == 2
    assert doc["state"] == "established" and len(doc["insight_rows"]) == 2
    texts = [m["content"] for m in doc["messages"]]
    assert len(texts) == 10 and any("bisque" in t for t in texts)
    assert all("kiln" in t or "bisque" in t for t in texts)
    assert Cli(db_path)("subjects", "show", "kiln").exit_code == 0
    r = Cli(db_path)("subjects", "show", "pottery")
    assert r.exit_code == 1 and r.stderr == "Error: no subject pottery: see `zos subjects list`\n"
    r = Cli(db_path)("subjects", "show", "9 lives!")
    assert r.exit_code == 2 and "is not a subject name" in r.stderr


def test_a_name_in_several_servers_needs_server(db, db_path, world, server, named):
    engine = SalienceEngine(db, named)
    engine.apply(SubjectNamedEvent("2002", "kiln", "2024-03-01T12:00:00.000000+00:00"))
    with database.write_transaction(db):
        engine.flush("test")
    cli = Cli(db_path)
    for args in (["show", "kiln"], ["promote", "kiln"],
                 ["merge", "kiln", "glaze_chemistry", "--yes"]):
        r = cli("subjects", *args)
        assert r.exit_code == 2, args
        assert r.stderr == ("Error: subject kiln is in several servers: 1001 (Test Guild), 2002: "
                            "give --server\n")
    assert json.loads(cli("subjects", "show", "kiln", "--server", "1001", "--json").stdout)[
        "balance"] == 4.0
    assert json.loads(cli("subjects", "show", "kiln", "--server", "2002", "--json").stdout)[
        "balance"] == 2.0


# ---------------------------------------------------------------- merge, rename, promote
def test_merge_and_rename_need_yes_without_a_terminal(db, db_path, world, server, named):
    before = db.execute("SELECT count(*), sum(amount) FROM salience_ledger").fetchone()
    for args in (["merge", "glaze_chemistry", "kiln"], ["rename", "kiln", "pottery"]):
        r = Cli(db_path)("subjects", *args)
        assert r.exit_code == 2
        assert "add --yes to confirm (there is no terminal to ask)" in r.stderr
    r = Cli(db_path)("subjects", "merge", "glaze_chemistry", "kiln", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and doc["balance_moved"] == 2.0 and doc["insights_moved"] == 0
    assert db.execute("SELECT count(*), sum(amount) FROM salience_ledger").fetchone() == before
    assert db.execute("SELECT count(*) FROM subject_aliases").fetchone() == (0,)


def test_a_merged_name_keeps_arriving_at_its_subject(db, db_path, world, server, named):
    r = Cli(db_path)("subjects", "merge", "Glaze chemistry", "kiln", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["aliases_added"] == ["glaze_chemistry"] and doc["state"] == "established"
    assert (doc["balance_moved"], doc["balance_taken"], doc["refused_by_cap"]) == (2.0, 2.0, 0.0)
    assert state(db, KILN) == (0, 6.0) and state(db, GLAZE)[1] == 0.0
    rows = json.loads(Cli(db_path)("subjects", "list", "--json").stdout)
    assert [(r["name"], r["aliases"], r["insights"]) for r in rows] == [
        ("kiln", ["glaze_chemistry"], 3)]
    # A later reflection naming the old name earns for, and files under, the new one.
    name(db, server, named, world.ids["dave"], "glaze chemistry", ["cone six"])
    assert state(db, KILN)[1] == 8.0 and state(db, GLAZE)[1] == 0.0
    assert db.execute("SELECT subject FROM insights ORDER BY created_at DESC, id DESC"
                      ).fetchone() == ("kiln",)
    shown = json.loads(Cli(db_path)("subjects", "show", "glaze_chemistry", "--json").stdout)
    assert shown["name"] == "kiln" and shown["shown_as"] == "glaze_chemistry"
    assert shown["key_terms"] == ["cone six", "bisque firing"]
    r = Cli(db_path)("subjects", "merge", "glaze_chemistry", "kiln", "--yes")
    assert r.exit_code == 2 and "was merged into kiln already" in r.stderr
    with pytest.raises(UsageProblem, match="was merged into server:1001:subject:kiln"):
        run_layer(db, named, RunOptions(layer="subject", topic=GLAZE))


def test_rename_is_a_merge_into_a_new_name_and_can_go_back(db, db_path, world, server, named):
    cli = Cli(db_path)
    r = cli("subjects", "rename", "kiln", "glaze_chemistry", "--yes")
    assert r.exit_code == 2 and "merges into it" in r.stderr
    r = cli("subjects", "merge", "kiln", "pottery", "--yes")
    assert r.exit_code == 1 and "`zos subjects rename kiln pottery`" in r.stderr
    r = cli("subjects", "rename", "kiln", "Pottery kiln", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["action"] == "rename" and doc["into_key"] == f"server:{GUILD}:subject:pottery_kiln"
    assert doc["state"] == "established" and doc["insights_moved"] == 0
    assert state(db, doc["into_key"]) == (0, 4.0) and state(db, KILN) == (0, 0.0)
    assert db.execute("SELECT DISTINCT subject FROM insights WHERE subject LIKE '%kiln'"
                      ).fetchall() == [("pottery_kiln",)]
    subject_layer = run_layer(db, named, RunOptions(layer="subject"))
    assert subject_layer["targets"] == [doc["into_key"]]
    # Back again: the old topic takes its name back (its alias goes), with the balance.
    r = cli("subjects", "rename", "pottery_kiln", "kiln", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    back = json.loads(r.stdout)
    assert back["aliases_added"] == ["pottery_kiln"] and back["insights_moved"] == 1
    rows = json.loads(cli("subjects", "list", "--json").stdout)
    assert sorted((r["name"], r["aliases"]) for r in rows) == [("glaze_chemistry", []),
                                                               ("kiln", ["pottery_kiln"])]
    assert check_ok(cli)


def check_ok(cli) -> bool:
    return json.loads(cli("salience", "check", "--json").stdout)["ok"]


@pytest.mark.parametrize("args", [["merge", "glaze_chemistry", "kiln", "--yes"],
                                  ["rename", "kiln", "pottery", "--yes"],
                                  ["promote", "glaze_chemistry"]])
def test_write_commands_take_the_subjects_lock(db, db_path, world, server, named, args):
    with locks.job_lock(db_path, "subjects"):
        r = Cli(db_path)("subjects", *args)
    assert r.exit_code == 75
    assert "another `zos subjects` is already running" in r.stderr
    assert db.execute("SELECT count(*) FROM subject_aliases").fetchone() == (0,)
    assert state(db, GLAZE)[0] == 1


def test_show_leaves_out_the_messages_of_people_outside_the_privacy_gate(db, db_path, tmp_path,
                                                                        server):
    from tests.reflect_world import GATE_ROLE

    (tmp_path / "zos.toml").write_text(f'[discord]\nself_user_id = "{SELF_ID}"\n'
                                       f'[servers."{GUILD}"]\nprivacy_gate_role = "{GATE_ROLE}"\n')
    config = model_config(server)
    config.servers = {GUILD: {"privacy_gate_role": GATE_ROLE}}
    gated = build_world(db, tmp_path, users=3, messages_each=3, gated=("carol",), config=config)
    for who in ("alice", "bob"):
        name(db, server, config, gated.ids[who], "kiln")
    doc = json.loads(Cli(db_path)("subjects", "show", "kiln", "--json").stdout)
    authors = {m["author_id"] for m in doc["messages"]}
    assert authors == {gated.ids["alice"], gated.ids["bob"]}
    assert db.execute("SELECT count(*) FROM messages WHERE author_id = ? AND content LIKE "
                      "'%kilns%'", [gated.ids["carol"]]).fetchone()[0] == 3
