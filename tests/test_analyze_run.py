"""A `zos analyze` run (zos_cli.analyze.run) on real SQLite, against a web server on
127.0.0.1 and the fake OpenAI server: one fetch per URL, statuses and retries, the privacy
gates, image deduplication within a scope, the cost cap, dry runs and the thread pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.analyze_web import (GUEST, MARA, PRIYA, THEO, ZOS, Web, article, attachment,
                               config_text, dm, msg, png_bytes, public_export)
from tests.fake_openai import DEFAULT_SUMMARY, FakeOpenAI, Reply
from zos_cli.analyze.addresses import AddressPolicy
from zos_cli.analyze.run import AnalyzeOptions, analyze
from zos_cli.config import load_config

LOCAL = AddressPolicy.allowing("127.0.0.1")  # 127.0.0.1 only: every other address refused
LATER = "2031-01-01T00:00:00+00:00"  # a clock far enough on for refetch_days to have passed


@pytest.fixture
def web():
    with Web() as server:
        yield server


class World:
    """A database with exports ingested through the CLI, and the run called as a library."""

    def __init__(self, cli, db, tmp_path: Path):
        self.cli, self.db, self.tmp = cli, db, tmp_path
        self.config_path = tmp_path / "zos.toml"
        self.configure()

    def configure(self, **kwargs) -> None:
        self.config_path.write_text(config_text(**kwargs))

    @property
    def config(self):
        return load_config(self.config_path, explicit=True)

    def ingest(self, *exports, grant: tuple[str, ...] = ()) -> None:
        for user_id in grant:
            assert self.cli("consent", "grant", user_id).exit_code == 0
        paths = [ex.write(self.tmp / f"export-{i}-{ex.channel_id}.json")
                 for i, ex in enumerate(exports)]
        result = self.cli("--config", str(self.config_path), "ingest", *map(str, paths))
        assert result.exit_code == 0, result.stderr

    def run(self, **options) -> dict:
        return analyze(self.db, self.config, AnalyzeOptions(**options), policy=LOCAL)

    def links(self) -> list[tuple]:
        return self.db.execute(
            "SELECT m.author_id, l.url, l.status, l.skip_reason, l.http_status, l.attempts, "
            "l.title, l.summary, l.analyzer FROM link_analysis l JOIN messages m "
            "ON m.id = l.message_id ORDER BY m.created_at, l.url").fetchall()

    def media(self) -> list[tuple]:
        return self.db.execute(
            "SELECT m.author_id, a.file_name, a.status, a.skip_reason, a.sha256 IS NOT NULL, "
            "a.width, a.height, a.description, a.analyzer FROM media_analysis a JOIN messages m "
            "ON m.id = a.message_id ORDER BY m.created_at, a.file_name").fetchall()


@pytest.fixture
def world(cli, db, tmp_path) -> World:
    return World(cli, db, tmp_path)


GLAZE = article("Glaze wiki", "Celadon glazes need iron oxide. Fire to cone 10.",
                "Notes on celadon glazes.")


# ---------------------------------------------------------------- links
def test_one_fetch_per_url_shared_by_every_message(world, web):
    url = web.page("/glaze", GLAZE)
    world.ingest(public_export([msg(0, THEO, f"see {url}"), msg(1, MARA, f"yes {url}#part"),
                                msg(2, THEO, f"again {url.upper().replace('/GLAZE', '/glaze')}")]))
    summary = world.run()
    assert (summary["links_analysed"], summary["errors"], summary["skipped"]) == (3, [], {})
    assert web.hits("/glaze") == 1 and web.hits("/robots.txt") == 1
    rows = world.links()
    assert {r[2:] for r in rows} == {("ok", None, 200, 1, "Glaze wiki",
                                      "Notes on celadon glazes.", "offline")}
    # A later message linking it takes the stored result: no fetch.
    world.ingest(public_export([msg(3, MARA, f"{url}")], channel_id="2002"))
    assert world.run()["links_analysed"] == 1
    assert web.hits("/glaze") == 1
    again = world.run()  # nothing due: idempotent
    assert (again["links_analysed"], again["skipped"], again["remaining"]) == (0, {}, 0)
    assert web.hits("/glaze") == 1


def test_transient_failures_are_retried_three_times_and_others_wait_for_refetch_days(world, web):
    flaky, gone = web.fail("/flaky", 503), web.fail("/gone", 404)
    world.ingest(public_export([msg(0, THEO, f"{flaky} {gone}")]))
    for attempt in (1, 2, 3):
        summary = world.run()
        assert summary["skipped"] == ({"http_error": 2} if attempt == 1 else {"http_error": 1})
        assert web.hits("/flaky") == attempt and web.hits("/gone") == 1
    world.run()
    assert web.hits("/flaky") == 3  # at most 3 attempts
    assert [(r[1].rsplit("/", 1)[1], r[2], r[4], r[5]) for r in world.links()] == [
        ("flaky", "http_error", 503, 3), ("gone", "http_error", 404, 1)]
    # Once refetch_days (30) have passed, both are tried again.
    world.run(as_of=LATER)
    assert (web.hits("/flaky"), web.hits("/gone")) == (4, 2)


def test_statuses_of_the_fetcher_end_on_the_rows(world, web):
    web.routes["/robots.txt"].body = b"User-agent: *\nDisallow: /private\n"
    urls = [web.url("/private/x"), web.image("/bin", b"\x00" * 10, "application/zip"),
            "ftp://example.com/file", "http://127.0.0.2:9/refused", "http://167772161/"]  # (10.0.0.1)
    world.ingest(public_export([msg(0, THEO, " ".join(urls))]))
    summary = world.run()
    assert summary["skipped"] == {"blocked_address": 2, "not_text": 1, "robots_disallowed": 1}
    # (ftp:// is no link the export reader keeps)
    assert web.paths() == ["/robots.txt", "/bin"]


def test_denied_and_unlisted_domains_are_skipped_without_a_request(world, web):
    url = web.page("/glaze", GLAZE)
    world.configure(extra='deny_domains = ["127.0.0.1"]\n')
    world.ingest(public_export([msg(0, THEO, url)]))
    assert world.run()["skipped"] == {"denied_domain": 1}
    assert world.links()[0][2:4] == ("skipped", "denied_domain")
    assert web.paths() == []


def test_a_summary_that_failed_is_retried_alone(world, web, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    url = web.page("/glaze", GLAZE)
    with FakeOpenAI() as model:
        world.configure(extra=f'[models.summary]\nmodel = "openai/fake-model"\n'
                              f'api_base = "{model.base_url}"\n[reflection]\nmax_retries = 0\n'
                              "retry_backoff_seconds = 0.0\n")
        world.ingest(public_export([msg(0, THEO, url), msg(1, MARA, url)]))
        model.enqueue(Reply(status=400, content="bad request"))
        summary = world.run()
        assert summary["errors"] == [{"item": f"link:{url}", "error": summary["errors"][0]["error"]}]
        assert summary["links_analysed"] == 0
        rows = world.links()
        assert {(r[2], r[6], r[7]) for r in rows} == {("ok", "Glaze wiki", None)}
        calls = world.db.execute("SELECT source_type, count(*) FROM llm_call_sources "
                                 "GROUP BY 1").fetchall()
        assert calls == [("link", 2)]  # the failed call is recorded, tied to both rows
        summary = world.run()
        assert (summary["links_analysed"], summary["errors"]) == (2, [])
        assert {r[7] for r in world.links()} == {DEFAULT_SUMMARY}
        assert {r[8] for r in world.links()} == {"openai/fake-model"}
        assert summary["tokens_used"] > 0
    assert web.hits("/glaze") == 2


# ---------------------------------------------------------------- privacy
def test_gated_users_links_are_not_fetched(world, web):
    shared, own = web.page("/glaze", GLAZE), web.page("/guest", GLAZE)
    world.configure(gate=True)
    world.ingest(public_export([msg(0, GUEST, f"{shared} {own}"), msg(1, THEO, shared)]))
    summary = world.run()
    assert (summary["links_analysed"], summary["skipped"]) == (1, {"gated_user": 2})
    assert web.hits("/guest") == 0 and web.hits("/glaze") == 1
    by_author = {(r[0], r[1].rsplit("/", 1)[1]): r[2:4] for r in world.links()}
    assert by_author == {("103", "glaze"): ("skipped", "gated_user"),
                         ("103", "guest"): ("skipped", "gated_user"),
                         ("101", "glaze"): ("ok", None)}
    # Rechecked on every run; nothing is written again while the gate holds.
    assert world.run()["skipped"] == {"gated_user": 2}
    assert web.hits("/guest") == 0


def test_a_dm_is_analysed_only_while_its_consent_holds(world, web):
    url = web.page("/dm-link", GLAZE)
    world.ingest(dm([msg(0, PRIYA, f"look {url}")]), grant=("733",))
    assert world.cli("consent", "revoke", "733").exit_code == 0
    assert world.run()["skipped"] == {"no_consent": 1}
    assert web.paths() == []
    assert world.cli("consent", "grant", "733").exit_code == 0
    assert world.run()["links_analysed"] == 1
    assert web.hits("/dm-link") == 1


# ---------------------------------------------------------------- planning and limits
def test_dry_run_fetches_sends_and_writes_nothing(world, web, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    url = web.page("/glaze", GLAZE)
    with FakeOpenAI() as model:
        world.configure(extra=f'[models.reflection]\nmodel = "openai/gpt-4o-mini"\n'
                              f'api_base = "{model.base_url}"\n')
        world.ingest(public_export([msg(0, THEO, url), msg(1, MARA, f"{url} http://127.0.0.1:1/x")]))
        before = world.links()
        summary = world.run(dry_run=True)
        assert summary["would_analyse"] == {"images": 0, "files": 0, "links": 2, "link_rows": 3}
        assert summary["estimated_tokens"] > 0 and summary["estimated_cost_usd"] > 0
        assert (summary["links_analysed"], summary["tokens_used"]) == (0, 0)
        assert model.requests == []
    assert web.paths() == [] and world.links() == before


def test_limit_takes_the_newest_first_and_the_rest_stays_due(world, web):
    urls = [web.page(f"/p{i}", GLAZE) for i in range(5)]
    world.ingest(public_export([msg(i, THEO, url) for i, url in enumerate(urls)]))
    summary = world.run(limit=2)
    assert (summary["links_analysed"], summary["remaining"]) == (2, 3)
    assert [r[2] for r in world.links()] == ["pending"] * 3 + ["ok"] * 2
    assert world.run()["links_analysed"] == 3


def test_links_are_fetched_concurrently(world):
    with Web(latency=0.3) as slow:
        urls = [slow.page(f"/p{i}", GLAZE) for i in range(8)]
        world.ingest(public_export([msg(i, THEO, url) for i, url in enumerate(urls)]))
        import time

        started = time.monotonic()
        assert world.run(concurrency=8)["links_analysed"] == 8
        elapsed = time.monotonic() - started
    # 8 pages of 0.3 s each (+ robots.txt first): far less than one after the other.
    assert elapsed < 8 * 0.3 * 0.6, elapsed


def test_max_cost_stops_sending_and_leaves_the_rest_due(world, web, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    urls = [web.page(f"/p{i}", GLAZE) for i in range(4)]
    with FakeOpenAI() as model:
        world.configure(extra=f'[models.summary]\nmodel = "openai/gpt-4o-mini"\n'
                              f'api_base = "{model.base_url}"\n')
        world.ingest(public_export([msg(i, THEO, url) for i, url in enumerate(urls)]))
        summary = world.run(max_cost=0.0, concurrency=1)
        assert summary["skipped"] == {"max_cost": 4} and summary["remaining"] == 4
        assert model.requests == [] and web.paths() == []
        assert [r[2] for r in world.links()] == ["pending"] * 4
