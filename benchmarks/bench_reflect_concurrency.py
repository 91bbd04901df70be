"""Reflection concurrency: 40 targets against the fake OpenAI-compatible server with 1 s of
latency per request, at --concurrency 8.

Target: from the first model request to the last response ≤ 6.5 s (ideal: 40 / 8 × 1 s = 5 s).
Also reports the prompt tokens per target (as the server counts them, chars / 4, and as zos
estimates them) and the highest number of requests in flight.

    .venv/bin/python benchmarks/bench_reflect_concurrency.py [--targets 40] [--concurrency 8]
        [--latency 1.0] [--messages 12] [--runs 1]

The data is generated fresh each run (40 users posting and replying in two channels of one
server, ingested through the real `zos ingest` path), so the numbers are reproducible.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "bench")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fake_openai import FakeOpenAI  # noqa: E402
from tests.reflect_world import SELF_ID, build_world  # noqa: E402
from zos_cli.store import db as db_module
from zos_cli.store import migrations
from zos_cli.config import Config  # noqa: E402
from zos_cli.reflect.layers import SHIPPED_DIR  # noqa: E402
from zos_cli.reflect.run import RunOptions, run_layer  # noqa: E402


def one_run(args, folder: Path) -> dict:
    path = folder / "bench.db"
    db = db_module.connect(path, create=True)
    migrations.apply(db, path)
    build_world(db, folder, users=args.targets, messages_each=args.messages)
    # A local layer override lets the user layer take every target of the run.
    layers = folder / "layers"
    layers.mkdir()
    shipped = (SHIPPED_DIR / "user.toml").read_text()
    (layers / "user.toml").write_text(
        shipped.replace("max_targets = 15", f"max_targets = {args.targets}"))
    with FakeOpenAI(latency=args.latency) as server:
        config = Config.model_validate({
            "discord": {"self_user_id": SELF_ID},
            "reflection": {"nightly_targets": args.targets * 4, "concurrency": args.concurrency},
            "models": {"reflection": {"model": "openai/fake-model", "api_base": server.base_url}},
        })
        started = time.perf_counter()
        summary = run_layer(db, config, path, RunOptions(layer="user", layers_dir=layers))
        wall = time.perf_counter() - started
        requests = list(server.requests)
        in_flight = server.max_in_flight
    calls = db.execute("SELECT tokens_input FROM llm_calls WHERE status = 'ok'").fetchall()
    estimates = db.execute("SELECT tokens_input FROM layer_runs").fetchone()
    db.close()
    span = max(r.finished for r in requests) - min(r.started for r in requests)
    return {
        "status": summary["status"],
        "targets": len(summary["targets"]),
        "requests": len(requests),
        "first_request_to_last_response_s": span,
        "wall_s": wall,
        "max_in_flight": in_flight,
        "prompt_tokens_per_target": statistics.mean(c[0] for c in calls),
        "layer_run_tokens_input": estimates[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--messages", type=int, default=12, help="messages per user")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    import litellm  # noqa: F401  (imported before timing: its import costs seconds)

    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            results.append(one_run(args, Path(folder)))
    ideal = args.targets / args.concurrency * args.latency
    for i, r in enumerate(results, 1):
        print(f"run {i}: status {r['status']}, {r['targets']} targets, {r['requests']} requests, "
              f"max in flight {r['max_in_flight']}")
        print(f"  first request → last response: {r['first_request_to_last_response_s']:.2f} s "
              f"(ideal {ideal:.2f} s, target ≤ 6.5 s)")
        print(f"  whole run (contexts, calls, storage): {r['wall_s']:.2f} s")
        print(f"  prompt tokens per target: {r['prompt_tokens_per_target']:.0f} (server count, "
              f"chars/4); run total {r['layer_run_tokens_input']} input tokens")
    spans = [r["first_request_to_last_response_s"] for r in results]
    print(f"median first→last: {statistics.median(spans):.2f} s over {len(spans)} run(s)")


if __name__ == "__main__":
    main()
