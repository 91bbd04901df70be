"""A small web server on 127.0.0.1 for the `zos analyze` tests and benchmark, and the world
they read: exports whose links and attachments point at it.

    with Web() as web:
        web.page("/glaze", "<html>…</html>")
        web.image("/kiln.png", png_bytes(64, 48))
        ... web.url("/glaze") ...
        web.paths()   # every request, in order (robots.txt included)

Real HTTP over real sockets; `latency` delays every answer (the benchmark's 200 ms).
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.exports import Export, dm_export, message, snowflake, user


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    delay: float = 0.0
    headers: dict | None = None


class Web:
    def __init__(self, *, latency: float = 0.0, robots: str | None = "User-agent: *\nAllow: /\n"):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []  # (path, user agent)
        self.latency = latency
        self._lock = threading.Lock()
        if robots is not None:
            self.routes["/robots.txt"] = Route(body=robots.encode(), content_type="text/plain")
        self._server: ThreadingHTTPServer | None = None

    # -- what it serves -------------------------------------------------------------------
    def page(self, path: str, html: str, **kwargs) -> str:
        self.routes[path] = Route(body=html.encode(), **kwargs)
        return self.url(path)

    def image(self, path: str, data: bytes, content_type: str = "image/png", **kwargs) -> str:
        self.routes[path] = Route(body=data, content_type=content_type, **kwargs)
        return self.url(path)

    def fail(self, path: str, status: int) -> str:
        self.routes[path] = Route(status=status, body=b"no")
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        with self._lock:
            return [p for p, _ua in self.requests]

    def hits(self, path: str) -> int:
        return self.paths().count(path)

    # -- running ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Web:
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                with web._lock:
                    web.requests.append((self.path, self.headers.get("User-Agent", "")))
                route = web.routes.get(self.path, Route(status=404, body=b"not here"))
                delay = web.latency + route.delay
                if delay:
                    time.sleep(delay)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in (route.headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Web:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def png_bytes(width: int = 64, height: int = 48, color=(200, 80, 40), fmt: str = "PNG") -> bytes:
    """A real image made with Pillow (a different color: different bytes)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, fmt)
    return out.getvalue()


def article(title: str, text: str, description: str | None = None) -> str:
    meta = f'<meta name="description" content="{description}">' if description else ""
    paragraphs = "".join(f"<p>{line}</p>" for line in text.split("\n"))
    return (f"<html><head><title>{title}</title>{meta}</head><body><article><h1>{title}</h1>"
            f"{paragraphs}</article></body></html>")


# -- the people and places of the tests ------------------------------------------------------
ZOS = user("900", "zos", bot=True)
THEO = user("101", "theo", roles=[{"id": "7001", "name": "member", "color": None,
                                   "position": 1}])
MARA = user("102", "mara", roles=[{"id": "7001", "name": "member", "color": None,
                                   "position": 1}])
GUEST = user("103", "guest")  # no member role: outside a gate on role 7001
PRIYA = user("733", "priya_k")
SERVER_ID = "1001"
GATE_ROLE = "7001"


def attachment(id: str, url: str, file_name: str, size: int = 1000) -> dict:
    return {"id": id, "url": url, "fileName": file_name, "fileSizeBytes": size}


def public_export(messages: list[dict], channel_id: str = "2001") -> Export:
    return Export(channel_id=channel_id, guild_id=SERVER_ID, messages=messages)


def dm(messages: list[dict]) -> Export:
    return dm_export("4001", "priya_k", messages=messages)


def msg(minute: float, author: dict, content: str = "", **kwargs) -> dict:
    return message(snowflake(minute), author, content, **kwargs)


def config_text(*, private: bool = True, gate: bool = False, extra: str = "") -> str:
    """zos.toml for these tests: zos's own id; 127.0.0.1 fetchable when `private`."""
    text = '[discord]\nself_user_id = "900"\n'
    text += f"[analysis]\nallow_private_addresses = {'true' if private else 'false'}\n"
    text += extra
    if gate:
        text += f'[servers."{SERVER_ID}"]\nprivacy_gate_role = "{GATE_ROLE}"\n'
    return text
