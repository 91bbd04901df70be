"""The Datasette plugin of `zos browse`: what is served, and how it stays read-only and within
scope.

Four locks, each enough on its own for what it guards:
- paths: every request outside a short allow-list (zos's pages, the canned queries, the
  static assets) is a 404, and only GET/HEAD is answered (`asgi_wrapper`);
- permissions: no raw table or view, no arbitrary SQL, no download, no debug page, only the
  canned queries of the store (`permission_allowed`, run last so that it decides);
- the connection: read-only (`mode=ro`, `PRAGMA query_only`), opened by serve.py's
  `ReadOnlyStore`; zos's SQL functions are defined on it here (`prepare_connection`);
- the scope: fixed when the server starts and written into the canned queries' SQL
  (queries.py); no URL parameter names it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from html import escape

from datasette import hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup

from zos_cli import strength, topics
from zos_cli.browse import pages
from zos_cli.browse.labels import BrowseLabels, ServeLabels
from zos_cli.browse.queries import scope_text
from zos_cli.salience.clock import data_clock
from zos_cli.timeutil import now_stored

STORE = "zos"            # the store's name in URLs: /zos/<query>
LABELLED_COLUMNS = ("topic", "source_topic")   # cells holding a topic key, shown as its label
TEXT_COLUMNS = ("message", "insight")          # people's words: shown as text, never as a link


@dataclass
class BrowseSettings:
    """What one `zos browse` serves, fixed at start."""

    scope: str
    query_names: frozenset[str]
    labels: ServeLabels              # one Labeler for the whole server (zos_cli/labels)
    half_lives: object = None        # [insights] half-lives; None: the built-in ones

    def allowed_path(self, path: str) -> bool:
        return any(p.fullmatch(path) for p in self._patterns)

    def __post_init__(self) -> None:
        queries = "|".join(re.escape(q) for q in sorted(self.query_names))
        self._patterns = [re.compile(p) for p in (
            r"/", r"/favicon\.ico", r"/-/static/[A-Za-z0-9_.-]+",
            rf"/{STORE}(\.json)?", rf"/{STORE}/({queries})(\.(json|csv))?",
            re.escape(pages.TOPIC_PATH) + r"[^/]+")]


def settings_of(datasette) -> BrowseSettings | None:
    return getattr(datasette, "zos_browse", None)


def fts_query(text: str | None) -> str:
    """Each word as a quoted FTS5 string (operators in the visitor's text are searched for,
    not parsed); `""` (matches nothing) for no words."""
    words = [w.replace('"', '""') for w in (text or "").split()]
    return " ".join(f'"{w}"' for w in words) or '""'


def labels_for(conn, settings: BrowseSettings) -> BrowseLabels:
    return BrowseLabels(conn, settings.labels)


class _DataClock:
    """`zos_as_of()`: the newest stored message's time (what `insights list` fades to), read
    again at most every few seconds, not once per row."""

    def __init__(self, conn) -> None:
        self.conn, self.value, self.read_at = conn, None, 0.0

    def __call__(self) -> str:
        if self.value is None or time.monotonic() - self.read_at > 5:
            self.value, self.read_at = data_clock(self.conn) or now_stored(), time.monotonic()
        return self.value


@hookimpl
def prepare_connection(conn, database, datasette):
    settings = settings_of(datasette)
    if settings is None or database != STORE:
        return
    labels = labels_for(conn, settings)
    conn.create_function("zos_label", 1, lambda key: labels.topic(key) if key else None)
    conn.create_function("zos_user", 2, labels.user)
    conn.create_function("zos_channel", 2, labels.channel)
    conn.create_function("zos_hidden", 1, lambda user_id: int(labels.hidden(user_id)))
    conn.create_function("zos_readable", 3, labels.readable)
    conn.create_function("zos_fts", 1, fts_query, deterministic=True)
    conn.create_function("zos_as_of", 0, _DataClock(conn))
    strength.register(conn, settings.half_lives)
    conn.execute("PRAGMA query_only = 1")


@hookimpl(trylast=True)
def permission_allowed(datasette, actor, action, resource):
    """Called after every other plugin, so this answer is the one used."""
    settings = settings_of(datasette)
    if settings is None:
        return None
    if action == "view-instance":
        return True
    if action == "view-database":
        return resource == STORE
    if action == "view-query":
        return (isinstance(resource, (tuple, list)) and tuple(resource)[0] == STORE
                and tuple(resource)[1] in settings.query_names)
    return False  # view-table (every table and view), execute-sql, downloads, debug pages


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def guarded(scope, receive, send):
            settings = settings_of(datasette)
            if settings is not None and scope["type"] == "http" and (
                    scope["method"] not in ("GET", "HEAD")
                    or not settings.allowed_path(scope["path"])):
                await Response.text("Not found: zos browse serves its pages and canned "
                                    "queries only.", status=404).asgi_send(send)
                return
            await app(scope, receive, send)
        return guarded
    return wrap


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    """A topic key in a query's result is shown as its label, linked to its page; a message
    or an insight as plain text (Datasette would link a cell that is one URL)."""
    settings = settings_of(datasette)
    if settings is None or database != STORE or not isinstance(value, str):
        return None
    if column in TEXT_COLUMNS:
        return Markup(escape(value))
    if column not in LABELLED_COLUMNS or not topics.is_valid(value):
        return None

    async def link():
        label = await datasette.get_database(STORE).execute_fn(
            lambda conn: conn.execute("SELECT zos_label(?)", [value]).fetchone()[0])
        return Markup(f'<a href="{escape(pages.topic_href(value))}" '
                      f'title="{escape(value)}">{escape(label)}</a>')
    return link()


@hookimpl
def extra_template_vars(datasette):
    settings = settings_of(datasette)
    if settings is None:
        return {}
    return {"zos_scope": settings.scope, "zos_scope_text": scope_text(settings.scope)}


@hookimpl
def register_routes(datasette):
    return [(r"^/$", home_view), (r"^" + re.escape(pages.TOPIC_PATH) + r"(?P<key>[^/]+)$",
                                  topic_view)]


async def home_view(datasette, request):
    settings = settings_of(datasette)
    if settings is None:
        return Response.text("Not found", status=404)
    data = await datasette.get_database(STORE).execute_fn(
        lambda conn: pages.home(conn, labels_for(conn, settings), settings.scope))
    queries = (await datasette.get_canned_queries(STORE, request.actor)).values()
    return Response.html(await datasette.render_template(
        "zos_home.html", {**data, "queries": list(queries), "store": STORE},
        request=request))


async def topic_view(datasette, request):
    settings = settings_of(datasette)
    if settings is None:
        return Response.text("Not found", status=404)
    key = request.url_vars["key"]
    data = await datasette.get_database(STORE).execute_fn(
        lambda conn: pages.topic_page(conn, labels_for(conn, settings), settings.scope, key))
    if data is None:
        return Response.html(await datasette.render_template(
            "zos_missing.html", {"key": key}, request=request), status=404)
    from zos_cli.browse.chart import balance_chart

    chart = Markup(balance_chart(data["history"], title=data["label"]))
    return Response.html(await datasette.render_template(
        "zos_topic.html", {**data, "chart": chart, "store": STORE}, request=request))
