"""`zos ingest` of DiscordChatExporter exports: what is stored, idempotence, merges, the summary,
history, stdin, bad files and locks."""

from __future__ import annotations

import json
import re
import shutil

from tests.conftest import EXAMPLES, run_zos
from tests.exports import Export, attachment, emoji, message, reaction, role, snowflake, user
from zos_cli.store import locks

EXAMPLE = EXAMPLES / "export"
GENERAL = "1093876544121149511"
SHOW = "1093880712475574312"
THREAD = "1214282716938240001"
GUILD = "1093876543210987520"
THEO = "612993005118177290"
MAREN = "405112233445566778"
DATA_TABLES = ["servers", "channels", "users", "user_server_tracking", "roles", "user_roles",
               "messages", "reactions", "mentions", "role_mentions", "media_analysis",
               "link_analysis", "message_sources", "topics", "salience_ledger"]

ALICE = user("101", "alice", roles=[role("9", "members")])
BOB = user("102", "bob", roles=[role("9", "members")])
CAROL = user("103", "carol", roles=[role("9", "members")])


def ingest(cli, *args: str):
    result = cli("ingest", *args, "--json")
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def counts(db) -> dict:
    return {t: db.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0] for t in DATA_TABLES}


def balances(db) -> dict:
    return dict(db.execute("SELECT key, round(balance, 9) FROM topics").fetchall())


# ---------------------------------------------------------------------- the example export
def test_example_export_summary_and_rows(cli, db):
    result, summary = ingest(cli, str(EXAMPLE))
    assert result.exit_code == 0, result.stderr
    assert {k: summary[k] for k in ("files", "files_skipped_unchanged", "messages_new",
                                    "messages_seen", "reactions_new", "users", "channels",
                                    "dm_skipped_without_consent", "errors")} == {
        "files": 4, "files_skipped_unchanged": 0, "messages_new": 19, "messages_seen": 0,
        "reactions_new": 23, "users": 4, "channels": 3, "dm_skipped_without_consent": 3,
        "errors": []}
    q = lambda sql, *p: db.execute(sql, p).fetchall()  # noqa: E731
    assert q("SELECT type, parent_id, server_id FROM channels WHERE id = ?", THREAD) == [
        ("public_thread", SHOW, GUILD)]
    assert q("SELECT count(*) FROM messages WHERE visibility_scope = 'public'") == [(19,)]
    assert q("SELECT message_type, count(*) FROM messages GROUP BY 1 ORDER BY 1") == [
        ("ChannelPinnedMessage", 1), ("Default", 9), ("GuildMemberJoin", 1), ("Reply", 7),
        ("ThreadCreated", 1)]
    assert q("SELECT thread_id FROM messages WHERE message_type = 'ThreadCreated'") == [(THREAD,)]
    assert q("SELECT file_name, size_bytes, description FROM media_analysis ORDER BY 1") == [
        ("kiln-frame.png", 7323, ""), ("mugs.jpg", 482113, "")]
    assert q("SELECT DISTINCT domain FROM link_analysis ORDER BY 1") == [
        ("theo.example.net",), ("tidepool.example.org",)]
    assert q("SELECT count(*) FROM messages WHERE has_links = 1") == [(2,)]
    assert q("SELECT count(*), sum(is_custom) FROM reactions") == [(23, 5)]
    assert q("SELECT custom_emoji_ids FROM messages WHERE custom_emoji_ids IS NOT NULL "
             "ORDER BY id") == [('["1150321987654321152"]',),
                                ('["1150321987654321152", "1150321987654321152"]',)]
    assert q("SELECT edited_at FROM messages WHERE edited_at IS NOT NULL") == [
        ("2024-03-04T18:38:00.000000+00:00",)]
    assert q("SELECT count(*) FROM messages WHERE is_pinned = 1") == [(1,)]
    assert q("SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id "
             "WHERE ur.user_id = ? ORDER BY r.position", MAREN) == [("Members",), ("Moderators",)]
    assert q("SELECT message_count, nickname FROM user_server_tracking WHERE user_id = ?",
             THEO) == [(7, "Theo")]
    # Nothing of the DM (no consent): no channel, no messages, no user only seen there.
    assert q("SELECT count(*) FROM channels WHERE type = 'dm'") == [(0,)]
    assert q("SELECT count(*) FROM users WHERE name = 'zos'") == [(0,)]
    # Salience was earned, in event time.
    top = q("SELECT key FROM topics ORDER BY balance DESC LIMIT 1")[0][0]
    assert top.startswith(f"server:{GUILD}:")
    assert q("SELECT max(created_at) FROM salience_ledger") == [
        ("2024-03-05T18:25:00.000000+00:00",)]


def test_reingesting_the_same_export_adds_nothing(cli, db):
    ingest(cli, str(EXAMPLE))
    before, ledger = counts(db), balances(db)
    result, summary = ingest(cli, str(EXAMPLE))
    assert result.exit_code == 0
    assert (summary["files_skipped_unchanged"], summary["messages_new"]) == (4, 0)
    assert counts(db) == before and balances(db) == ledger
    statuses = db.execute("SELECT status, count(*) FROM ingest_log GROUP BY 1 ORDER BY 1")
    assert statuses.fetchall() == [("completed", 4), ("skipped", 4)]


def test_a_changed_copy_is_read_but_earns_nothing(cli, db, tmp_path):
    ingest(cli, str(EXAMPLE))
    before, ledger = counts(db), balances(db)
    copy = tmp_path / "copy.json"
    source = EXAMPLE / f"Tidepool Makers - Community - general [{GENERAL}].json"
    copy.write_text(json.dumps(json.loads(source.read_text()), indent=1), encoding="utf-8")
    result, summary = ingest(cli, str(copy))
    assert (summary["messages_new"], summary["messages_seen"], summary["reactions_new"]) == (
        0, 10, 0)
    after = counts(db)
    assert after.pop("message_sources") == before.pop("message_sources") + 10
    assert after == before and balances(db) == ledger


def test_asset_folders_are_skipped(cli, db, tmp_path):
    folder = tmp_path / "exports"
    shutil.copytree(EXAMPLE, folder)
    assets = next(folder.glob("*_Files"))
    (assets / "data.json").write_text("not an export")
    result, summary = ingest(cli, str(folder))
    assert result.exit_code == 0 and summary["files"] == 4 and summary["errors"] == []


# ---------------------------------------------------------------------- merging exports
def _versions(tmp_path):
    m1, m2 = snowflake(0), snowflake(1)
    old = Export(exported_at="2024-03-02T00:00:00+00:00", messages=[
        message(m1, ALICE, "first draft", reactions=[reaction(emoji("👍"), [BOB, CAROL])]),
        message(m2, BOB, "reply", reply_to=m1)])
    new = Export(exported_at="2024-03-09T00:00:00+00:00", messages=[
        message(m1, ALICE, "final text", edited="2024-03-01T12:05:00.000+00:00",
                reactions=[reaction(emoji("👍"), [BOB])]),
        message(m2, BOB, "reply", reply_to=m1)])
    return old.write(tmp_path / "old.json"), new.write(tmp_path / "new.json"), m1


def _state(db, m1):
    content = db.execute("SELECT content, edited_at FROM messages WHERE id = ?", [m1]).fetchone()
    reactions = db.execute("SELECT user_id, removed_at IS NOT NULL FROM reactions "
                           "WHERE message_id = ? ORDER BY 1", [m1]).fetchall()
    return content, reactions


def test_newest_export_wins_in_any_order(cli, db, tmp_path):
    old, new, m1 = _versions(tmp_path)
    ingest(cli, str(new))
    _, summary = ingest(cli, str(old))
    assert (summary["messages_new"], summary["messages_seen"]) == (0, 2)
    assert _state(db, m1) == (("final text", "2024-03-01T12:05:00.000000+00:00"),
                              [("102", 0)])
    sources = db.execute("SELECT count(DISTINCT source_id) FROM message_sources "
                         "WHERE message_id = ?", [m1]).fetchone()
    assert sources == (2,)


def test_newer_export_updates_content_and_removes_reactions(cli, db, tmp_path):
    old, new, m1 = _versions(tmp_path)
    ingest(cli, str(old))
    _, summary = ingest(cli, str(new))
    assert summary["messages_seen"] == 2 and summary["reactions_new"] == 0
    assert _state(db, m1) == (("final text", "2024-03-01T12:05:00.000000+00:00"),
                              [("102", 0), ("103", 1)])


def test_overlapping_exports_in_one_run_are_merged(cli, db, tmp_path):
    old, new, m1 = _versions(tmp_path)
    _, summary = ingest(cli, str(old), str(new))
    assert (summary["messages_new"], summary["messages_seen"]) == (2, 2)
    assert _state(db, m1) == (("final text", "2024-03-01T12:05:00.000000+00:00"), [("102", 0)])


def test_files_are_processed_in_snowflake_order(cli, db, tmp_path):
    a = Export(channel_id="2001", messages=[message(snowflake(m), ALICE, "a") for m in (0, 2, 4)])
    b = Export(channel_id="2002", channel_name="b",
               messages=[message(snowflake(m), BOB, "b") for m in (1, 3, 5)])
    result = cli("ingest", str(a.write(tmp_path / "a.json")), str(b.write(tmp_path / "b.json")),
                 "--batch-size", "1")
    assert result.exit_code == 0, result.stderr
    reasons = [r[0] for r in db.execute(
        "SELECT reason FROM salience_ledger WHERE transaction_type = 'earn' ORDER BY rowid")]
    seen = [re.search(r"\(messages? (\d+)", r).group(1) for r in reasons]
    assert seen == sorted(seen, key=int) and len(set(seen)) == 6


# ---------------------------------------------------------------------- stdin, history, status
def test_stdin_is_an_export_too(cli, db, tmp_path):
    ex = Export(messages=[message(snowflake(0), ALICE, "from a pipe")])
    result = cli("ingest", "-", "--json", input=ex.dumps().decode())
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["messages_new"] == 1
    again = cli("ingest", "-", "--json", input=ex.dumps().decode())
    assert json.loads(again.stdout)["files_skipped_unchanged"] == 1
    history = json.loads(cli("ingest", "--history", "--json").stdout)
    assert [(h["path"], h["status"]) for h in history] == [("-", "skipped"), ("-", "completed")]


def test_history_and_status(cli, db):
    assert json.loads(cli("ingest", "--history", "--json").stdout) == []
    ingest(cli, str(EXAMPLE))
    rows = json.loads(cli("ingest", "--history", "--json").stdout)
    assert len(rows) == 4 and set(rows[0]) == {
        "id", "kind", "path", "status", "size", "sha256", "messages_new", "messages_seen",
        "reactions_new", "users", "channels", "dm_skipped_without_consent", "error",
        "warnings", "started_at", "finished_at"}
    assert all(r["warnings"] == [] for r in rows)
    assert all(len(r["sha256"]) == 64 for r in rows)
    nl = cli("ingest", "--history", "--nl", "--limit", "2").stdout.splitlines()
    assert len(nl) == 2 and json.loads(nl[0])["kind"] == "export"
    status = json.loads(cli("status", "--json").stdout)
    assert status["last_ingest"]["status"] == "completed"


def test_status_shows_the_last_run_not_just_its_last_file(cli, db, tmp_path):
    Export(channel_id="2002", messages=[message(snowflake(0), ALICE, "b")]).write(
        tmp_path / "in" / "b.json")
    ingest(cli, str(tmp_path / "in"))
    Export(channel_id="2001", messages=[message(snowflake(m), ALICE, f"a{m}")
                                        for m in range(1, 6)]).write(tmp_path / "in" / "a.json")
    _, summary = ingest(cli, str(tmp_path / "in"))  # a.json new, b.json (listed last) unchanged
    status = json.loads(cli("status", "--json").stdout)
    assert (status["last_ingest"]["path"], status["last_ingest"]["status"]) == (
        str(tmp_path / "in" / "b.json"), "skipped")
    run = status["last_ingest_run"]
    assert {k: run[k] for k in ("ingest_id", "files", "files_skipped_unchanged", "messages_new",
                                "messages_seen", "errors")} == {
        "ingest_id": summary["ingest_id"], "files": 2, "files_skipped_unchanged": 1,
        "messages_new": 5, "messages_seen": 0, "errors": 0}
    line = next(x for x in cli("status").stdout.splitlines() if x.startswith("last ingest"))
    assert line.rstrip().endswith("2 files: 5 new messages, 0 already stored, 1 unchanged")


# ---------------------------------------------------------------------- bad input, usage, locks
def test_a_bad_file_is_reported_and_the_others_are_ingested(cli, db, tmp_path):
    good = Export(channel_id="2001", messages=[message(snowflake(10), ALICE, "fine")])
    bad = Export(channel_id="2002", channel_name="b",
                 messages=[message(snowflake(m), BOB, f"m{m}") for m in range(3)])
    good_path = good.write(tmp_path / "in" / "a.json")
    raw = bad.dumps()
    cut = raw.index(snowflake(2).encode()) + 3
    bad_path = tmp_path / "in" / "b.json"
    bad_path.write_bytes(raw[:cut])
    not_export = tmp_path / "in" / "c.json"
    not_export.write_text("[]")
    result, summary = ingest(cli, str(tmp_path / "in"))
    assert result.exit_code == 65
    assert result.stderr == (
        f"Error: {bad_path}: truncated JSON: the file ends inside message 2, at message index "
        f"2 (byte {cut})\n"
        f"Error: {not_export}: not a DiscordChatExporter channel export: expected a JSON object, "
        "found '[', at byte 0\n")
    assert summary["errors"] == [
        {"file": str(bad_path), "error": "truncated JSON: the file ends inside message 2, at "
                                         f"message index 2 (byte {cut})"},
        {"file": str(not_export), "error": "not a DiscordChatExporter channel export: expected "
                                           "a JSON object, found '[', at byte 0"}]
    # The good file and the readable part of the bad one are stored.
    assert summary["messages_new"] == 3
    log = dict(db.execute("SELECT path, status FROM ingest_log").fetchall())
    assert log == {str(good_path): "completed", str(bad_path): "failed",
                   str(not_export): "failed"}
    # A failed file is not "unchanged": it is read again (and fails again) next time.
    again, _ = ingest(cli, str(bad_path))
    assert again.exit_code == 65


def test_deeply_nested_json_is_bad_input_not_a_crash(db_path, tmp_path):
    ex = Export(channel_id="2001", messages=[message(snowflake(m), ALICE, f"m{m}")
                                             for m in range(3)])
    raw = ex.dumps()
    nest = raw.rindex(b'"components": []')  # message 2's
    path = tmp_path / "deep.json"
    path.write_bytes(raw[:nest] + b'"components": ' + b"[" * 100_000 + b"]" * 100_000
                     + raw[nest + len(b'"components": []'):])
    m2 = raw.rindex(b"\n    {") + 5
    result = run_zos("--db", str(db_path), "ingest", "--json", str(path))
    assert result.returncode == 65, result.stderr
    assert result.stderr == (f"Error: {path}: not a valid message: arrays or objects nested too "
                             "deeply (no export nests more than a few levels), at message index "
                             f"2 (byte {m2})\n")
    assert json.loads(result.stdout)["messages_new"] == 2


def test_usage_errors(cli, tmp_path):
    result = cli("ingest")
    assert result.exit_code == 2
    assert result.stderr == ("Error: give export files or folders to ingest (or - for stdin), "
                             "or --history\n")
    result = cli("ingest", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert result.stderr == f"Error: no such file or folder: {tmp_path / 'nope.json'}\n"
    # Arguments that would be ignored are refused.
    result = cli("ingest", "--history", str(EXAMPLE))
    assert result.exit_code == 2
    assert result.stderr == ("Error: --history lists past ingests: give it no PATH and no API "
                             "backfill option\n")
    result = cli("ingest", "--limit", "3", str(EXAMPLE))
    assert (result.exit_code, result.stderr) == (2, "Error: --limit goes with --history\n")
    # Under --json the summary is printed all the same, with the error.
    for args in [(), ("--limit", "3", str(EXAMPLE)), (str(tmp_path / "nope.json"),)]:
        result = cli("ingest", "--json", *args)
        assert result.exit_code == 2
        summary = json.loads(result.stdout)
        assert summary["files"] == 0 and summary["errors"][0]["file"] is None


def test_a_second_ingest_waits_for_no_one(cli, db_path):
    with locks.job_lock(db_path, "ingest"):
        result = cli("ingest", str(EXAMPLE))
    assert result.exit_code == 75
    assert result.stderr == (
        f"Error: another `zos ingest` is already running on {db_path} (lock "
        f"{locks.lock_path(db_path, 'ingest')} is held): try again when it finishes\n")


def test_exports_without_roles_deleted_users_and_attachments(cli, db, tmp_path):
    ghost = {"id": "456226577798135808", "name": "Deleted User", "discriminator": "0000",
             "isBot": False}
    ex = Export(with_count=False, messages=[
        message(snowflake(0), ghost, "old words"),
        message(snowflake(1), {"id": "104", "name": "dave"}, "pic",
                attachments=[attachment("9", "a.png")])])
    result, summary = ingest(cli, str(ex.write(tmp_path / "old.json")))
    assert result.exit_code == 0 and summary["messages_new"] == 2
    assert db.execute("SELECT id, is_deleted FROM users ORDER BY id").fetchall() == [
        ("104", 0), ("456226577798135808", 1)]
    assert db.execute("SELECT roles_known FROM user_server_tracking").fetchall() == [(0,), (0,)]


def test_ids_above_2_to_the_63_are_unsigned_64_bit_and_ingest(cli, db, tmp_path):
    """Snowflakes are unsigned 64-bit numbers: one past the signed range ingests, earns and
    names its message in the ledger's reasons like any other."""
    big = "10213093380096000000"
    ex = Export(messages=[message(snowflake(0), ALICE, "warm up"),
                          message(snowflake(1), BOB, "and again"),
                          message(big, ALICE, "far future",
                                  reactions=[reaction(emoji("👍"), [BOB])])])
    result, summary = ingest(cli, str(ex.write(tmp_path / "big.json")))
    assert result.exit_code == 0, result.stderr
    assert summary["messages_new"] == 3 and summary["reactions_new"] == 1
    reasons = [r[0] for r in db.execute("SELECT reason FROM salience_ledger")]
    assert any(big in r for r in reasons)
    assert json.loads(cli("salience", "check", "--json").stdout)["ok"] is True
