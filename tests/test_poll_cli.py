"""`zos poll` on the command line: exit codes, exact errors, the JSON summary printed before
a failure, the token never shown or stored, the lock, SIGTERM, and resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_discord import fake, poll_with, small_world  # noqa: F401
from zos_cli.store import db as database
from zos_cli.store import locks

KEYS = {"channels", "requests", "messages_new", "reactions_new", "rate_limited",
        "skipped_channels", "errors"}


def _env(fake, token: bool = True) -> dict:
    env = {"ZOS_DISCORD_API_BASE": fake.base_url}
    if token:
        env["DISCORD_TOKEN"] = fake.token
    return env


@pytest.fixture(autouse=True)
def quick_retries(tmp_path):
    """Tests run in tmp_path, where ./zos.toml is read: 5xx retries 10 ms apart."""
    (tmp_path / "zos.toml").write_text("[poll]\nretry_backoff_seconds = 0.01\n")


def _world(fake, n: int = 5):
    small_world(fake)
    for i in range(n):
        fake.post("200", "501", f"message {i}")
    fake.post("201", "502", "elsewhere")


# ---------------------------------------------------------------------------- exit codes
def test_missing_token_exits_78(cli, fake):
    r = cli("poll", env=_env(fake, token=False))
    assert r.exit_code == 78
    assert r.stderr == ("Error: no Discord bot token: pass --token TOKEN or set the DISCORD_TOKEN "
                        "environment variable\n")
    assert fake.requests() == []


def test_success_prints_the_summary(cli, fake):
    _world(fake)
    r = cli("poll", "--json", env=_env(fake))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert KEYS <= set(doc)
    assert (doc["channels"], doc["messages_new"], doc["errors"]) == (2, 6, [])
    human = cli("poll", env=_env(fake))
    assert human.exit_code == 0 and "messages_new" in human.stdout


def test_401_exits_78_after_the_summary_with_no_further_request(cli, fake):
    _world(fake)
    fake.revoked = True
    r = cli("poll", "--json", env=_env(fake))
    assert r.exit_code == 78
    assert r.stderr.endswith(
        "Error: Discord rejected the bot token (401 Unauthorized): check --token or "
        "DISCORD_TOKEN; zos sent no further request\n")
    doc = json.loads(r.stdout)
    assert KEYS <= set(doc) and doc["requests"] == 1
    assert len(fake.requests()) == 1


def test_partial_failure_exits_1_with_the_summary_first(cli, fake):
    _world(fake)
    fake.inject("messages", "status", times=5, status=500)
    r = cli("poll", "--json", env=_env(fake))
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["errors"] == [{"channel": "200", "error":
        "GET /channels/200/messages: Discord answered 500 5 times in a row; try again later"}]
    assert doc["messages_new"] == 1
    assert r.stderr.endswith(
        "Error: poll finished with 1 error(s); first: 200: GET /channels/200/messages: Discord "
        "answered 500 5 times in a row; try again later\n")


def test_rate_limit_wait_beyond_max_wait_exits_75(cli, fake):
    _world(fake)
    fake.inject("messages", "user", retry_after=4.0)
    r = cli("poll", "--max-wait", "0.5", "--json", env=_env(fake))
    assert r.exit_code == 75
    assert json.loads(r.stdout)["rate_limited"] == 1
    assert "more than --max-wait 0.5 s" in r.stderr


def test_cloudflare_ban_exits_75(cli, fake):
    _world(fake)
    fake.inject("guild_channels", "cloudflare")
    r = cli("poll", env=_env(fake))
    assert r.exit_code == 75
    assert "Error: Cloudflare refused the request" in r.stderr
    assert fake.requests()[-1].route == "guild_channels"


def test_usage_errors(cli, fake):
    r = cli("poll", "--once", "--interval", "5", env=_env(fake))
    assert (r.exit_code, r.stderr) == (2, "Error: --once and --interval cannot be used together: choose one\n")
    r = cli("poll", "--channel", "general", env=_env(fake))
    assert (r.exit_code, r.stderr) == (2, "Error: --channel 'general' is not a Discord id (digits only)\n")


def test_an_overlapping_poll_exits_75(cli, db_path, fake):
    _world(fake)
    with locks.job_lock(db_path, "poll"):
        r = cli("poll", env=_env(fake))
    assert r.exit_code == 75
    assert "another `zos poll` is already running" in r.stderr
    assert fake.requests() == []


# ---------------------------------------------------------------------------- the token
def test_token_never_in_output_logs_or_files(cli, db, db_path, fake):
    # `db` stays open, so the WAL file is still there to be searched after the runs.
    secret = fake.token
    _world(fake)
    fake.inject("messages", "status", times=5, status=502)
    runs = [cli("--verbose", "poll", "--token", secret, "--json", env={"ZOS_DISCORD_API_BASE": fake.base_url}),
            cli("--verbose", "poll", "--token", secret, env={"ZOS_DISCORD_API_BASE": fake.base_url})]
    fake.revoked = True
    runs.append(cli("--verbose", "poll", "--token", secret, env={"ZOS_DISCORD_API_BASE": fake.base_url}))
    assert [r.exit_code for r in runs] == [1, 0, 78]
    assert fake.requests()[0].authorization == f"Bot {secret}"   # it was really sent
    needle = secret.encode()
    for r in runs:
        assert secret not in r.stdout and secret not in r.stderr
    files = [p for p in Path(db_path).parent.iterdir() if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert needle not in path.read_bytes(), path


# ---------------------------------------------------------------------------- subprocesses
def _spawn(db_path: Path, fake, *args: str) -> subprocess.Popen:
    env = {**os.environ, **_env(fake), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.Popen(
        [sys.executable, "-m", "zos_cli", "--db", str(db_path), "poll", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


@pytest.mark.slow
def test_sigterm_ends_an_interval_poll_cleanly(db_path, fake):
    _world(fake)
    proc = _spawn(db_path, fake, "--interval", "0.1", "--json")
    try:
        _wait_for(lambda: len(fake.requests("me")) >= 3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    passes = [json.loads(line) for line in out.splitlines()]
    assert len(passes) >= 2 and passes[0]["messages_new"] == 6
    assert all(p["errors"] == [] for p in passes)


def _balances(path: Path) -> dict:
    handle = database.open_database(path)
    try:
        return dict(handle.execute("SELECT key, round(balance, 6) FROM topics").fetchall())
    finally:
        handle.close()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [2, 5])
def test_killed_poll_resumes_without_duplicate_or_gap(db_path, tmp_path, fake, kill_after):
    small_world(fake)
    fake.limits["reactions"] = (1000, 1.0)   # this test is about resuming, not waiting
    for i in range(3):
        fake.post("200", "501", f"old {i}")
    reference = tmp_path / "reference.db"
    handle = database.connect(reference, create=True)
    from zos_cli.store import migrations

    migrations.apply(handle, reference)
    for path in (db_path, reference):
        h = database.open_database(path)
        poll_with(h, fake)
        h.close()
    authors = ("501", "502", "503")
    for i in range(450):
        m = fake.post("200", authors[i % 3], f"new {i} mentions <@{authors[(i + 1) % 3]}>",
                      mentions=[authors[(i + 1) % 3]])
        if i % 7 == 0:
            fake.react("200", m["id"], authors[(i + 2) % 3], "👍")
    fake.clear_log()
    fake.delay = 0.02
    proc = _spawn(db_path, fake, "--channel", "200")
    try:
        _wait_for(lambda: len(fake.requests("messages")) >= kill_after)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    fake.delay = 0.0
    h = database.open_database(db_path)
    partial = h.execute("SELECT count(*) FROM messages").fetchone()[0]
    report = poll_with(h, fake)
    assert report.summary["errors"] == []
    ids = sorted((r[0] for r in h.execute("SELECT id FROM messages WHERE channel_id = '200'")), key=int)
    assert ids == sorted(fake.messages["200"], key=int)
    assert h.execute("SELECT count(*) FROM reactions").fetchone()[0] == 65
    h.close()
    assert 3 <= partial < 454
    if kill_after == 5:
        assert partial > 3            # killed mid-channel, after some pages were written
    h = database.open_database(reference)
    poll_with(h, fake)
    h.close()
    assert _balances(db_path) == _balances(reference)


def test_a_database_busy_mid_poll_prints_what_the_poll_did(cli, db_path, fake, monkeypatch):
    # Another job takes the database while the poll reads its second channel: what the poll
    # committed stays, and its summary (not an all-zero one) comes with exit 75.
    import sqlite3

    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
    small_world(fake)
    for i in range(3):
        fake.post("200", "501", f"m{i}")
    fake.post("201", "502", "r")
    holder = {}

    def take_the_database(entry):
        if entry.route == "messages" and entry.major == "channels/201" and not holder:
            holder["c"] = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            holder["c"].execute("BEGIN EXCLUSIVE")

    fake.hooks.append(take_the_database)
    try:
        r = cli("poll", "--json", env=_env(fake))
    finally:
        holder["c"].execute("ROLLBACK")
        holder["c"].close()
    assert r.exit_code == 75
    summary = json.loads(r.stdout)
    assert summary["messages_new"] == 3 and summary["requests"] > 0
    assert summary["errors"][-1]["error"].startswith("the database is busy")
    assert r.stderr.strip().splitlines()[-1].startswith("Error: the database is busy")
