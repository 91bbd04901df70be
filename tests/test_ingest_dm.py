"""DM exports and the consent gate: nothing of a DM without consent is written anywhere; with
every participant's consent it is stored; an unchanged file is read again once they consent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.exports import Export, dm_export, emoji, message, reaction, snowflake, user

ZOS = user("900", "zos", bot=True)
PRIYA = user("733", "priya_k", nickname="Priya")
JUN = user("894", "junbug", nickname="Jun")
CANARY = "canary-7f3a-dm-text"


def config_file_of(folder: Path) -> Path:
    path = folder / "zos.toml"
    path.write_text('[discord]\nself_user_id = "900"\n')
    return path


@pytest.fixture
def config_file(tmp_path) -> Path:
    return config_file_of(tmp_path)


def ingest(cli, config_file, *paths):
    result = cli("--config", str(config_file), "ingest", *map(str, paths), "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def dm_file(tmp_path) -> Path:
    ex = dm_export("4001", "priya_k", messages=[
        message(snowflake(0), PRIYA, f"hello zos {CANARY}"),
        message(snowflake(1), ZOS, f"hi Priya {CANARY}",
                reactions=[reaction(emoji("👍"), [PRIYA])]),
    ])
    return ex.write(tmp_path / "Direct Messages - priya_k [4001].json")


def file_bytes(db_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*")
                    if p.is_file())


def test_dm_without_consent_is_only_counted(cli, db, db_path, config_file, tmp_path):
    summary = ingest(cli, config_file, dm_file(tmp_path))
    assert (summary["messages_new"], summary["dm_skipped_without_consent"], summary["users"],
            summary["channels"]) == (0, 2, 0, 0)
    for table in ("messages", "channels", "users", "reactions", "message_sources", "topics",
                  "salience_ledger"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    log = db.execute("SELECT status, dm_skipped_without_consent, dm_participant_ids "
                     "FROM ingest_log").fetchall()
    assert log == [("completed", 2, '["733"]')]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert CANARY.encode() not in file_bytes(db_path)
    # Only the ingest log's own record of the file names it (its path, the ids it needs).
    names = db.execute("SELECT count(*) FROM users WHERE name LIKE '%priya%'").fetchone()
    assert names == (0,)


def test_consent_gained_later_reads_the_unchanged_file_again(cli, db, config_file, tmp_path):
    path = dm_file(tmp_path)
    ingest(cli, config_file, path)
    # Still no consent: the unchanged file is skipped at once.
    assert ingest(cli, config_file, path)["files_skipped_unchanged"] == 1
    result = cli("--config", str(config_file), "consent", "grant", "733")
    assert result.exit_code == 0, result.stderr
    summary = ingest(cli, config_file, path)
    assert (summary["files_skipped_unchanged"], summary["messages_new"],
            summary["reactions_new"], summary["dm_skipped_without_consent"]) == (0, 2, 1, 0)
    assert db.execute("SELECT type, server_id, participant_ids FROM channels").fetchall() == [
        ("dm", None, '["733"]')]
    assert db.execute("SELECT DISTINCT visibility_scope FROM messages").fetchall() == [("dm",)]
    # A DM earns for the other participant's global user topic.
    assert db.execute("SELECT key FROM topics WHERE key = 'user:733'").fetchall() == [
        ("user:733",)]
    # Now stored: the next ingest of the same file is skipped again.
    assert ingest(cli, config_file, path)["files_skipped_unchanged"] == 1


def test_every_participant_must_consent(cli, db, config_file, tmp_path):
    group = dm_export("4002", "studio", group=True, messages=[
        message(snowflake(0), PRIYA, "a"), message(snowflake(1), JUN, "b")])
    path = group.write(tmp_path / "group.json")
    cli("consent", "grant", "733")
    summary = ingest(cli, config_file, path)
    assert summary["dm_skipped_without_consent"] == 2
    assert db.execute("SELECT dm_participant_ids FROM ingest_log").fetchone() == ('["733", "894"]',)
    cli("consent", "grant", "894")
    assert ingest(cli, config_file, path)["messages_new"] == 2


def test_without_a_self_id_the_exporting_account_is_a_participant_too(cli, db, tmp_path):
    path = dm_file(tmp_path)
    cli("consent", "grant", "733")
    result = cli("ingest", str(path), "--json")
    assert json.loads(result.stdout)["dm_skipped_without_consent"] == 2
    assert db.execute("SELECT dm_participant_ids FROM ingest_log").fetchone() == ('["733", "900"]',)
    # Once zos's own id is known (zos.toml here; a poll learns it too), the unchanged file is
    # read again: 900 was never a participant to ask.
    summary = json.loads(cli("--config", str(config_file_of(tmp_path)), "ingest", str(path),
                             "--json").stdout)
    assert (summary["files_skipped_unchanged"], summary["messages_new"]) == (0, 2)


def test_a_one_to_one_dm_is_named_after_its_other_participant(cli, db, config_file, tmp_path):
    # Only zos wrote; Priya is known from a server, and the DM channel carries her name.
    server = Export(messages=[message(snowflake(0), PRIYA, "in public")])
    ingest(cli, config_file, server.write(tmp_path / "g.json"))
    dm = dm_export("4003", "priya_k", messages=[message(snowflake(5), ZOS, "ping")])
    summary = ingest(cli, config_file, dm.write(tmp_path / "dm.json"))
    assert summary["dm_skipped_without_consent"] == 1
    assert db.execute("SELECT dm_participant_ids FROM ingest_log WHERE path LIKE '%dm.json'"
                      ).fetchone() == ('["733"]',)


def test_a_dm_and_a_public_channel_in_one_run(cli, db, config_file, tmp_path):
    public = Export(messages=[message(snowflake(2), JUN, "public words")])
    summary = ingest(cli, config_file, dm_file(tmp_path), public.write(tmp_path / "p.json"))
    assert (summary["messages_new"], summary["dm_skipped_without_consent"]) == (1, 2)
    assert db.execute("SELECT content FROM messages").fetchall() == [("public words",)]


def test_a_grant_after_forget_reads_the_unchanged_file_again(cli, db, config_file, tmp_path):
    path = dm_file(tmp_path)
    cli("consent", "grant", "733")
    assert ingest(cli, config_file, path)["messages_new"] == 2
    forget = cli("consent", "revoke", "733", "--forget", "--yes")
    assert forget.exit_code == 0, forget.stderr
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    # Revoked: the unchanged file is skipped at once; granted again: read again.
    assert ingest(cli, config_file, path)["files_skipped_unchanged"] == 1
    cli("consent", "grant", "733")
    summary = ingest(cli, config_file, path)
    assert (summary["files_skipped_unchanged"], summary["messages_new"]) == (0, 2)
    assert ingest(cli, config_file, path)["files_skipped_unchanged"] == 1


def test_a_group_dm_in_several_files_needs_everyone_in_any_of_them(cli, db, config_file,
                                                                  tmp_path):
    # One group DM exported in two parts: Jun speaks only in the second.
    first = dm_export("4003", "studio", group=True, messages=[
        message(snowflake(0), PRIYA, f"part one {CANARY}"), message(snowflake(1), ZOS, "hi")])
    second = dm_export("4003", "studio", group=True, messages=[
        message(snowflake(2), JUN, f"part two {CANARY}")])
    paths = [first.write(tmp_path / "studio 1.json"), second.write(tmp_path / "studio 2.json")]
    cli("consent", "grant", "733")
    summary = ingest(cli, config_file, *paths)
    assert (summary["messages_new"], summary["dm_skipped_without_consent"]) == (0, 3)
    assert db.execute("SELECT dm_participant_ids FROM ingest_log").fetchall() == [
        ('["733", "894"]',), ('["733", "894"]',)]
    cli("consent", "grant", "894")
    summary = ingest(cli, config_file, *paths)
    assert (summary["messages_new"], summary["dm_skipped_without_consent"]) == (3, 0)
    assert db.execute("SELECT participant_ids FROM channels").fetchall() == [('["733", "894"]',)]


def test_a_group_dm_split_over_runs_needs_everyone_in_any_part(cli, db, config_file, tmp_path):
    # The part with Jun comes first and is refused; the later part, in another run, has only
    # Priya (who consented) speaking: it is still Jun's conversation too, and is refused.
    with_jun = dm_export("4004", "studio", group=True, messages=[
        message(snowflake(0), JUN, f"part one {CANARY}")])
    without_jun = dm_export("4004", "studio", group=True, messages=[
        message(snowflake(1), PRIYA, f"part two {CANARY}")])
    cli("consent", "grant", "733")
    first = ingest(cli, config_file, with_jun.write(tmp_path / "studio [4004] 1.json"))
    assert (first["messages_new"], first["dm_skipped_without_consent"]) == (0, 1)
    later = ingest(cli, config_file, without_jun.write(tmp_path / "studio [4004] 2.json"))
    assert (later["messages_new"], later["dm_skipped_without_consent"]) == (0, 1)
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert db.execute("SELECT DISTINCT channel_id FROM ingest_log").fetchall() == [("4004",)]
    cli("consent", "grant", "894")
    both = ingest(cli, config_file, tmp_path / "studio [4004] 1.json",
                  tmp_path / "studio [4004] 2.json")
    assert (both["messages_new"], both["dm_skipped_without_consent"]) == (2, 0)


def test_a_stored_group_dm_learns_a_participant_without_consent(cli, db, config_file, tmp_path):
    # Stored while everyone seen had consented; a later part shows Jun, who has not: that part
    # is refused, and the stored channel now names Jun, so every later gate refuses it too.
    cli("consent", "grant", "733")
    stored = dm_export("4005", "studio", group=True, messages=[
        message(snowflake(0), PRIYA, "part one"), message(snowflake(1), ZOS, "hi")])
    assert ingest(cli, config_file, stored.write(tmp_path / "a.json"))["messages_new"] == 2
    assert db.execute("SELECT participant_ids FROM channels").fetchone() == ('["733"]',)
    refused = dm_export("4005", "studio", group=True, messages=[
        message(snowflake(2), JUN, f"part two {CANARY}")])
    summary = ingest(cli, config_file, refused.write(tmp_path / "b.json"))
    assert (summary["messages_new"], summary["dm_skipped_without_consent"]) == (0, 1)
    assert db.execute("SELECT participant_ids FROM channels").fetchone() == ('["733", "894"]',)
    from zos_cli.privacy.consent import dm_may_be_stored

    assert not dm_may_be_stored(db, ["733", "894"])


def test_a_member_added_to_a_group_dm_needs_consent_even_if_silent(cli, db, config_file,
                                                                    tmp_path):
    cli("consent", "grant", "733")
    group = dm_export("4006", "studio", group=True, messages=[
        message(snowflake(0), PRIYA, "", type="RecipientAdd", mentions=[JUN]),
        message(snowflake(1), PRIYA, f"welcome {CANARY}")])
    summary = ingest(cli, config_file, group.write(tmp_path / "g.json"))
    assert (summary["messages_new"], summary["dm_skipped_without_consent"]) == (0, 2)
    assert db.execute("SELECT dm_participant_ids FROM ingest_log").fetchone() == (
        '["733", "894"]',)


def test_zos_counted_while_unknown_stops_counting_once_known(cli, db, tmp_path):
    # No self id yet: zos's own reply in part two makes it a participant without consent, and
    # the stored channel learns that id. Once the id is configured, the consented DM is
    # readable again: reflect reads it and rebuild keeps its salience.
    cli("consent", "grant", "733")
    first = dm_export("4007", "priya_k", messages=[message(snowflake(0), PRIYA, "hi zos")])
    second = dm_export("4007", "priya_k", messages=[message(snowflake(1), ZOS, "hello")])
    for i, part in enumerate((first, second)):
        cli("ingest", str(part.write(tmp_path / f"p{i}.json")))
    assert db.execute("SELECT participant_ids FROM channels").fetchone() == ('["733", "900"]',)
    config = config_file_of(tmp_path)
    before = db.execute("SELECT balance FROM topics WHERE key = 'user:733'").fetchone()[0]
    rebuilt = json.loads(cli("--config", str(config), "salience", "rebuild", "--yes",
                             "--json").stdout)
    assert rebuilt["dm_messages_skipped"] == 0
    assert db.execute("SELECT balance FROM topics WHERE key = 'user:733'").fetchone()[0] == before
    run = json.loads(cli("--config", str(config), "reflect", "--layer", "user", "--topic",
                         "user:733", "--json").stdout)
    assert run["insights_created"] == 1


@pytest.mark.parametrize("together", [True, False])
def test_a_bad_part_still_counts_who_it_showed(cli, db, config_file, tmp_path, together):
    # The part showing Jun breaks after his message; the part with Priya alone is refused all
    # the same, in the same run or a later one.
    cli("consent", "grant", "733")
    broken = dm_export("4008", "studio", group=True, messages=[
        message(snowflake(0), JUN, f"part one {CANARY}"),
        message(snowflake(1), PRIYA, "then the file breaks")]).dumps()
    cut = broken.index(snowflake(1).encode()) + 5
    bad = tmp_path / "a.json"
    bad.write_bytes(broken[:cut])
    good = dm_export("4008", "studio", group=True, messages=[
        message(snowflake(2), PRIYA, f"part two {CANARY}")]).write(tmp_path / "b.json")
    runs = [[bad, good]] if together else [[bad], [good]]
    for paths in runs:
        cli("--config", str(config_file), "ingest", *map(str, paths))
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert db.execute("SELECT dm_participant_ids FROM ingest_log WHERE status = 'failed'"
                      ).fetchone() == ('["894"]',)


def test_a_bad_dm_file_stores_nothing_even_with_consent(cli, db, config_file, tmp_path):
    # Unlike a server channel's file, a DM file is stored whole or not at all: who is in the
    # conversation is known only once the file is read to its end (docs/ingest.md#bad-input).
    cli("consent", "grant", "733")
    raw = dm_export("4010", "priya_k", messages=[
        message(snowflake(m), PRIYA, f"m{m} {CANARY}") for m in range(3)]).dumps()
    path = tmp_path / "dm.json"
    path.write_bytes(raw[:raw.index(snowflake(2).encode()) + 5])
    result = cli("--config", str(config_file), "ingest", str(path), "--json")
    assert result.exit_code == 65
    summary = json.loads(result.stdout)
    assert (summary["messages_new"], len(summary["errors"])) == (0, 1)
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    path.write_bytes(raw)
    assert ingest(cli, config_file, path)["messages_new"] == 3


def test_a_one_to_one_dm_whose_other_side_is_unknown_is_not_stored(cli, db, tmp_path):
    # No self id: the exporting account (999) speaks alone in a DM named after "zed", whom
    # nothing identifies. Its consent is not zed's.
    exporter = user("999", "me")
    dm = dm_export("4009", "zed", messages=[message(snowflake(0), exporter, f"note {CANARY}")])
    cli("consent", "grant", "999")
    result = cli("ingest", str(dm.write(tmp_path / "zed.json")), "--json")
    assert json.loads(result.stdout)["dm_skipped_without_consent"] == 1
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
