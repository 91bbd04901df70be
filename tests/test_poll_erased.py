"""`zos poll` after `zos consent erase`: the erased user's reactions stay out of the database,
and the reactor counts Discord reports (which still include them) do not make every poll
read the reactors again."""

from __future__ import annotations

from tests.fake_discord import fake, poll_with, small_world  # noqa: F401
from zos_cli.privacy import erase_user


def _reactors_read(fake, message_id: str) -> int:
    return sum(1 for e in fake.requests("reactors") if f"/messages/{message_id}/" in e.path)


def _reactions(db, message_id: str) -> list[tuple]:
    return db.execute("SELECT user_id, emoji, removed_at FROM reactions WHERE message_id = ? "
                      "ORDER BY user_id, emoji", [message_id]).fetchall()


def _world_with_a_reaction_by_503(fake) -> dict:
    small_world(fake)
    msg = fake.post("200", "501", "react to me")
    fake.react("200", msg["id"], "502", "👍")
    fake.react("200", msg["id"], "503", "👍")
    return msg


def test_an_erased_reactor_causes_no_refetch_and_is_not_written_back(db, fake):
    msg = _world_with_a_reaction_by_503(fake)
    poll_with(db, fake)
    assert [r[0] for r in _reactions(db, msg["id"])] == ["502", "503"]
    erase_user(db, "503")
    assert [r[0] for r in _reactions(db, msg["id"])] == ["502"]
    fake.clear_log()
    for _ in range(2):
        s = poll_with(db, fake).summary
        assert (s["errors"], s["reactions_new"], s["messages_edited"]) == ([], 0, 0)
    # Discord still counts 503's 👍 (2), as when poll last read the reactors: nothing changed.
    assert _reactors_read(fake, msg["id"]) == 0
    assert _reactions(db, msg["id"]) == [("502", "👍", None)]


def test_a_real_change_still_reads_the_reactors_but_never_writes_the_erased_user(db, fake):
    msg = _world_with_a_reaction_by_503(fake)
    poll_with(db, fake)
    erase_user(db, "503")
    fake.add_user("504", "dee")
    fake.add_member("100", "504")
    fake.react("200", msg["id"], "504", "👍")   # the count moves from 2 to 3
    fake.clear_log()
    assert poll_with(db, fake).summary["reactions_new"] == 1
    assert _reactors_read(fake, msg["id"]) == 1
    assert _reactions(db, msg["id"]) == [("502", "👍", None), ("504", "👍", None)]
    fake.clear_log()
    assert poll_with(db, fake).summary["reactions_new"] == 0
    assert _reactors_read(fake, msg["id"]) == 0
    # 503 reacting with another emoji after the erase: the count changes, 503 stays out.
    fake.react("200", msg["id"], "503", "🔥")
    fake.clear_log()
    assert poll_with(db, fake).summary["reactions_new"] == 0
    assert _reactors_read(fake, msg["id"]) == 1        # the emoji whose count moved, only
    assert "503" not in {r[0] for r in _reactions(db, msg["id"])}
    fake.clear_log()
    poll_with(db, fake)
    assert _reactors_read(fake, msg["id"]) == 0


def test_a_message_first_seen_after_the_erase(db, fake):
    # 503 was erased before this message was ever read: the writer drops their reaction, and
    # the count Discord reported is what the next poll compares with.
    small_world(fake)
    fake.post("201", "502", "an older message so that 503 is known")
    poll_with(db, fake)
    erase_user(db, "503")
    msg = fake.post("200", "501", "posted after the erase")
    fake.react("200", msg["id"], "503", "🎉")
    fake.react("200", msg["id"], "502", "🎉")
    assert poll_with(db, fake).summary["reactions_new"] == 1
    assert _reactions(db, msg["id"]) == [("502", "🎉", None)]
    fake.clear_log()
    poll_with(db, fake)
    assert _reactors_read(fake, msg["id"]) == 0
