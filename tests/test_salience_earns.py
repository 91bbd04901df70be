"""events_to_earns: the table of docs/salience.md#what-earns, in order, with focus, the gate and the self rules."""

from __future__ import annotations

import pytest

from tests.salience_support import dm, msg, react
from zos_cli.config import Config
from zos_cli.events import LayerRunCompletedEvent, SubjectNamedEvent
from zos_cli.salience import events_to_earns


def everyone(server_id, user_id):
    return True


def earns(event, config=None, gate=everyone, **kw):
    return events_to_earns(event, config or Config(), gate, **kw)


def test_public_message_earns_user_in_channel_user_and_channel():
    assert earns(msg(1, "100")) == [
        ("server:1:user_in_channel:10:100", 1.0),
        ("server:1:user:100", 1.0),
        ("server:1:channel:10", 1.0),
    ]


@pytest.mark.parametrize("facts", [{"has_media": True}, {"has_links": True}])
def test_media_or_links_multiply_by_1_2(facts):
    assert [a for _k, a in earns(msg(1, "100", **facts))] == [1.2, 1.2, 1.2]


def test_reply_then_mentions_then_emoji_then_roles_in_table_order():
    event = msg(1, "100", reply_to_author_id="200", mentioned_user_ids=("300", "200", "300"),
                custom_emoji_ids=("77", "77"), mentioned_role_ids=("5", "5"))
    assert earns(event)[3:] == [
        ("server:1:dyad:100:200", 1.5),
        ("server:1:dyad_in_channel:10:100:200", 1.5),
        # 200's automatic mention counts only as the reply; 300 counted once
        ("server:1:dyad:100:300", 2.0),
        ("server:1:dyad_in_channel:10:100:300", 2.0),
        ("server:1:emoji:77", 0.5),  # per occurrence
        ("server:1:emoji:77", 0.5),
        ("server:1:role:5", 2.0),
    ]


def test_self_reply_self_mention_and_self_reaction_earn_nothing():
    event = msg(1, "100", reply_to_author_id="100", mentioned_user_ids=("100",))
    assert [k for k, _a in earns(event)] == [
        "server:1:user_in_channel:10:100", "server:1:user:100", "server:1:channel:10"]
    assert earns(react(1, "100", "100", emoji="77")) == []


def test_mention_of_zos_earns_the_server_self_topic_not_a_dyad():
    config = Config.model_validate({"discord": {"self_user_id": "999"}})
    assert earns(msg(1, "100", mentioned_user_ids=("999",)), config)[3:] == [
        ("server:1:self:zos", 5.0)]
    # zos mentioning itself, and the state-learned id passed explicitly
    assert earns(msg(1, "999", mentioned_user_ids=("999",)), config)[3:] == []
    assert earns(msg(1, "100", mentioned_user_ids=("999",)), self_user_id="999")[3:] == [
        ("server:1:self:zos", 5.0)]


def test_thread_message_counts_for_the_parent_channel_unless_threads_are_topics():
    event = msg(1, "100", channel="20", parent_channel_id="10")
    assert earns(event) == [
        ("server:1:user_in_channel:10:100", 1.0),
        ("server:1:user:100", 1.0),
        ("server:1:channel:10", 1.0),
    ]
    config = Config.model_validate({"servers": {"1": {"threads_as_topics": True}}})
    assert earns(event, config)[2] == ("server:1:thread:20", 1.0)


def test_thread_creation_is_the_one_system_message_that_earns():
    created = msg(1, "100", mtype="ThreadCreated", system=True)
    assert earns(created) == [("server:1:user:100", 2.0), ("server:1:channel:10", 2.0)]
    assert earns(msg(2, "100", mtype="GuildMemberJoin", system=True)) == []


def test_reaction_earns_author_reactor_dyad_and_custom_emoji():
    assert earns(react(1, "100", "200", emoji="77")) == [
        ("server:1:user:100", 0.5),
        ("server:1:user:200", 0.5),
        ("server:1:dyad:100:200", 0.5),
        ("server:1:emoji:77", 0.5),
    ]
    assert len(earns(react(1, "100", "200"))) == 3  # unicode emoji: no emoji topic


def test_server_focus_multiplies_every_earn_in_that_server():
    config = Config.model_validate({"servers": {"1": {"focus": 2.5}}})
    assert [a for _k, a in earns(msg(1, "100", has_media=True), config)] == [3.0, 3.0, 3.0]
    assert earns(react(1, "100", "200"), config)[0] == ("server:1:user:100", 1.25)
    assert earns(msg(1, "100", server="2"), config)[0][1] == 1.0
    muted = Config.model_validate({"servers": {"1": {"focus": 0}}})
    assert earns(msg(1, "100"), muted) == []


def test_privacy_gate_users_earn_nothing_and_form_no_dyads():
    gated = {"300"}

    def gate(server_id, user_id):
        return user_id not in gated

    assert earns(msg(1, "300"), gate=gate) == []
    assert earns(react(1, "100", "300", emoji="77"), gate=gate) == []
    event = msg(1, "100", reply_to_author_id="300", mentioned_user_ids=("300",))
    assert [k for k, _a in earns(event, gate=gate)] == [
        "server:1:user_in_channel:10:100", "server:1:user:100", "server:1:channel:10"]
    # reacting to a gated author: only the reactor and the emoji earn
    assert earns(react(1, "300", "100", emoji="77"), gate=gate) == [
        ("server:1:user:100", 0.5), ("server:1:emoji:77", 0.5)]


def test_dm_earns_the_global_user_of_the_other_participant():
    config = Config.model_validate({"discord": {"self_user_id": "999"}})
    assert earns(dm(1, "100", ["100"]), config) == [("user:100", 1.5)]
    assert earns(dm(2, "999", ["100"]), config) == [("user:100", 1.5)]  # zos writing to them
    assert earns(dm(3, "100", ["100", "200"]), config) == [("user:100", 1.5)]
    assert earns(dm(4, "999", ["100", "200"]), config) == [("user:100", 1.5), ("user:200", 1.5)]


def test_subject_named_and_layer_run_completed():
    config = Config.model_validate({"servers": {"1": {"focus": 0.5}}})
    assert earns(SubjectNamedEvent("1", "chess", "2024-03-01T00:00:00.000000+00:00"), config) == [
        ("server:1:subject:chess", 1.0)]
    assert earns(LayerRunCompletedEvent("2024-03-01T00:00:00.000000+00:00")) == [("self:zos", 1.0)]


def test_weights_come_from_the_configuration():
    config = Config.model_validate({"salience": {"weights": {"message": 3.0, "reply": 0.25}}})
    event = msg(1, "100", reply_to_author_id="200")
    assert [a for _k, a in earns(event, config)] == [3.0, 3.0, 3.0, 0.25, 0.25]
