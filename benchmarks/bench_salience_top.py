"""`zos salience top` with a small and a huge ledger: reads must not sum the ledger.

Aim (issue 3): the time at 10M ledger rows ≤ 2× the time at 100k rows. Both databases hold
the same topics (20,000 by default) so only the ledger's size differs.

    .venv/bin/python benchmarks/bench_salience_top.py [--sizes 100000,10000000]
        [--topics 20000] [--runs 7] [--keep DIR]

The generator writes the ledger with one recursive-CTE INSERT per size, in (topic, time)
order so every index grows at its end. For the bulk load only, the ledger's indexes and its
balance trigger are dropped and recreated afterwards from their own stored SQL, and each
topic's balance is then set to the sum of its rows in one UPDATE — exactly what the trigger
would have maintained (`zos salience check` passes on the result). It prints how long that
took, then the median wall time of `zos salience top --json` run as a subprocess (what an
operator waits for) and of the library call `queries.top` in-process (the part that depends
on the data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zos_cli.store import db as database
from zos_cli.store import migrations
from zos_cli.salience.queries import check, top  # noqa: E402

KINDS = ["user", "channel", "dyad", "user_in_channel", "dyad_in_channel", "emoji", "subject"]
GROUP = {"user": "social", "channel": "spaces", "dyad": "social", "user_in_channel": "social",
         "dyad_in_channel": "social", "emoji": "culture", "subject": "semantic"}
CATEGORY = {"user": "users", "channel": "channels", "dyad": "dyads", "emoji": "emoji",
            "user_in_channel": "user_in_channel", "dyad_in_channel": "dyad_in_channel",
            "subject": "subjects"}


def topic_rows(count: int) -> list[tuple]:
    rows = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        n = 1000 + i
        tail = {"user": f"user:{n}", "channel": f"channel:{n}", "dyad": f"dyad:{n}:{n + 1}",
                "user_in_channel": f"user_in_channel:7:{n}",
                "dyad_in_channel": f"dyad_in_channel:7:{n}:{n + 1}", "emoji": f"emoji:{n}",
                "subject": f"subject:s{n}"}[kind]
        rows.append((f"server:1:{tail}", CATEGORY[kind], GROUP[kind], "1", 0,
                     "2024-01-01T00:00:00.000000+00:00"))
    return rows


def generate(path: Path, ledger_rows: int, topics: int) -> float:
    """A migrated database with `topics` topics and `ledger_rows` ledger rows; returns the
    seconds it took."""
    started = time.perf_counter()
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    conn = db.conn
    # A throwaway file: no journal while loading (WAL again at the end, as zos opens it).
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    saved = [r[0] for r in conn.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'salience_ledger' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL")]
    names = [r for r in conn.execute(
        "SELECT type, name FROM sqlite_master WHERE tbl_name = 'salience_ledger' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL")]
    with database.write_transaction(db):
        conn.executemany("INSERT INTO topics (key, category, budget_group, server_id, is_global, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?)", topic_rows(topics))
        keys = conn.execute("SELECT key, id FROM topics ORDER BY key").fetchall()
        conn.execute("CREATE TEMP TABLE k (n INTEGER PRIMARY KEY, key TEXT, id INTEGER)")
        conn.executemany("INSERT INTO temp.k VALUES (?, ?, ?)",
                         [(n, key, topic_id) for n, (key, topic_id) in enumerate(keys)])
        # Times a row can have: every hour of 2024 (joined by number: cheaper than strftime).
        conn.execute("CREATE TEMP TABLE h (n INTEGER PRIMARY KEY, at TEXT)")
        conn.execute(
            "INSERT INTO temp.h WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
            "WHERE i + 1 < 8760) SELECT i, strftime('%Y-%m-%dT%H:%M:%f000+00:00', '2024-01-01', "
            "'+' || i || ' hours') FROM s")
        for kind, name in names:
            conn.execute(f"DROP {kind.upper()} {name}")
        per_topic = max(1, ledger_rows // topics)
        # Row i belongs to topic i / per_topic; its time moves forward within the topic.
        conn.execute(
            "INSERT INTO salience_ledger (id, topic_key, transaction_type, amount, reason, "
            "created_at, topic_id) "
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?) "
            "SELECT printf('%020d', i), k.key, "
            " CASE i % 4 WHEN 0 THEN 'propagate' WHEN 3 THEN 'decay' ELSE 'earn' END, "
            " CASE i % 4 WHEN 3 THEN -0.01 ELSE ((i * 7919) % 997) / 100.0 END, "
            " 'bench', h.at, k.id "
            "FROM s JOIN temp.k k ON k.n = min(i / ?, ?) "
            "JOIN temp.h h ON h.n = (i % ?) * 8759 / max(? - 1, 1)",
            [ledger_rows, per_topic, topics - 1, per_topic, per_topic])
        t_insert = time.perf_counter()
        for sql in saved:
            conn.execute(sql)
        t_index = time.perf_counter()
        conn.execute(
            "UPDATE topics SET balance = s.total, last_activity_at = s.last FROM "
            "(SELECT topic_id, sum(amount) AS total, max(created_at) AS last "
            " FROM salience_ledger GROUP BY topic_id) AS s WHERE s.topic_id = topics.id")
        conn.execute("DROP TABLE temp.k")
        conn.execute("DROP TABLE temp.h")
        print(f"generated {ledger_rows:,} rows: insert {t_insert - started:.1f} s, indexes "
              f"{t_index - t_insert:.1f} s, balances {time.perf_counter() - t_index:.1f} s",
              file=sys.stderr)
    conn.execute("PRAGMA journal_mode = WAL")
    seconds = time.perf_counter() - started
    assert check(db, tolerance=1e-6)["ok"]  # the maintained balances equal the ledger
    db.close()
    return seconds


def median_cli(path: Path, runs: int) -> float:
    argv = [sys.executable, "-m", "zos_cli", "--db", str(path), "salience", "top", "--json"]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    samples = []
    for _ in range(runs + 1):  # the first run warms the file cache and is dropped
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env, cwd=ROOT)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


def median_library(path: Path, runs: int) -> float:
    db = database.open_database(path)
    samples = []
    try:
        for _ in range(runs * 20 + 1):
            start = time.perf_counter()
            top(db, limit=20)
            top(db, group="semantic", limit=20)
            samples.append(time.perf_counter() - start)
    finally:
        db.close()
    return statistics.median(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,10000000")
    parser.add_argument("--topics", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", help="Folder to keep the generated databases in.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="zos-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes:
        path = folder / f"ledger-{size}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        seconds = generate(path, size, args.topics)
        results.append((size, seconds, path.stat().st_size, median_cli(path, args.runs),
                        median_library(path, args.runs)))
        if not args.keep:
            path.unlink()
    print(f"{'ledger rows':>12} {'generate s':>11} {'file MB':>8} {'zos salience top s':>19} "
          f"{'library top ms':>15}")
    for size, gen, size_bytes, cli, lib in results:
        print(f"{size:>12,} {gen:>11.1f} {size_bytes / 1e6:>8.0f} {cli:>19.3f} {lib * 1000:>15.3f}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"ratio {last[0]:,} / {first[0]:,} rows: CLI {last[3] / first[3]:.2f}×, "
              f"library {last[4] / first[4]:.2f}× (aim ≤ 2×)")
    if not args.keep:
        folder.rmdir()


if __name__ == "__main__":
    main()
