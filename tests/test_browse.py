"""`zos browse` (docs/browse.md): the store served read-only, within scope, by name.

The servers here are the real `zos browse` in a subprocess on 127.0.0.1, asked over HTTP.
tests/test_browse_app.py builds the same Datasette app in-process (the read-only connection,
messages_fts, labels); tests/test_browse_browser.py is the browser test.
"""

from __future__ import annotations

import html
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.browse_world import (BARE_URL, DM_CANARY, TOKEN_CANARY, BrowseServer,
                                make_store)
from tests.conftest import run_zos

GUILD_NAME = "Test Guild"
QUERIES = ("top_salience", "person_insights", "topic_ledger", "recent_runs",
           "pending_analyses", "search_insights", "search_messages")
DATASETTE_PAGES = ("-/metadata", "-/versions", "-/plugins", "-/settings", "-/config",
                   "-/databases", "-/threads", "-/actor", "-/permissions", "-/patterns",
                   "-/allow-debug", "-/messages", "-/auth-token", "_memory", "_internal",
                   "zos.db")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("browse"))


@pytest.fixture(scope="module")
def public(store):
    """The default scope, with a bot token in the environment (it must never be served)."""
    with BrowseServer(store, env={"DISCORD_TOKEN": TOKEN_CANARY}) as server:
        yield server


@pytest.fixture(scope="module")
def dm(store):
    with BrowseServer(store, "--scope", "dm") as server:
        yield server


def get(server: BrowseServer, path: str, **params) -> httpx.Response:
    return server.client.get(server.url + path, params=params or None)


def rows(server: BrowseServer, query: str, **params) -> list[dict]:
    response = get(server, f"zos/{query}.json", _shape="array", **params)
    assert response.status_code == 200, response.text
    return response.json()


class _Page(HTMLParser):
    """A page's visible text and every URL it refers to (src, href, action, style url())."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append(value)
            if name == "style" and value and "url(" in value:
                self.urls.append(value)

    def handle_data(self, data):
        self.text.append(data)


def parse(body: str) -> _Page:
    page = _Page()
    page.feed(body)
    return page


def visible(body: str) -> str:
    return " ".join(parse(body).text)


# ---------------------------------------------------------------- without Datasette
BLOCKER = '''
import sys

class _NoDatasette:
    """As if the browse extra were not installed."""
    def find_spec(self, name, path=None, target=None):
        if name == "datasette" or name.startswith("datasette."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoDatasette())
'''


def test_without_datasette_browse_exits_78_naming_the_install_command(tmp_path, db_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCKER)
    env = {"PYTHONPATH": str(shim)}
    probe = subprocess.run([sys.executable, "-c", "import datasette"], capture_output=True,
                           text=True, env={**os.environ, **env})
    assert probe.returncode != 0 and "datasette" in probe.stderr  # the shim does block it
    assert run_zos("--db", str(db_path), "status", "--json", env=env).returncode == 0
    done = run_zos("--db", str(db_path), "browse", env=env, timeout=60)
    assert done.returncode == 78
    assert done.stderr == ("Error: zos browse needs Datasette, an optional extra: "
                           "pip install 'zos[browse]'\n")
    assert done.stdout == ""


def test_a_scope_that_is_not_one_is_a_usage_error(db_path):
    done = run_zos("--db", str(db_path), "browse", "--scope", "everything")
    assert done.returncode == 2
    assert done.stderr == "Error: --scope 'everything': choose public, dm or derived\n"


def test_a_port_in_use_is_exit_75(db_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_zos("--db", str(db_path), "browse", "--port", str(port))
    assert done.returncode == 75
    assert done.stderr == (f"Error: port {port} on 127.0.0.1 is in use: give --port another "
                           "number, or 0 for any free one\n")


def test_a_missing_database_is_exit_66(tmp_path):
    done = run_zos("--db", str(tmp_path / "none.db"), "browse")
    assert done.returncode == 66
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_server_exits_0(store, stop):
    with BrowseServer(store, stop=stop) as server:
        assert get(server, "").status_code == 200
    assert server.returncode == 0, server.stderr
    assert "Traceback" not in server.stderr


# ---------------------------------------------------------------- what is shown
def test_the_front_page_names_people_and_shows_insights(public, store):
    body = get(public, "").text
    text = visible(body)
    for name in ("Alice", "Bob", "Carol"):
        assert f"{name} ({GUILD_NAME})" in text
    assert store.public_insight[:60] in text
    assert f"#general ({GUILD_NAME})" in text
    assert "scope: public" in text.lower() or "Scope: public" in text
    # Dave lacks the privacy-gate role: he is <chat_N>, never named.
    assert "<chat_" in text
    assert "dave" not in body.lower()


def test_labels_stand_in_place_of_keys(public, store):
    body = get(public, "zos/top_salience").text
    alice = store.user_key("alice")
    assert f'href="/-/zos/topic/{alice}"' in body
    text = visible(body)
    assert f"Alice ({GUILD_NAME})" in text
    assert f"Alice ↔ Bob ({GUILD_NAME})" in text
    assert "Alice in #general" in text
    assert alice not in text and "server:1001:" not in text
    # The JSON keeps the key: it is data.
    assert alice in [r["topic"] for r in rows(public, "top_salience")]


def test_a_person_page_has_insights_and_a_balance_chart(public, store):
    response = get(public, f"-/zos/topic/{store.user_key('alice')}")
    assert response.status_code == 200
    body = response.text
    assert f"<h1>Alice ({GUILD_NAME})</h1>" in body
    assert html.escape(store.public_insight[:60]) in body
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="zos-chart"' in body
    assert "<polyline" in body and "<script" not in body.split("<svg", 1)[1].split("</svg>")[0]
    assert f"Alice ↔ Bob ({GUILD_NAME})" in visible(body)  # closest
    assert get(public, "-/zos/topic/server:1001:user:424242").status_code == 404
    assert get(public, "-/zos/topic/not-a-key").status_code == 404


def test_why_a_topic_is_hot_is_its_ledger_ending_in_its_balance(public, store):
    key = store.user_key("alice")
    ledger = rows(public, "topic_ledger", topic=key)
    balance = next(r["balance"] for r in rows(public, "top_salience") if r["topic"] == key)
    assert ledger and {"earn"} <= {r["transaction_type"] for r in ledger}
    assert ledger[0]["balance_after"] == pytest.approx(balance, abs=0.01)  # newest first


def test_recent_runs_show_their_cost_and_pending_analyses_their_place(public, dm):
    runs = rows(public, "recent_runs")
    assert len(runs) == 6 and {r["layer"] for r in runs} == {"user", "channel"}
    assert all(r["status"] == "completed" and r["cost_usd"] == 0 for r in runs)
    pending = rows(public, "pending_analyses")
    assert pending and {r["kind"] for r in pending} == {"link"}
    assert {r["channel"] for r in pending} <= {"#general", "#random"}


# ---------------------------------------------------------------- scope and privacy
PUBLIC_PAGES = ("", "zos/top_salience", "zos/recent_runs", "zos/pending_analyses",
                "-/zos/topic/user:102", "-/zos/topic/server:1001:user:102",
                "zos/person_insights?person=bob", "zos/search_insights?q=messages",
                "zos/search_messages?q=recipe", "zos/search_messages.json?q=recipe")


def test_public_scope_never_shows_a_dm_or_a_dm_insight(public, store):
    for path in PUBLIC_PAGES:
        body = get(public, path).text
        assert DM_CANARY not in body, path
        assert store.dm_insight[:50] not in html.unescape(body), path
    assert rows(public, "search_messages", q="recipe") == []
    assert rows(public, "search_messages", q=DM_CANARY) == []
    about_bob = rows(public, "person_insights", person="bob")
    assert about_bob and {r["scope"] for r in about_bob} == {"public"}
    assert store.dm_insight not in [r["insight"] for r in about_bob]


def test_scope_dm_widens_to_dms_and_dm_insights(dm, store):
    found = rows(dm, "search_messages", q="recipe")
    assert [r["message"] for r in found] == [f"{DM_CANARY} my glaze recipe is a secret"]
    assert found[0]["channel"] == "direct messages" and found[0]["author"] == "Bob"
    about_bob = rows(dm, "person_insights", person="bob")
    assert store.dm_insight in [r["insight"] for r in about_bob]
    assert store.dm_insight[:50] in html.unescape(get(dm, "-/zos/topic/user:102").text)
    assert "public and dm" in get(dm, "").text


def test_gated_people_are_chat_n_and_cannot_be_found_by_name(public, store):
    assert rows(public, "person_insights", person="dave") == []
    by_dave = [r for r in rows(public, "search_messages", q="dave talks")]
    assert by_dave and {r["author"] for r in by_dave} == {"<chat_1>"}
    body = get(public, f"-/zos/topic/{store.user_key('dave')}").text
    assert "<h1>&lt;chat_1&gt; (Test Guild)</h1>" in body and "dave" not in body.lower()


def test_a_message_that_is_a_url_is_text_not_a_link(public):
    body = get(public, "zos/search_messages", q="glaze.example.org").text
    assert BARE_URL in visible(body)
    assert f'href="{BARE_URL}"' not in body


# ---------------------------------------------------------------- what is never served
def test_raw_tables_and_views_are_not_reachable(public, store):
    conn = sqlite3.connect(store.db_path)
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
    message_id = conn.execute("SELECT id FROM messages LIMIT 1").fetchone()[0]
    conn.close()
    assert {"messages", "insights", "active_insights", "topic_salience", "consents"} <= set(names)
    for name in names:
        for suffix in ("", ".json", ".csv"):
            response = get(public, f"zos/{name}{suffix}")
            assert response.status_code in (403, 404), (name, suffix, response.status_code)
    assert get(public, f"zos/messages/{message_id}").status_code in (403, 404)
    assert get(public, f"zos/messages/{message_id}.json").status_code in (403, 404)
    for path in DATASETTE_PAGES:
        assert get(public, path).status_code in (403, 404), path
    # The store's own page lists the canned queries and no table.
    page = get(public, "zos.json").json()
    assert {q["name"] for q in page["queries"]} == set(QUERIES)
    assert page["tables"] == [] and page["views"] == []


def test_arbitrary_sql_is_refused(public):
    sql = "select content from messages"
    for path in ("zos", "zos.json", "zos.csv"):
        response = get(public, path, sql=sql)
        assert response.status_code in (403, 404), path
        assert DM_CANARY not in response.text
    # A canned query runs its own SQL, whatever a URL says.
    assert all("content" not in r for r in rows(public, "top_salience", sql=sql))
    posted = public.client.post(public.url + "zos/top_salience", data={"sql": sql})
    assert posted.status_code in (403, 404, 405)


def _crawl(server: BrowseServer) -> dict[str, str]:
    """The front page, every page it links to on this server, each canned query (HTML and
    JSON), and the static assets they load."""
    seen: dict[str, str] = {}
    todo = [server.url] + [f"{server.url}zos/{q}" for q in QUERIES] + [
        f"{server.url}zos/{q}.json" for q in QUERIES]
    while todo and len(seen) < 120:
        url = todo.pop(0)
        if url in seen:
            continue
        body = server.client.get(url).text
        seen[url] = body
        if url.endswith(".json") or url.endswith(".css"):
            continue
        for ref in parse(body).urls:
            target = urljoin(url, ref)
            if target.startswith(server.url) and "#" not in ref:
                todo.append(target)
    return seen


def test_no_page_holds_the_token_or_an_outside_url(public):
    pages = _crawl(public)
    assert len(pages) > 20 and any("/-/static/" in url for url in pages)
    assert any("/-/zos/topic/" in url for url in pages)
    origin = urlsplit(public.url).netloc
    for url, body in pages.items():
        assert TOKEN_CANARY not in body, url
        if url.endswith(".json"):
            continue
        for ref in parse(body).urls:
            target = urlsplit(urljoin(url, ref))
            assert target.scheme in ("http", "") and target.netloc == origin, (url, ref)
        assert "@import" not in body and "url(http" not in body.replace(" ", ""), url
