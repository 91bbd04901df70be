"""The one writer (`zos_cli.observe.writer`) as the live API path uses it: records in, rows and
salience out; newest observation wins; `reactions=None` leaves stored reactions alone."""

from __future__ import annotations

import pytest

from tests.exports import snowflake
from zos_cli.privacy import consent
from zos_cli.store import db as db_module
from zos_cli.observe.writer import ObservationWriter
from zos_cli.records import ChannelRecord, MessageRecord, ReactionRecord, RoleRecord, UserRecord
from zos_cli.salience import SalienceEngine

GUILD = "1001"
CHANNEL = ChannelRecord(id="2001", type="text", server_id=GUILD, server_name="G", name="general")
ALICE = UserRecord(id="101", name="alice", display_name="Alice", roles=[RoleRecord("9", "m")])
BOB = UserRecord(id="102", name="bob", display_name="Bob", roles=[RoleRecord("9", "m")])
CAROL = UserRecord(id="103", name="carol")


def msg(minutes, author, content="x", *, observed="2024-03-02T00:00:00.000000+00:00",
        reactions=None, **kw) -> MessageRecord:
    mid = snowflake(minutes)
    return MessageRecord(id=mid, channel_id=kw.pop("channel_id", CHANNEL.id), author=author,
                         created_at=f"2024-03-01T12:{minutes:02d}:00.000000+00:00",
                         content=content, observed_at=observed, reactions=reactions, **kw)


def thumbs(*users) -> ReactionRecord:
    return ReactionRecord(emoji_name="👍", count=len(users), users=list(users))


@pytest.fixture
def write(db, config):
    writer = ObservationWriter(db, config, source_type="poll", source_id="run-1",
                               engine=SalienceEngine(db, config))

    def go(messages, channel=CHANNEL):
        with db_module.write_transaction(db):
            writer.write_messages(channel, messages)
        return writer
    return go


def reactions_of(db, message_id):
    return db.execute("SELECT user_id, removed_at FROM reactions WHERE message_id = ? "
                      "ORDER BY user_id", [message_id]).fetchall()


def ledger_rows(db) -> int:
    return db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0]


def test_reaction_state_follows_the_newest_observation(db, write):
    first = msg(0, ALICE, reactions=[thumbs(BOB, CAROL)])
    writer = write([first])
    assert writer.counts["reactions_new"] == 2
    rows = ledger_rows(db)
    # Not known in this observation: left alone, and no earning.
    write([msg(0, ALICE, observed="2024-03-03T00:00:00.000000+00:00", reactions=None)])
    assert reactions_of(db, first.id) == [("102", None), ("103", None)]
    # The full state, without Carol: her reaction is removed (kept, stamped).
    write([msg(0, ALICE, observed="2024-03-04T00:00:00.000000+00:00", reactions=[thumbs(BOB)])])
    assert reactions_of(db, first.id) == [("102", None),
                                          ("103", "2024-03-04T00:00:00.000000+00:00")]
    # Back again: restored, and it earns nothing a second time.
    write([msg(0, ALICE, observed="2024-03-05T00:00:00.000000+00:00",
               reactions=[thumbs(BOB, CAROL)])])
    assert reactions_of(db, first.id) == [("102", None), ("103", None)]
    assert ledger_rows(db) == rows and writer.counts["reactions_new"] == 2


def test_an_older_observation_changes_nothing_but_is_recorded(db, write):
    write([msg(0, ALICE, "new text", observed="2024-03-05T00:00:00.000000+00:00",
               mentions=[BOB])])
    writer = write([msg(0, ALICE, "old text", observed="2024-03-01T00:00:00.000000+00:00")])
    assert db.execute("SELECT content FROM messages").fetchall() == [("new text",)]
    assert db.execute("SELECT user_id FROM mentions").fetchall() == [("102",)]
    assert writer.counts["messages_seen"] == 1
    # A newer edit replaces content and mentions.
    write([msg(0, ALICE, "edited", observed="2024-03-09T00:00:00.000000+00:00",
               edited_at="2024-03-08T00:00:00.000000+00:00", mentions=[CAROL])])
    assert db.execute("SELECT content, edited_at FROM messages").fetchall() == [
        ("edited", "2024-03-08T00:00:00.000000+00:00")]
    assert db.execute("SELECT user_id FROM mentions").fetchall() == [("103",)]


def test_replies_form_a_dyad_with_the_stored_parent(db, write):
    parent = msg(0, ALICE)
    write([parent])
    write([msg(1, BOB, "answer", reply_to_id=parent.id, message_type="Reply")])
    assert db.execute("SELECT count(*) FROM topics WHERE key = ?",
                      [f"server:{GUILD}:dyad:101:102"]).fetchone() == (1,)
    # A reply whose parent is unknown forms no dyad.
    write([msg(2, CAROL, "?", reply_to_id="999", message_type="Reply")])
    assert db.execute("SELECT count(*) FROM topics WHERE key LIKE '%dyad:%103%'").fetchone() == (
        0,)


def test_role_sets_are_replaced_by_newer_observations(db, write):
    write([msg(0, ALICE)])
    promoted = UserRecord(id="101", name="alice", roles=[RoleRecord("9", "m"),
                                                         RoleRecord("10", "mods")])
    write([msg(1, promoted)])
    assert db.execute("SELECT role_id FROM user_roles ORDER BY 1").fetchall() == [("10",), ("9",)]
    demoted = UserRecord(id="101", name="alice", roles=[RoleRecord("10", "mods")])
    write([msg(2, demoted)])
    assert db.execute("SELECT role_id FROM user_roles").fetchall() == [("10",)]
    # Unknown roles (a reactor, an old export) leave the stored set alone.
    write([msg(3, UserRecord(id="101", name="alice"))])
    assert db.execute("SELECT role_id FROM user_roles").fetchall() == [("10",)]


def test_deleted_messages_are_stamped_once(db, write):
    writer = write([msg(0, ALICE), msg(1, BOB)])
    with db_module.write_transaction(db):
        assert writer.mark_deleted([snowflake(0), "404"], "2024-03-09T00:00:00.000000+00:00") == 1
        assert writer.mark_deleted([snowflake(0)], "2024-03-10T00:00:00.000000+00:00") == 0
    assert db.execute("SELECT deleted_at FROM messages WHERE id = ?", [snowflake(0)]).fetchone() \
        == ("2024-03-09T00:00:00.000000+00:00",)


def test_the_dm_gate_inside_the_writer(db, write):
    dm = ChannelRecord(id="4001", type="dm", server_id=None, participant_ids=["102"])
    writer = write([msg(0, BOB, "secret", channel_id="4001")], channel=dm)
    assert writer.counts["dm_skipped_without_consent"] == 1
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    consent.grant(db, "102")
    writer = write([msg(0, BOB, "secret", channel_id="4001")], channel=dm)
    assert writer.counts["messages_new"] == 1
    unknown = ChannelRecord(id="4002", type="dm", server_id=None, participant_ids=None)
    writer = write([msg(1, BOB, "who?", channel_id="4002")], channel=unknown)
    assert writer.counts["dm_skipped_without_consent"] == 2


def test_counts(db, write):
    writer = write([msg(0, ALICE, reactions=[thumbs(BOB)]), msg(1, BOB)])
    writer = write([msg(1, BOB), msg(2, CAROL, mentions=[ALICE])])
    assert writer.counts == {"messages_new": 3, "messages_seen": 1, "reactions_new": 1,
                             "users": 3, "channels": 1, "dm_skipped_without_consent": 0}
