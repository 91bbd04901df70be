"""`zos analyze` throughput: 1,000 links and 200 images served from local servers on 127.0.0.1
that answer each request after 200 ms, analysed at --concurrency 8 (offline descriptions and
summaries: the model is not what is measured).

Target: the run's wall time within 1.3× of ideal concurrency, items × latency / concurrency
(1,200 × 0.2 s / 8 = 30 s). Reports items per second, the ratio, and the most requests the
servers saw in flight at once.

    .venv/bin/python benchmarks/bench_analyze.py [--links 1000] [--images 200]
        [--latency 0.2] [--concurrency 8] [--keep DIR]

The data is generated fresh each run: one public channel whose messages each share one page
or one image (all different), ingested through the real `zos ingest` path. Exits 1 when the
ratio is over the target. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.analyze_web import THEO, Web, article, attachment, msg, public_export  # noqa: E402

TARGET_RATIO = 1.3


class CountingWeb(Web):
    """The test server, counting the requests it is answering at once."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.in_flight = self.max_in_flight = 0
        self._count = threading.Lock()

    def start(self) -> CountingWeb:
        super().start()
        handler = self._server.RequestHandlerClass
        original, web = handler.do_GET, self

        def counted(request) -> None:
            with web._count:
                web.in_flight += 1
                web.max_in_flight = max(web.max_in_flight, web.in_flight)
            try:
                original(request)
            finally:
                with web._count:
                    web.in_flight -= 1

        handler.do_GET = counted
        return self


def png(i: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (96, 64), (i % 256, (i * 7) % 256, (i * 13) % 256)).save(out, "PNG")
    return out.getvalue()


def build(folder: Path, web: Web, links: int, images: int) -> tuple[Path, Path]:
    from typer.testing import CliRunner

    from zos_cli.cli import app

    messages = []
    for i in range(links):
        url = web.page(f"/p{i}", article(f"Page {i}", f"Notes number {i} on glazes and kilns. "
                                         "Cone 6 needs care.", f"About page {i}."))
        messages.append(msg(i * 0.01, THEO, f"see {url}"))
    for i in range(images):
        url = web.image(f"/i{i}.png", png(i))
        messages.append(msg((links + i) * 0.01, THEO, "look", attachments=[
            attachment(str(10_000 + i), url, f"photo-{i}.png", 2000)]))
    config = folder / "zos.toml"
    config.write_text('[analysis]\nallow_private_addresses = true\n')
    db = folder / "bench.db"
    export = public_export(messages).write(folder / "general.json")
    runner = CliRunner()
    for args in (["init-db"], ["ingest", str(export)]):
        result = runner.invoke(app, ["--db", str(db), "--config", str(config), *args])
        assert result.exit_code == 0, result.output
    return db, config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="build the data here and keep it")
    args = parser.parse_args()

    from zos_cli.analyze.run import AnalyzeOptions, analyze
    from zos_cli.config import load_config
    from zos_cli.store import db as db_module

    folder = args.keep or Path(tempfile.mkdtemp(prefix="zos-bench-analyze-"))
    folder.mkdir(parents=True, exist_ok=True)
    with CountingWeb(latency=args.latency) as web:
        db_path, config_path = build(folder, web, args.links, args.images)
        setup_requests = len(web.paths())
        db = db_module.open_database(db_path)
        try:
            started = time.perf_counter()
            summary = analyze(db, load_config(config_path, explicit=True),
                              AnalyzeOptions(concurrency=args.concurrency))
            wall = time.perf_counter() - started
        finally:
            db.close()
        requests = len(web.paths()) - setup_requests
    items = args.links + args.images
    ideal = items * args.latency / args.concurrency
    ratio = wall / ideal
    print(f"zos analyze: {args.links} links + {args.images} images, {args.latency * 1000:.0f} ms "
          f"per request, --concurrency {args.concurrency}")
    print(f"  analysed: {summary['links_analysed']} links, {summary['media_analysed']} images; "
          f"skipped {summary['skipped'] or 'none'}; errors {len(summary['errors'])}")
    print(f"  requests: {requests} (robots.txt included), at most {web.max_in_flight} at once")
    print(f"  wall {wall:.2f} s, ideal {ideal:.2f} s: {ratio:.2f}× "
          f"(goal ≤ {TARGET_RATIO}×); {items / wall:.1f} items/s (ideal {items / ideal:.1f})")
    ok = (ratio <= TARGET_RATIO and summary["links_analysed"] == args.links
          and summary["media_analysed"] == args.images)
    print("  OK" if ok else "  OVER THE GOAL (or items missing)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
