"""The streams of docs/configuration.md#output: warnings and hints only on a terminal (or with --verbose), never with
--quiet; --verbose log lines that name files and counts but no content; and a job that fails
before it has a summary still prints one (with `errors`) under --json."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import EXAMPLES, Cli, run_on_a_terminal, run_zos
from zos_cli.store import db as db_module
from zos_cli.store import locks

DM_TEXT = "Maren said you keep notes on the studio schedule"


def test_a_warning_is_shown_on_a_terminal_and_silent_when_piped(db_path, tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    code, seen = run_on_a_terminal("--db", str(db_path), "ingest", str(empty))
    assert code == 0 and "Warning: no *.json export files in" in seen

    piped = run_zos("--db", str(db_path), "ingest", str(empty))
    assert piped.returncode == 0 and piped.stderr == ""

    asked = run_zos("--db", str(db_path), "--verbose", "ingest", str(empty))
    assert "Warning: no *.json export files in" in asked.stderr

    code, seen = run_on_a_terminal("--db", str(db_path), "--quiet", "ingest", str(empty))
    assert code == 0 and "Warning" not in seen


def test_a_hint_is_silent_when_piped_but_its_json_note_stays(cli):
    quiet = cli("reflect", "--layer", "user", "--json")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    note = json.loads(quiet.stdout)["note"]
    assert note.startswith("nothing salient for layer user")
    assert note in cli("--verbose", "reflect", "--layer", "user").stderr


def test_verbose_logs_each_file_and_transaction_but_no_content(cli, tmp_path):
    plain = cli("ingest", str(EXAMPLES / "export"))
    assert plain.exit_code == 0 and plain.stderr == ""

    again = Cli(tmp_path / "second.db")
    assert again("init-db").exit_code == 0
    r = again("--verbose", "ingest", str(EXAMPLES / "export"))
    assert r.exit_code == 0
    lines = r.stderr.splitlines()
    assert any("zos.ingest: committed 19 messages and" in line for line in lines)
    assert any("general [1093876544121149511].json: completed, 10 new messages" in line
               for line in lines)
    assert any("DM channel 1180554999988877766 not stored (3 messages)" in line for line in lines)
    assert DM_TEXT not in r.stderr and "Welcome @Jun" not in r.stderr

    skipped = again("--verbose", "ingest", str(EXAMPLES / "export"))
    assert sum("skipped: same size and sha256" in line for line in skipped.stderr.splitlines()) == 4


def test_a_job_refused_by_its_lock_still_prints_its_json_summary(db_path):
    cli = Cli(db_path)
    with locks.job_lock(db_path, "ingest"):
        r = cli("ingest", str(EXAMPLES / "export"), "--json")
    assert r.exit_code == 75
    summary = json.loads(r.stdout)
    message = (f"another `zos ingest` is already running on {db_path} (lock "
               f"{db_path}.ingest.lock is held): try again when it finishes")
    assert summary["errors"] == [{"file": None, "error": message}]
    assert summary["files"] == 0 and summary["messages_new"] == 0
    assert r.stderr == f"Error: {message}\n"


def test_a_busy_database_still_prints_the_json_summary(db_path, monkeypatch):
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")  # another writer, holding the database
    try:
        r = Cli(db_path)("ingest", str(EXAMPLES / "export"), "--json")
    finally:
        holder.rollback()
        holder.close()
    assert r.exit_code == 75
    error = json.loads(r.stdout)["errors"][0]
    assert error["file"] is None and error["error"].startswith("the database is busy")
    assert Cli(db_path)("ingest", str(EXAMPLES / "export"), "--json").exit_code == 0


@pytest.mark.parametrize("args, code, subject", [
    (["reflect", "--layer", "user", "--json"], 66, "target"),
    (["poll", "--json"], 66, "channel"),
    (["ingest", str(EXAMPLES / "export"), "--nl"], 66, "file"),
])
def test_a_missing_database_still_prints_the_json_summary(tmp_path, args, code, subject):
    r = Cli(tmp_path / "absent.db")(*args, env={"DISCORD_TOKEN": "not-a-real-token"})
    assert r.exit_code == code
    summary = json.loads(r.stdout)
    assert summary["errors"] == [{subject: None, "error": r.stderr.removeprefix("Error: ").strip()}]


def test_a_missing_token_still_prints_the_poll_summary(cli):
    r = cli("poll", "--json", env={"DISCORD_TOKEN": ""})
    assert r.exit_code == 78
    summary = json.loads(r.stdout)
    assert summary["messages_new"] == 0 and summary["skipped_channels"] == []
    assert summary["errors"][0]["channel"] is None
    assert "no Discord bot token" in summary["errors"][0]["error"]


def test_a_table_run_prints_no_json_when_it_fails(db_path):
    with locks.job_lock(db_path, "ingest"):
        r = Cli(db_path)("ingest", str(EXAMPLES / "export"))
    assert r.exit_code == 75 and r.stdout == ""
