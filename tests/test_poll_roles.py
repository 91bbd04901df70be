"""Roles in a server with a privacy-gate role: refreshed at most every
`poll.roles_refresh_minutes`, newcomers' roles learned before their messages are stored, and
every change recorded (a lost gate role quarantines the user's insights)."""

from __future__ import annotations

import json

from tests.fake_discord import config_for, fake, poll_with, small_world  # noqa: F401

GATE = "900"


def _world(fake):
    small_world(fake)
    fake.add_role("100", GATE, "members", color=0x00FF00)
    fake.add_role("100", "901", "mods")
    fake.add_member("100", "501", roles=[GATE, "901"])
    fake.add_member("100", "502", roles=[])
    fake.add_member("100", "503", roles=[GATE])


def _config(fake, minutes: float = 60):
    return config_for(fake, servers={"100": {"privacy_gate_role": GATE}},
                      poll={"roles_refresh_minutes": minutes})


def _roles(db, user: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT role_id FROM user_roles WHERE user_id = ? AND server_id = '100' ORDER BY role_id", [user])]


def _balance(db, key: str) -> float:
    row = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()
    return row[0] if row else 0.0


def test_refresh_records_roles_and_the_gate_applies(db, fake):
    _world(fake)
    fake.post("200", "501", "behind the gate")
    fake.post("200", "502", "outside the gate")
    report = poll_with(db, fake, _config(fake))
    assert report.summary["errors"] == []
    assert _roles(db, "501") == [GATE, "901"] and _roles(db, "502") == []
    assert db.execute("SELECT name, color FROM roles WHERE id = ?", [GATE]).fetchone() == ("members", "#00FF00")
    assert db.execute("SELECT roles_known, roles_refreshed_at IS NOT NULL FROM user_server_tracking "
                      "WHERE user_id = '502'").fetchone() == (1, 1)
    assert _balance(db, "server:100:user:501") > 0
    assert _balance(db, "server:100:user:502") == 0
    # Nobody was known before this poll: the two authors were asked for as they appeared,
    # and members who never spoke (503) were not recorded.
    assert sorted(e.path.rsplit("/", 1)[1] for e in fake.requests("member")) == ["501", "502"]
    assert _roles(db, "503") == [] and db.execute(
        "SELECT count(*) FROM users WHERE id = '503'").fetchone()[0] == 0


def test_no_refresh_within_the_interval(db, fake):
    _world(fake)
    poll_with(db, fake, _config(fake))
    fake.clear_log()
    poll_with(db, fake, _config(fake))
    assert fake.requests("members") == [] and fake.requests("roles") == []


def test_role_changes_are_returned_recorded_and_quarantine(db, fake):
    _world(fake)
    fake.post("200", "501", "hello")
    fake.post("200", "503", "hi")
    poll_with(db, fake, _config(fake, minutes=0))
    db.execute(
        "INSERT INTO insights (id, topic_key, category, content, sources_scope_max, confidence, "
        "importance, novelty, valence_joy, created_at) VALUES ('i1', 'server:100:user:501', "
        "'user_reflection', 'x', 'public', 1, 0.5, 0.5, 0.5, '2024-03-01T00:00:00.000000+00:00')")
    fake.members["100"]["501"]["roles"] = ["901"]          # lost the gate role
    fake.remove_member("100", "503")                       # left the server
    report = poll_with(db, fake, _config(fake, minutes=0))
    changes = {c["user_id"]: c for c in report.summary["role_changes"]}
    assert changes["501"] == {"server_id": "100", "user_id": "501", "added": [], "removed": [GATE],
                              "had_gate": True, "has_gate": False, "left_server": False}
    assert changes["503"]["left_server"] is True and changes["503"]["removed"] == [GATE]
    assert "502" not in changes
    events = [json.loads(r[0]) for r in db.execute(
        "SELECT payload FROM events WHERE event_type = 'roles_changed' ORDER BY created_at")]
    assert {(e["user_id"], tuple(e["removed"])) for e in events} >= {("501", (GATE,)), ("503", (GATE,))}
    assert db.execute("SELECT quarantined FROM insights WHERE id = 'i1'").fetchone()[0] == 1
    # Regaining the role restores the insight.
    fake.members["100"]["501"]["roles"] = [GATE]
    poll_with(db, fake, _config(fake, minutes=0))
    assert db.execute("SELECT quarantined FROM insights WHERE id = 'i1'").fetchone()[0] == 0


def test_without_members_intent_known_users_are_asked_one_by_one(db, fake):
    _world(fake)
    fake.members_intent = False
    fake.post("200", "501", "one")
    fake.post("200", "502", "two")
    poll_with(db, fake, _config(fake, minutes=0))
    assert _roles(db, "501") == [GATE, "901"]
    fake.clear_log()
    poll_with(db, fake, _config(fake, minutes=0))
    assert sorted(e.path.rsplit("/", 1)[1] for e in fake.requests("member")) == ["501", "502"]


def test_newcomer_roles_learned_before_their_messages(db, fake):
    _world(fake)
    poll_with(db, fake, _config(fake))
    fake.add_user("504", "dee")
    fake.add_member("100", "504", roles=[GATE])
    fake.post("201", "504", "first words")
    fake.clear_log()
    poll_with(db, fake, _config(fake))
    assert [e.path.rsplit("/", 1)[1] for e in fake.requests("member")] == ["504"]
    assert _roles(db, "504") == [GATE]
    assert _balance(db, "server:100:user:504") > 0


def test_a_failed_role_refresh_is_reported_and_the_poll_goes_on(db, fake):
    _world(fake)
    fake.post("200", "501", "hello")
    fake.inject("roles", "status", times=5, status=500)
    report = poll_with(db, fake, _config(fake))
    assert report.fatal is None
    assert report.summary["errors"] == [{"channel": "guild:100", "error":
        "roles: GET /guilds/100/roles: Discord answered 500 5 times in a row; try again later"}]
    assert report.summary["messages_new"] == 1
