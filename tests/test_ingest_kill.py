"""Killed at any moment and run again, an ingest ends exactly as an uninterrupted one.

A real `python -m zos_cli ingest` subprocess is SIGKILLed at 20+ random points (one or two
kills in a row), then run to completion; its final store — messages, reactions, users and
roles, mentions, media and links, topics with their ledger balances, and the ingest counts —
must equal an uninterrupted run's. Small batches give many commit points to land between.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.exports import Export, attachment, emoji, message, reaction, role, snowflake, user
from zos_cli.store import db as db_module
from zos_cli.store import migrations

KILLS = 22
BATCH = "7"

SNAPSHOT = {
    "messages": "SELECT id, channel_id, server_id, author_id, content, created_at, edited_at, "
                "message_type, reactions_aggregate, reply_to_id, thread_id, has_media, has_links, "
                "is_pinned, custom_emoji_ids, source_exported_at, deleted_at FROM messages",
    "reactions": "SELECT message_id, user_id, emoji, emoji_id, is_custom, created_at, removed_at "
                 "FROM reactions",
    "users": "SELECT id, name, display_name, discriminator, is_bot, is_deleted, first_seen_at, "
             "last_seen_at FROM users",
    "tracking": "SELECT user_id, server_id, nickname, first_seen_at, last_seen_at, "
                "message_count, roles_known FROM user_server_tracking",
    "user_roles": "SELECT user_id, role_id, server_id FROM user_roles",
    "channels": "SELECT id, server_id, name, type, parent_id FROM channels",
    "mentions": "SELECT message_id, user_id FROM mentions",
    "media": "SELECT message_id, url, file_name FROM media_analysis",
    "links": "SELECT message_id, url, domain FROM link_analysis",
    "topics": "SELECT key, category, round(balance, 6), last_activity_at FROM topics",
    "ledger": "SELECT topic_key, round(sum(amount), 6) FROM salience_ledger GROUP BY topic_key",
    "ingest_totals": "SELECT sum(messages_new), sum(reactions_new) FROM ingest_log",
    "files_completed": "SELECT count(*) FROM ingest_log WHERE status = 'completed'",
}


def make_exports(folder: Path) -> list[Path]:
    rng = random.Random(4)
    people = [user(str(100 + i), f"user{i}", roles=[role(str(9 + i % 2), f"r{i % 2}")])
              for i in range(6)]
    blob = emoji("blob", "555")
    exports = [Export(channel_id="2001", channel_name="general"),
               Export(channel_id="2002", channel_name="art"),
               Export(channel_id="3001", channel_type="GuildPublicThread", channel_name="log",
                      parent_id="2002", parent_name="art")]
    ids = {e.channel_id: [] for e in exports}
    for n in range(150):
        ex = rng.choice(exports)
        mid = snowflake(n * 3)
        author = rng.choice(people)
        earlier = ids[ex.channel_id]
        parent = rng.choice(earlier) if earlier and rng.random() < 0.3 else None
        reactions = [reaction(rng.choice([emoji("👍"), blob]), rng.sample(people, 2))] \
            if rng.random() < 0.4 else []
        ex.add(message(mid, author, f"m{n} :blob: https://x.example/{n}" if n % 7 == 0 else f"m{n}",
                       reply_to=parent, mentions=[rng.choice(people)] if n % 5 == 0 else [],
                       reactions=reactions, inline_emojis=[blob] if n % 7 == 0 else [],
                       attachments=[attachment(str(n + 1))] if n % 11 == 0 else []))
        earlier.append(mid)
    return [e.write(folder / f"{e.channel_id}.json") for e in exports]


def zos(db_path: Path, folder: Path) -> list[str]:
    return [sys.executable, "-m", "zos_cli", "--db", str(db_path), "ingest", str(folder),
            "--batch-size", BATCH, "--json"]


def snapshot(db_path: Path) -> dict:
    db = db_module.connect(db_path)
    try:
        return {name: sorted(map(tuple, db.execute(sql).fetchall()), key=repr)
                for name, sql in SNAPSHOT.items()}
    finally:
        db.close()


def wal_bytes(db_path: Path) -> int:
    wal = Path(f"{db_path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def start_writing(cmd: list[str], db_path: Path, env: dict) -> tuple[subprocess.Popen, float]:
    """Start an ingest and return once it has written its first transaction (the WAL grows),
    so kill points land in the writing phase rather than in interpreter start-up."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    while proc.poll() is None and wal_bytes(db_path) == 0:
        time.sleep(0.002)
    return proc, time.monotonic()


def wait_until_stored(proc: subprocess.Popen, db_path: Path, count: int) -> None:
    while proc.poll() is None and stored_messages(db_path) < count:
        time.sleep(0.001)


def stored_messages(db_path: Path) -> int:
    db = db_module.connect(db_path)
    try:
        return db.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        db.close()


@pytest.mark.slow
def test_killed_ingests_end_like_an_uninterrupted_one(tmp_path):
    folder = tmp_path / "exports"
    make_exports(folder)
    template = tmp_path / "template.db"
    db = db_module.connect(template, create=True)
    migrations.apply(db, template)
    db.close()  # the last connection checkpoints and removes the WAL
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    baseline = tmp_path / "baseline.db"
    shutil.copy(template, baseline)
    proc, writing = start_writing(zos(baseline, folder), baseline, env)
    out, err = proc.communicate()
    window = time.monotonic() - writing
    assert proc.returncode == 0, err
    assert json.loads(out)["messages_new"] == 150
    expected = snapshot(baseline)
    assert expected["files_completed"] == [(3,)]

    rng = random.Random(11)
    killed = partial = 0
    for attempt in range(KILLS * 2):
        if killed >= KILLS:
            break
        db_path = tmp_path / f"run{attempt}.db"
        shutil.copy(template, db_path)
        for _ in range(rng.choice((1, 1, 2))):  # sometimes killed twice before finishing
            proc, writing = start_writing(zos(db_path, folder), db_path, env)
            if rng.random() < 0.5:
                # at a random moment of the run (its length measured by the baseline)
                time.sleep(max(0.0, writing + rng.uniform(0, 1.1) * window - time.monotonic()))
            else:
                # once a random number of messages is committed, whatever the machine's
                # speed: these kills land between (or inside) the writing phase's batches
                wait_until_stored(proc, db_path, rng.randint(1, 120))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.communicate()
            partial += 0 < stored_messages(db_path) < 150
        finish = subprocess.run(zos(db_path, folder), env=env, capture_output=True, text=True)
        assert finish.returncode == 0, finish.stderr
        assert snapshot(db_path) == expected, f"attempt {attempt}"
        for leftover in db_path.parent.glob(db_path.name + "*"):
            leftover.unlink()
    assert killed >= KILLS
    assert partial >= KILLS // 3, "kills should land between batches of the writing phase"
