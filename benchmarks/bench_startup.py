"""Startup time of `zos --help` and `zos status` against `sqlite-utils --help`.

Aim: within 2× of sqlite-utils. Each command runs in a fresh interpreter, several times;
the median wall time is reported.

    .venv/bin/python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(argv: list[str], runs: int) -> float:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    samples = []
    for _ in range(runs + 1):  # the first run warms the file cache and is dropped
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    zos = str(BIN / "zos")
    sqlite_utils = shutil.which("sqlite-utils", path=str(BIN)) or "sqlite-utils"
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "zos.db")
        subprocess.run([zos, "--db", db, "init-db"], check=True, stdout=subprocess.DEVNULL)
        baseline = timed([sqlite_utils, "--help"], args.runs)
        results = {
            "sqlite-utils --help": baseline,
            "zos --help": timed([zos, "--help"], args.runs),
            "zos status": timed([zos, "--db", db, "status"], args.runs),
        }
    print(f"{'command':<22} {'median s':>9} {'× sqlite-utils':>15}")
    for name, seconds in results.items():
        print(f"{name:<22} {seconds:>9.3f} {seconds / baseline:>15.2f}")


if __name__ == "__main__":
    main()
