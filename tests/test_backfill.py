"""`zos ingest --token` as a library: full history with `before=` pages, archived threads,
`--since`, checkpoints, and the same rows as a poll would store."""

from __future__ import annotations

import json

import pytest

from tests.fake_discord import backfill_with, fake, poll_with, small_world  # noqa: F401
from tests.salience_support import marked, rebuilt_balances
from zos_cli.errors import UsageProblem


def _ids(db, channel: str) -> list[str]:
    return sorted((r[0] for r in db.execute("SELECT id FROM messages WHERE channel_id = ?", [channel])),
                  key=int)


def _fake_ids(fake, channel: str) -> list[str]:
    return sorted(fake.messages[channel], key=int)


def _post_many(fake, channel: str, n: int) -> list[dict]:
    authors = ("501", "502", "503")
    return [fake.post(channel, authors[i % 3], f"history {i}") for i in range(n)]


@pytest.mark.parametrize("n", [0, 99, 100, 101, 250])
def test_full_history_with_before_pages(db, fake, n):
    small_world(fake)
    _post_many(fake, "200", n)
    report = backfill_with(db, fake, channel_ids=["200"])
    s = report.summary
    assert report.fatal is None and s["errors"] == []
    # An empty first page is no proof of an empty channel (Discord also answers [] when the
    # bot may not read its history): not complete, read again by the next backfill.
    complete = 1 if n else 0
    assert (s["channels"], s["channels_complete"], s["messages_new"]) == (1, complete, n)
    assert _ids(db, "200") == _fake_ids(fake, "200")
    pages = [e.query for e in fake.requests("messages")]
    assert len(pages) == n // 100 + 1
    assert all("after" not in q for q in pages) and all("before" in q for q in pages[1:])
    assert db.execute("SELECT complete FROM backfill_state WHERE channel_id = '200'").fetchone() == (complete,)
    log = db.execute("SELECT kind, path, status, messages_new FROM ingest_log").fetchall()
    assert log == [("api", "api:channel:200", "completed", n)]
    assert db.execute("SELECT count(*) FROM message_sources WHERE source_type = 'backfill'").fetchone()[0] == n


def test_guild_backfill_includes_archived_public_threads(db, fake):
    small_world(fake)
    _post_many(fake, "200", 5)
    fake.add_thread("200", "250", "active")
    fake.add_thread("200", "251", "archived", archived=True, archive_timestamp="2024-02-01T00:00:00+00:00")
    fake.add_thread("201", "252", "archived too", archived=True, archive_timestamp="2024-02-02T00:00:00+00:00")
    for thread in ("250", "251", "252"):
        _post_many(fake, thread, 3)
    report = backfill_with(db, fake, guild_ids=["100"])
    # 201 shows no message: empty, or unreadable (Discord answers both with []), not complete.
    assert report.summary["channels"] == 5 and report.summary["channels_complete"] == 4
    for channel in ("200", "250", "251", "252"):
        assert _ids(db, channel) == _fake_ids(fake, channel)
    assert db.execute("SELECT parent_id FROM channels WHERE id = '251'").fetchone() == ("200",)
    assert len(fake.requests("archived")) == 2


def test_a_channel_backfill_includes_its_threads(db, fake):
    small_world(fake)
    fake.add_thread("200", "251", "archived", archived=True)
    _post_many(fake, "251", 2)
    backfill_with(db, fake, channel_ids=["200"])
    assert len(_ids(db, "251")) == 2


def test_since_stops_without_completing(db, fake):
    small_world(fake)
    posted = _post_many(fake, "200", 250)          # one minute apart from 2024-03-01T12:01
    cut = posted[120]["timestamp"]
    report = backfill_with(db, fake, channel_ids=["200"], since=cut)
    assert report.summary["messages_new"] == 130
    assert _ids(db, "200") == _fake_ids(fake, "200")[120:]
    assert db.execute("SELECT complete FROM backfill_state").fetchone() == (0,)
    # An older --since goes on from the checkpoint: no message is read twice into the store.
    again = backfill_with(db, fake, channel_ids=["200"])
    assert again.summary["messages_new"] == 120 and again.summary["messages_seen"] == 0
    assert _ids(db, "200") == _fake_ids(fake, "200")
    assert db.execute("SELECT complete FROM backfill_state").fetchone() == (1,)


def test_complete_channels_are_not_read_again(db, fake):
    small_world(fake)
    _post_many(fake, "200", 30)
    backfill_with(db, fake, channel_ids=["200"])
    fake.clear_log()
    report = backfill_with(db, fake, channel_ids=["200"])
    assert report.summary["channels_complete"] == 1 and fake.requests("messages") == []


def test_bad_since_is_a_usage_error(db, fake):
    small_world(fake)
    with pytest.raises(UsageProblem) as err:
        backfill_with(db, fake, since="last week")
    assert err.value.exit_code == 2


def test_backfill_then_poll_store_each_message_once(db, fake):
    small_world(fake)
    posted = _post_many(fake, "200", 150)
    fake.react("200", posted[10]["id"], "503", "🎉")
    backfill_with(db, fake, channel_ids=["200"])
    report = poll_with(db, fake)
    assert report.summary["messages_new"] == 0 and report.summary["reactions_new"] == 0
    assert _ids(db, "200") == _fake_ids(fake, "200")
    assert db.execute("SELECT count(*) FROM reactions").fetchone()[0] == 1


def test_forbidden_channel_skipped_and_logged(db, fake):
    small_world(fake)
    _post_many(fake, "201", 3)
    fake.forbidden.add("200")
    report = backfill_with(db, fake, guild_ids=["100"])
    assert [s["channel"] for s in report.summary["skipped_channels"]] == ["200"]
    assert _ids(db, "201") == _fake_ids(fake, "201")
    statuses = dict(db.execute("SELECT path, status FROM ingest_log").fetchall())
    assert statuses == {"api:channel:200": "failed", "api:channel:201": "completed"}
    event = json.loads(db.execute("SELECT payload FROM events WHERE event_type = 'backfill'").fetchone()[0])
    assert event["messages_new"] == 3


def test_a_poll_after_a_backfill_goes_on_from_it_with_no_gap(db, fake):
    # More than initial_messages arrive between the backfill and the first poll: the poll
    # reads them all from the newest backfilled message, not just the newest 1,000.
    small_world(fake)
    _post_many(fake, "200", 50)
    assert backfill_with(db, fake, channel_ids=["200"]).summary["channels_complete"] == 1
    for i in range(1500):
        fake.post("200", "501", f"later {i}")
    report = poll_with(db, fake, channel_ids=["200"])
    assert report.summary["errors"] == [] and report.summary["messages_new"] == 1500
    assert _ids(db, "200") == _fake_ids(fake, "200")


def test_an_empty_first_page_is_read_again_by_the_next_backfill(db, fake):
    small_world(fake)
    assert backfill_with(db, fake, channel_ids=["200"]).summary["channels_complete"] == 0
    _post_many(fake, "200", 30)  # readable now (or written since)
    report = backfill_with(db, fake, channel_ids=["200"])
    assert (report.summary["messages_new"], report.summary["channels_complete"]) == (30, 1)


def test_a_first_poll_reads_the_newest_messages_whatever_the_page_order(db, fake):
    import random

    small_world(fake)
    _post_many(fake, "200", 250)
    answer = fake._r_messages

    def shuffled(*args):
        status, payload = answer(*args)
        if status == 200 and isinstance(payload, list):
            random.Random(1).shuffle(payload)
        return status, payload

    fake._r_messages = shuffled
    report = poll_with(db, fake, initial_messages=150, channel_ids=["200"])
    assert report.summary["messages_new"] == 150
    assert _ids(db, "200") == _fake_ids(fake, "200")[-150:]


def _stop_after_two_pages(db, fake) -> None:
    """A backfill of channel 200 stopped after its second page (200 messages, unearned)."""
    import threading

    stop = threading.Event()
    pages = []

    def stop_after_two_pages(entry):
        if entry.route == "messages":
            pages.append(entry)
            if len(pages) == 2:
                stop.set()

    fake.hooks.append(stop_after_two_pages)
    try:
        first = backfill_with(db, fake, channel_ids=["200"], stop=stop)
    finally:
        fake.hooks.clear()
    assert first.summary["messages_new"] == 200
    assert marked(db) == 200
    assert db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0] == 0


def test_a_poll_leaves_a_stopped_backfills_marks_and_their_reactions_wait_with_them(
        db, db_path, fake, tmp_path):
    """A poll may run beside a backfill that is still marking, so it earns no marks; a
    reaction it reads on a marked message is earned with that message, by the next backfill
    (once, after its message, as rebuild counts it)."""
    from zos_cli.store.status import collect_status

    small_world(fake)
    posted = _post_many(fake, "200", 250)
    _stop_after_two_pages(db, fake)
    assert collect_status(db, db_path)["salience_pending_messages"] == 200
    fake.react("200", posted[-1]["id"], "503", "👍")
    report = poll_with(db, fake, initial_messages=50, channel_ids=["200"])
    assert report.fatal is None and report.summary["reactions_new"] == 1
    assert marked(db) == 200
    assert db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0] == 0
    assert backfill_with(db, fake, channel_ids=["200"]).summary["messages_new"] == 50
    assert marked(db) == 0
    assert collect_status(db, db_path)["salience_pending_messages"] == 0
    balances = dict(db.execute("SELECT key, round(balance, 9) FROM topics"))
    assert balances["server:100:channel:200"] > 0
    assert balances == rebuilt_balances(db, tmp_path)


def test_an_export_ingest_after_a_stopped_backfill_earns_what_it_left_first(db, fake, tmp_path):
    from tests.exports import Export, message, snowflake, user
    from zos_cli.config import Config
    from zos_cli.ingest.run import ingest_exports

    small_world(fake)
    _post_many(fake, "200", 250)
    _stop_after_two_pages(db, fake)
    other = Export(channel_id="2001", guild_id="1001")  # another server, other people
    other.add(message(snowflake(1), user("601", "dee"), "hello"))
    summary = ingest_exports(db, Config(), [str(other.write(tmp_path / "other.json"))])
    assert summary["messages_new"] == 1
    assert marked(db) == 0
    balances = dict(db.execute("SELECT key, round(balance, 9) FROM topics"))
    assert balances["server:100:channel:200"] > 0 and balances["server:1001:channel:2001"] > 0
    assert balances == rebuilt_balances(db, tmp_path)


def test_messages_stored_by_a_stopped_backfill_earn_in_the_next_one(db, fake, tmp_path):
    """A backfill earns its new messages at its end, in snowflake order (pages come newest
    first). Stopped after two pages, it leaves them marked `salience_pending` and unearned;
    the next backfill earns them with the rest, exactly as one uninterrupted backfill."""
    from zos_cli.store import db as database
    from zos_cli.store import migrations

    small_world(fake)
    posted = _post_many(fake, "200", 250)
    fake.post("200", "502", "a late reply to the first page", reply_to=posted[120]["id"])
    whole = database.connect(tmp_path / "whole.db", create=True)
    migrations.apply(whole, tmp_path / "whole.db")
    assert backfill_with(whole, fake, channel_ids=["200"]).summary["messages_new"] == 251
    expected = dict(whole.execute("SELECT key, round(balance, 9) FROM topics"))
    assert marked(whole) == 0
    whole.close()

    _stop_after_two_pages(db, fake)
    again = backfill_with(db, fake, channel_ids=["200"])
    assert again.summary["messages_new"] == 51
    assert marked(db) == 0
    assert dict(db.execute("SELECT key, round(balance, 9) FROM topics")) == expected
