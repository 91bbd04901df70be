"""zos_cli.labels: a label for every kind of topic (on the bundled example and on built
exports), the gated and the erased anonymous, labels in a few queries whatever the number of
keys, and topic references in each form (docs/labels.md)."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, Cli
from tests.exports import Export, message, snowflake
from tests.labels_world import (
    A,
    B,
    BOT,
    JUN_ID,
    MEMBERS,
    MO,
    SAM1,
    SAM2,
    THEO_ID,
    build_world,
    people,
)
from tests.salience_support import earn_all
from zos_cli import topics
from zos_cli.config import load_config
from zos_cli.errors import UsageProblem
from zos_cli.labels import (
    Labeler,
    label_rows,
    resolve_reference,
    resolve_server,
    topic_labels,
)
from zos_cli.labels import labeler as labeler_module
from zos_cli.privacy.gate import lacking_gate_role, passes_gate
from zos_cli.store import db as database

# The bundled example (examples/export).
TIDEPOOL = "1093876543210987520"
THEO, JUN, MAREN, PRIYA = ("612993005118177290", "894455120033614862", "405112233445566778",
                           "733410882256019477")
GENERAL, SHOW_AND_TELL = "1093876544121149511", "1093880712475574312"
KILN_LOG_THREAD = "1214282716938240001"
TIDEPOOL_EMOJI = "1150321987654321152"
KILN_CREW = "1101349921937584148"   # a role only Theo holds
MODERATORS = "1093877388734169088"


def s(tail: str) -> str:
    return f"server:{TIDEPOOL}:{tail}"


@pytest.fixture
def example(db_path):
    r = Cli(db_path)("--config", str(EXAMPLES / "zos.toml"), "ingest", str(EXAMPLES / "export"))
    assert r.exit_code == 0, r.stderr
    db = database.open_database(db_path)
    earn_all(db, load_config(EXAMPLES / "zos.toml"), [(s("subject:kiln"), 12.0)])
    yield db
    db.close()


def gate_config(tmp_path, server: str, gate_role: str):
    path = tmp_path / "gate.toml"
    path.write_text(f'[servers."{server}"]\nprivacy_gate_role = "{gate_role}"\n')
    return load_config(path, explicit=True)


# ------------------------------------------------------------------ labels
def test_every_kind_of_topic_has_the_label_of_the_issue_on_the_bundled_example(example):
    labels = topic_labels(example, [
        s(f"user:{THEO}"), s(f"channel:{GENERAL}"), s(f"dyad:{THEO}:{JUN}"),
        s(f"user_in_channel:{GENERAL}:{THEO}"), s(f"emoji:{TIDEPOOL_EMOJI}"), s("subject:kiln"),
        f"user:{THEO}", s(f"dyad_in_channel:{SHOW_AND_TELL}:{MAREN}:{THEO}"),
        s(f"thread:{KILN_LOG_THREAD}"), s(f"role:{MODERATORS}"), f"dyad:{THEO}:{JUN}",
        "self:zos", s("self:zos")])
    assert list(labels.values()) == [
        "Theo (Tidepool Makers)", "#general (Tidepool Makers)", "Theo ↔ Jun (Tidepool Makers)",
        "Theo in #general", ":tidepool:", "subject kiln (Tidepool Makers)", "Theo (everywhere)",
        "Maren ↔ Theo in #show-and-tell", "#Kiln build log (Tidepool Makers)",
        "@Moderators (Tidepool Makers)", "Theo ↔ Jun (everywhere)", "zos (everywhere)",
        "zos (Tidepool Makers)"]


def test_every_stored_topic_of_the_example_is_named_and_no_key_is_left(example):
    keys = [r[0] for r in example.execute("SELECT key FROM topics")]
    labels = topic_labels(example, keys)
    assert set(labels) == set(keys) and len(keys) > 25
    for key, label in labels.items():
        assert "server:" not in label and not any(ch.isdigit() for ch in label), (key, label)


def _statements(db, work) -> int:
    seen = []
    db.conn.set_trace_callback(seen.append)
    try:
        work()
    finally:
        db.conn.set_trace_callback(None)
    return len(seen)


def test_labels_take_a_few_queries_whatever_the_number_of_keys(example):
    stored = [r[0] for r in example.execute("SELECT key FROM topics")]
    many = stored + [s(f"user:{10**17 + i}") for i in range(2000)]
    few = _statements(example, lambda: topic_labels(example, stored))
    lots = _statements(example, lambda: topic_labels(example, many))
    assert lots == few <= 12


def test_a_key_that_does_not_parse_is_its_own_label_and_unknown_places_show_their_id(example):
    labels = topic_labels(example, ["server:1:nonsense", "user:42", "server:7:channel:8",
                                    "server:7:emoji:9", "server:7:role:6"])
    assert labels == {"server:1:nonsense": "server:1:nonsense", "user:42": "user 42 (everywhere)",
                      "server:7:channel:8": "channel 8 (server 7)", "server:7:emoji:9": "emoji 9",
                      "server:7:role:6": "role 6 (server 7)"}


def test_users_without_the_gate_role_are_chat_n_in_order_of_appearance(example, tmp_path):
    config = gate_config(tmp_path, TIDEPOOL, KILN_CREW)   # only Theo holds it
    labels = topic_labels(example, [
        s(f"dyad:{THEO}:{JUN}"), s(f"user:{MAREN}"), s(f"user:{JUN}"), s(f"user:{THEO}"),
        f"user:{JUN}", f"user:{THEO}", s(f"dyad_in_channel:{GENERAL}:{MAREN}:{JUN}")],
        config=config)
    assert list(labels.values()) == [
        "Theo ↔ <chat_1> (Tidepool Makers)", "<chat_2> (Tidepool Makers)",
        "<chat_1> (Tidepool Makers)", "Theo (Tidepool Makers)",
        # A global topic hides whoever lacks the gate role of a server they are known in.
        "<chat_1> (everywhere)", "Theo (everywhere)", "<chat_2> ↔ <chat_1> in #general"]
    # Without zos.toml, the gate role stored on the server applies, as in reflection.
    example.execute("UPDATE servers SET privacy_gate_role = ? WHERE id = ?", [KILN_CREW, TIDEPOOL])
    example.conn.commit()
    assert topic_labels(example, [s(f"user:{JUN}")]) == {
        s(f"user:{JUN}"): "<chat_1> (Tidepool Makers)"}


def test_the_batch_gate_answers_as_passes_gate(example, tmp_path):
    config = gate_config(tmp_path, TIDEPOOL, KILN_CREW)
    pairs = [(TIDEPOOL, u) for u in (THEO, JUN, MAREN, PRIYA, "1")] + [(None, JUN), ("5", JUN)]
    failing = lacking_gate_role(example, config, pairs)
    assert failing == {(TIDEPOOL, u) for u in (JUN, MAREN, PRIYA, "1")}
    assert all(((srv, u) in failing) == (not passes_gate(example, config, srv, u))
               for srv, u in pairs)


def test_an_erased_user_is_chat_n(example, db_path):
    r = Cli(db_path)("consent", "erase", PRIYA, "--yes")
    assert r.exit_code == 0, r.stderr
    labels = topic_labels(example, [f"user:{PRIYA}", s(f"user:{PRIYA}"), s(f"dyad:{THEO}:{PRIYA}")])
    assert list(labels.values()) == ["<chat_1> (everywhere)", "<chat_1> (Tidepool Makers)",
                                     "Theo ↔ <chat_1> (Tidepool Makers)"]


def test_label_rows_adds_label_after_the_key_and_numbers_across_batches(example, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(labeler_module, "BATCH_ROWS", 2)
    config = gate_config(tmp_path, TIDEPOOL, KILN_CREW)
    rows = [{"id": 1, "topic_key": s(f"user:{JUN}"), "balance": 2.0},
            {"id": 2, "topic_key": None, "balance": 1.0},
            {"id": 3, "topic_key": s(f"user:{MAREN}"), "balance": 0.5},
            {"id": 4, "topic_key": s(f"user:{JUN}"), "balance": 0.1}]
    out = list(label_rows(example, iter(rows), config=config))
    assert [list(r) for r in out] == [["id", "topic_key", "label", "balance"]] * 4
    assert [r["label"] for r in out] == ["<chat_1> (Tidepool Makers)", None,
                                         "<chat_2> (Tidepool Makers)", "<chat_1> (Tidepool Makers)"]
    consents = list(label_rows(example, [{"user_id": THEO}], key="user_id"))
    assert consents == [{"user_id": THEO, "label": THEO}]   # not a key: its own label
    labeler = Labeler(example)
    assert labeler.labels([f"user:{THEO}"]) == {f"user:{THEO}": "Theo (everywhere)"}


# ------------------------------------------------------------------ a built world
@pytest.fixture
def world(tmp_path, db_path):
    db = build_world(tmp_path, db_path)
    yield db
    db.close()


def test_built_world_labels(world):
    labels = topic_labels(world, [
        f"server:{A}:user:{SAM1}", f"server:{B}:user:{MO}", f"server:{A}:user:{BOT}",
        f"server:{A}:emoji:3001", f"server:{A}:emoji:3002", f"server:{A}:thread:2003",
        f"server:{B}:channel:2101", f"server:{A}:dyad_in_channel:2001:{THEO_ID}:{JUN_ID}"])
    assert list(labels.values()) == [
        "Sam (Tidepool Makers)", "Mo (Kiln Club)", "Helper Bot (bot) (Tidepool Makers)",
        ":glaze:", ":kiln_fire:", "#Kiln build log (Tidepool Makers)", "#general (Kiln Club)",
        "Theo ↔ Jun in #general"]


def test_labels_use_the_newest_names(world, db_path, tmp_path):
    newer = Export(channel_id="2001", channel_name="general-chat", guild_id=A,
                   guild_name="Tidepool Makers Guild", exported_at="2024-04-01T00:00:00.000+00:00",
                   messages=[message(snowflake(60 * 24 * 20), people("Theodore")[THEO_ID], "z")])
    r = Cli(db_path)("ingest", str(newer.write(tmp_path / "newer" / "a.json")))
    assert r.exit_code == 0, r.stderr
    key = f"server:{A}:user_in_channel:2001:{THEO_ID}"
    assert topic_labels(world, [key, f"server:{A}:user:{THEO_ID}"]) == {
        key: "Theodore in #general-chat",
        f"server:{A}:user:{THEO_ID}": "Theodore (Tidepool Makers Guild)"}


# ------------------------------------------------------------------ references
def _usage(db, ref, **kw) -> str:
    with pytest.raises(UsageProblem) as caught:
        resolve_reference(db, ref, **kw)
    assert caught.value.exit_code == 2
    return caught.value.message


def test_at_name_by_user_name_display_name_or_nickname_ignoring_case(world):
    for ref in ("@junbug", "@Jun", "@JUN", f"@{JUN_ID}"):
        assert resolve_reference(world, ref) == f"server:{A}:user:{JUN_ID}"
    assert resolve_reference(world, "@mo") == f"server:{B}:user:{MO}"


def test_a_name_in_several_servers_lists_the_candidates_and_server_picks_one(world):
    message = _usage(world, "@theo")
    assert message == (
        f"@theo matches 2 topics: Theo (Tidepool Makers) = server:{A}:user:{THEO_ID}; "
        f"Theo (Kiln Club) = server:{B}:user:{THEO_ID}. Add --server ID|NAME, or give the key")
    assert resolve_reference(world, "@theo", server=B) == f"server:{B}:user:{THEO_ID}"
    assert resolve_reference(world, "@theo", server="kiln club") == f"server:{B}:user:{THEO_ID}"
    assert resolve_reference(world, "@theo", global_=True) == f"user:{THEO_ID}"
    assert resolve_reference(world, "@theo.builds", global_=True, server=A) == f"user:{THEO_ID}"


def test_two_people_of_one_name_in_one_server_are_ambiguous(world):
    message = _usage(world, "@sam")
    assert f"server:{A}:user:{SAM1}" in message and f"server:{A}:user:{SAM2}" in message
    assert resolve_reference(world, "@sam2") == f"server:{A}:user:{SAM2}"


def test_none_names_the_closest(world):
    assert _usage(world, "@thoe") == "no server user called @thoe: the closest is @Theo"
    assert _usage(world, "@junn", server=A) == (
        "no server user called @junn in Tidepool Makers: the closest is @Jun")
    assert _usage(world, "@mo", server="9") == (
        "no server user called @mo in server 9 (zos knows none yet: ingest an export first)")
    assert _usage(world, "#genral", server=A) == (
        "no channel called #genral in Tidepool Makers: the closest is #general")
    assert _usage(world, "subject:kilm") == "no subject called kilm: the closest is subject:kiln"
    assert _usage(world, "@theo", server="Kiln Clb") == (
        "--server 'Kiln Clb': no server of that name: the closest is Kiln Club")


def test_channels_threads_and_subjects(world):
    assert "2 topics" in _usage(world, "#general")
    assert resolve_reference(world, "#general", server="Tidepool Makers") == (
        f"server:{A}:channel:2001")
    assert resolve_reference(world, "channel:glaze-lab") == f"server:{B}:channel:2102"
    assert resolve_reference(world, "#Kiln Build Log") == f"server:{A}:thread:2003"
    assert resolve_reference(world, "subject:kiln") == f"server:{A}:subject:kiln"
    assert "2 topics" in _usage(world, "subject:glaze")
    assert resolve_reference(world, "subject:Glaze", server=B) == f"server:{B}:subject:glaze"
    assert _usage(world, "#general", global_=True) == (
        "--global: channels belong to a server; leave it out")


def test_dyads(world):
    assert resolve_reference(world, "@jun+@theo") == f"server:{A}:dyad:{THEO_ID}:{JUN_ID}"
    assert resolve_reference(world, "@Theo+@Jun", global_=True) == f"dyad:{THEO_ID}:{JUN_ID}"
    assert _usage(world, "@jun+@mo") == (
        "'@jun+@mo': these two are not two different people known in one server")
    assert _usage(world, "@jun+@nobody").startswith("no server user called @nobody")
    assert _usage(world, "@a+@b+@c") == "'@a+@b+@c': a dyad is two people, @a+@b"


def test_gated_and_erased_people_are_never_matched_nor_offered(world, db_path, tmp_path):
    config = gate_config(tmp_path, A, MEMBERS)   # sam2 lacks it
    assert resolve_reference(world, "@sam", config=config) == f"server:{A}:user:{SAM1}"
    message = _usage(world, "@sam2", config=config)
    assert "sam2" not in message.replace("@sam2:", "")
    assert _usage(world, "@sam2", config=config, global_=True).startswith("no user called @sam2")
    r = Cli(db_path)("consent", "erase", MO, "--yes")
    assert r.exit_code == 0, r.stderr
    message = _usage(world, "@mo")
    assert message.startswith("no server user called @mo: the closest is @")
    assert not message.casefold().endswith("@mo")


def test_keys_pass_through_and_a_malformed_key_says_both_forms(world):
    assert resolve_reference(world, "server:9:user:8") == "server:9:user:8"   # not stored
    with pytest.raises(topics.InvalidTopicKey) as caught:
        resolve_reference(world, "user:abc")
    assert caught.value.message.startswith("invalid topic key 'user:abc': id 'abc'")
    assert "or give a reference: a reference is @name" in caught.value.message
    assert _usage(world, f"user:{THEO_ID}", server=A).startswith(
        "--server and --global go with a reference")
    assert resolve_server(world, A) == A and resolve_server(world, "TIDEPOOL makers") == A


def test_the_closest_name_is_found_among_thousands():
    from zos_cli.labels.references import _closest

    names = {f"member {i}": f"Member {i}" for i in range(5000)} | {"theodora": "Theodora"}
    assert _closest("theodor", names, "@") == ": the closest is @Theodora"
    assert _closest("member 4321x", names, "@") == ": the closest is @Member 4321"
