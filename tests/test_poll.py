"""`zos poll` as a library over real HTTP to the fake Discord: pagination, recent changes,
cost of an idle poll, rate limits, 403/5xx, the Message Content intent, threads and DMs."""

from __future__ import annotations

import pytest

from tests.conftest import scan_files
from tests.fake_discord import fake, poll_with, small_world  # noqa: F401
from tests.salience_support import marked, rebuilt_balances, rounded_balances
from zos_cli.privacy import consent
from zos_cli.store.db import get_state


def _ids(db, channel: str | None = None) -> list[str]:
    sql = "SELECT id FROM messages" + (" WHERE channel_id = ?" if channel else "")
    return sorted((r[0] for r in db.execute(sql, [channel] if channel else [])), key=int)


def _fake_ids(fake, channel: str) -> list[str]:
    return sorted(fake.messages[channel], key=int)


def _post_many(fake, channel: str, n: int, prefix: str = "m") -> list[dict]:
    authors = ("501", "502", "503")
    return [fake.post(channel, authors[i % 3], f"{prefix} {i}") for i in range(n)]


# ---------------------------------------------------------------------------- event order
def test_a_poll_earns_in_event_time_across_channels(db, fake, tmp_path):
    """Channels are read one after another; what they hold interleaves in time. A poll
    marks its new messages and earns them at its end in one snowflake order, as rebuild."""
    small_world(fake)
    for i in range(40):  # the two channels take turns; each message mentions the next author
        channel = "200" if i % 2 else "201"
        author, partner = ("501", "502", "503")[i % 3], ("501", "502", "503")[(i + 1) % 3]
        fake.post(channel, author, f"turn {i} <@{partner}>", mentions=[partner])
    report = poll_with(db, fake)
    assert report.fatal is None and report.summary["messages_new"] == 40
    assert marked(db) == 0
    assert rounded_balances(db) == rebuilt_balances(db, tmp_path)


def test_a_poll_that_fails_midway_leaves_its_marks_to_the_next_poll(db, fake, tmp_path):
    small_world(fake)
    _post_many(fake, "200", 30)
    _post_many(fake, "201", 20, "r")

    def revoke_after_the_first_channel(entry):
        if entry.route == "messages":
            fake.revoked = True  # the token is revoked: the next request fails (401, fatal)

    fake.hooks.append(revoke_after_the_first_channel)
    failed = poll_with(db, fake)
    fake.hooks.clear()
    fake.revoked = False
    assert failed.fatal is not None and failed.summary["messages_new"] == 30
    assert marked(db) == 30
    assert db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0] == 0
    again = poll_with(db, fake)
    assert again.fatal is None and again.summary["messages_new"] == 20
    assert marked(db) == 0
    assert rounded_balances(db) == rebuilt_balances(db, tmp_path)


def test_status_during_a_poll_counts_its_marks_as_not_yet_earned(db, fake, cli):
    """A poll marks every new message until its end: `zos status` run meanwhile counts them,
    and must not say a stopped job left them (this one is running and earns them)."""
    small_world(fake)
    _post_many(fake, "200", 10)
    _post_many(fake, "201", 10, "r")
    shown = []

    def status_while_the_second_channel_is_read(entry):
        if entry.route == "messages" and "/201/" in entry.path and not shown:
            shown.append(" ".join(cli("status").stdout.split()))

    fake.hooks.append(status_while_the_second_channel_is_read)
    report = poll_with(db, fake)
    fake.hooks.clear()
    assert report.fatal is None and report.summary["messages_new"] == 20
    assert "not yet earned 10 messages (a running poll or backfill earns its own" in shown[0]
    assert "stopped job" not in shown[0]
    assert "not yet earned" not in " ".join(cli("status").stdout.split())


# ---------------------------------------------------------------------------- first poll
def test_first_poll_stores_everything_once(db, fake):
    small_world(fake)
    _post_many(fake, "200", 150)
    msg = fake.post("201", "501", "react to me https://example.org/x")
    fake.react("201", msg["id"], "502", "🎉")
    fake.react("201", msg["id"], "503", "blob", "777")
    report = poll_with(db, fake)
    s = report.summary
    assert report.fatal is None and s["errors"] == [] and s["skipped_channels"] == []
    assert (s["channels"], s["messages_new"], s["reactions_new"]) == (2, 151, 2)
    assert _ids(db, "200") == _fake_ids(fake, "200")
    assert _ids(db, "201") == [msg["id"]]
    assert db.execute("SELECT user_id, emoji, emoji_id FROM reactions ORDER BY user_id").fetchall() == [
        ("502", "🎉", ""), ("503", "blob", "777")]
    assert get_state(db, "discord.self_user_id") == fake.self_id
    cursor = db.execute("SELECT last_message_id FROM poll_state WHERE channel_id = '200'").fetchone()[0]
    assert cursor == _fake_ids(fake, "200")[-1]
    assert db.execute("SELECT count(*) FROM message_sources WHERE source_type = 'poll'").fetchone()[0] == 151
    assert db.execute("SELECT count(*) FROM link_analysis").fetchone()[0] == 1
    # Salience was earned through the same writer as the export ingest.
    assert db.execute("SELECT balance FROM topics WHERE key = 'server:100:channel:201'").fetchone()[0] > 0


def test_initial_messages_limits_the_first_poll(db, fake):
    small_world(fake)
    _post_many(fake, "200", 250)
    report = poll_with(db, fake, initial_messages=120)
    assert report.summary["messages_new"] == 120
    assert _ids(db, "200") == _fake_ids(fake, "200")[-120:]
    # The next poll takes only what is after the cursor: deeper history is `ingest --token`.
    fake.post("200", "501", "later")
    assert poll_with(db, fake).summary["messages_new"] == 1
    assert len(_ids(db, "200")) == 121


@pytest.mark.parametrize("n", [100, 101])
def test_exactly_100_and_101_messages(db, fake, n):
    small_world(fake)
    _post_many(fake, "200", n)
    assert poll_with(db, fake).summary["messages_new"] == n
    assert _ids(db, "200") == _fake_ids(fake, "200")
    # A full first page needs one more (short or empty) page to know the channel ends there.
    first = [e.query for e in fake.requests("messages") if e.major == "channels/200"]
    assert first == [{"limit": "100"}, {"limit": "100", "before": _fake_ids(fake, "200")[-100]}]
    # The same edges for messages arriving after the cursor.
    _post_many(fake, "200", n, prefix="new")
    fake.clear_log()
    assert poll_with(db, fake).summary["messages_new"] == n
    assert _ids(db, "200") == _fake_ids(fake, "200")


@pytest.mark.parametrize("n_new", [99, 100, 101, 250])
def test_gap_after_cursor_read_oldest_first(db, fake, n_new):
    small_world(fake)
    _post_many(fake, "200", 5)
    poll_with(db, fake)
    _post_many(fake, "200", n_new, prefix="gap")
    fake.clear_log()
    report = poll_with(db, fake, channel_ids=["200"])
    assert report.summary["messages_new"] == n_new
    assert _ids(db, "200") == _fake_ids(fake, "200")
    pages = fake.requests("messages")
    assert pages[0].query == {"limit": "100"}
    assert all("after" in p.query for p in pages[1:])
    assert len(pages) <= 1 + -(-n_new // 100) + 1


def test_message_deleted_between_pages(db, fake):
    small_world(fake)
    posted = _post_many(fake, "200", 230)
    doomed = posted[105]["id"]   # on the second page of a newest-first walk

    def delete_after_first_page(entry):
        if entry.route == "messages" and entry.query == {"limit": "100"} and doomed in fake.messages["200"]:
            fake.delete("200", doomed)

    fake.hooks.append(delete_after_first_page)
    report = poll_with(db, fake)
    assert report.summary["messages_new"] == 229
    assert _ids(db, "200") == _fake_ids(fake, "200")
    assert doomed not in _ids(db, "200")


def test_more_than_100_reactors(db, fake):
    small_world(fake)
    msg = fake.post("200", "501", "vote")
    for i in range(230):
        uid = str(7000 + i)
        fake.add_user(uid, f"u{i}")
        fake.react("200", msg["id"], uid, "👍")
    report = poll_with(db, fake)
    assert report.summary["reactions_new"] == 230
    assert db.execute("SELECT count(DISTINCT user_id) FROM reactions WHERE message_id = ?",
                      [msg["id"]]).fetchone()[0] == 230
    assert len(fake.requests("reactors")) == 3


# ---------------------------------------------------------------------------- recent changes
def test_edit_deletion_and_reactions_on_polled_messages(db, fake):
    small_world(fake)
    posted = _post_many(fake, "200", 30)
    fake.react("200", posted[3]["id"], "503", "🔥")
    poll_with(db, fake)
    fake.edit("200", posted[10]["id"], "edited text")
    fake.delete("200", posted[20]["id"])
    fake.react("200", posted[5]["id"], "502", "😀")
    fake.reactions[posted[3]["id"]][("🔥", "")].remove("503")
    fake.clear_log()
    report = poll_with(db, fake, channel_ids=["200"])
    s = report.summary
    assert (s["messages_new"], s["reactions_new"], s["messages_edited"], s["messages_deleted"]) == (0, 1, 1, 1)
    row = db.execute("SELECT content, edited_at FROM messages WHERE id = ?", [posted[10]["id"]]).fetchone()
    assert row[0] == "edited text" and row[1] is not None
    assert db.execute("SELECT deleted_at FROM messages WHERE id = ?", [posted[20]["id"]]).fetchone()[0]
    assert db.execute("SELECT user_id FROM reactions WHERE message_id = ? AND removed_at IS NULL",
                      [posted[5]["id"]]).fetchall() == [("502",)]
    assert db.execute("SELECT removed_at FROM reactions WHERE message_id = ?",
                      [posted[3]["id"]]).fetchone()[0] is not None
    # The newest page served both checks; reactors were read only for the changed messages.
    assert [e.route for e in fake.requests()].count("messages") == 1
    assert {e.path.split("/")[6] for e in fake.requests("reactors")} == {posted[5]["id"]}
    # Noticed once: a poll after that changes nothing more.
    again = poll_with(db, fake, channel_ids=["200"]).summary
    assert (again["messages_edited"], again["messages_deleted"], again["reactions_new"]) == (0, 0, 0)


def test_only_the_emoji_whose_count_changed_is_read_again(db, fake):
    small_world(fake)
    posted = _post_many(fake, "200", 5)
    mid = posted[2]["id"]
    for user in ("501", "502"):
        fake.react("200", mid, user, "🔥")
        fake.react("200", mid, user, "😀")
    fake.react("200", mid, "503", "👍")
    poll_with(db, fake, channel_ids=["200"])
    fake.react("200", mid, "503", "😀")              # one more 😀
    fake.reactions[mid][("👍", "")].remove("503")    # 👍 gone from the message altogether
    fake.clear_log()
    s = poll_with(db, fake, channel_ids=["200"]).summary
    assert s["reactions_new"] == 1
    # 😀 only: 🔥's count did not change, and a reaction no longer there has nothing to read
    assert [e.path.split("/")[-1] for e in fake.requests("reactors")] == ["%F0%9F%98%80"]
    live = db.execute("SELECT user_id, emoji FROM reactions WHERE message_id = ? "
                      "AND removed_at IS NULL", [mid]).fetchall()
    assert sorted(live) == [("501", "🔥"), ("501", "😀"), ("502", "🔥"), ("502", "😀"),
                            ("503", "😀")]
    assert db.execute("SELECT removed_at IS NOT NULL FROM reactions WHERE message_id = ? "
                      "AND emoji = '👍'", [mid]).fetchall() == [(1,)]
    # the stored counts are Discord's again: the next poll reads nothing
    fake.clear_log()
    again = poll_with(db, fake, channel_ids=["200"]).summary
    assert again["reactions_new"] == 0 and fake.requests("reactors") == []


def test_deleting_the_oldest_message_of_a_short_channel_is_noticed(db, fake):
    # A page shorter than 100 is the whole channel: a stored message missing from it is gone.
    small_world(fake)
    posted = _post_many(fake, "200", 10)
    poll_with(db, fake, channel_ids=["200"])
    fake.delete("200", posted[0]["id"])
    assert poll_with(db, fake, channel_ids=["200"]).summary["messages_deleted"] == 1
    assert db.execute("SELECT deleted_at FROM messages WHERE id = ?",
                      [posted[0]["id"]]).fetchone()[0] is not None


def test_a_message_stored_by_another_job_meanwhile_is_not_deleted(db, fake, monkeypatch):
    # Another poll (or a backfill) stores a message posted after this poll read its newest
    # page: it is newer than that page, not missing from it.
    from zos_cli.sources.discord import api

    small_world(fake)
    _post_many(fake, "200", 10)
    poll_with(db, fake, channel_ids=["200"])
    real, late = api.messages, []

    def newest_page_then_another_job(client, channel_id, **kw):
        page = real(client, channel_id, **kw)
        if channel_id == "200" and not late:
            late.append(fake.post("200", "501", "posted just after the page was read"))
            monkeypatch.setattr(api, "messages", real)
            poll_with(db, fake, channel_ids=["200"])  # the other job, while this one runs
            monkeypatch.setattr(api, "messages", newest_page_then_another_job)
        return page

    monkeypatch.setattr(api, "messages", newest_page_then_another_job)
    assert poll_with(db, fake, channel_ids=["200"]).summary["messages_deleted"] == 0
    assert db.execute("SELECT deleted_at FROM messages WHERE id = ?",
                      [late[0]["id"]]).fetchone() == (None,)


def test_idle_poll_costs_one_request_per_channel(db, fake):
    small_world(fake)
    fake.add_guild("101", "Other")
    fake.add_channel("101", "300", "elsewhere")
    for ch in ("200", "201", "300"):
        _post_many(fake, ch, 120)
    poll_with(db, fake)
    fake.clear_log()
    report = poll_with(db, fake)
    routes = [e.route for e in fake.requests()]
    assert routes.count("messages") == 3
    assert routes.count("archived") == 3       # one per channel that may hold threads
    assert len(routes) == 3 + 2 + 2 * 2 + 3    # channels + me/guilds + 2 per guild + archived
    assert report.summary["requests"] == len(routes)
    polled = db.execute("SELECT count(*) FROM poll_state WHERE last_polled_at IS NOT NULL").fetchone()[0]
    assert polled == 3


# ---------------------------------------------------------------------------- rate limits
def test_many_channels_under_tight_buckets_and_injected_429s(db, fake):
    small_world(fake)
    for i in range(6):
        fake.add_channel("100", str(210 + i), f"c{i}")
        for j, m in enumerate(_post_many(fake, str(210 + i), 40)):
            if j % 10 == 0:
                fake.react(str(210 + i), m["id"], "502", "✅")
    fake.limits["messages"] = (2, 0.1)
    fake.limits["reactions"] = (3, 0.1)
    fake.inject("messages", "user", retry_after=0.05)
    fake.inject("reactors", "shared", retry_after=0.05)
    fake.inject("guild_channels", "global", retry_after=0.05)
    report = poll_with(db, fake)
    s = report.summary
    assert s["errors"] == [] and s["rate_limited"] == 3
    assert s["messages_new"] == 240 and s["reactions_new"] == 24
    assert fake.violations() == []
    for i in range(6):
        assert _ids(db, str(210 + i)) == _fake_ids(fake, str(210 + i))


def test_wait_beyond_max_wait_is_fatal_75(db, fake):
    small_world(fake)
    _post_many(fake, "200", 3)
    fake.inject("messages", "user", retry_after=5.0)
    report = poll_with(db, fake, max_wait=0.2)
    assert report.fatal is not None and report.fatal.exit_code == 75
    assert report.summary["errors"][-1]["error"].startswith("Discord asks zos to wait 5.0 s")


# ---------------------------------------------------------------------------- failures per channel
def test_forbidden_channel_is_skipped(db, fake):
    small_world(fake)
    _post_many(fake, "200", 3)
    _post_many(fake, "201", 4)
    fake.forbidden.add("200")
    report = poll_with(db, fake)
    assert report.fatal is None and report.summary["errors"] == []
    assert report.summary["skipped_channels"] == [
        {"channel": "200", "reason": "GET /channels/200/messages: forbidden (Missing Access); "
                                     "the bot lacks access"}]
    assert len(_ids(db, "201")) == 4 and _ids(db, "200") == []


def test_5xx_storm_on_one_channel_is_a_partial_failure(db, fake):
    small_world(fake)
    _post_many(fake, "200", 3)
    _post_many(fake, "201", 4)
    fake.inject("messages", "status", times=5, status=503)
    report = poll_with(db, fake)
    assert report.fatal is None
    assert report.summary["errors"] == [{"channel": "200", "error":
        "GET /channels/200/messages: Discord answered 503 5 times in a row; try again later"}]
    assert len(_ids(db, "201")) == 4


def test_a_guild_whose_channels_cannot_be_listed_does_not_stop_the_others(db, fake):
    small_world(fake)
    fake.add_guild("101", "Other")
    fake.add_channel("101", "300", "elsewhere")
    _post_many(fake, "200", 3)
    _post_many(fake, "300", 2)
    fake.inject("guild_channels", "status", times=5, status=503)  # guild 100 is listed first
    report = poll_with(db, fake)
    assert report.fatal is None
    assert report.summary["errors"] == [{"channel": "guild:100", "error":
        "GET /guilds/100/channels: Discord answered 503 5 times in a row; try again later"}]
    assert _ids(db, "300") == _fake_ids(fake, "300") and _ids(db, "200") == []


def test_missing_message_content_intent_stores_nothing(db, fake, capsys, monkeypatch):
    from zos_cli import output

    monkeypatch.setattr(output.settings, "verbose", True)  # the warning is for a person
    small_world(fake)
    _post_many(fake, "200", 5)
    fake.content_intent = False
    report = poll_with(db, fake, on_warning=output.warn)  # as `zos poll` wires it
    assert [e["channel"] for e in report.summary["errors"]] == ["200"]
    assert "Message Content intent" in report.summary["errors"][0]["error"]
    assert "Message Content intent" in capsys.readouterr().err
    assert _ids(db) == []
    assert db.execute("SELECT count(*) FROM poll_state").fetchone()[0] == 0
    fake.content_intent = True
    assert poll_with(db, fake).summary["messages_new"] == 5


# ---------------------------------------------------------------------------- threads and DMs
def test_active_threads_are_polled(db, fake):
    small_world(fake)
    fake.add_thread("200", "250", "a thread")
    fake.add_thread("200", "251", "old thread", archived=True)
    fake.post("250", "501", "in the thread")
    fake.post("251", "501", "archived: for backfill only")
    poll_with(db, fake)
    assert db.execute("SELECT type, parent_id FROM channels WHERE id = '250'").fetchone() == (
        "public_thread", "200")
    assert len(_ids(db, "250")) == 1 and _ids(db, "251") == []


def test_dms_only_of_consenting_users(db, db_path, fake):
    small_world(fake)
    consent.grant(db, "501")
    yes = fake.open_dm_channel("501")["id"]
    no = fake.open_dm_channel("502")["id"]
    fake.post(yes, "501", "hello zos")
    fake.post(yes, fake.self_id, "hello ann")
    fake.post(no, "502", "SECRET-NO-CONSENT")
    fake.clear_log()
    report = poll_with(db, fake)
    assert report.summary["errors"] == []
    assert len(_ids(db, yes)) == 2
    assert db.execute("SELECT visibility_scope, server_id FROM messages WHERE channel_id = ?",
                      [yes]).fetchall() == [("dm", None)] * 2
    opened = [e for e in fake.requests("open_dm")]
    assert len(opened) == 1
    assert all(no not in e.path for e in fake.requests())
    # The DM channel is remembered: no second POST.
    fake.clear_log()
    poll_with(db, fake)
    assert fake.requests("open_dm") == []
    # Revoked: the DM is not even requested any more.
    consent.revoke(db, "501")
    fake.post(yes, "501", "after revoke")
    fake.clear_log()
    poll_with(db, fake)
    assert all(yes not in e.path for e in fake.requests())
    # Not a byte of either DM that lacked consent is in the files.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for needle in ("SECRET-NO-CONSENT", "after revoke"):
        assert scan_files(db_path, needle) == {"db": 0, "-wal": 0, "-shm": 0}


def test_a_malformed_answer_is_a_channel_error_not_a_crash(db, fake):
    small_world(fake)
    broken = fake.post("200", "501", "no author below")
    del broken["author"]
    fake.post("201", "502", "fine")
    report = poll_with(db, fake)
    assert report.summary["errors"] == [{"channel": "200", "error":
        "unexpected answer from Discord (KeyError: 'author'); the channel was left as it was"}]
    assert _ids(db, "200") == [] and len(_ids(db, "201")) == 1


@pytest.mark.parametrize("route,payload", [("messages", {"message": "hi"}), ("messages", ["a"]),
                                           ("guild_channels", {"a": 1})])
def test_a_200_of_the_wrong_shape_is_an_error_not_a_crash(db, fake, route, payload):
    small_world(fake)
    _post_many(fake, "200", 2)
    fake.inject(route, "body", payload=payload)
    report = poll_with(db, fake)
    assert report.fatal is None
    (error,) = report.summary["errors"]
    assert "Discord answered 200 with something else than a list of objects with 'id'" in \
        error["error"]


@pytest.mark.parametrize("payload", [None, [], {"username": "no id"}])
def test_an_odd_current_user_ends_the_poll_with_its_summary(db, fake, payload):
    small_world(fake)
    fake.inject("me", "body", payload=payload)
    report = poll_with(db, fake)
    assert report.summary["errors"] == [{"channel": None, "error":
        "GET /users/@me: Discord answered 200 with something else than an object with 'id'; "
        "try again later"}]

