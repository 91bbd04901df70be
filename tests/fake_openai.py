"""A fake OpenAI-compatible chat-completions server for tests and benchmarks.

It runs on 127.0.0.1 in a background thread (real HTTP, real sockets) and speaks just enough of
`POST /v1/chat/completions` for litellm's `openai/...` provider. What it answers is scripted:

- `server.enqueue(Reply(...))` queues answers served in order; when the queue is empty the
  `default` callable builds the answer from the request (by default: one valid insight for a
  reflection, and for the analysis requests of `zos analyze`, told apart by their
  `response_format` name, a valid `{"description": ...}` or `{"summary": ...}`;
  `echo_reply` quotes the prompt's data back into the insight).
- Messages may carry content parts, as OpenAI's vision models take them: `{"type": "text"}`
  and `{"type": "image_url", "image_url": {"url": "data:<mime>;base64,..."}}`. An image part
  whose data URL does not decode is answered 400, as a provider would;
  `LoggedRequest.images` gives the decoded (mime, bytes) of each image sent and
  `prompt_text` the text alone.
- A `Reply` can carry a status (429, 500…), a raw body (malformed JSON), a delay (latency or a
  client timeout), usage tokens and headers (`Retry-After`).
- `server.requests` logs every request (body, headers looked up in any case, start and end
  times); `max_in_flight` records the highest number of requests being answered at once (the
  concurrency check).

Usage:
    with FakeOpenAI() as server:
        server.enqueue(Reply(status=429))
        ... litellm.completion(model="openai/fake-model", api_base=server.base_url, ...)
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer. `content` is the assistant message text (a dict/list is dumped as
    JSON); `body` replaces the whole HTTP body (for malformed responses); `status` != 200
    sends an OpenAI-style error object unless `body` is given."""

    content: Any = None
    status: int = 200
    body: str | bytes | None = None
    delay: float = 0.0
    prompt_tokens: int | None = None       # None: about chars/4 of the request's messages
    completion_tokens: int | None = None   # None: about chars/4 of the content
    headers: dict[str, str] = field(default_factory=dict)


class Headers(Mapping[str, str]):
    """A request's headers, looked up by name in any case: HTTP header names are
    case-insensitive, and clients (litellm, openai, httpx) change the case they send between
    releases. Keeps the names as sent for iteration; a repeated name keeps its last value."""

    def __init__(self, pairs: Mapping[str, str] | list[tuple[str, str]] = ()):
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        self._items = {name.lower(): (name, value) for name, value in items}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _value in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass
class LoggedRequest:
    path: str
    headers: Headers
    body: dict
    started: float
    finished: float | None = None
    status: int | None = None

    @property
    def prompt_text(self) -> str:
        """The text of every message (text parts of a multi-part message; no image data)."""
        return "\n".join(_text_of(m) for m in self.body.get("messages", []))

    @property
    def image_parts(self) -> list[dict]:
        return [p for m in self.body.get("messages", []) for p in _parts(m)
                if p.get("type") == "image_url"]

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of each image sent as a data URL, in order."""
        decoded = (_decode_data_url(p) for p in self.image_parts)
        return [image for image in decoded if image is not None]

    @property
    def response_format_name(self) -> str | None:
        return ((self.body.get("response_format") or {}).get("json_schema") or {}).get("name")


# What a provider counts for one image of at most 1024 px (OpenAI: 85 + 170 per 512 px tile).
IMAGE_TOKENS = 765


def _parts(message: dict) -> list[dict]:
    content = message.get("content")
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _text_of(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in _parts(message)
                         if p.get("type") == "text")
    return str(content)


def _decode_data_url(part: dict) -> tuple[str, bytes] | None:
    url = str((part.get("image_url") or {}).get("url", ""))
    head, comma, data = url.partition(",")
    if not (url.startswith("data:") and comma and head.endswith(";base64")):
        return None
    try:
        return head[len("data:"):-len(";base64")], base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _prompt_tokens(request: dict) -> int:
    messages = request.get("messages", [])
    chars = sum(len(_text_of(m)) for m in messages)
    images = sum(1 for m in messages for p in _parts(m) if p.get("type") == "image_url")
    return max(1, chars // 4) + IMAGE_TOKENS * images


def valid_answer(count: int = 1, **overrides: Any) -> dict:
    """A schema-valid reflection answer with `count` insights."""
    insights = []
    for i in range(count):
        insight = {
            "content": f"Observation {i + 1}: they keep conversations warm and curious.",
            "confidence": 0.7,
            "importance": 0.6,
            "novelty": 0.5,
            "strength_adjustment": 1.0,
            "valence": {"warmth": 0.6},
            "subject": None,
            "open_questions": [],
            "conflicts_with": [],
            "supersedes": None,
        }
        insight.update(overrides)
        insights.append(insight)
    return {"insights": insights}


DEFAULT_DESCRIPTION = "A pencil drawing of a kiln frame on a workbench; no text."
DEFAULT_SUMMARY = "A wiki page about glaze recipes for stoneware, with firing notes."


def _default_reply(request: dict) -> Reply:
    name = ((request.get("response_format") or {}).get("json_schema") or {}).get("name")
    if name == "image_description":
        return Reply(content={"description": DEFAULT_DESCRIPTION})
    if name == "page_summary":
        return Reply(content={"summary": DEFAULT_SUMMARY})
    return Reply(content=valid_answer())


def echo_reply(request: dict) -> Reply:
    """A valid answer whose content quotes the prompt's data lines (a model that repeats what
    it read: canary tests use it to carry message text into insights)."""
    prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    data = prompt.split("BEGIN DATA\n")[-1].split("\nEND DATA")[0]
    return Reply(content=valid_answer(content=("They said: " + data)[:3900]))


class FakeOpenAI:
    def __init__(
        self,
        default: Callable[[dict], Reply] | None = None,
        latency: float = 0.0,
    ):
        self.default = default or _default_reply
        self.latency = latency
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[LoggedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ script
    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def _next(self, request: dict) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.default(request)

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        logged = LoggedRequest(handler.path, Headers(handler.headers.items()), body, time.monotonic())
        with self._lock:
            self.requests.append(logged)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = self._next(body)
            delay = self.latency + reply.delay
            if delay:
                time.sleep(delay)
            status, payload, headers = self._render(reply, body)
            logged.status = status
            try:
                handler.send_response(status)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    handler.send_header(name, value)
                handler.end_headers()
                handler.wfile.write(payload)
                handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)
        finally:
            logged.finished = time.monotonic()
            with self._lock:
                self.in_flight -= 1

    def _render(self, reply: Reply, request: dict) -> tuple[int, bytes, dict[str, str]]:
        headers = dict(reply.headers)
        if reply.body is not None:
            raw = reply.body.encode() if isinstance(reply.body, str) else reply.body
            return reply.status, raw, headers
        if reply.status != 200:
            error = {"error": {"message": f"fake error {reply.status}", "type": "fake_error",
                               "code": str(reply.status)}}
            return reply.status, json.dumps(error).encode(), headers
        bad_images = [p for m in request.get("messages", []) for p in _parts(m)
                      if p.get("type") == "image_url" and _decode_data_url(p) is None]
        if bad_images:
            error = {"error": {"message": "Invalid image: the data URL does not decode",
                               "type": "invalid_request_error", "code": "invalid_image"}}
            return 400, json.dumps(error).encode(), headers
        content = reply.content
        if not isinstance(content, str):
            content = json.dumps(content)
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else _prompt_tokens(
            request)
        completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else max(
            1, len(content) // 4)
        document = {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake-model"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, json.dumps(document).encode(), headers
