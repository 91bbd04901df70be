"""`zos analyze` as the operator runs it: the --json summary, exit codes (1, 2, 75, 78), the
job lock, `zos status` counts, the default address policy, and a run killed midway that the
next run finishes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.analyze_web import THEO, Web, article, config_text, msg, public_export
from tests.conftest import EXAMPLES, run_zos
from tests.fake_openai import FakeOpenAI, Reply
from zos_cli.store import locks

KEYS = {"media_analysed", "links_analysed", "skipped", "tokens_used", "cost_usd", "errors"}
PAGE = article("Glaze wiki", "Celadon glazes need iron oxide.", "Notes on celadon glazes.")


@pytest.fixture
def web():
    with Web() as server:
        yield server


def setup(cli, tmp_path: Path, messages: list[dict], text: str | None = None) -> Path:
    config = tmp_path / "zos.toml"
    config.write_text(text if text is not None else config_text())
    path = public_export(messages).write(tmp_path / "general.json")
    result = cli("--config", str(config), "ingest", str(path))
    assert result.exit_code == 0, result.stderr
    return config


def analyze(cli, config: Path, *args: str):
    return cli("--config", str(config), "analyze", *args)


def test_json_summary_and_status_counts(cli, tmp_path, web):
    url = web.page("/glaze", PAGE)
    config = setup(cli, tmp_path, [msg(0, THEO, f"{url} and {web.fail('/x', 404)}")])
    status = json.loads(cli("--config", str(config), "status", "--json").stdout)
    assert status["analysis"] == {"media_pending": 0, "media_analysed": 0,
                                  "links_pending": 2, "links_analysed": 0}
    result = analyze(cli, config, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert KEYS <= set(doc)
    assert (doc["links_analysed"], doc["skipped"], doc["errors"]) == (1, {"http_error": 1}, [])
    assert (doc["tokens_used"], doc["cost_usd"]) == (0, 0.0)
    status = json.loads(cli("--config", str(config), "status", "--json").stdout)
    assert status["analysis"] == {"media_pending": 0, "media_analysed": 0,
                                  "links_pending": 0, "links_analysed": 2}
    human = cli("--config", str(config), "status")
    assert "links 2 analysed, 0 pending" in human.stdout
    nl = analyze(cli, config, "--nl")
    assert len(nl.stdout.splitlines()) == 1 and KEYS <= set(json.loads(nl.stdout))


def test_the_default_policy_refuses_this_machine_and_sends_nothing(cli, tmp_path, web):
    url = web.page("/glaze", PAGE)
    decimal = f"http://2130706433:{web.port}/glaze"  # 127.0.0.1 written as one number
    config = setup(cli, tmp_path, [msg(0, THEO, f"{url} {decimal}")],
                   text='[discord]\nself_user_id = "900"\n')
    doc = json.loads(analyze(cli, config, "--json").stdout)
    assert doc["skipped"] == {"blocked_address": 2}
    assert web.paths() == []


def test_failed_items_exit_1_and_are_listed(cli, tmp_path, web, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    url = web.page("/glaze", PAGE)
    with FakeOpenAI() as model:
        model.enqueue(Reply(status=400, content="no"))
        config = setup(cli, tmp_path, [msg(0, THEO, url)], config_text(
            extra=f'[models.summary]\nmodel = "openai/fake"\napi_base = "{model.base_url}"\n'
                  "[reflection]\nmax_retries = 0\n"))
        result = analyze(cli, config, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [e["item"] for e in doc["errors"]] == [f"link:{url}"]
    assert "Error: 1 item(s) could not be analysed" in result.stderr


def test_a_configured_model_without_its_key_exits_78_before_any_fetch(cli, tmp_path, web):
    url = web.page("/glaze", PAGE)
    config = setup(cli, tmp_path, [msg(0, THEO, url)],
                   config_text(extra='[models.reflection]\nmodel = "openai/gpt-4o-mini"\n'))
    result = analyze(cli, config, "--json")
    assert result.exit_code == 78
    assert "OPENAI_API_KEY" in result.stderr
    assert web.paths() == []
    # Offline for this run: fine without a key.
    assert analyze(cli, config, "--model", "offline").exit_code == 0


def test_the_lock_and_usage_problems(cli, db_path, tmp_path):
    config = setup(cli, tmp_path, [msg(0, THEO, "nothing shared")])
    with locks.job_lock(db_path, "analyze"):
        result = analyze(cli, config, "--json")
    assert result.exit_code == 75
    assert json.loads(result.stdout)["errors"][0]["item"] is None
    assert "another `zos analyze` is already running" in result.stderr
    assert analyze(cli, config, "--no-media", "--no-links").exit_code == 2
    assert analyze(cli, config, "--as-of", "yesterday").exit_code == 2
    assert analyze(cli, config, "--concurrency", "0").exit_code == 2
    assert analyze(cli, config).exit_code == 0  # nothing shared: nothing to do


def test_the_example_is_not_analysed_by_ingest(cli, db_path):
    """`make demo` runs init-db, ingest, salience, reflect and insights: analysis is opt-in,
    so its attachments and links stay pending and nothing is fetched."""
    result = cli("--config", str(EXAMPLES / "zos.toml"), "ingest", str(EXAMPLES / "export"))
    assert result.exit_code == 0, result.stderr
    analysis = json.loads(cli("status", "--json").stdout)["analysis"]
    assert analysis["media_analysed"] == analysis["links_analysed"] == 0
    assert analysis["media_pending"] >= 1 and analysis["links_pending"] >= 1
    demo = (EXAMPLES.parent / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    assert "analyze" not in demo


@pytest.mark.slow
def test_a_killed_run_is_finished_by_the_next(tmp_path):
    with Web(latency=0.4) as slow:
        urls = [slow.page(f"/p{i}", PAGE) for i in range(16)]
        config = tmp_path / "zos.toml"
        config.write_text(config_text())
        db = tmp_path / "zos.db"
        base = ["--db", str(db), "--config", str(config)]
        assert run_zos(*base, "init-db").returncode == 0
        export = public_export([msg(i, THEO, url) for i, url in enumerate(urls)])
        assert run_zos(*base, "ingest", str(export.write(tmp_path / "g.json"))).returncode == 0
        proc = subprocess.Popen([sys.executable, "-m", "zos_cli", *base, "analyze",
                                 "--concurrency", "2", "--json"],
                                env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        done = 0
        while done < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
            with sqlite3.connect(db) as peek:
                done = peek.execute("SELECT count(*) FROM link_analysis "
                                    "WHERE status = 'ok'").fetchone()[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with sqlite3.connect(db) as peek:
            killed_at = peek.execute("SELECT count(*) FROM link_analysis "
                                     "WHERE status = 'ok'").fetchone()[0]
        assert 4 <= killed_at < 16, "the run was not killed midway"
        resumed = run_zos(*base, "analyze", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["links_analysed"] == 16 - killed_at
        page_hits = [p for p in slow.paths() if p.startswith("/p")]
    with sqlite3.connect(db) as peek:
        assert peek.execute("SELECT DISTINCT status, attempts, title FROM link_analysis"
                            ).fetchall() == [("ok", 1, "Glaze wiki")]
    # Each page read once, but for those in flight at the kill (at most 2).
    assert sorted(set(page_hits)) == sorted(f"/p{i}" for i in range(16))
    assert len(page_hits) <= 16 + 2
