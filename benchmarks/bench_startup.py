"""Startup time of every zos command that calls no model, against `sqlite-utils --help`.

Aim: each within 2× of sqlite-utils. Every command runs in a fresh interpreter on an empty
(initialised) database; the runs are interleaved round by round with the baseline's, so a
busy machine slows them alike, and the median wall time of each is compared with the
baseline's median. Prints one row per command and, when any ratio is over the limit, one
`OVER …` line per command and exits 1.

    .venv/bin/python benchmarks/bench_startup.py [--runs N] [--limit 2.0] [--only TEXT] [--zos EXE]

A benchmark, not a test: pytest never collects it (it is not under tests/).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

# Every command that calls no model, as run on an empty database, with the exit code it
# gives there: the `show`/`ledger` commands find nothing (1), which still runs their whole
# startup (the config is read before the lookup fails).
COMMANDS: list[tuple[str, int]] = [
    ("--help", 0),
    ("status", 0),
    ("status --json", 0),
    ("salience top", 0),
    ("salience top --json", 0),
    ("salience show user:1", 1),
    ("salience ledger user:1", 1),
    ("salience budget", 0),
    ("salience check", 0),
    ("salience decay --dry-run", 0),
    ("insights list", 0),
    ("insights show 01HZZZZZZZZZZZZZZZZZZZZZZZ", 1),
    ("insights search hello", 0),
    ("insights runs", 0),
    ("insights calls", 0),
    ("insights export", 0),
    ("consent list", 0),
    ("consent status 123", 0),
    ("reflect --list", 0),
    ("reflect --layer user --dry-run", 0),
    ("analyze --dry-run", 0),
    ("self show", 0),
    ("self history", 0),
    ("subjects list", 0),
    ("subjects list --json", 0),
    ("insights about user:1 --json", 1),
    ("nightly --dry-run", 0),
    ("ingest --history", 0),
    ("ingest --help", 0),
    ("poll --help", 0),
    ("migrate", 0),
    ("init-db", 0),
]


def run_once(argv: list[str], expected: int, env: dict) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expected:
        sys.exit(f"{' '.join(argv)} exited {done.returncode} (expected {expected}):\n"
                 f"{done.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--limit", type=float, default=2.0, help="highest ratio accepted")
    parser.add_argument("--only", help="only the commands containing this text")
    parser.add_argument("--zos", default=str(BIN / "zos"),
                        help="the zos executable (to compare another checkout)")
    args = parser.parse_args()
    zos = args.zos
    sqlite_utils = shutil.which("sqlite-utils", path=str(BIN)) or "sqlite-utils"
    commands = [(c, code) for c, code in COMMANDS if not args.only or args.only in c]
    # No config file, no ./layers: run from an empty folder. Never a network or model call.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    for name in ("ZOS_CONFIG", "ZOS_DB", "ZOS_MODEL"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "zos.db")
        subprocess.run([zos, "--db", db, "init-db"], check=True, stdout=subprocess.DEVNULL,
                       cwd=tmp, env=env)
        jobs = [("sqlite-utils --help", [sqlite_utils, "--help"], 0)]
        jobs += [(f"zos {c}", [zos, "--db", db, *c.split()], code) for c, code in commands]
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in jobs}
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for round_ in range(args.runs + 1):  # the first round warms the file cache
                for name, argv, code in jobs:
                    elapsed = run_once(argv, code, env)
                    if round_:
                        samples[name].append(elapsed)
        finally:
            os.chdir(cwd)
    # The limit applies to wall time; CPU time is shown beside it, as it varies less on a
    # shared machine.
    wall = {name: statistics.median(w for w, _ in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in samples.items()}
    base_wall, base_cpu = wall["sqlite-utils --help"], cpu["sqlite-utils --help"]
    width = max(len(name) for name in wall)
    print(f"{'command':<{width}} {'wall s':>7} {'× sqlite-utils':>15} {'cpu s':>7} {'cpu ×':>6}")
    over = []
    for name, seconds in wall.items():
        ratio = seconds / base_wall
        print(f"{name:<{width}} {seconds:>7.3f} {ratio:>15.2f} {cpu[name]:>7.3f} "
              f"{cpu[name] / base_cpu:>6.2f}")
        if ratio > args.limit:
            over.append((name, ratio))
    for name, ratio in over:
        print(f"OVER {args.limit:.1f}×: {name} takes {ratio:.2f}× sqlite-utils --help")
    if over:
        sys.exit(1)
    print(f"every command within {args.limit:.1f}× of sqlite-utils --help "
          f"(median of {args.runs} runs)")


if __name__ == "__main__":
    main()
