"""The one salience event builder (`zos_cli.events.message_salience_events`): what a
`MessageRow` and its reactions become, and that the writer (from records) and rebuild (from
the stored rows) hand it the same rows."""

from __future__ import annotations

from tests.exports import snowflake
from zos_cli.events import MessageEvent, MessageRow, ReactionEvent, message_salience_events
from zos_cli.observe.writer import Observation, ObservationWriter
from zos_cli.privacy import consent
from zos_cli.store.db import self_user_id
from zos_cli.records import ChannelRecord, MessageRecord, ReactionRecord, UserRecord
from zos_cli.salience.rebuild import message_events
from zos_cli.store import db as db_module

T0 = "2024-03-01T12:00:00.000000+00:00"


def row(**changes) -> MessageRow:
    """A plain message in a server's text channel; `changes` make it something else."""
    plain = MessageRow(
        id="500", server_id="1", channel_id="10", channel_type="text",
        channel_parent_id="7",  # a category: not a thread's parent channel
        channel_participant_ids=None, author_id="101", created_at=T0,
        message_type="Default", has_media=0, has_links=0, custom_emoji_ids=[],
        reply_to_author_id=None, mentioned_user_ids=(), mentioned_role_ids=(),
    )
    return plain._replace(**changes)


def test_a_plain_message_is_one_message_event():
    assert message_salience_events(row()) == [MessageEvent(
        message_id="500", server_id="1", channel_id="10", author_id="101", created_at=T0,
        message_type="Default", is_system=False)]


def test_a_reply_carries_its_parents_author():
    [event] = message_salience_events(row(message_type="Reply", reply_to_author_id="102"))
    assert event.reply_to_author_id == "102"
    assert not event.is_system  # a reply is a person talking


def test_mentions_are_deduplicated_and_sorted_whatever_order_they_come_in():
    # A record's mentions come in text order with repeats; the stored rows one per id.
    from_record = row(mentioned_user_ids=["103", "102", "103"], mentioned_role_ids=["9", "8", "9"])
    from_rows = row(mentioned_user_ids=["102", "103"], mentioned_role_ids=["8", "9"])
    [event] = message_salience_events(from_record)
    assert event.mentioned_user_ids == ("102", "103")
    assert event.mentioned_role_ids == ("8", "9")
    assert message_salience_events(from_rows) == [event]


def test_a_dm_carries_its_participants_and_other_channels_do_not():
    [event] = message_salience_events(row(server_id=None, channel_type="dm",
                                          channel_participant_ids=["102", "101"]))
    assert event.server_id is None
    assert event.dm_participant_ids == ("102", "101")  # as stored: the channel's order
    [group] = message_salience_events(row(server_id=None, channel_type="group_dm",
                                          channel_participant_ids=["101", "102", "103"]))
    assert group.dm_participant_ids == ("101", "102", "103")
    # A server channel's participant list (never expected) is not a DM's.
    [text] = message_salience_events(row(channel_participant_ids=["102"]))
    assert text.dm_participant_ids == ()


def test_a_thread_message_names_the_threads_parent_channel():
    [event] = message_salience_events(row(channel_id="11", channel_type="public_thread",
                                          channel_parent_id="10"))
    assert (event.channel_id, event.parent_channel_id) == ("11", "10")
    # Any other channel's parent (its category) is not a parent channel.
    assert message_salience_events(row())[0].parent_channel_id is None


def test_system_messages_media_links_and_custom_emoji():
    [event] = message_salience_events(row(message_type="GuildMemberJoin", has_media=1,
                                          has_links=1, custom_emoji_ids=["555", "555"]))
    assert event.is_system
    assert (event.has_media, event.has_links) == (True, True)
    assert event.custom_emoji_ids == ("555", "555")  # one per occurrence


def test_reactions_follow_the_message_sorted_by_reactor_emoji_and_emoji_id():
    thread = row(channel_id="11", channel_type="private_thread", channel_parent_id="10")
    reactions = [("103", "👍", ""), ("102", "blob", "555"), ("102", "👍", "")]
    events = message_salience_events(thread, reactions)
    assert isinstance(events[0], MessageEvent)
    assert events[1:] == [
        ReactionEvent(message_id="500", server_id="1", channel_id="11",
                      message_author_id="101", reactor_id=reactor, created_at=T0,
                      emoji_id=emoji_id, parent_channel_id="10")
        for reactor, emoji_id in [("102", "555"), ("102", ""), ("103", "")]
    ]
    # "blob" sorts before "👍": the order is (reactor, emoji, emoji id), as rebuild reads them.


def test_new_reactions_on_a_message_earned_before_come_alone():
    events = message_salience_events(row(), [("102", "👍", "")], with_message=False)
    assert [type(e) for e in events] == [ReactionEvent]
    assert message_salience_events(row(), with_message=False) == []


# ---------------------------------------------------------------------- writer and rebuild
GUILD = "1001"
TEXT = ChannelRecord(id="2001", type="text", server_id=GUILD, server_name="G", name="general",
                     category_id="2000", parent_id="2000")
THREAD = ChannelRecord(id="2002", type="public_thread", server_id=GUILD, parent_id="2001")
ALICE, BOB, CAROL = (UserRecord(id=uid, name=name) for uid, name in
                     [("101", "alice"), ("102", "bob"), ("103", "carol")])
DM = ChannelRecord(id="3001", type="dm", server_id=None, participant_ids=[BOB.id])


class RecordingEngine:
    """Stands in for the salience engine: keeps what the writer feeds it."""

    def __init__(self):
        self.events = []

    def apply(self, event) -> None:
        self.events.append(event)

    def flush(self, _label) -> int:
        return 0


def record(minutes, author, **kw) -> MessageRecord:
    return MessageRecord(id=snowflake(minutes), channel_id=kw.pop("channel").id, author=author,
                         created_at=f"2024-03-01T12:{minutes:02d}:00.000000+00:00",
                         observed_at="2024-03-02T00:00:00.000000+00:00", **kw)


def test_the_writer_feeds_the_events_rebuild_replays_from_its_rows(db, config):
    consent.grant(db, BOB.id)
    first = record(0, ALICE, channel=TEXT, content="hi <:blob:555> <:blob:555>",
                   inline_custom_emoji_ids=["555", "555"], mentions=[CAROL, BOB, CAROL],
                   role_mention_ids=["9", "8", "9"], link_urls=["https://example.org"],
                   reactions=[ReactionRecord("👍", count=2, users=[CAROL, BOB]),
                              ReactionRecord("blob", "555", count=1, users=[BOB])])
    reply = record(1, BOB, channel=TEXT, message_type="Reply", reply_to_id=first.id)
    in_thread = record(2, CAROL, channel=THREAD, reactions=[
        ReactionRecord("👍", count=1, users=[ALICE])])
    joined = record(3, CAROL, channel=TEXT, message_type="GuildMemberJoin")
    in_dm = record(4, BOB, channel=DM, content="psst")
    engine = RecordingEngine()
    writer = ObservationWriter(db, config, source_type="poll", source_id="run-1", engine=engine)
    with db_module.write_transaction(db):
        writer.write_batch([Observation(channel, message, "run-1") for channel, message in [
            (TEXT, first), (TEXT, reply), (THREAD, in_thread), (TEXT, joined), (DM, in_dm)]])
    assert len(engine.events) == 5 + 4  # every message, then 3 + 1 reactions

    stats = {"dm_messages_skipped": 0}
    replayed = [event for _key, events in message_events(db, stats, self_user_id(db, config))
                for event in events]
    assert replayed == engine.events
    by_id = {e.message_id: e for e in engine.events if isinstance(e, MessageEvent)}
    assert by_id[reply.id].reply_to_author_id == ALICE.id
    assert by_id[first.id].mentioned_user_ids == (BOB.id, CAROL.id)
    assert by_id[in_thread.id].parent_channel_id == TEXT.id
    assert by_id[in_dm.id].dm_participant_ids == (BOB.id,)
    assert by_id[joined.id].is_system

