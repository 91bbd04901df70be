"""A `zos analyze` run (zos_cli.analyze.run) on real SQLite, against a web server on
127.0.0.1 and the fake OpenAI server: one fetch per URL, statuses and retries, the privacy
gates, image deduplication within a scope, the cost cap, dry runs and the thread pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.analyze_web import (GUEST, MARA, PRIYA, THEO, ZOS, Web, article, attachment,
                               config_text, dm, msg, png_bytes, public_export)
from tests.exports import dm_export, user
from tests.fake_openai import DEFAULT_DESCRIPTION, DEFAULT_SUMMARY, FakeOpenAI, Reply
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


# ---------------------------------------------------------------- images and files
@pytest.fixture
def vision(world, monkeypatch):
    """A vision model (the fake server) configured for the world."""
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as model:
        world.configure(extra=f'[models.vision]\nmodel = "openai/fake-vision"\n'
                              f'api_base = "{model.base_url}"\n')
        yield model


def image_message(minute, author, web, path, data, name="kiln.png", id=None):
    url = web.image(path, data)
    return msg(minute, author, "look", attachments=[
        attachment(id or f"90{int(minute * 10)}", url, name, len(data))])


def test_the_same_bytes_are_described_once_across_messages(world, web, vision):
    png = png_bytes(64, 48)
    world.ingest(public_export([image_message(0, THEO, web, "/a.png", png),
                                image_message(1, MARA, web, "/b.png", png),
                                image_message(2, THEO, web, "/c.png", png_bytes(30, 30))]))
    summary = world.run(concurrency=4)
    assert (summary["media_analysed"], summary["errors"]) == (3, [])
    assert len(vision.requests) == 2  # two different images
    assert summary["tokens_used"] > 0
    rows = world.media()
    assert {r[7] for r in rows} == {DEFAULT_DESCRIPTION}
    assert {r[8] for r in rows} == {"openai/fake-vision"}
    assert [(r[5], r[6]) for r in rows] == [(64, 48), (64, 48), (30, 30)]
    served = world.db.execute(
        "SELECT count(*) FROM llm_call_sources WHERE source_type = 'media'").fetchone()[0]
    assert served == 3  # one call tied to both rows it described, one to the third
    # A later message with the same bytes takes the stored description: no call.
    world.ingest(public_export([image_message(3, MARA, web, "/d.png", png, id="999")],
                               channel_id="2002"))
    assert world.run()["media_analysed"] == 1
    assert len(vision.requests) == 2
    # Nothing is kept of the bytes but their hash.
    assert all(r[4] for r in world.media())


def test_a_dm_description_never_shows_on_a_public_message(world, web, vision):
    png = png_bytes(50, 50, (10, 200, 10))
    world.ingest(dm([image_message(0, PRIYA, web, "/dm.png", png, id="801")]), grant=("733",))
    vision.enqueue(Reply(content={"description": "A private photo from a DM."}))
    assert world.run()["media_analysed"] == 1
    # The same bytes posted publicly later: described again, for the public scope.
    world.ingest(public_export([image_message(1, THEO, web, "/pub.png", png, id="802")]))
    assert world.run()["media_analysed"] == 1
    assert len(vision.requests) == 2
    by_author = {r[0]: r[7] for r in world.media()}
    assert by_author == {"733": "A private photo from a DM.", "101": DEFAULT_DESCRIPTION}
    # The same DM posting them again takes its own description: no call.
    world.ingest(dm([image_message(2, PRIYA, web, "/dm2.png", png, id="803")]))
    assert world.run()["media_analysed"] == 1
    assert len(vision.requests) == 2
    # Another DM is another scope: public first, then that DM: its own call again.
    jun = user("894", "junbug")
    other = dm_export("4002", "junbug", messages=[image_message(3, jun, web, "/j.png", png,
                                                                id="804")])
    world.ingest(other, grant=("894",))
    vision.enqueue(Reply(content={"description": "Described for Jun's DM."}))
    assert world.run()["media_analysed"] == 1
    assert len(vision.requests) == 3
    assert [r[7] for r in world.media()] == [
        "A private photo from a DM.", DEFAULT_DESCRIPTION, "A private photo from a DM.",
        "Described for Jun's DM."]


def test_offline_descriptions_then_a_model_replaces_them(world, web, monkeypatch):
    world.ingest(public_export([image_message(0, THEO, web, "/k.png", png_bytes(64, 48),
                                              name="kiln-frame-5F3A9.png")]))
    assert world.run()["media_analysed"] == 1
    (row,) = world.media()
    assert row[7].startswith("PNG image, 64×48") and row[7].endswith("kiln-frame-5F3A9.png")
    assert row[8] == "offline"
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI() as model:
        world.configure(extra=f'[models.reflection]\nmodel = "openai/fake-vision"\n'
                              f'api_base = "{model.base_url}"\n')
        assert world.run(links=False)["media_analysed"] == 1
        assert len(model.requests) == 1
    assert world.media()[0][7:] == (DEFAULT_DESCRIPTION, "openai/fake-vision")


def test_gated_users_images_are_neither_fetched_nor_sent(world, web, vision):
    world.configure(gate=True, extra=world.config_path.read_text().split("[analysis]\n")[1]
                    .split("\n", 1)[1])
    world.ingest(public_export([image_message(0, GUEST, web, "/guest.png", png_bytes())]))
    summary = world.run()
    assert (summary["media_analysed"], summary["skipped"]) == (0, {"gated_user": 1})
    assert web.paths() == [] and vision.requests == []
    assert world.media()[0][2:4] == ("skipped", "gated_user")


def test_files_missing_assets_and_expired_urls(world, web):
    wav = web.image("/take1.wav", b"RIFF....", "audio/wav")
    gone = web.fail("/gone.png", 404)
    world.ingest(public_export([msg(0, THEO, "files", attachments=[
        attachment("1", wav, "take1.wav", 5000),
        attachment("2", gone, "old.png", 100),
        attachment("3", "general.json_Files/missing-1.png", "missing.png", 100)])]))
    summary = world.run()
    assert summary["media_analysed"] == 1
    assert summary["skipped"] == {"http_error": 1, "missing_file": 1}
    rows = {r[1]: r[2:4] + r[7:] for r in world.media()}
    assert rows["old.png"] == ("skipped", "http_error", "", None)
    assert rows["missing.png"] == ("skipped", "missing_file", "", None)
    assert rows["take1.wav"][:2] == ("ok", None) and rows["take1.wav"][3] == "offline"
    assert "take1.wav" in rows["take1.wav"][2]
    assert "/take1.wav" not in web.paths()  # a file that is no image is not downloaded


def test_dry_run_estimates_images_and_sends_nothing(world, web, vision):
    world.ingest(public_export([image_message(i, THEO, web, f"/{i}.png", png_bytes(10 + i, 10))
                                for i in range(3)]))
    summary = world.run(dry_run=True)
    assert summary["would_analyse"]["images"] == 3
    assert summary["estimated_tokens"] > 3 * 700
    assert web.paths() == [] and vision.requests == []
    assert {r[2] for r in world.media()} == {"pending"}


def test_max_cost_stops_image_descriptions(world, web, vision):
    priced = world.config_path.read_text().replace("openai/fake-vision", "openai/gpt-4o-mini")
    world.config_path.write_text(priced)  # (a model litellm knows the price of)
    world.ingest(public_export([image_message(i, THEO, web, f"/{i}.png", png_bytes(10 + i, 10))
                                for i in range(3)]))
    summary = world.run(max_cost=0.0)
    assert summary["skipped"] == {"max_cost": 3} and vision.requests == []
    assert {r[2] for r in world.media()} == {"pending"}


def test_the_examples_local_asset_is_read_and_no_outside_name_is_looked_up(cli, db):
    from tests.conftest import EXAMPLES

    result = cli("--config", str(EXAMPLES / "zos.toml"), "ingest", str(EXAMPLES / "export"))
    assert result.exit_code == 0, result.stderr
    looked_up = []

    def no_dns(host: str, port: int) -> list[str]:
        looked_up.append(host)
        raise OSError("no lookups in tests")

    config = load_config(EXAMPLES / "zos.toml", explicit=True)
    summary = analyze(db, config, AnalyzeOptions(links=False), resolver=no_dns)
    rows = {name: (status, reason, path, description) for name, status, reason, path,
            description in db.execute("SELECT file_name, status, skip_reason, local_path, "
                                      "description FROM media_analysis")}
    kiln = rows.pop("kiln-frame.png")
    assert kiln[:2] == ("ok", None) and kiln[2].endswith("kiln-frame-5F3A9.png")
    assert kiln[3].startswith("PNG image, 640×480")
    # The other attachments have CDN URLs: the injected resolver refused them.
    assert {r[:2] for r in rows.values()} == {("skipped", "unreachable")}
    assert set(looked_up) == {"cdn.discordapp.com"}
    assert summary["media_analysed"] == 1
