"""`zos ingest --token` on the command line: the summary, exit codes, the lock, and a killed
backfill resuming with no duplicate and no gap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_discord import backfill_with, fake, small_world  # noqa: F401
from tests.salience_support import marked
from zos_cli.store import db as database
from zos_cli.store import locks


@pytest.fixture(autouse=True)
def quick_retries(tmp_path):
    (tmp_path / "zos.toml").write_text("[poll]\nretry_backoff_seconds = 0.01\n")


def _env(fake, token: bool = True) -> dict:
    env = {"ZOS_DISCORD_API_BASE": fake.base_url}
    if token:
        env["DISCORD_TOKEN"] = fake.token
    return env


def _history(fake, channel: str, n: int) -> None:
    authors = ("501", "502", "503")
    for i in range(n):
        fake.post(channel, authors[i % 3], f"history {i} <@{authors[(i + 1) % 3]}>",
                  mentions=[authors[(i + 1) % 3]])


def test_backfill_summary_and_history(cli, fake):
    small_world(fake)
    _history(fake, "200", 120)
    r = cli("ingest", "--channel", "200", "--json", env=_env(fake))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["channels"], doc["channels_complete"], doc["messages_new"], doc["errors"]) == (1, 1, 120, [])
    assert {"requests", "rate_limited", "skipped_channels", "reactions_new", "users"} <= set(doc)
    rows = json.loads(cli("ingest", "--history", "--json").stdout)
    assert [(r["path"], r["status"], r["messages_new"]) for r in rows] == [("api:channel:200", "completed", 120)]


def test_token_flag_alone_backfills_every_guild(cli, fake):
    small_world(fake)
    _history(fake, "201", 3)
    r = cli("ingest", "--token", fake.token, "--json", env={"ZOS_DISCORD_API_BASE": fake.base_url})
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["messages_new"] == 3
    assert fake.token not in r.stdout + r.stderr


def test_errors_and_usage(cli, fake):
    small_world(fake)
    r = cli("ingest", "--channel", "200", env=_env(fake, token=False))
    assert (r.exit_code, r.stderr) == (78, "Error: no Discord bot token: pass --token TOKEN or set "
                                           "the DISCORD_TOKEN environment variable\n")
    r = cli("ingest", "export.json", "--channel", "200", env=_env(fake))
    assert r.exit_code == 2 and r.stderr.startswith("Error: give export PATHs or an API backfill")
    r = cli("ingest", "--channel", "200", "--since", "soon", env=_env(fake))
    assert r.exit_code == 2 and "--since 'soon' is not an ISO-8601 time" in r.stderr
    fake.inject("messages", "status", times=5, status=500)
    r = cli("ingest", "--channel", "200", "--json", env=_env(fake))
    assert r.exit_code == 1
    assert json.loads(r.stdout)["errors"][0]["channel"] == "200"
    fake.revoked = True
    r = cli("ingest", "--channel", "200", env=_env(fake))
    assert r.exit_code == 78 and "401 Unauthorized" in r.stderr


def test_backfill_takes_the_ingest_lock(cli, db_path, fake):
    small_world(fake)
    with locks.job_lock(db_path, "ingest"):
        r = cli("ingest", "--channel", "200", env=_env(fake))
    assert r.exit_code == 75 and "another `zos ingest` is already running" in r.stderr
    assert fake.requests() == []


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [3, 6])
def test_killed_backfill_resumes_without_duplicate_or_gap(cli, db_path, tmp_path, fake,
                                                          kill_after):
    small_world(fake)
    fake.add_thread("200", "251", "archived", archived=True)
    _history(fake, "200", 900)
    _history(fake, "251", 30)
    fake.delay = 0.02
    env = {**os.environ, **_env(fake), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zos_cli", "--db", str(db_path), "ingest", "--guild", "100"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 30
        while len(fake.requests("messages")) < kill_after:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    fake.delay = 0.0
    db = database.open_database(db_path)
    try:
        partial = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        assert 0 < partial < 930 if kill_after == 6 else partial < 930
        # What it stored is not earned yet (a backfill earns at its end): status says so.
        assert marked(db) == partial
        assert json.loads(cli("status", "--json").stdout)["salience_pending_messages"] == partial
        shown = " ".join(cli("status").stdout.split())
        assert (f"not yet earned {partial} messages" in shown) == (partial > 0)
        checkpoint = db.execute("SELECT oldest_message_id, complete FROM backfill_state").fetchall()
        assert all(c == 0 for _, c in checkpoint)
        report = backfill_with(db, fake, guild_ids=["100"])
        assert report.summary["errors"] == [] and report.summary["messages_seen"] == 0
        assert report.summary["messages_new"] == 930 - partial
        assert json.loads(cli("status", "--json").stdout)["salience_pending_messages"] == 0
        for channel in ("200", "251"):
            stored = sorted((r[0] for r in db.execute(
                "SELECT id FROM messages WHERE channel_id = ?", [channel])), key=int)
            assert stored == sorted(fake.messages[channel], key=int)
        # (The empty channel is not complete: its empty page proves nothing.)
        assert db.execute("SELECT count(*) FROM backfill_state WHERE complete = 1").fetchone()[0] == 2
        statuses = [r[0] for r in db.execute("SELECT status FROM ingest_log ORDER BY started_at")]
        assert statuses[0] == "failed" and statuses[-3:] == ["completed"] * 3
    finally:
        db.close()


def test_ingest_token_takes_max_wait_like_poll(cli, fake):
    small_world(fake)
    _history(fake, "200", 5)
    fake.inject("messages", "user", retry_after=1.0)
    refused = cli("ingest", "--channel", "200", "--max-wait", "0.2", "--json", env=_env(fake))
    assert refused.exit_code == 75 and "more than --max-wait 0.2 s" in refused.stderr
    assert json.loads(refused.stdout)["messages_new"] == 0
    fake.inject("messages", "user", retry_after=1.0)
    waited = cli("ingest", "--channel", "200", "--max-wait", "5", "--json", env=_env(fake))
    assert waited.exit_code == 0 and json.loads(waited.stdout)["messages_new"] == 5
    usage = cli("ingest", "exports/", "--max-wait", "5")
    assert usage.exit_code == 2 and "not both" in usage.stderr
