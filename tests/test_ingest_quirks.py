"""Real exports' quirks (docs/ingest.md#warnings): a `messageCount` that disagrees and a
repeated message id are warnings, not errors (the file is stored and logged completed, the
warnings kept in ingest_log and shown by --json and on stderr); only a truncated file is an
error. And a DM still refused after a grant (docs/ingest.md#dms-and-consent): an unchanged
file skipped at once still counts its refused messages and says whom it waits for."""

from __future__ import annotations

import json
import shutil

from tests.conftest import EXAMPLES, run_on_a_terminal
from tests.exports import Export, dm_export, message, snowflake, user

ALICE = user("101", "alice")
BOB = user("102", "bob")
PRIYA = user("733", "priya_k", nickname="Priya")
JUN = user("894", "junbug", nickname="Jun")
ZOS = user("900", "zos", bot=True)
EXAMPLE_DM = "1180554999988877766"
EXAMPLE_ZOS = "1180554433221100987"  # zos's own account in the bundled example
EXAMPLE_PRIYA = "733410882256019477"


def ingest(cli, *args: str, code: int = 0) -> dict:
    result = cli("ingest", *map(str, args), "--json")
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


def log_rows(db) -> list[tuple]:
    return db.execute("SELECT path, status, error, warnings FROM ingest_log "
                      "ORDER BY started_at, path").fetchall()


def stored(db, channel_id: str) -> list[tuple]:
    return db.execute("SELECT id, content FROM messages WHERE channel_id = ? ORDER BY id",
                      [channel_id]).fetchall()


# ---------------------------------------------------------------------- messageCount
def trimmed_export(tmp_path, name: str = "trimmed.json", count: int = 7):
    """Four messages left by a script that filtered the file and kept the old count."""
    ex = Export(messages=[message(snowflake(i), ALICE if i % 2 else BOB, f"kept {i}")
                          for i in range(4)])
    doc = ex.doc()
    doc["messageCount"] = count
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


def test_a_count_that_disagrees_is_a_warning_and_the_file_is_stored(cli, db, tmp_path):
    path = trimmed_export(tmp_path)
    summary = ingest(cli, path)
    assert summary["errors"] == []
    assert summary["warnings"] == [
        {"file": str(path), "warning": "`messageCount` says 7 but the file holds 4 messages"}]
    assert summary["messages_new"] == 4
    assert stored(db, "2001") == [(snowflake(i), f"kept {i}") for i in range(4)]
    assert log_rows(db) == [(str(path), "completed", None,
                             '["`messageCount` says 7 but the file holds 4 messages"]')]
    history = json.loads(cli("ingest", "--history", "--json").stdout)
    assert history[0]["warnings"] == ["`messageCount` says 7 but the file holds 4 messages"]
    # Completed, so unchanged next time: skipped at once, no warning, exit 0.
    again = ingest(cli, path)
    assert (again["files_skipped_unchanged"], again["warnings"], again["errors"]) == (1, [], [])


def test_a_trimmed_file_no_longer_fails_the_other_files_or_later_runs(cli, db, tmp_path):
    trimmed = trimmed_export(tmp_path / "in")
    Export(channel_id="2002", channel_name="other",
           messages=[message(snowflake(9), ALICE, "other")]).write(tmp_path / "in" / "other.json")
    first = ingest(cli, tmp_path / "in")
    assert (first["files"], first["messages_new"], len(first["warnings"])) == (2, 5, 1)
    later = ingest(cli, tmp_path / "in")
    assert later["files_skipped_unchanged"] == 2 and trimmed.exists()


def test_the_warning_is_on_stderr_in_human_mode(cli, tmp_path):
    path = trimmed_export(tmp_path)
    result = cli("--verbose", "ingest", str(path))
    assert result.exit_code == 0, result.stderr
    assert (f"Warning: {path}: `messageCount` says 7 but the file holds 4 messages"
            in result.stderr)
    assert "Warning" not in result.stdout and "messages_new" in result.stdout


def test_the_warning_is_shown_on_a_terminal(db_path, tmp_path):
    path = trimmed_export(tmp_path, "on-a-terminal.json", count=3)
    code, seen = run_on_a_terminal("--db", str(db_path), "ingest", str(path), columns=300)
    assert code == 0
    assert "`messageCount` says 3 but the file holds 4 messages" in seen.replace("\r\n", "")


def test_a_truncated_file_is_still_an_error_and_nothing_is_half_written(cli, db, tmp_path):
    raw = trimmed_export(tmp_path).read_bytes()
    # The array is complete and closed, the top-level object is not: a truncated file.
    path = tmp_path / "cut.json"
    path.write_bytes(raw[:raw.index(b'"messageCount"')])
    result = cli("ingest", str(path), "--json")
    assert result.exit_code == 65
    assert result.stderr.startswith(f"Error: {path}: truncated JSON: the file ends inside the "
                                    "top-level object, at byte ")
    summary = json.loads(result.stdout)
    assert summary["warnings"] == [] and len(summary["errors"]) == 1
    assert [(p, s, w) for p, s, _, w in log_rows(db)] == [(str(path), "failed", None)]
    # What the file holds before the problem is kept, each message whole (its rows, its
    # source, its salience), as for any truncated export.
    assert stored(db, "2001") == [(snowflake(i), f"kept {i}") for i in range(4)]
    assert db.execute("SELECT count(*) FROM message_sources").fetchone() == (4,)
    assert db.execute("SELECT balance FROM topics WHERE key = 'server:1001:user:102'"
                      ).fetchone() == (2.0,)
    assert cli("salience", "check").exit_code == 0
    # Cut inside the array: an error too.
    inside = tmp_path / "cut-inside.json"
    inside.write_bytes(raw[:raw.index(snowflake(3).encode()) + 4])
    assert cli("ingest", str(inside)).exit_code == 65


# ---------------------------------------------------------------------- repeated ids
def repeated_export(channel_id: str = "2001") -> Export:
    """Three messages, the second one again, then three valid messages more."""
    ex = Export(channel_id=channel_id)
    for i in range(3):
        ex.add(message(snowflake(i), ALICE if i % 2 else BOB, f"before {i}"))
    ex.add(message(snowflake(1), ALICE, "the later copy"))
    for i in range(3, 6):
        ex.add(message(snowflake(i), ALICE if i % 2 else BOB, f"after {i}"))
    return ex


def test_a_repeated_id_keeps_the_three_messages_after_it(cli, db, tmp_path):
    path = repeated_export().write(tmp_path / "repeated.json")
    result = cli("ingest", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    warning = f"message id {snowflake(1)} repeated at message index 3: the later copy was skipped"
    assert summary["warnings"] == [{"file": str(path), "warning": warning}]
    assert summary["errors"] == [] and summary["messages_new"] == 6
    # The three valid messages after the repeat are stored (they used to be lost), and the
    # first copy is the one kept.
    assert stored(db, "2001") == [
        (snowflake(0), "before 0"), (snowflake(1), "before 1"), (snowflake(2), "before 2"),
        (snowflake(3), "after 3"), (snowflake(4), "after 4"), (snowflake(5), "after 5")]
    assert log_rows(db) == [(str(path), "completed", None, json.dumps([warning]))]
    human = cli("--verbose", "ingest", str(tmp_path / "repeated.json"))
    assert human.exit_code == 0  # (skipped now: unchanged)


def test_a_repeated_id_earns_as_if_it_were_not_there(cli, db, tmp_path):
    from tests.conftest import Cli

    cli("ingest", str(repeated_export().write(tmp_path / "a" / "repeated.json")))
    clean = repeated_export()
    clean.messages.pop(3)
    other = Cli(tmp_path / "clean.db")
    assert other("init-db").exit_code == 0
    assert other("ingest", str(clean.write(tmp_path / "b" / "clean.json"))).exit_code == 0
    top = ["salience", "top", "--json", "--limit", "100"]
    assert json.loads(cli(*top).stdout) == json.loads(other(*top).stdout)


def test_a_repeated_id_in_files_merged_together(cli, db, tmp_path):
    repeated_export().write(tmp_path / "in" / "a.json")
    Export(channel_id="2002", channel_name="b", messages=[
        message(snowflake(i, 1), BOB, f"b{i}") for i in range(6)]).write(tmp_path / "in" / "b.json")
    summary = ingest(cli, tmp_path / "in")
    assert summary["messages_new"] == 12 and len(summary["warnings"]) == 1
    assert [c for _, c in stored(db, "2001")][-3:] == ["after 3", "after 4", "after 5"]


def test_a_repeat_and_a_truncation_report_both(cli, db, tmp_path):
    raw = repeated_export().dumps()
    path = tmp_path / "both.json"
    path.write_bytes(raw[:raw.index(b'"after 5"')])
    result = cli("ingest", str(path), "--json")
    assert result.exit_code == 65
    summary = json.loads(result.stdout)
    assert summary["warnings"] == [{"file": str(path), "warning": f"message id {snowflake(1)} "
                                    "repeated at message index 3: the later copy was skipped"}]
    assert db.execute("SELECT status, json_array_length(warnings) FROM ingest_log"
                      ).fetchall() == [("failed", 1)]
    assert len(stored(db, "2001")) == 5  # up to the cut, the repeat skipped


def test_a_repeat_in_a_refused_dm_is_counted_once(cli, db, tmp_path):
    dm = dm_export("4001", "priya_k", messages=[
        message(snowflake(0), PRIYA, "a"), message(snowflake(0), PRIYA, "a again"),
        message(snowflake(1), ZOS, "b")])
    config = tmp_path / "zos.toml"
    config.write_text('[discord]\nself_user_id = "900"\n')
    path = dm.write(tmp_path / "dm.json")
    result = cli("--config", str(config), "ingest", str(path), "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 0 and summary["dm_skipped_without_consent"] == 2
    assert len(summary["warnings"]) == 1
    cli("consent", "grant", "733")
    summary = json.loads(cli("--config", str(config), "ingest", str(path), "--json").stdout)
    assert (summary["messages_new"], len(summary["warnings"])) == (2, 1)
    # Erasing Priya takes the DM's message ids out of its files' warnings too.
    assert cli("consent", "erase", "733", "--yes").exit_code == 0
    assert db.execute("SELECT count(*) FROM ingest_log WHERE warnings IS NOT NULL"
                      ).fetchone() == (0,)


# ---------------------------------------------------------------------- a DM still refused
def example_without_config(tmp_path):
    """The bundled example, copied (so no examples/zos.toml names zos's own account)."""
    folder = tmp_path / "export"
    shutil.copytree(EXAMPLES / "export", folder)
    return folder


def test_a_grant_that_leaves_zos_unknown_still_counts_and_names_it(cli, db, tmp_path):
    folder = example_without_config(tmp_path)
    first = ingest(cli, folder)
    assert first["dm_skipped_without_consent"] == 3
    assert first["dm_consent_needed"] == [
        {"user_id": EXAMPLE_PRIYA, "name": "priya_k", "probably_zos": False},
        {"user_id": EXAMPLE_ZOS, "name": None, "probably_zos": True}]
    granted = cli("consent", "grant", "@priya_k")
    assert granted.exit_code == 0, granted.stderr
    # The file is unchanged and is not read again (zos's own account still lacks consent)...
    second = ingest(cli, folder)
    assert second["files_skipped_unchanged"] == 4 and second["messages_new"] == 0
    # ... yet its refused messages are counted, and the one it waits for is named.
    assert second["dm_skipped_without_consent"] == 3
    assert second["dm_consent_needed"] == [
        {"user_id": EXAMPLE_ZOS, "name": None, "probably_zos": True}]
    assert stored(db, EXAMPLE_DM) == []
    dm_log = db.execute("SELECT status, dm_skipped_without_consent, dm_participant_ids, "
                        "channel_id, dm_probable_self_id FROM ingest_log WHERE path LIKE "
                        "'%Direct Messages%' ORDER BY started_at").fetchall()
    participants = json.dumps([EXAMPLE_PRIYA, EXAMPLE_ZOS])
    assert dm_log == [("completed", 3, participants, EXAMPLE_DM, EXAMPLE_ZOS),
                      ("skipped", 3, participants, EXAMPLE_DM, EXAMPLE_ZOS)]
    # On stderr: who still lacks consent, and that this one is zos itself.
    human = cli("--verbose", "ingest", str(folder))
    assert human.exit_code == 0
    hint = [line for line in human.stderr.splitlines() if "zos.ingest" not in line]
    assert hint == [
        "DM messages were not stored: every participant needs a `zos consent grant USER`; "
        "then run the same ingest again.",
        f"Still without consent: {EXAMPLE_ZOS} (probably zos itself).",
        f"{EXAMPLE_ZOS} is probably zos's own account (the other side of the DM, while "
        "discord.self_user_id is unset): it needs no consent; set "
        f"`self_user_id = \"{EXAMPLE_ZOS}\"` under [discord] in zos.toml (a zos poll also "
        "learns it)."]
    # Doing as told: the unchanged file is read again and the DM is stored.
    config = tmp_path / "zos.toml"
    config.write_text(f'[discord]\nself_user_id = "{EXAMPLE_ZOS}"\n')
    third = json.loads(cli("--config", str(config), "ingest", str(folder), "--json").stdout)
    assert (third["files_skipped_unchanged"], third["messages_new"],
            third["dm_skipped_without_consent"], third["dm_consent_needed"]) == (3, 3, 0, [])
    assert len(stored(db, EXAMPLE_DM)) == 3
    assert db.execute("SELECT DISTINCT visibility_scope FROM messages WHERE channel_id = ?",
                      [EXAMPLE_DM]).fetchall() == [("dm",)]


def test_the_first_hint_names_everyone_without_consent(cli, tmp_path):
    folder = example_without_config(tmp_path)
    human = cli("--verbose", "ingest", str(folder))
    assert human.exit_code == 0
    assert (f"Still without consent: @priya_k ({EXAMPLE_PRIYA}), {EXAMPLE_ZOS} (probably zos "
            "itself).") in human.stderr.splitlines()


def test_a_group_dm_names_each_participant_and_guesses_no_self(cli, db, tmp_path):
    # (zos's account unknown, but a group DM has no "other side" to take for it)
    Export(messages=[message(snowflake(0), PRIYA, "hi"), message(snowflake(1), JUN, "yo")]
           ).write(tmp_path / "server.json")
    group = dm_export("4002", "studio", group=True, messages=[
        message(snowflake(2), PRIYA, "a"), message(snowflake(3), JUN, "b"),
        message(snowflake(4), ALICE, "c")])
    path = group.write(tmp_path / "group.json")
    first = ingest(cli, tmp_path / "server.json", path)
    assert first["dm_consent_needed"] == [
        {"user_id": "101", "name": None, "probably_zos": False},
        {"user_id": "733", "name": "priya_k", "probably_zos": False},
        {"user_id": "894", "name": "junbug", "probably_zos": False}]
    cli("consent", "grant", "@junbug")
    human = cli("--verbose", "ingest", str(path))
    assert "Still without consent: 101, @priya_k (733)." in human.stderr.splitlines()
    assert "probably zos" not in human.stderr
    # A stored name is the only name shown: the DM itself stores none (alice is only there).
    assert db.execute("SELECT count(*) FROM users WHERE id = '101'").fetchone() == (0,)
    cli("consent", "grant", "@priya_k")
    cli("consent", "grant", "101")
    done = ingest(cli, path)
    assert (done["messages_new"], done["dm_skipped_without_consent"]) == (3, 0)


def test_no_hint_and_an_empty_list_when_every_dm_is_stored(cli, tmp_path):
    config = tmp_path / "zos.toml"
    config.write_text('[discord]\nself_user_id = "900"\n')
    Export(messages=[message(snowflake(0), PRIYA, "hi")]).write(tmp_path / "server.json")
    ingest(cli, tmp_path / "server.json")
    cli("consent", "grant", "@priya_k")
    dm = dm_export("4001", "priya_k", messages=[message(snowflake(1), PRIYA, "a"),
                                                message(snowflake(2), ZOS, "b")])
    path = dm.write(tmp_path / "dm.json")
    result = cli("--config", str(config), "--verbose", "ingest", str(path))
    assert result.exit_code == 0 and "not stored" not in result.stderr
    again = json.loads(cli("--config", str(config), "ingest", str(path), "--json").stdout)
    assert (again["files_skipped_unchanged"], again["dm_skipped_without_consent"],
            again["dm_consent_needed"]) == (1, 0, [])


def test_erase_renames_the_skipped_rows_of_a_dm_file_too(cli, db, tmp_path):
    folder = example_without_config(tmp_path)
    ingest(cli, folder)
    ingest(cli, folder)  # the DM file skipped as unchanged: a second row with its path
    assert db.execute("SELECT count(*) FROM ingest_log WHERE path LIKE '%priya_k%'"
                      ).fetchone() == (2,)
    assert cli("consent", "erase", EXAMPLE_PRIYA, "--yes").exit_code == 0
    paths = [r[0] for r in db.execute("SELECT path FROM ingest_log")]
    assert len(paths) == 8 and not any("priya_k" in p for p in paths)
