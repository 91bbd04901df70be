"""`zos consent grant/revoke/list/status` and the one DM gate, `dm_may_be_stored`."""

from __future__ import annotations

import json

import pytest

from zos_cli.privacy import consent
from zos_cli.store import db as db_module
from zos_cli.errors import UsageProblem


@pytest.fixture
def people(db):
    with db_module.write_transaction(db):
        db.conn.executemany(
            "INSERT INTO users (id, name, display_name) VALUES (?, ?, ?)",
            [("733", "priya_k", "Priya"), ("894", "junbug", "Jun"), ("895", "june", "June"),
             ("896", "sam", "Jun")])
    return db


def events(db):
    return [(t, json.loads(p)) for t, p in db.execute(
        "SELECT event_type, payload FROM events WHERE event_type LIKE 'consent%' ORDER BY id")]


def test_grant_revoke_regrant_are_rows_and_events(cli, people):
    r = cli("consent", "grant", "@priya_k", "--note", "asked in #general", "--server", "1001",
            "--at", "2024-03-01T10:00:00-05:00", "--json")
    assert r.exit_code == 0, r.stderr
    granted = json.loads(r.stdout)
    assert (granted["user_id"], granted["granted_at"], granted["changed"]) == (
        "733", "2024-03-01T15:00:00.000000+00:00", True)
    again = cli("consent", "grant", "733")
    assert again.exit_code == 0
    assert again.stdout == ("733 already has an active dm_read consent (since "
                            "2024-03-01T15:00:00.000000+00:00).\n")
    r = cli("consent", "revoke", "Priya", "--at", "2024-03-02T00:00:00Z")
    assert r.stdout == "Revoked dm_read for 733 at 2024-03-02T00:00:00.000000+00:00; 0 insights quarantined.\n"
    assert cli("consent", "revoke", "733").stdout == (
        "733 has no active dm_read consent: nothing to revoke.\n")
    cli("consent", "grant", "733", "--at", "2024-03-03T00:00:00Z")
    rows = people.execute("SELECT granted_at, revoked_at, server_id, note FROM consents "
                          "ORDER BY granted_at").fetchall()
    assert rows == [
        ("2024-03-01T15:00:00.000000+00:00", "2024-03-02T00:00:00.000000+00:00", "1001",
         "asked in #general"),
        ("2024-03-03T00:00:00.000000+00:00", None, None, None)]
    assert [e[0] for e in events(people)] == ["consent_granted", "consent_revoked",
                                              "consent_granted"]
    assert all(e[1]["user_id"] == "733" for e in events(people))


def test_list_and_status(cli, people):
    assert json.loads(cli("consent", "list", "--json").stdout) == []
    cli("consent", "grant", "733", "--at", "2024-03-01T00:00:00Z")
    cli("consent", "grant", "894", "--at", "2024-03-02T00:00:00Z")
    cli("consent", "revoke", "894", "--at", "2024-03-03T00:00:00Z")
    rows = json.loads(cli("consent", "list", "--json").stdout)
    assert [(r["user_id"], r["consent_type"], r["granted_at"], r["revoked_at"]) for r in rows] \
        == [("894", "dm_read", "2024-03-02T00:00:00.000000+00:00",
             "2024-03-03T00:00:00.000000+00:00"),
            ("733", "dm_read", "2024-03-01T00:00:00.000000+00:00", None)]
    active = cli("consent", "list", "--active", "--nl").stdout.splitlines()
    assert [json.loads(line)["user_id"] for line in active] == ["733"]
    status = json.loads(cli("consent", "status", "junbug", "--json").stdout)
    assert (status["user_id"], status["user_name"], status["active"], status["revoked_at"],
            len(status["history"])) == ("894", "junbug", False,
                                        "2024-03-03T00:00:00.000000+00:00", 1)
    assert cli("consent", "status", "733").stdout.startswith(
        "733 (@priya_k): dm_read active since 2024-03-01T00:00:00.000000+00:00.\n")
    assert cli("consent", "status", "12345").stdout == "12345: no dm_read consent.\n"


def test_users_are_ids_or_known_names(cli, people):
    r = cli("consent", "grant", "@nobody")
    assert r.exit_code == 2
    assert r.stderr == ("Error: no known user named @nobody: give their Discord id instead "
                        "(right-click the user in Discord with developer mode on, Copy User ID)\n")
    r = cli("consent", "grant", "@Jun")  # no user name "jun"; two display names "Jun"
    assert r.exit_code == 2
    assert r.stderr == "Error: @Jun matches several users (894, 896): give the id\n"
    assert consent.resolve_user(people, "@JUNE") == "895"  # a user name, ignoring case
    assert consent.resolve_user(people, "junbug") == "894"
    r = cli("consent", "grant", "733", "--type", "dm_write")
    assert (r.exit_code, r.stderr) == (2, "Error: unknown consent type 'dm_write': use one of "
                                          "dm_read\n")
    r = cli("consent", "grant", "733", "--at", "soon")
    assert (r.exit_code, r.stderr) == (2, "Error: --at 'soon' is not an ISO-8601 time\n")
    r = cli("consent", "grant", "733", "--at", "0001-01-01T00:00:00+01:00")
    assert (r.exit_code, r.stderr) == (2, "Error: --at '0001-01-01T00:00:00+01:00' is outside "
                                          "the years 1–9999 once in UTC\n")
    # str.isdigit() takes '²' and full-width digits: not Discord ids, nor known names.
    for odd in ("²", "１２３"):
        r = cli("consent", "grant", odd)
        assert r.exit_code == 2 and r.stderr.startswith(f"Error: no known user named @{odd}:")
    # A consent may precede anything zos has seen of the user.
    assert cli("consent", "grant", "555000111").exit_code == 0


def test_dm_may_be_stored_needs_every_participant(people):
    assert not consent.dm_may_be_stored(people, [])
    assert not consent.dm_may_be_stored(people, ["733"])
    consent.grant(people, "733")
    assert consent.dm_may_be_stored(people, ["733"])
    assert not consent.dm_may_be_stored(people, ["733", "894"])
    consent.grant(people, "894")
    assert consent.dm_may_be_stored(people, ["733", "894", "733"])
    consent.revoke(people, "894")
    assert not consent.dm_may_be_stored(people, ["733", "894"])


def test_revoke_before_grant_is_refused(people):
    consent.grant(people, "733", at="2024-03-05T00:00:00Z")
    with pytest.raises(UsageProblem, match="before the grant"):
        consent.revoke(people, "733", at="2024-03-01T00:00:00Z")
