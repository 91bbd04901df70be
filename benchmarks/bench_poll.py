"""Live Discord against the fake server on 127.0.0.1: what a poll and a backfill cost.

Generates its own world (guilds × channels × messages, a reaction on every 10th message),
then measures, each on a fresh database:
- backfill (`ingest --token` library) of the whole history: messages/s and requests;
- first poll of the same world (newest `--initial-messages` per channel);
- an idle poll: requests per channel (target: 1 message request per channel plus a few per
  guild) and wall time.
zos's own limit of 50 requests/s bounds every number here, as it does against Discord: a
backfill costs one request per 100 messages plus one per reaction emoji per reacted message.

    .venv/bin/python benchmarks/bench_poll.py [--guilds 2] [--channels 10] [--messages 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_discord import FakeDiscord, backfill_with, poll_with  # noqa: E402
from zos_cli.store import db as database
from zos_cli.store import migrations


def world(guilds: int, channels: int, messages: int) -> FakeDiscord:
    fake = FakeDiscord().start()
    users = [str(600 + i) for i in range(20)]
    for u in users:
        fake.add_user(u, f"user{u}")
    for g in range(guilds):
        gid = str(1000 + g)
        fake.add_guild(gid, f"guild {g}")
        for c in range(channels):
            cid = str(2000 + g * 100 + c)
            fake.add_channel(gid, cid, f"c{c}")
            for i in range(messages):
                m = fake.post(cid, users[i % 20], f"message {i} in {cid} https://example.org/{i}",
                              mentions=[users[(i + 3) % 20]] if i % 4 == 0 else [])
                if i % 10 == 0:
                    fake.react(cid, m["id"], users[(i + 1) % 20], "👍")
    return fake


def fresh_db(folder: Path, name: str):
    path = folder / name
    handle = database.connect(path, create=True)
    migrations.apply(handle, path)
    handle.close()
    return database.open_database(path)


def timed(label: str, fake: FakeDiscord, run) -> dict:
    fake.clear_log()
    start = time.perf_counter()
    report = run()
    seconds = time.perf_counter() - start
    s = report.summary
    n = s["messages_new"]
    print(f"{label:<34} {seconds:7.2f} s  {s['requests']:5d} requests  {n:6d} new "
          f"({n / seconds if seconds else 0:7.0f} msg/s)  429s {s['rate_limited']}  "
          f"violations {len(fake.violations())}")
    return s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guilds", type=int, default=2)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    total = args.guilds * args.channels * args.messages
    print(f"world: {args.guilds} guilds × {args.channels} channels × {args.messages} messages "
          f"= {total} messages, a reaction on every 10th")
    fake = world(args.guilds, args.channels, args.messages)
    fake.limits.update({k: (10_000, 1.0) for k in fake.limits})  # only zos's own 50/s applies
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = fresh_db(folder, "backfill.db")
        timed("backfill (ingest --token)", fake, lambda: backfill_with(db, fake))
        db.close()
        db = fresh_db(folder, "poll.db")
        timed("first poll (initial 1000)", fake, lambda: poll_with(db, fake))
        s = timed("idle poll", fake, lambda: poll_with(db, fake))
        channels = args.guilds * args.channels
        msg_requests = len(fake.requests("messages"))
        print(f"  idle poll: {msg_requests} message requests for {channels} channels, "
              f"{s['requests'] - msg_requests} for discovery ({args.guilds} guilds)")
        db.close()
    fake.stop()


if __name__ == "__main__":
    main()
