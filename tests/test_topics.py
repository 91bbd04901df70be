"""Topic keys: every kind of docs/salience.md#topics builds, parses back, and knows its category, group, cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_cli import topics
from zos_cli.config import Caps
from zos_cli.errors import EXIT_USAGE
from zos_cli.topics import InvalidTopicKey, Topic


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
