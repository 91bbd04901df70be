"""Labels and references through the CLI (docs/labels.md): human tables show the label first
and keys only with --keys, stay within 100 columns, JSON rows keep their keys and gain
`label`; every command that takes a topic takes a reference; empty listings say so on
stderr."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES, Cli, run_on_a_terminal
from tests.labels_world import A, B, THEO_ID, build_world
from zos_cli.labels import topic_labels

TIDEPOOL = "1093876543210987520"
THEO, JUN, PRIYA = "612993005118177290", "894455120033614862", "733410882256019477"
KILN_CREW = "1101349921937584148"   # a role only Theo holds
THEO_KEY = f"server:{TIDEPOOL}:user:{THEO}"
EXAMPLE_CONFIG = str(EXAMPLES / "zos.toml")


@pytest.fixture
def example(db_path):
    """The bundled example, ingested and reflected on (offline) by the user and channel
    layers, with Priya's DM consent granted."""
    cli = Cli(db_path)
    for args in (("ingest", str(EXAMPLES / "export")), ("consent", "grant", "@priya_k"),
                 ("ingest", str(EXAMPLES / "export")), ("reflect", "--layer", "user"),
                 ("reflect", "--layer", "channel")):
        r = cli("--config", EXAMPLE_CONFIG, *args)
        assert r.exit_code == 0, (args, r.stderr)
    return cli


def zos(cli, *args, columns: int | None = None):
    env = {"COLUMNS": str(columns)} if columns else None
    return cli("--config", EXAMPLE_CONFIG, *args, env=env)


HUMAN_LISTINGS = [
    ("salience", "top"), ("salience", "show", "@theo"), ("salience", "ledger", "@theo"),
    ("salience", "budget"), ("insights", "list"), ("insights", "search", "messages"),
    ("insights", "runs"), ("consent", "list"), ("subjects", "list"), ("status",),
]


def _a_key(cli, args) -> str:
    """Text that only --keys shows in this listing: a topic key, or an id."""
    if args == ("consent", "list"):
        return PRIYA
    if args == ("insights", "runs"):
        return json.loads(zos(cli, "insights", "runs", "--json").stdout)[0]["id"]
    return f"server:{TIDEPOOL}:"


@pytest.mark.parametrize("args", HUMAN_LISTINGS, ids=" ".join)
def test_human_tables_show_labels_not_keys_and_fit_100_columns(example, args):
    key = _a_key(example, args)
    r = zos(example, *args, columns=100)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 100
    assert key not in r.stdout
    assert "(Tidepool Makers)" in r.stdout or "(everywhere)" in r.stdout
    with_keys = zos(example, *args, "--keys", columns=100)
    assert with_keys.exit_code == 0, with_keys.stderr
    assert max(len(line) for line in with_keys.stdout.splitlines()) <= 100
    assert key in zos(example, *args, "--keys", columns=400).stdout


def test_a_label_is_not_folded_at_100_columns(example):
    table = zos(example, "salience", "top", columns=100).stdout
    assert "Theo ↔ Jun (Tidepool Makers)" in table and "Theo in #show-and-tell" in table
    content = zos(example, "insights", "list", "--limit", "1", columns=100).stdout
    assert "messages read," in content   # content wraps at spaces, not mid-word


@pytest.mark.parametrize("args, key", [
    (("salience", "top"), "topic_key"), (("insights", "list"), "topic_key"),
    (("insights", "search", "messages"), "topic_key"), (("consent", "list"), "user_id"),
])
def test_json_and_nl_rows_keep_their_keys_and_gain_label_after_the_key(example, args, key):
    rows = json.loads(zos(example, *args, "--json").stdout)
    lines = [json.loads(x) for x in zos(example, *args, "--nl").stdout.splitlines()]
    assert rows and rows == lines
    for row in rows:
        names = list(row)
        assert names[names.index(key) + 1] == "label" and row["label"]
    if key == "user_id":
        assert rows[0]["label"] == "Priya (everywhere)" and rows[0]["user_name"] == "priya_k"


def test_documents_gain_labels(example, db):
    show = json.loads(zos(example, "salience", "show", THEO_KEY, "--json").stdout)
    assert show["label"] == "Theo (Tidepool Makers)"
    assert all(r["label"] for r in show["related"])
    ledger = json.loads(zos(example, "salience", "ledger", THEO_KEY, "--json").stdout)
    assert {r["label"] for r in ledger} == {"Theo (Tidepool Makers)"}
    assert all((r["source_label"] is None) == (r["source_topic"] is None) for r in ledger)
    propagated = db.execute("SELECT topic_key, source_topic FROM salience_ledger "
                            "WHERE source_topic IS NOT NULL LIMIT 1").fetchone()
    rows = json.loads(zos(example, "salience", "ledger", propagated[0], "--json",
                          "--limit", "0").stdout)
    labels = topic_labels(db, [propagated[1]])
    assert labels[propagated[1]] in {r["source_label"] for r in rows}
    status = json.loads(zos(example, "status", "--json").stdout)
    assert all(r["label"] for r in status["top_salience"])
    runs = json.loads(zos(example, "insights", "runs", "--json").stdout)
    assert all(len(r["target_labels"]) == len(r["targets"]) for r in runs)
    assert "Theo (Tidepool Makers)" in [x for r in runs for x in r["target_labels"]]
    insight = json.loads(zos(example, "insights", "list", "--json").stdout)[0]
    doc = json.loads(zos(example, "insights", "show", insight["id"], "--json").stdout)
    assert doc["label"] == insight["label"] and doc["topic_key"] == insight["topic_key"]


def test_a_ledger_reason_names_topics_by_label(example):
    human = zos(example, "salience", "ledger", THEO_KEY, "--limit", "0", columns=200).stdout
    assert "propagate from" in human and f"server:{TIDEPOOL}" not in human


def test_gated_people_are_anonymous_in_every_table(example, tmp_path):
    gate = tmp_path / "gate.toml"
    gate.write_text(f'[servers."{TIDEPOOL}"]\nprivacy_gate_role = "{KILN_CREW}"\n')
    top = example("--config", str(gate), "salience", "top", "--limit", "100").stdout
    assert "Theo in #show-and-tell" in top and "<chat_1>" in top
    for name in ("Jun", "Maren", "Priya"):
        assert name not in top
    ledger = example("--config", str(gate), "salience", "ledger", THEO_KEY, "--limit", "0",
                     env={"COLUMNS": "300"}).stdout
    assert "Jun" not in ledger and "Maren" not in ledger


def test_an_erased_person_is_anonymous_in_the_consent_list(example):
    assert example("consent", "erase", PRIYA, "--yes").exit_code == 0
    rows = json.loads(example("consent", "list", "--json").stdout)
    assert rows[0]["user_id"] == PRIYA and rows[0]["label"] == "<chat_1> (everywhere)"


# ------------------------------------------------------------------ references
def test_every_command_that_takes_a_topic_takes_a_reference(example):
    show = json.loads(zos(example, "salience", "show", "@theo", "--json").stdout)
    assert show["topic_key"] == THEO_KEY
    ledger = json.loads(zos(example, "salience", "ledger", "#general", "--json").stdout)
    assert ledger and {r["label"] for r in ledger} == {"#general (Tidepool Makers)"}
    listed = json.loads(zos(example, "insights", "list", "--topic", "@Theo", "--json").stdout)
    assert [r["topic_key"] for r in listed] == [THEO_KEY]
    exported = zos(example, "insights", "export", "--topic", "@theo").stdout.splitlines()
    assert [json.loads(x)["topic_key"] for x in exported] == [THEO_KEY]
    dyad = json.loads(zos(example, "salience", "show", "@jun+@theo", "--json").stdout)
    assert dyad["label"] == "Theo ↔ Jun (Tidepool Makers)"
    dry = zos(example, "reflect", "--layer", "dyad", "--topic", "@theo+@jun",
              "--dry-run", "--json")
    assert json.loads(dry.stdout)["targets"] == [f"server:{TIDEPOOL}:dyad:{THEO}:{JUN}"]


def test_server_by_id_or_name_and_global(example):
    for server in (TIDEPOOL, "tidepool makers"):
        r = zos(example, "salience", "show", "@theo", "--server", server, "--json")
        assert json.loads(r.stdout)["topic_key"] == THEO_KEY
    top = json.loads(zos(example, "salience", "top", "--server", "Tidepool Makers",
                         "--json").stdout)
    assert top and all(r["topic_key"].startswith(f"server:{TIDEPOOL}:") for r in top)
    # A well-formed key that is not stored keeps its behaviour: exit 1, no such topic.
    r = zos(example, "salience", "show", "@theo", "--global")
    assert (r.exit_code, r.stderr) == (1, f"Error: no topic user:{THEO} in the database: see "
                                          "`zos salience top` for the topics zos knows\n")
    r = zos(example, "insights", "list", "--server", TIDEPOOL)
    assert r.exit_code == 2 and r.stderr.startswith("Error: --server and --global go with --topic")


def test_no_match_is_exit_2_naming_the_closest(example):
    r = zos(example, "salience", "show", "@thoe")
    assert (r.exit_code, r.stderr) == (2, "Error: no server user called @thoe: the closest is "
                                          "@Theo\n")
    r = zos(example, "insights", "list", "--topic", "#genral")
    assert (r.exit_code, r.stderr) == (2, "Error: no channel called #genral: the closest is "
                                          "#general\n")
    r = zos(example, "salience", "show", "@theo", "--server", "Tidepool")
    assert r.exit_code == 2 and "the closest is Tidepool Makers" in r.stderr
    r = zos(example, "salience", "ledger", "user:abc")
    assert r.exit_code == 2 and r.stderr.startswith("Error: invalid topic key 'user:abc'")


def test_several_matches_are_exit_2_listing_the_candidates(tmp_path, db_path):
    build_world(tmp_path, db_path).close()
    cli = Cli(db_path)
    r = cli("salience", "show", "@theo")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == (
        f"Error: @theo matches 2 topics: Theo (Tidepool Makers) = server:{A}:user:{THEO_ID}; "
        f"Theo (Kiln Club) = server:{B}:user:{THEO_ID}. Add --server ID|NAME, or give the "
        "key\n")
    r = cli("salience", "show", "@theo", "--server", "Kiln Club", "--json")
    assert json.loads(r.stdout)["topic_key"] == f"server:{B}:user:{THEO_ID}"


# ------------------------------------------------------------------ empty listings
EMPTY = [
    (("salience", "top"), "No topic has a balance yet: run `zos ingest PATH`"),
    (("insights", "list"), "No insights yet: run `zos reflect --layer user`"),
    (("insights", "list", "--category", "x"), "No insights match: try without"),
    (("insights", "search", "kiln"), "No insight matches 'kiln'"),
    (("insights", "runs"), "No layer runs yet: run `zos reflect --layer user`"),
    (("insights", "calls"), "No model calls yet"),
    (("consent", "list"), "No consents recorded: `zos consent grant @name` records one."),
    (("consent", "list", "--active"), "No consents in force"),
]


@pytest.mark.parametrize("args, said", EMPTY, ids=[" ".join(args) for args, _said in EMPTY])
def test_an_empty_listing_says_so_on_stderr_and_json_is_an_empty_array(cli, args, said):
    human = cli("--verbose", *args)
    assert human.exit_code == 0 and human.stdout == "" and said in human.stderr
    assert cli(*args, "--json").stdout == "[]\n"
    assert cli(*args, "--nl").stdout == ""


def test_an_empty_listing_is_said_on_a_terminal(db_path):
    code, seen = run_on_a_terminal("--db", str(db_path), "insights", "list")
    assert code == 0 and "No insights yet: run `zos reflect --layer user`" in seen
    assert "┏" not in seen
