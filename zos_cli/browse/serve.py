"""`zos browse`: the store in a local web page, read-only, through Datasette.

Datasette is an optional extra (`pip install 'zos[browse]'`); without it `serve` raises a
ConfigError (78) that names the install command. The socket is bound here before the server
starts, so a busy port or a bad host is a zos error, and `--port 0` picks a free port (the
URL reports the one chosen).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zos_cli.browse.queries import check_scope, metadata
from zos_cli.errors import ConfigError, TemporaryFailure, UsageProblem

INSTALL = "pip install 'zos[browse]'"
TEMPLATES = Path(__file__).with_name("templates")
# Datasette settings: nothing but the canned queries, no downloads, no facets, no caching
# (the store changes while a page is open), more time for labels made in Python.
SETTINGS = {
    "default_allow_sql": False, "allow_download": False, "allow_facet": False,
    "suggest_facets": False, "allow_csv_stream": False, "template_debug": False,
    "trace_debug": False, "default_cache_ttl": 0, "sql_time_limit_ms": 5000,
}


@dataclass(frozen=True)
class BrowseOptions:
    host: str = "127.0.0.1"
    port: int = 8001
    scope: str = "public"
    open_browser: bool = False


def require_datasette():
    """The Datasette class, or the 78 that says how to install it."""
    try:
        from datasette.app import Datasette
    except ImportError:
        raise ConfigError(f"zos browse needs Datasette, an optional extra: {INSTALL}") from None
    return Datasette


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageProblem(f"--host {host!r} is not an address zos can listen on ({exc})")
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise TemporaryFailure(f"port {port} on {host} is in use: give --port another "
                                   "number, or 0 for any free one")
        raise UsageProblem(f"cannot listen on {host}:{port} ({exc.strerror or exc})")
    sock.set_inheritable(True)
    return sock


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write: `mode=ro`, and `query_only` besides."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True,
                           check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn


def build(db_path: Path, options: BrowseOptions, *, config=None, half_lives=None):
    """The Datasette app serving the store at `db_path` (read-only, within the scope)."""
    Datasette = require_datasette()
    from datasette.database import Database
    from datasette.plugins import DEFAULT_PLUGINS, pm

    from zos_cli.browse import plugin
    from zos_cli.browse.labels import ServeLabels

    scope = check_scope(options.scope)

    class ReadOnlyStore(Database):
        """Every connection read-only (`mode=ro`); a write connection is never opened."""

        def connect(self, write=False):
            if write:
                raise sqlite3.OperationalError("zos browse is read-only")
            conn = read_only(Path(self.path))
            self._all_file_connections.append(conn)
            return conn

    # Only Datasette's own plugins and this one: another installed plugin could add pages.
    for name, other in list(pm.list_name_plugin()):
        if name not in DEFAULT_PLUGINS and other is not plugin:
            pm.unregister(other)
    if not pm.is_registered(plugin):
        pm.register(plugin, name="zos-browse")
    meta = metadata(scope, plugin.STORE)
    ds = Datasette(files=[], metadata=meta, settings=SETTINGS, template_dir=str(TEMPLATES))
    ds.zos_browse = plugin.BrowseSettings(
        scope=scope, query_names=frozenset(meta["databases"][plugin.STORE]["queries"]),
        labels=ServeLabels(read_only(db_path), config), half_lives=half_lives)
    if "_memory" in ds.databases:
        ds.remove_database("_memory")  # (the in-memory database Datasette adds with no files)
    ds.add_database(ReadOnlyStore(ds, path=str(db_path), is_mutable=True), name=plugin.STORE)
    asyncio.run(ds.invoke_startup())
    return ds


def serve(db_path: Path, options: BrowseOptions, *, config=None, half_lives=None,
          on_listening: Callable[[str], None],
          warn: Callable[[str], None], access_log: bool = False) -> None:
    """Serve until interrupted. `on_listening(url)` is called once the socket listens."""
    require_datasette()
    check_scope(options.scope)
    if not is_loopback(options.host):
        warn(f"serving on {options.host}: anyone who can reach this address can read what "
             f"scope {options.scope} shows, with no login (see docs/browse.md)")
    sock = bind(options.host, options.port)
    try:
        ds = build(db_path, options, config=config, half_lives=half_lives)
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(
            ds.app(), log_level="info" if access_log else "warning", access_log=access_log,
            lifespan="on"))
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        on_listening(url)
        if options.open_browser:
            import webbrowser

            threading.Timer(0.5, webbrowser.open, [url]).start()
        # uvicorn stops gracefully on Ctrl-C (SIGINT) and SIGTERM, then raises the signal
        # again for the handler it found: these, so that stopping the server is exit 0.
        previous = {s: signal.signal(s, lambda _signum, _frame: None)
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    finally:
        sock.close()
