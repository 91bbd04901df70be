"""`zos poll` and archived threads: a thread archived since the previous poll is polled once
more (its last messages), one created and archived between two polls is found, and older
archived threads cost nothing beyond the one archived-threads request per parent channel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.fake_discord import fake, poll_with, small_world  # noqa: F401
from zos_cli.ingest.archived import STATE_KEY
from zos_cli.timeutil import parse_time, to_stored

HOUR = timedelta(hours=1)


def _ids(db, channel: str) -> list[str]:
    return sorted((r[0] for r in db.execute("SELECT id FROM messages WHERE channel_id = ?",
                                            [channel])), key=int)


def _read(fake, channel: str) -> int:
    """Message requests sent for one channel."""
    return sum(1 for e in fake.requests("messages") if e.major == f"channels/{channel}")


def _archived_requests(fake) -> list[tuple[str, dict]]:
    return [(e.major, e.query) for e in fake.requests("archived")]


def _ago(delta: timedelta) -> datetime:
    return datetime.now(timezone.utc) - delta


def _as_if_polled_long_ago(db, delta: timedelta = 3 * HOUR) -> None:
    """Move every archived-thread mark back, as if the last poll had run `delta` ago."""
    for key, value in db.execute("SELECT key, value FROM zos_state WHERE key LIKE ?",
                                 [STATE_KEY.format("%")]).fetchall():
        db.execute("UPDATE zos_state SET value = ? WHERE key = ?",
                   [to_stored(parse_time(value) - delta), key])
    db.conn.commit()


def test_a_message_posted_just_before_the_thread_was_archived(db, fake):
    small_world(fake)
    fake.add_thread("200", "250", "a thread")
    fake.post("250", "501", "first")
    poll_with(db, fake)
    late = fake.post("250", "502", "the last word, then the thread is archived")
    fake.archive("250")
    fake.clear_log()
    s = poll_with(db, fake).summary
    assert (s["errors"], s["skipped_channels"], s["messages_new"]) == ([], [], 1)
    assert late["id"] in _ids(db, "250")
    assert _archived_requests(fake) == [("channels/200", {"limit": "100"}),
                                        ("channels/201", {"limit": "100"})]
    assert _read(fake, "250") == 1


def test_a_thread_created_and_archived_between_two_polls(db, fake):
    small_world(fake)
    fake.post("200", "501", "before")
    poll_with(db, fake)
    fake.add_thread("201", "260", "short-lived")
    posted = [fake.post("260", "503", f"in the thread {i}") for i in range(3)]
    fake.archive("260")
    s = poll_with(db, fake).summary
    assert s["messages_new"] == 3 and s["errors"] == []
    assert _ids(db, "260") == [m["id"] for m in posted]
    assert db.execute("SELECT type, parent_id FROM channels WHERE id = '260'").fetchone() == (
        "public_thread", "201")


def test_older_archived_threads_are_not_walked_again(db, fake):
    small_world(fake)
    for i in range(150):   # more than a page of them, all archived before the first poll
        thread = str(3000 + i)
        fake.add_thread("200", thread, f"old {i}")
        fake.post(thread, "501", "old news")
        fake.archive(thread, _ago(2 * HOUR + i * timedelta(seconds=1)))
    fake.post("200", "501", "hello")
    poll_with(db, fake)
    # The first poll of a channel does not look at its archived threads: that is a backfill.
    assert _archived_requests(fake) == []
    assert db.execute("SELECT count(*) FROM messages WHERE channel_id != '200'").fetchone()[0] == 0
    _as_if_polled_long_ago(db, HOUR)
    fake.add_thread("200", "261", "recent")
    fake.post("261", "502", "archived since the last poll")
    fake.archive("261", _ago(HOUR / 2))
    fake.clear_log()
    assert poll_with(db, fake).summary["messages_new"] == 1
    # One page per parent: its newest thread is recent, the next one is older than the mark.
    assert _archived_requests(fake) == [("channels/200", {"limit": "100"}),
                                        ("channels/201", {"limit": "100"})]
    assert _read(fake, "261") == 1
    assert all(_read(fake, str(3000 + i)) == 0 for i in range(150))
    # The next poll: 261 was archived before the previous poll began, so it is not read again.
    fake.clear_log()
    poll_with(db, fake)
    assert len(_archived_requests(fake)) == 2 and _read(fake, "261") == 0
    assert [e.route for e in fake.requests()].count("messages") == 2   # channels 200 and 201


def test_more_than_a_page_of_recently_archived_threads(db, fake):
    small_world(fake)
    poll_with(db, fake)
    _as_if_polled_long_ago(db)
    for i in range(120):
        thread = str(4000 + i)
        fake.add_thread("200", thread, f"t{i}")
        fake.post(thread, "501", f"message {i}")
        fake.archive(thread, _ago(2 * HOUR - i * timedelta(seconds=1)))
    fake.add_thread("200", "4999", "archived before the previous poll")
    fake.post("4999", "501", "old")
    fake.archive("4999", _ago(5 * HOUR))
    fake.clear_log()
    assert poll_with(db, fake).summary["messages_new"] == 120
    pages = [q for major, q in _archived_requests(fake) if major == "channels/200"]
    assert len(pages) == 2 and "before" in pages[1]
    assert _ids(db, "4999") == []


@pytest.mark.parametrize("hidden_at_first", [False, True])
def test_a_channel_created_since_the_last_poll_uses_its_guilds_mark(db, fake, hidden_at_first):
    small_world(fake)
    poll_with(db, fake)
    _as_if_polled_long_ago(db)
    fake.add_channel("100", "202", "brand new")
    fake.add_thread("202", "270", "created and archived before the next poll")
    fake.post("270", "501", "quick")
    fake.archive("270", _ago(2 * HOUR))
    if hidden_at_first:
        # The guild's mark moves on; 202 keeps the one it was looked at from.
        fake.forbidden_archived.add("202")
        assert poll_with(db, fake).summary["messages_new"] == 0
        fake.forbidden_archived.clear()
    assert poll_with(db, fake).summary["messages_new"] == 1
    assert len(_ids(db, "270")) == 1


def test_a_database_polled_before_marks_existed_starts_from_the_last_poll(db, fake):
    small_world(fake)
    fake.post("200", "501", "polled by an older zos")
    poll_with(db, fake)
    db.execute("DELETE FROM zos_state WHERE key LIKE ?", [STATE_KEY.format("%")])
    db.execute("UPDATE poll_state SET last_polled_at = ? WHERE channel_id = '200'",
               [to_stored(_ago(HOUR))])
    db.conn.commit()
    fake.add_thread("200", "280", "archived since")
    fake.post("280", "501", "missed by the old poll")
    fake.archive("280", _ago(HOUR / 2))
    fake.clear_log()
    assert poll_with(db, fake).summary["messages_new"] == 1
    assert [m for m, _ in _archived_requests(fake)] == ["channels/200"]  # 201: no mark, no look


def test_a_forum_polled_before_marks_existed_starts_from_its_threads_last_poll(db, fake):
    # A forum holds no messages of its own, so it never has a poll_state row: its threads do.
    small_world(fake)
    fake.add_channel("100", "210", "a forum", type=15)
    fake.add_thread("210", "280", "forum post")
    fake.post("280", "501", "forum post start")
    poll_with(db, fake)
    db.execute("DELETE FROM zos_state WHERE key LIKE ?", [STATE_KEY.format("%")])
    db.execute("UPDATE poll_state SET last_polled_at = ?", [to_stored(_ago(HOUR))])
    db.conn.commit()
    last = fake.post("280", "502", "last word before the archive")
    fake.archive("280", _ago(HOUR / 2))
    fake.clear_log()
    assert poll_with(db, fake).summary["messages_new"] == 1
    assert last["id"] in _ids(db, "280")
    assert "channels/210" in [m for m, _ in _archived_requests(fake)]


def test_a_403_on_the_archived_list_is_skipped_and_looked_at_again_later(db, fake):
    small_world(fake)
    fake.post("200", "501", "hello")
    poll_with(db, fake)
    fake.add_thread("200", "290", "hidden for a while")
    fake.post("290", "502", "in it")
    fake.archive("290")
    fake.forbidden_archived.add("200")
    s = poll_with(db, fake).summary
    assert s["errors"] == [] and s["skipped_channels"] == [{"channel": "200", "reason":
        "archived threads: GET /channels/200/threads/archived/public: forbidden (Missing "
        "Access); the bot lacks access"}]
    assert _ids(db, "290") == []
    fake.forbidden_archived.clear()
    s = poll_with(db, fake).summary
    assert s["skipped_channels"] == [] and s["messages_new"] == 1


def test_a_channel_the_bot_cannot_read_is_listed_once(db, fake):
    small_world(fake)
    poll_with(db, fake)
    fake.forbidden.add("200")
    (entry,) = poll_with(db, fake).summary["skipped_channels"]
    assert entry["channel"] == "200" and "/channels/200/messages" in entry["reason"]


def test_a_thread_that_failed_is_looked_at_again(db, fake):
    small_world(fake)
    poll_with(db, fake)
    _as_if_polled_long_ago(db)
    fake.add_thread("200", "295", "broken for a while")
    broken = fake.post("295", "501", "no author below")
    author = broken.pop("author")
    fake.archive("295", _ago(2 * HOUR))
    s = poll_with(db, fake).summary
    assert [e["channel"] for e in s["errors"]] == ["295"]
    broken["author"] = author
    fake.clear_log()
    assert poll_with(db, fake).summary["messages_new"] == 1
    assert _read(fake, "295") == 1


def test_poll_channel_reads_no_archived_list(db, fake):
    small_world(fake)
    poll_with(db, fake)
    fake.clear_log()
    poll_with(db, fake, channel_ids=["200"])
    assert _archived_requests(fake) == []
