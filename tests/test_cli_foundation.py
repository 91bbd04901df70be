"""The CLI shell: exit codes and exact messages, --json, help for every command, lazy litellm."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer.main

from tests.conftest import Cli, run_on_a_terminal, run_zos
from zos_cli import __version__
from zos_cli.store import locks
from zos_cli.cli import app

ALL_MIGRATIONS = ["0001_initial", "0002_ledger_topic_id", "0003_llm_call_sources",
                  "0004_ingest_log_channel_id", "0005_profile_observed_at",
                  "0006_salience_pending", "0007_analysis", "0008_insight_confirmation",
                  "0009_self_concept", "0010_subjects"]


def test_init_db_creates_folder_and_is_rerunnable(tmp_path):
    path = tmp_path / "deep" / "er" / "zos.db"
    cli = Cli(path)
    first = cli("init-db", "--json")
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["created"] is True and doc["applied"] == ALL_MIGRATIONS
    again = cli("init-db", "--json")
    assert json.loads(again.stdout)["applied"] == []
    assert cli("init-db").stdout == f"{path} is up to date (schema version 10).\n"


def test_missing_database_is_66_with_hint(tmp_path):
    path = tmp_path / "nope.db"
    for args in (["status"], ["migrate"], ["migrate", "--status"]):
        r = Cli(path)(*args)
        assert r.exit_code == 66, args
        assert r.stderr == f"Error: no database at {path}: run `zos init-db` to create it\n"
        assert r.stdout == ""


def test_a_file_that_is_not_a_database_or_a_path_that_cannot_be_one_is_66(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all\n")
    r = Cli(junk)("status")
    assert r.exit_code == 66 and r.stdout == ""
    assert r.stderr == (f"Error: {junk} is not a zos database (file is not a database): give "
                        "--db the right file, or a new path for `zos init-db`\n")
    blocked = tmp_path / "a-file" / "zos.db"  # its folder would have to be inside a file
    (tmp_path / "a-file").write_text("")
    r = Cli(blocked)("init-db")
    assert r.exit_code == 66
    assert r.stderr == (f"Error: cannot make the folder {tmp_path / 'a-file'} (File exists): "
                        "give --db a path zos may write\n")


def test_bad_config_key_is_78_naming_the_key(cli, tmp_path):
    cfg = tmp_path / "zos.toml"
    cfg.write_text("[salience.weights]\nmesage = 2.0\n")
    r = cli("--config", str(cfg), "status")
    assert r.exit_code == 78
    assert r.stderr == f"Error: {cfg}: salience.weights.mesage: unknown setting\n"


def test_bad_config_value_is_78(cli, tmp_path):
    cfg = tmp_path / "zos.toml"
    cfg.write_text("[salience.caps]\nchannel = -3\n")
    r = cli("--config", str(cfg), "status")
    assert r.exit_code == 78
    assert r.stderr == f"Error: {cfg}: salience.caps.channel: Input should be greater than 0\n"


def test_config_not_toml_and_missing_explicit_config(cli, tmp_path):
    cfg = tmp_path / "zos.toml"
    cfg.write_text("[salience\n")
    r = cli("--config", str(cfg), "status")
    assert r.exit_code == 78 and r.stderr.startswith(f"Error: {cfg}: not valid TOML: ")
    r = cli("--config", str(tmp_path / "gone.toml"), "status")
    assert r.exit_code == 78
    assert r.stderr == f"Error: config file {tmp_path / 'gone.toml'} does not exist\n"
    r = cli("--config", str(tmp_path), "status")  # a folder
    assert (r.exit_code, r.stderr) == (78, f"Error: config file {tmp_path} cannot be read "
                                           "(Is a directory)\n")


def test_config_precedence_for_db_path(tmp_path, monkeypatch):
    (tmp_path / "zos.toml").write_text('db = "from-file.db"\n')
    runner = Cli(None)
    assert json.loads(runner("init-db", "--json").stdout)["database"] == "from-file.db"
    monkeypatch.setenv("ZOS_DB", str(tmp_path / "from-env.db"))
    assert json.loads(runner("init-db", "--json").stdout)["database"] == str(tmp_path / "from-env.db")
    flag = str(tmp_path / "from-flag.db")
    assert json.loads(runner("--db", flag, "init-db", "--json").stdout)["database"] == flag


def test_pending_migrations_reported_by_status_and_applied_by_migrate(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # an empty file: every migration pending
    cli = Cli(path)
    status = json.loads(cli("status", "--json").stdout)
    assert status["pending_migrations"] == ALL_MIGRATIONS
    listing = json.loads(cli("migrate", "--status", "--json").stdout)
    assert listing == [{"version": 1, "name": "initial", "state": "pending", "applied_at": None},
                       {"version": 2, "name": "ledger_topic_id", "state": "pending",
                        "applied_at": None},
                       {"version": 3, "name": "llm_call_sources", "state": "pending",
                        "applied_at": None},
                       {"version": 4, "name": "ingest_log_channel_id", "state": "pending",
                        "applied_at": None},
                       {"version": 5, "name": "profile_observed_at", "state": "pending",
                        "applied_at": None},
                       {"version": 6, "name": "salience_pending", "state": "pending",
                        "applied_at": None},
                       {"version": 7, "name": "analysis", "state": "pending",
                        "applied_at": None},
                       {"version": 8, "name": "insight_confirmation", "state": "pending",
                        "applied_at": None},
                       {"version": 9, "name": "self_concept", "state": "pending",
                        "applied_at": None},
                       {"version": 10, "name": "subjects", "state": "pending",
                        "applied_at": None}]
    dry = json.loads(cli("migrate", "--dry-run", "--json").stdout)
    assert dry["applied"] == ALL_MIGRATIONS and dry["dry_run"] is True
    assert json.loads(cli("migrate", "--status", "--json").stdout)[0]["state"] == "pending"
    done = cli("migrate", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["to_version"] == 10
    assert json.loads(cli("status", "--json").stdout)["pending_migrations"] == []


def test_held_lock_is_75(db_path):
    cli = Cli(db_path)
    with locks.job_lock(db_path, locks.MIGRATE):
        r = cli("migrate")
    assert r.exit_code == 75
    lock = f"{db_path}.migrate.lock"
    assert r.stderr == (f"Error: another `zos migrate` is already running on {db_path} "
                        f"(lock {lock} is held): try again when it finishes\n")


def test_migrate_refuses_beside_a_running_job(db_path):
    with locks.job_lock(db_path, "ingest"):
        r = Cli(db_path)("migrate")
    assert r.exit_code == 75
    assert r.stderr == (f"Error: `zos ingest` is running on {db_path} (lock {db_path}.ingest.lock "
                        "is held): migrate refuses to run beside other jobs; try again when it finishes\n")


def test_jobs_refuse_during_a_migration(db_path):
    from zos_cli.errors import JobBusy

    with locks.job_lock(db_path, locks.MIGRATE):
        with pytest.raises(JobBusy, match="a `zos migrate` is running"):
            with locks.job_lock(db_path, "poll"):
                pass
    with locks.job_lock(db_path, "poll"), locks.job_lock(db_path, "ingest"):
        pass  # different jobs run side by side


def test_status_json_keys(cli):
    r = cli("status", "--json")
    doc = json.loads(r.stdout)
    assert {"database", "size_bytes", "schema_version", "pending_migrations", "counts",
            "last_ingest", "last_poll_at", "last_reflect", "salience_pending_messages",
            "top_salience"} <= doc.keys()
    assert doc["counts"]["messages"] == 0


def test_json_and_nl_together_is_a_usage_error():
    from zos_cli import output
    from zos_cli.errors import UsageProblem

    with pytest.raises(UsageProblem, match="--json and --nl cannot be used together"):
        output.choose(True, True)
    assert output.choose(False, True) is output.Format.NL


def _walk(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, path + (name,))


ALL_COMMANDS = [p for p, _ in _walk(typer.main.get_command(app))]


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "zos")
def test_every_command_has_help(path):
    command = dict(_walk(typer.main.get_command(app)))[path]
    assert (command.help or "").strip(), f"zos {' '.join(path)} has no help text"
    r = Cli(None)(*path, "--help")
    assert r.exit_code == 0 and "Usage:" in r.stdout
    for param in command.params:
        if param.name not in ("help",) and getattr(param, "help", None) is not None:
            assert param.help.strip()


def test_version_and_python_dash_m():
    r = run_zos("--version")
    assert r.returncode == 0 and r.stdout == f"zos {__version__}\n"


_IMPORT_PROBE = """
import sys
from zos_cli.cli import app
try:
    app(prog_name="zos", args=sys.argv[1:])
except SystemExit:
    pass
print("litellm imported" if "litellm" in sys.modules else "litellm not imported", file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["status"], ["migrate", "--status"]])
def test_commands_without_models_do_not_import_litellm(db_path, args):
    r = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, "--db", str(db_path), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().endswith("litellm not imported"), r.stderr


def test_a_reflection_with_nothing_to_do_does_not_import_litellm(db_path):
    # A real model is configured (its key too), but nothing is salient: no model is called.
    env = {**os.environ, "ZOS_MODEL": "openai/gpt-4o-mini", "OPENAI_API_KEY": "x",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    r = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, "--db", str(db_path), "--verbose",
                        "reflect", "--layer", "self"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert "nothing salient" in r.stderr and r.stderr.strip().endswith("litellm not imported")


@pytest.mark.parametrize("args", [["salience", "top"], ["insights", "list"], ["consent", "list"],
                                  ["reflect", "--layer", "user", "--dry-run"]])
def test_commands_refuse_pending_migrations_with_78(tmp_path, args):
    import sqlite3

    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    r = Cli(path)(*args)
    assert r.exit_code == 78, r.stderr
    assert r.stderr == (f"Error: {path} has pending migrations (0001_initial, "
                        "0002_ledger_topic_id, 0003_llm_call_sources, "
                        "0004_ingest_log_channel_id, 0005_profile_observed_at, "
                        "0006_salience_pending, 0007_analysis, 0008_insight_confirmation, "
                        "0009_self_concept, 0010_subjects): "
                        "run `zos migrate`\n")


def test_progress_bar_on_a_terminal(db_path):
    """Progress is drawn only when stderr is a terminal, so run a real ingest under a pty."""
    from tests.conftest import EXAMPLES

    code, seen = run_on_a_terminal("--db", str(db_path), "ingest", str(EXAMPLES / "export"),
                                   columns=100)
    assert code == 0, seen
    assert "Traceback" not in seen and "messages_new" in seen


@pytest.mark.parametrize("args", [
    ["salience", "top", "--limit", "99999999999999999999"],
    ["salience", "ledger", "self:zos", "--limit", "9223372036854775808"],
    ["insights", "list", "--limit", "9223372036854775808"],
    ["insights", "search", "kiln", "--limit", "99999999999999999999"],
    ["insights", "runs", "--limit", "99999999999999999999"],
    ["insights", "calls", "--limit", "99999999999999999999"],
    ["reflect", "--layer", "user", "--max-targets", "99999999999999999999"],
    ["salience", "top", "--limit", "0"],
])
def test_a_bad_count_is_a_usage_error_ending_in_one_error_line(cli, args):
    r = cli(*args)
    assert r.exit_code == 2 and "Traceback" not in r.stderr and "╭" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for '--")


def test_another_programs_sqlite_file_is_not_migrated(tmp_path):
    import sqlite3

    path = tmp_path / "foreign.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE notes (x)")
    other.execute("INSERT INTO notes VALUES (1)")
    other.commit()
    other.close()
    for command in (["migrate"], ["init-db"]):
        r = Cli(path)(*command)
        assert r.exit_code == 66
        assert r.stderr == (f"Error: {path} is not a zos database (it holds tables notes): give "
                            "--db a new file or a zos database\n")
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("notes",)]


def test_a_database_holding_only_migration_events_gets_no_backup(db_path, tmp_path):
    from zos_cli.store import db as database
    from zos_cli.store import migrations

    assert not migrations.holds_data(database.connect(db_path).conn)


def test_a_job_starting_beside_a_migration_is_refused_whichever_locks_first(db_path):
    # The job takes its own lock before it looks for a migration: a migration that started
    # meanwhile holds the migrate lock (the job refuses), or finds the job's lock (it refuses).
    with locks.job_lock(db_path, locks.MIGRATE):
        r = Cli(db_path)("salience", "decay")
    assert r.exit_code == 75
    assert r.stderr == (f"Error: a `zos migrate` is running on {db_path}: try again when it "
                        "finishes\n")
    with locks.job_lock(db_path, "ingest"):
        assert Cli(db_path)("migrate").exit_code == 75


@pytest.mark.parametrize("toml, key", [
    ("[reflection]\nconcurrency = true\n", "reflection.concurrency"),
    ('[salience.weights]\nmessage = "2"\n', "salience.weights.message"),
    ("[salience.budget]\nsocial = 0\nglobal = 0\nspaces = 0\nsemantic = 0\nculture = 0\n",
     "salience.budget"),
])
def test_config_values_of_the_wrong_type_or_shares_not_making_one_are_78(cli, tmp_path, toml, key):
    config = tmp_path / "lax.toml"
    config.write_text(toml)
    r = cli("--config", str(config), "status")
    assert r.exit_code == 78 and key in r.stderr and r.stderr.startswith("Error: ")
