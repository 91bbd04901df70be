"""Topic keys: every kind of docs/salience.md#topics builds, parses back, and knows its category,
group, cap; the table of kinds agrees with the keys; the GLOB helpers match exactly the keys they name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_cli import topics
from zos_cli.config import Caps
from zos_cli.errors import EXIT_USAGE
from zos_cli.topics import KINDS, InvalidTopicKey, Topic


@pytest.mark.parametrize("key, category, group, cap", [
    ("user:42", "users", "global", 150.0),
    ("dyad:9:10", "dyads", "global", 100.0),
    ("self:zos", "self", "self", 200.0),
    ("server:1:user:42", "users", "social", 100.0),
    ("server:1:channel:5", "channels", "spaces", 150.0),
    ("server:1:thread:6", "threads", "spaces", 50.0),
    ("server:1:role:7", "roles", "semantic", 80.0),
    ("server:1:dyad:9:10", "dyads", "social", 80.0),
    ("server:1:user_in_channel:5:42", "user_in_channel", "social", 40.0),
    ("server:1:dyad_in_channel:5:9:10", "dyad_in_channel", "social", 30.0),
    ("server:1:subject:board_games", "subjects", "semantic", 60.0),
    ("server:1:emoji:8", "emoji", "culture", 60.0),
    ("server:1:self:zos", "self", "self", 100.0),
])
def test_every_kind_has_category_group_and_cap(key, category, group, cap):
    topic = topics.parse(key)
    assert topic.key == key
    assert (topic.category, topic.group, topics.cap_of(topic, Caps())) == (category, group, cap)
    assert topic.is_global == (not key.startswith("server:"))
    assert topics.category_of(key) == category and topics.group_of(key) == group


def test_builders_produce_the_documented_keys():
    assert topics.user("42") == "user:42"
    assert topics.user("42", "1") == "server:1:user:42"
    assert topics.dyad("10", "9") == "dyad:9:10"  # numeric order, not text order
    assert topics.dyad("10", "9", "1") == "server:1:dyad:9:10"
    assert topics.self_topic() == "self:zos" and topics.self_topic("1") == "server:1:self:zos"
    assert topics.channel("1", "5") == "server:1:channel:5"
    assert topics.thread("1", "6") == "server:1:thread:6"
    assert topics.role("1", "7") == "server:1:role:7"
    assert topics.user_in_channel("1", "5", "42") == "server:1:user_in_channel:5:42"
    assert topics.dyad_in_channel("1", "5", "100", "20") == "server:1:dyad_in_channel:5:20:100"
    assert topics.subject("1", "_x9") == "server:1:subject:_x9"
    assert topics.emoji("1", "8") == "server:1:emoji:8"


@pytest.mark.parametrize("key, message", [
    ("", "invalid topic key '': empty"),
    ("channel:5", "invalid topic key 'channel:5': channel topics are server-scoped: "
                  "prefix them with server:<id>:"),
    ("server:1:usr:5", "invalid topic key 'server:1:usr:5': unknown kind 'usr'"),
    ("user:abc", "invalid topic key 'user:abc': id 'abc' is not a Discord id "
                 "(digits, no leading zero)"),
    ("user:007", "invalid topic key 'user:007': id '007' is not a Discord id "
                 "(digits, no leading zero)"),
    ("dyad:10:9", "invalid topic key 'dyad:10:9': dyad ids must be sorted ascending: 9:10"),
    ("dyad:9:9", "invalid topic key 'dyad:9:9': a dyad is two different users"),
    ("server:1:dyad_in_channel:5:10:9",
     "invalid topic key 'server:1:dyad_in_channel:5:10:9': dyad ids must be sorted ascending: 9:10"),
    ("server:x:user:5", "invalid topic key 'server:x:user:5': server id 'x' is not a Discord id "
                        "(digits, no leading zero)"),
    ("server:1:subject:Board", "invalid topic key 'server:1:subject:Board': subject name "
                               "'Board' must match [a-z_][a-z0-9_]* (≤ 64 chars)"),
    ("user:12\n", "invalid topic key 'user:12\\n': id '12\\n' is not a Discord id "
                  "(digits, no leading zero)"),
    ("server:1:subject:kilns\n", "invalid topic key 'server:1:subject:kilns\\n': subject name "
                                  "'kilns\\n' must match [a-z_][a-z0-9_]* (≤ 64 chars)"),
    ("user:１２", "invalid topic key 'user:１２': id '１２' is not a Discord id "
                "(digits, no leading zero)"),
    ("self:me", "invalid topic key 'self:me': the self topic is self:zos"),
    ("user:1:2", "invalid topic key 'user:1:2': a user key has 1 part(s) after 'user', not 2"),
    ("server:1", "invalid topic key 'server:1': server-scoped keys are server:<id>:<kind>:…"),
])
def test_anything_else_is_rejected_with_a_clear_message(key, message):
    with pytest.raises(InvalidTopicKey) as caught:
        topics.parse(key)
    assert caught.value.message == f"{message} ({topics.KEY_HELP})"
    assert caught.value.exit_code == EXIT_USAGE
    assert not topics.is_valid(key)


snowflakes = st.integers(min_value=1, max_value=2**64 - 1).map(str)
subjects = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
servers = st.one_of(st.none(), snowflakes)


@st.composite
def any_topic(draw) -> Topic:
    server = draw(servers)
    kinds = sorted(topics.GLOBAL_KINDS) if server is None else [
        "user", "dyad", "channel", "thread", "role", "user_in_channel", "dyad_in_channel",
        "subject", "emoji", "self"]
    kind = draw(st.sampled_from(kinds))
    if kind == "self":
        ids = ("zos",)
    elif kind == "subject":
        ids = (draw(subjects),)
    elif kind in ("dyad", "dyad_in_channel"):
        pair = draw(st.lists(snowflakes, min_size=2, max_size=2, unique=True))
        pair = tuple(sorted(pair, key=int))
        ids = pair if kind == "dyad" else (draw(snowflakes), *pair)
    elif kind == "user_in_channel":
        ids = (draw(snowflakes), draw(snowflakes))
    else:
        ids = (draw(snowflakes),)
    return Topic(kind, server, ids)


@settings(max_examples=300, deadline=None)
@given(any_topic())
def test_parse_of_build_is_identity(topic):
    assert topics.parse(topic.key) == topic
    assert topics.parse(topic.key).key == topic.key


@settings(max_examples=200, deadline=None)
@given(st.lists(snowflakes, min_size=2, max_size=2, unique=True), servers)
def test_dyad_ids_are_sorted_numerically_whatever_the_order_given(pair, server):
    a, b = pair
    key = topics.dyad(a, b, server)
    assert key == topics.dyad(b, a, server)
    low, high = key.split(":")[-2:]
    assert int(low) < int(high)
    assert {low, high} == {a, b}


# ---------------------------------------------------------------- the table of kinds
def test_every_kind_has_a_known_category_group_and_cap_field():
    fields = set(Caps.model_fields)
    assert topics.CATEGORIES == tuple(k.category for k in topics.KINDS.values())
    assert len(set(topics.CATEGORIES)) == len(topics.KINDS)  # one category per kind
    for name, kind in topics.KINDS.items():
        assert kind.name == name
        assert kind.category in topics.CATEGORIES
        assert kind.server_group in topics.GROUPS and kind.server_cap in fields
        assert kind.may_be_global == (name in topics.GLOBAL_KINDS)
        global_fields = (kind.global_group, kind.global_cap, kind.global_label)
        if kind.may_be_global:
            assert kind.global_group in topics.GROUPS and kind.global_cap in fields
            assert kind.global_label
        else:
            assert global_fields == (None, None, None)
    used = {k.server_group for k in topics.KINDS.values()}
    used |= {k.global_group for k in topics.KINDS.values() if k.may_be_global}
    assert used == set(topics.GROUPS)


def test_kinds_and_their_labels():
    assert topics.GLOBAL_KINDS == {"user", "dyad", "self"}
    assert {name: (k.label, k.global_label) for name, k in topics.KINDS.items()} == {
        "user": ("server user", "user"), "dyad": ("dyad", "dyad"), "channel": ("channel", None),
        "thread": ("thread", None), "user_in_channel": ("user in channel", None),
        "dyad_in_channel": ("dyad in channel", None), "subject": ("subject", None),
        "role": ("role", None), "emoji": ("emoji", None), "self": ("self", "self"),
    }
    assert topics.parse("server:1:user:5").label == "server user"
    assert topics.parse("user:5").label == "user"
    assert topics.parse("server:1:user_in_channel:5:6").label == "user in channel"


def test_the_key_grammar_is_the_tables():
    arity = {name: k.arity for name, k in topics.KINDS.items()}
    assert arity == {"user": 1, "dyad": 2, "channel": 1, "thread": 1, "user_in_channel": 2,
                     "dyad_in_channel": 3, "subject": 1, "role": 1, "emoji": 1, "self": 1}
    pairs = {name for name, k in topics.KINDS.items() if k.is_pair}
    assert pairs == {"dyad", "dyad_in_channel"}
    users = {name: [p.refers_to == "user" for p in k.parts] for name, k in topics.KINDS.items()
             if any(p.refers_to == "user" for p in k.parts)}
    assert users == {"user": [True], "dyad": [True, True], "user_in_channel": [False, True],
                     "dyad_in_channel": [False, True, True]}
    forms = {p.form for k in topics.KINDS.values() for p in k.parts}
    assert forms == {topics.SNOWFLAKE, topics.SUBJECT_NAME, topics.SELF_NAME}


@settings(max_examples=300, deadline=None)
@given(any_topic())
def test_the_table_agrees_with_every_parsed_key(topic):
    kind = topics.KINDS[topic.kind]
    parsed = topics.parse(topic.key)
    assert len(parsed.ids) == kind.arity
    assert parsed.category == kind.category
    assert parsed.group == (kind.server_group if topic.server_id else kind.global_group)
    assert parsed.cap_field == (kind.server_cap if topic.server_id else kind.global_cap)
    assert topics.server_id_of(topic.key) == topic.server_id
    expected = Topic(topic.kind, None, topic.ids).key if (
        topic.server_id and kind.may_be_global) else None
    assert topics.global_key_of(topic.key) == expected


def test_stored_key_helpers():
    assert topics.server_id_of("server:12:dyad:1:2") == "12"
    assert topics.server_id_of("dyad:1:2") is None
    assert topics.global_key_of("server:12:dyad:1:2") == "dyad:1:2"
    assert topics.global_key_of("server:12:self:zos") == "self:zos"
    assert topics.global_key_of("server:12:channel:3") is None
    assert topics.global_key_of("user:3") is None
    assert topics.global_key_of("server:12:user:3:4") is None  # not a user key's parts
    assert topics.global_key_of("server:12") is None


# ---------------------------------------------------------------- GLOB patterns
KEYS = [
    "user:12", "user:123", "user:112", "dyad:12:30", "dyad:5:12", "dyad:5:123", "dyad:123:400",
    "dyad:1:2", "self:zos",
    "server:1:user:12", "server:1:user:123", "server:2:user:12", "server:12:user:5",
    "server:1:dyad:12:30", "server:1:dyad:5:12", "server:1:dyad:5:123", "server:12:dyad:5:6",
    "server:1:user_in_channel:7:12", "server:1:user_in_channel:12:5",
    "server:1:user_in_channel:7:123", "server:1:dyad_in_channel:7:12:30",
    "server:1:dyad_in_channel:7:5:12", "server:1:dyad_in_channel:12:5:6",
    "server:1:dyad_in_channel:7:5:123", "server:1:channel:12", "server:1:thread:12",
    "server:1:role:12", "server:1:emoji:12", "server:1:subject:user", "server:1:self:zos",
    "server:2:subject:kilns", "server:1:subject:kilns",
]


def _matching(patterns: list[str]) -> set[str]:
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (key TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [(k,) for k in KEYS])
    assert all(topics.is_valid(k) for k in KEYS)
    if not patterns:
        return set()
    where = " OR ".join("key GLOB ?" for _ in patterns)
    return {r[0] for r in db.execute(f"SELECT key FROM t WHERE {where}", patterns)}


def test_user_globs_match_exactly_that_users_keys():
    both = ("user", "dyad", "user_in_channel", "dyad_in_channel")
    assert _matching(topics.user_globs("12", both)) == {
        "server:1:user:12", "server:2:user:12", "server:1:dyad:12:30", "server:1:dyad:5:12",
        "server:1:user_in_channel:7:12", "server:1:dyad_in_channel:7:12:30",
        "server:1:dyad_in_channel:7:5:12"}
    assert _matching(topics.user_globs("12", both, "1")) == {
        "server:1:user:12", "server:1:dyad:12:30", "server:1:dyad:5:12",
        "server:1:user_in_channel:7:12", "server:1:dyad_in_channel:7:12:30",
        "server:1:dyad_in_channel:7:5:12"}
    assert _matching(topics.user_globs("12", both, None)) == {
        "user:12", "dyad:12:30", "dyad:5:12"}
    assert topics.user_globs("12", ("user_in_channel",), None) == []  # never global
    assert _matching(topics.user_globs("123", ("user", "dyad"), None)) == {
        "user:123", "dyad:5:123", "dyad:123:400"}


def test_the_privacy_patterns_are_the_ones_they_always_were():
    from zos_cli.privacy.quarantine import user_topic_patterns

    assert user_topic_patterns("12") == [
        "server:*:user:12", "server:*:dyad:12:*", "server:*:dyad:*:12",
        "user:12", "dyad:12:*", "dyad:*:12"]
    assert user_topic_patterns("12", "3")[:3] == [
        "server:3:user:12", "server:3:dyad:12:*", "server:3:dyad:*:12"]
    assert topics.user_globs("12", ("user_in_channel", "dyad_in_channel")) == [
        "server:*:user_in_channel:*:12", "server:*:dyad_in_channel:*:12:*",
        "server:*:dyad_in_channel:*:*:12"]


def test_kind_server_and_copy_globs_match_exactly():
    assert topics.server_kind_glob("subject") == "server:*:subject:*"
    assert _matching([topics.server_kind_glob("subject")]) == {
        "server:1:subject:user", "server:2:subject:kilns", "server:1:subject:kilns"}
    assert _matching([topics.server_kind_glob("user")]) == {
        "server:1:user:12", "server:1:user:123", "server:2:user:12", "server:12:user:5"}
    assert _matching([topics.server_kind_glob("dyad")]) == {
        "server:1:dyad:12:30", "server:1:dyad:5:12", "server:1:dyad:5:123",
        "server:12:dyad:5:6"}
    assert _matching([topics.server_copies_glob("user:12")]) == {
        "server:1:user:12", "server:2:user:12"}
    assert _matching([topics.server_copies_glob("dyad:5:12")]) == {"server:1:dyad:5:12"}
    assert _matching([topics.server_keys_glob("12")]) == {
        "server:12:user:5", "server:12:dyad:5:6"}
    with pytest.raises(KeyError):
        topics.server_kind_glob("usr")


# ---------------------------------------------------------------- related kinds
def _scoped_kind(key: str, of_server: bool) -> str:
    """How a related key is named in the table, seen from a topic that is (of_server) or is
    not server-scoped: a server topic names its own server's kinds bare ("user") and global
    ones as "global user"; a global topic names "global user" and "server user"."""
    from zos_cli.salience.relations import parse_stored

    parts = parse_stored(key)
    if of_server and parts.server_id is not None:
        return parts.kind
    return ("server " if parts.server_id is not None else "global ") + parts.kind


_RELATION_SAMPLES = [
    "server:1:user:5", "server:1:dyad:5:7", "server:1:channel:9", "server:1:thread:11",
    "server:1:user_in_channel:9:5", "server:1:dyad_in_channel:9:5:7", "server:1:subject:kiln",
    "server:1:role:13", "server:1:emoji:17", "server:1:self:zos",
    "user:5", "dyad:5:7", "self:zos",
]


@pytest.mark.parametrize("key", _RELATION_SAMPLES)
def test_relations_name_only_the_related_kinds_of_the_table(key):
    from zos_cli.salience.relations import exact_related_keys, owners_of, parse_stored

    topic = parse_stored(key)
    kind = KINDS[topic.kind]
    declared = kind.related if topic.server_id is not None else kind.global_related
    owners = owners_of(topic, parent_channel_id="9")
    keys = set(owners) | set(exact_related_keys(topic, owners, user_id="5"))
    named = {_scoped_kind(k, topic.server_id is not None) for k in keys}
    assert named <= set(declared), f"{key} relates to {named - set(declared)} (not in the table)"


def test_related_kinds_are_declared_both_ways():
    """related(t) is symmetric: if a kind names another, that one names it back."""
    def entries(name: str, of_server: bool) -> set[tuple[str, bool]]:
        kind = KINDS[name]
        out = set()
        for entry in (kind.related if of_server else kind.global_related):
            scope, _, other = entry.rpartition(" ")
            out.add((other, of_server if not scope else scope == "server"))
        return out

    for name, kind in KINDS.items():
        for of_server in (True, False) if kind.may_be_global else (True,):
            for other, other_on_server in entries(name, of_server):
                assert (name, of_server) in entries(other, other_on_server), (name, other)
