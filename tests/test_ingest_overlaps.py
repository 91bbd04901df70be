"""Overlapping exports, older ones arriving last, and numbers or links at the edges: the
newest exportedAt wins for everything a message and a person carry, whatever the order."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.exports import Export, attachment, emoji, message, reaction, role, snowflake, user

OLD, NEW = "2024-03-02T00:00:00+00:00", "2024-03-20T00:00:00+00:00"


def ingest(cli, *paths):
    result = cli("ingest", *map(str, paths), "--json")
    return result, json.loads(result.stdout)


def _message_versions(tmp_path):
    m = snowflake(0)
    bob, carol = user("102", "bob"), user("103", "carol")
    old = Export(exported_at=OLD, messages=[message(
        m, user("101", "alice"), "see https://old.example.com/a", attachments=[attachment("7")],
        reactions=[reaction(emoji("👍"), [bob, carol])])])
    # The newer export drops the link and the attachment, and lists one of two reactors.
    new = Export(exported_at=NEW, messages=[message(
        m, user("101", "alice"), "edited: no link", edited="2024-03-01T00:10:00+00:00",
        reactions=[reaction(emoji("👍"), [bob], count=2)])])
    return old.write(tmp_path / "old.json"), new.write(tmp_path / "new.json"), m


def _message_state(db, m):
    return (db.execute("SELECT content, has_links, has_media FROM messages").fetchone(),
            db.execute("SELECT count(*) FROM link_analysis").fetchone()[0],
            db.execute("SELECT count(*) FROM media_analysis").fetchone()[0],
            db.execute("SELECT user_id, removed_at IS NULL FROM reactions ORDER BY 1").fetchall())


@pytest.mark.parametrize("order", ["old first", "new first", "one run"])
def test_links_attachments_and_reactors_follow_the_newest_export(cli, db, tmp_path, order):
    old, new, m = _message_versions(tmp_path)
    if order == "one run":
        ingest(cli, old, new)
    else:
        for path in ((old, new) if order == "old first" else (new, old)):
            ingest(cli, path)
    content, links, media, reactors = _message_state(db, m)
    assert content == ("edited: no link", 0, 0) and (links, media) == (0, 0)
    # carol is not listed by the newer export, but its count (2) says she may still be there.
    present = [r for r in reactors if r[1]]
    assert ("102", 1) in present and ("103", 0) not in reactors


def test_an_older_export_ingested_later_does_not_bring_back_a_name_or_a_role(cli, db, tmp_path):
    old_alice = user("101", "alice", nickname="OldNick", roles=[role("900", "old-role")])
    new_alice = user("101", "alice_renamed", nickname="NewNick", roles=[role("901", "new-role")])
    new = Export(exported_at=NEW, messages=[message(snowflake(0), new_alice, "hello"),
                                            message(snowflake(5), new_alice, "later")])
    old = Export(exported_at=OLD, messages=[message(snowflake(0), old_alice, "hello")])
    older_elsewhere = Export(channel_id="2002", channel_name="other", exported_at=OLD,
                             messages=[message(snowflake(-10), old_alice, "before")])
    ingest(cli, new.write(tmp_path / "new.json"))
    ingest(cli, old.write(tmp_path / "old.json"), older_elsewhere.write(tmp_path / "o2.json"))
    assert db.execute("SELECT name, display_name FROM users WHERE id = '101'").fetchone() == (
        "alice_renamed", "NewNick")
    assert db.execute("SELECT nickname, substr(roles_refreshed_at, 1, 10) FROM "
                      "user_server_tracking WHERE user_id = '101'").fetchone() == (
        "NewNick", "2024-03-20")
    assert db.execute("SELECT role_id FROM user_roles WHERE user_id = '101'").fetchall() == [
        ("901",)]


def test_one_run_with_both_exports_takes_the_newest_profile(cli, db, tmp_path):
    old_alice = user("101", "alice", nickname="OldNick", roles=[role("900", "old-role")])
    new_alice = user("101", "alice_renamed", nickname="NewNick", roles=[role("901", "new-role")])
    new = Export(exported_at=NEW, messages=[message(snowflake(0), new_alice, "hello")])
    # The old export's message comes later in snowflake order: merged after the new one.
    old = Export(channel_id="2002", channel_name="other", exported_at=OLD,
                 messages=[message(snowflake(9), old_alice, "afterwards, in an old export")])
    ingest(cli, new.write(tmp_path / "new.json"), old.write(tmp_path / "old.json"))
    assert db.execute("SELECT name FROM users WHERE id = '101'").fetchone() == ("alice_renamed",)
    assert db.execute("SELECT role_id FROM user_roles WHERE user_id = '101'").fetchall() == [
        ("901",)]


@pytest.mark.parametrize("field, value, where", [
    ("fileSizeBytes", 2**64 - 1, "attachments"),
    ("position", 2**63, "roles"),
])
def test_a_number_too_large_to_store_is_an_input_error(cli, db, tmp_path, field, value, where):
    good = Export(channel_id="2003", messages=[message(snowflake(1), user("101", "a"), "fine")])
    doc = Export(messages=[message(snowflake(0), user("101", "a", roles=[role("9", "r")]), "x",
                                   attachments=[attachment("5")])]).doc()
    target = doc["messages"][0]["attachments"][0] if where == "attachments" else \
        doc["messages"][0]["author"]["roles"][0]
    target[field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result, summary = ingest(cli, good.write(tmp_path / "good.json"), bad)
    assert result.exit_code == 65 and "Traceback" not in result.stderr
    assert summary["messages_new"] == 1
    [error] = summary["errors"]
    assert error["file"] == str(bad) and "at message index 0" in error["error"]
    assert field in error["error"]


def test_a_failed_file_is_logged_with_its_sha256(cli, db, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"guild": {"id": "1"}, "channel": ')
    result, _ = ingest(cli, bad)
    assert result.exit_code == 65
    assert db.execute("SELECT status, sha256 FROM ingest_log").fetchone() == (
        "failed", hashlib.sha256(bad.read_bytes()).hexdigest())


def test_links_in_any_case_and_with_their_own_parentheses(cli, db, tmp_path):
    text = ("look Https://Example.com/x and https://en.wikipedia.org/wiki/Kiln_(pottery) "
            "(or https://example.org/b).")
    ingest(cli, Export(messages=[message(snowflake(0), user("101", "a"), text)]).write(
        tmp_path / "l.json"))
    assert db.execute("SELECT url, domain FROM link_analysis ORDER BY url").fetchall() == [
        ("Https://Example.com/x", "example.com"),
        ("https://en.wikipedia.org/wiki/Kiln_(pottery)", "en.wikipedia.org"),
        ("https://example.org/b", "example.org")]


def test_an_older_export_does_not_bring_back_a_roles_old_name(cli, db, tmp_path):
    old_role, new_role = role("77", "verified", position=5), role("77", "verified-renamed",
                                                                 position=6)
    new = Export(exported_at=NEW, messages=[message(
        snowflake(0), user("101", "alice", roles=[new_role]), "hi")])
    old = Export(channel_id="2002", channel_name="other", exported_at=OLD, messages=[message(
        snowflake(1), user("102", "bob", roles=[old_role]), "hello")])
    ingest(cli, new.write(tmp_path / "new.json"))
    ingest(cli, old.write(tmp_path / "old.json"))
    assert db.execute("SELECT name, position FROM roles WHERE id = '77'").fetchone() == (
        "verified-renamed", 6)
