"""Ingest benchmark: throughput against the floor, re-ingest time, and peak memory.

    python benchmarks/bench_ingest.py [--messages 200000] [--memory-messages 1000000]
                                      [--workdir /tmp/zos-bench] [--skip-memory] [--repeat N]
                                      [--batch-size N] [--skip-diagnostic]

1. Generates a single-channel export of `--messages` messages (benchmarks/gen_export.py).
2. The floor, in the same run (with `--repeat N`, the floor and step 3's full ingest N times
   each, in turn, and their medians): orjson-load the whole file and `executemany` the messages,
   reactions and users rows into a fresh zos database (no topics, no ledger, no validation).
3. `zos ingest` of the same file into a fresh database, in-process, with full derivation
   (users, roles, tracking, mentions, reactions, media, links, sources, topics and ledger).
   Also, as diagnostics, the same ingest with salience switched off (an engine that drops
   events), to show what the writer costs and what the salience engine costs; and the time a
   privacy-gate role adds (the run then reads the file once first for its role sets).
   And two lower bounds, on the full ingest's result (benchmarks/ingest_bounds.py): the time
   to store its rows alone (copied into a fresh database, nothing parsed or computed), and
   the CPU time of the salience engine's arithmetic alone (nothing read or written).
4. The re-ingest of the unchanged file (recognised by size + sha256 and skipped).
5. Memory: generates `--memory-messages` messages (1M ≈ 1.4 GB) and runs
   `python -m zos_cli ingest` on it in a child process; its peak RSS comes from wait4() in a
   small launcher process (see `_LAUNCHER`).
   The file is deleted afterwards.
Prints one JSON object per measurement and a summary. Timings are wall-clock and noisy on a
shared machine: run it on an idle one for numbers to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gen_export import generate  # noqa: E402
from ingest_bounds import engine_compute, store_only  # noqa: E402

from zos_cli.store import db as db_module
from zos_cli.store import migrations
from zos_cli.config import Config  # noqa: E402


def fresh_db(path: Path):
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    db = db_module.connect(path, create=True)
    migrations.apply(db, path)
    return db


def report(name: str, **values) -> dict:
    print(json.dumps({"measure": name, **values}), flush=True)
    return values


def floor(export: Path, db_path: Path) -> float:
    """orjson-load the file and executemany the messages, reactions and users rows."""
    import orjson

    db = fresh_db(db_path)
    conn = db.conn
    started = time.perf_counter()
    doc = orjson.loads(export.read_bytes())
    guild, channel = doc["guild"], doc["channel"]
    users, messages, reactions = {}, [], []
    for m in doc["messages"]:
        a = m["author"]
        users[a["id"]] = (a["id"], a["name"], a.get("nickname"))
        messages.append((m["id"], channel["id"], guild["id"], a["id"], m["content"],
                         m["timestamp"], m["timestampEdited"], m["type"], "public", "now"))
        for r in m["reactions"]:
            e = r["emoji"]
            for u in r["users"]:
                users[u["id"]] = (u["id"], u["name"], u.get("nickname"))
                reactions.append((m["id"], u["id"], e["name"], e["id"] or "", int(bool(e["id"]))))
    conn.execute("BEGIN")
    conn.execute("INSERT INTO servers (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                 [guild["id"], guild["name"], "now", "now"])
    conn.execute("INSERT INTO channels (id, server_id, name, type, updated_at) "
                 "VALUES (?, ?, ?, 'text', 'now')", [channel["id"], guild["id"], channel["name"]])
    conn.executemany("INSERT INTO users (id, name, display_name) VALUES (?, ?, ?)",
                     list(users.values()))
    conn.executemany(
        "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at, "
        "edited_at, message_type, visibility_scope, ingested_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", messages)
    conn.executemany("INSERT OR IGNORE INTO reactions (message_id, user_id, emoji, emoji_id, "
                     "is_custom) VALUES (?, ?, ?, ?, ?)", reactions)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return seconds


class _DroppingEngine:
    """Diagnostic only: salience switched off, to separate the writer's cost from the engine's."""

    def __init__(self, db, config):
        self.gate = self  # (the run settles its privacy gate on the engine's gate)

    def settle(self, answers) -> None:
        pass

    def apply(self, event) -> None:
        pass

    def flush(self, reason: str) -> int:
        return 0


def gated_config(export: Path) -> Config:
    """The export's server with a privacy-gate role (one of the generated roles): the run then
    reads the file once first for the role sets it shows."""
    from zos_cli.sources.export import ExportFile

    file = ExportFile(export)
    try:
        server_id = file.open().channel.server_id
        role = next(file.messages()).author.roles[0].id
    finally:
        file.close()
    return Config.model_validate(
        {"servers": {server_id: {"privacy_gate_role": role}}})


def gate_read(export: Path, db_path: Path) -> tuple[float, int]:
    """What a privacy-gate role adds to an ingest run: the first read of the file for the role
    sets it shows (ingest_gate.settle_gate), timed alone."""
    from zos_cli.ingest.run import IngestRun
    from zos_cli.ingest.role_gate import settle_gate

    db = fresh_db(db_path)
    config = gated_config(export)
    try:
        run = IngestRun(db, config)
        run._plan(str(export))
        started = time.perf_counter()
        answers = settle_gate(db, config, [run.plans])
        return time.perf_counter() - started, len(answers)
    finally:
        for plan in run.plans:
            plan.export.close()
        db.close()


def zos_ingest(export: Path, db_path: Path, *, salience: bool = True,
               batch_messages: int | None = None) -> tuple[float, dict]:
    import zos_cli.salience as salience_module
    from zos_cli.ingest.run import ingest_exports

    db = fresh_db(db_path)
    config = Config()
    real = salience_module.SalienceEngine
    if not salience:
        salience_module.SalienceEngine = _DroppingEngine
    try:
        started = time.perf_counter()
        batch = {"batch_messages": batch_messages} if batch_messages else {}
        summary = ingest_exports(db, config, [str(export)], **batch)
        seconds = time.perf_counter() - started
        if salience:
            started_again = time.perf_counter()
            again = ingest_exports(db, config, [str(export)])
            summary["reingest_seconds"] = time.perf_counter() - started_again
            summary["reingest_skipped"] = again["files_skipped_unchanged"]
            summary["ledger_rows"] = db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0]
    finally:
        salience_module.SalienceEngine = real
        db.close()
    return seconds, summary


# A small launcher between this (large) process and the measured one: on Linux a child's
# ru_maxrss includes the high-water mark of the process it was forked from, so the CLI is
# started by a fresh interpreter whose own footprint (~10 MB) is below the CLI's.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(f'ZOS_BENCH_MAXRSS_KB={usage.ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def peak_rss(export: Path, db_path: Path) -> tuple[float, int, dict]:
    """Run the real CLI in a child process; (seconds, peak RSS in bytes, summary)."""
    fresh_db(db_path).close()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "zos_cli", "--db", str(db_path),
         "ingest", str(export), "--json"],
        cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    marker = [line for line in done.stderr.splitlines() if line.startswith("ZOS_BENCH_MAXRSS_KB=")]
    return seconds, int(marker[-1].split("=")[1]) * 1024, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--memory-messages", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/zos-bench"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-diagnostic", action="store_true")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="messages per transaction of the timed ingests (zos ingest "
                             "--batch-size; default: the CLI's default)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the floor and the ingest this many times each, in turn, and "
                             "report their medians (a shared machine's noise is ±20%%)")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    export = work / f"export-{args.messages}.json"
    results = {}
    try:
        made = generate(export, args.messages)
        report("generate", **made)

        floors, fulls = [], []
        for _ in range(max(1, args.repeat)):  # in turn: both see the same machine load
            floors.append(floor(export, work / "floor.db"))
            seconds, summary = zos_ingest(export, work / "ingest.db",
                                          batch_messages=args.batch_size)
            fulls.append(seconds)
        floor_s, full_s = statistics.median(floors), statistics.median(fulls)
        runs = {"runs": len(floors)} if len(floors) > 1 else {}
        results["floor"] = report("floor", seconds=round(floor_s, 2),
                                  messages_per_second=round(args.messages / floor_s), **runs,
                                  **({"all_seconds": [round(s, 2) for s in floors]} if runs else {}))
        results["ingest"] = report(
            "ingest", seconds=round(full_s, 2), messages_per_second=round(args.messages / full_s),
            vs_floor=round(floor_s / full_s, 3), messages_new=summary["messages_new"],
            reactions_new=summary["reactions_new"], ledger_rows=summary["ledger_rows"], **runs,
            **({"all_seconds": [round(s, 2) for s in fulls]} if runs else {}))
        results["reingest"] = report(
            "reingest_unchanged", seconds=round(summary["reingest_seconds"], 3),
            vs_first_ingest=round(summary["reingest_seconds"] / full_s, 4),
            skipped=summary["reingest_skipped"])
        if not args.skip_diagnostic:
            bare_s, _ = zos_ingest(export, work / "bare.db", salience=False,
                                   batch_messages=args.batch_size)
            results["without_salience"] = report(
                "ingest_without_salience_diagnostic", seconds=round(bare_s, 2),
                messages_per_second=round(args.messages / bare_s),
                vs_floor=round(floor_s / bare_s, 3))
            gate_s, users = gate_read(export, work / "gated.db")
            results["gate_read"] = report(
                "privacy_gate_read_diagnostic", seconds=round(gate_s, 2), users=users,
                of_ingest=round(gate_s / full_s, 3))
            # Lower bounds, on the last full ingest's result (see ingest_bounds.py).
            stored = store_only(work / "ingest.db", work / "store.db", fresh_db)
            report("store_only_bound_tables", **stored["tables"])
            results["store_only"] = report(
                "store_only_bound", seconds=round(stored["seconds"], 2),
                vs_floor=round(floor_s / stored["seconds"], 3))
            computed = engine_compute(work / "ingest.db", work / "engine.db", fresh_db)
            results["engine_compute"] = report(
                "salience_compute_bound", cpu_seconds=round(computed["cpu_seconds"], 2),
                vs_floor=round(floor_s / computed["cpu_seconds"], 3),
                events=computed["events"])
    finally:
        export.unlink(missing_ok=True)
    if not args.skip_memory:
        big = work / f"export-{args.memory_messages}.json"
        try:
            made = generate(big, args.memory_messages)
            report("generate", **made)
            seconds, rss, summary = peak_rss(big, work / "memory.db")
            results["memory"] = report(
                "peak_rss", messages=args.memory_messages, file_bytes=made["bytes"],
                peak_rss_mb=round(rss / 1e6, 1), seconds=round(seconds, 1),
                messages_new=summary["messages_new"])
        finally:
            big.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    print("\nSummary (wall clock, shared machine: noisy)")
    for name, values in results.items():
        print(f"  {name:18} " + ", ".join(f"{k}={v}" for k, v in values.items()))


if __name__ == "__main__":
    main()
