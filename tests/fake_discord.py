"""A fake Discord REST API on 127.0.0.1, run in a thread by the tests.

It keeps a small world (guilds, channels, threads, members, roles, messages, reactors, DM
channels) that tests change between polls, answers like Discord v10 (pages newest first even
with `after`; X-RateLimit-* headers; 429 JSON with `Via`), enforces per-route buckets (two
guild routes share one bucket), a global limit, and takes injected faults: 429s of scope
user/shared/global, an HTML Cloudflare 429, 5xx storms, a 401, 403 channels, a missing
Message Content or Server Members intent.

Every request is logged; `violations()` lists requests sent on a bucket the client had been
told was exhausted, or during a 429's retry_after — a correct client makes none.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

EPOCH_MS = 1420070400000
START = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)

# route name → (method, path regex, bucket name). Buckets are per (bucket, top-level id).
ROUTES = [
    ("me", "GET", r"/users/@me", "me"),
    ("my_guilds", "GET", r"/users/@me/guilds", "me"),
    ("open_dm", "POST", r"/users/@me/channels", "dm"),
    ("guild", "GET", r"/guilds/(?P<guild>\d+)", "guild"),
    ("guild_channels", "GET", r"/guilds/(?P<guild>\d+)/channels", "guild"),
    ("active_threads", "GET", r"/guilds/(?P<guild>\d+)/threads/active", "guild"),
    ("roles", "GET", r"/guilds/(?P<guild>\d+)/roles", "roles"),
    ("members", "GET", r"/guilds/(?P<guild>\d+)/members", "members"),
    ("member", "GET", r"/guilds/(?P<guild>\d+)/members/(?P<user>\d+)", "member"),
    ("channel", "GET", r"/channels/(?P<channel>\d+)", "channel"),
    ("messages", "GET", r"/channels/(?P<channel>\d+)/messages", "messages"),
    ("reactors", "GET", r"/channels/(?P<channel>\d+)/messages/(?P<message>\d+)/reactions/(?P<emoji>[^/]+)",
     "reactions"),
    ("archived", "GET", r"/channels/(?P<channel>\d+)/threads/archived/public", "archived"),
]
_COMPILED = [(name, method, re.compile(f"^/api/v10{rx}$"), bucket) for name, method, rx, bucket in ROUTES]


@dataclass
class Logged:
    t: float
    method: str
    route: str
    path: str
    query: dict
    status: int
    major: str = ""
    scope: str | None = None
    violation: str | None = None
    authorization: str | None = None
    user_agent: str | None = None


@dataclass
class Bucket:
    limit: int
    window: float
    remaining: int = 0
    reset_at: float = 0.0
    told_exhausted_until: float = 0.0   # the client was told remaining=0 (or 429) until then


@dataclass
class Injection:
    route: str
    kind: str                  # 'user' | 'shared' | 'global' | 'cloudflare' | 'status' | 'body'
    times: int
    retry_after: float = 0.05
    status: int = 500
    payload: Any = None        # 'body': this JSON, with 200, instead of the route's answer


@dataclass
class FakeDiscord:
    token: str = field(default="fake-token-Zm9vYmFyYmF6.abcdef.SECRET123", repr=False)
    base_url: str = ""
    self_id: str = "900000000000000001"
    limits: dict = field(default_factory=lambda: {
        "messages": (50, 1.0), "reactions": (50, 1.0), "guild": (20, 1.0), "me": (20, 1.0),
        "channel": (20, 1.0), "archived": (20, 1.0), "roles": (20, 1.0), "members": (20, 1.0),
        "member": (50, 1.0), "dm": (20, 1.0),
    })
    global_limit: tuple[int, float] = (1000, 1.0)
    content_intent: bool = True
    members_intent: bool = True
    revoked: bool = False

    def __post_init__(self):
        self.lock = threading.RLock()
        self.log: list[Logged] = []
        self.guilds: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}
        self.messages: dict[str, dict[str, dict]] = {}
        self.reactions: dict[str, dict[tuple[str, str], list[str]]] = {}
        self.users: dict[str, dict] = {}
        self.members: dict[str, dict[str, dict]] = {}
        self.roles: dict[str, list[dict]] = {}
        self.forbidden: set[str] = set()
        self.forbidden_archived: set[str] = set()   # channels whose archived threads are 403
        self.injections: list[Injection] = []
        self.delay = 0.0
        self.hooks: list = []          # called with each logged request, after it is answered
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._global_sent: list[float] = []
        self._global_block = 0.0
        self._told_routes: set[str] = set()
        self._clock = START
        self._seq = 0
        self.add_user(self.self_id, "zos", bot=True)

    # ------------------------------------------------------------------ world building
    def add_user(self, user_id: str, username: str, *, global_name: str | None = None,
                 bot: bool = False) -> dict:
        data = {"id": user_id, "username": username, "global_name": global_name,
                "discriminator": "0", "avatar": None}
        if bot:
            data["bot"] = True
        self.users[user_id] = data
        return data

    def add_guild(self, guild_id: str, name: str) -> None:
        self.guilds[guild_id] = {"id": guild_id, "name": name, "icon": None}
        self.members.setdefault(guild_id, {})
        self.roles.setdefault(guild_id, [{"id": guild_id, "name": "@everyone", "color": 0, "position": 0}])

    def add_role(self, guild_id: str, role_id: str, name: str, color: int = 0, position: int = 1) -> None:
        self.roles[guild_id].append({"id": role_id, "name": name, "color": color, "position": position})

    def add_member(self, guild_id: str, user_id: str, roles: list[str] = (), nick: str | None = None) -> None:
        self.members[guild_id][user_id] = {"user": self.users[user_id], "nick": nick, "roles": list(roles)}

    def remove_member(self, guild_id: str, user_id: str) -> None:
        self.members[guild_id].pop(user_id, None)

    def add_channel(self, guild_id: str, channel_id: str, name: str, *, type: int = 0,
                    parent_id: str | None = None, topic: str | None = None) -> dict:
        data = {"id": channel_id, "guild_id": guild_id, "name": name, "type": type,
                "parent_id": parent_id, "topic": topic, "position": len(self.channels)}
        self.channels[channel_id] = data
        self.messages.setdefault(channel_id, {})
        return data

    def add_thread(self, parent_id: str, thread_id: str, name: str, *, archived: bool = False,
                   archive_timestamp: str | None = None, type: int = 11) -> dict:
        parent = self.channels[parent_id]
        data = self.add_channel(parent["guild_id"], thread_id, name, type=type, parent_id=parent_id)
        data["thread_metadata"] = {"archived": archived,
                                   "archive_timestamp": archive_timestamp or _iso(self._clock)}
        return data

    def archive(self, thread_id: str, at: datetime | None = None) -> None:
        """Archive a thread now (the real clock: poll compares archive times with its own
        marks) or at `at`; archived, it leaves the active list for the archived one."""
        with self.lock:
            self.channels[thread_id]["thread_metadata"] = {
                "archived": True, "archive_timestamp": _iso(at or datetime.now(timezone.utc))}

    def next_time(self, step: timedelta = timedelta(minutes=1)) -> datetime:
        self._clock += step
        return self._clock

    def snowflake(self, at: datetime) -> str:
        self._seq = (self._seq + 1) % 4096
        return str(((int(at.timestamp() * 1000) - EPOCH_MS) << 22) | self._seq)

    def post(self, channel_id: str, author_id: str, content: str = "", *, type: int = 0,
             reply_to: str | None = None, mentions: list[str] = (), mention_roles: list[str] = (),
             attachments: list[dict] = (), embeds: list[dict] = (), at: datetime | None = None,
             thread_id: str | None = None) -> dict:
        with self.lock:
            at = at or self.next_time()
            message_id = self.snowflake(at)
            ch = self.channels[channel_id]
            data = {
                "id": message_id, "channel_id": channel_id, "type": type,
                "author": self.users[author_id], "content": content,
                "timestamp": _iso(at), "edited_timestamp": None, "pinned": False, "tts": False,
                "mention_everyone": False, "mentions": [self.users[u] for u in mentions],
                "mention_roles": list(mention_roles), "attachments": list(attachments),
                "embeds": list(embeds), "components": [], "flags": 0,
            }
            if ch.get("guild_id"):
                data["guild_id"] = ch["guild_id"]
            if reply_to:
                data["message_reference"] = {"message_id": reply_to, "channel_id": channel_id,
                                             "guild_id": ch.get("guild_id"), "type": 0}
            if thread_id:
                data["thread"] = dict(self.channels[thread_id])
            self.messages[channel_id][message_id] = data
            return data

    def edit(self, channel_id: str, message_id: str, content: str) -> None:
        with self.lock:
            msg = self.messages[channel_id][message_id]
            msg["content"] = content
            msg["edited_timestamp"] = _iso(self.next_time(timedelta(seconds=1)))

    def delete(self, channel_id: str, message_id: str) -> None:
        with self.lock:
            self.messages[channel_id].pop(message_id)
            self.reactions.pop(message_id, None)

    def react(self, channel_id: str, message_id: str, user_id: str, emoji: str,
              emoji_id: str | None = None) -> None:
        with self.lock:
            users = self.reactions.setdefault(message_id, {}).setdefault((emoji, emoji_id or ""), [])
            if user_id not in users:
                users.append(user_id)

    def open_dm_channel(self, user_id: str) -> dict:
        for ch in self.channels.values():
            if ch["type"] == 1 and ch["recipients"][0]["id"] == user_id:
                return ch
        channel_id = self.snowflake(self.next_time(timedelta(seconds=1)))
        data = {"id": channel_id, "type": 1, "recipients": [self.users[user_id]], "last_message_id": None}
        self.channels[channel_id] = data
        self.messages[channel_id] = {}
        return data

    # ------------------------------------------------------------------ faults and checks
    def inject(self, route: str, kind: str, *, times: int = 1, retry_after: float = 0.05,
               status: int = 500, payload: Any = None) -> None:
        with self.lock:
            self.injections.append(Injection(route, kind, times, retry_after, status, payload))

    def requests(self, route: str | None = None) -> list[Logged]:
        with self.lock:
            return [e for e in self.log if route is None or e.route == route]

    def violations(self) -> list[Logged]:
        with self.lock:
            return [e for e in self.log if e.violation]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    # ------------------------------------------------------------------ serving
    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        if self.delay:
            time.sleep(self.delay)
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        with self.lock:
            now = time.monotonic()
            for name, rmethod, rx, bucket_name in _COMPILED:
                m = rx.match(split.path)
                if m and rmethod == method:
                    break
            else:
                return self._record(now, method, "?", split.path, query, headers, 404,
                                    {"message": "404: Not Found", "code": 0})
            params = {k: unquote(v) for k, v in m.groupdict().items()}
            major = f"guilds/{params['guild']}" if "guild" in params else (
                f"channels/{params['channel']}" if "channel" in params else "")
            entry = Logged(now, method, name, split.path, query, 0, major,
                           authorization=headers.get("Authorization"), user_agent=headers.get("User-Agent"))
            answer = self._serve(entry, now, bucket_name, params, query, body)
            for hook in list(self.hooks):
                hook(entry)
            return answer

    def _serve(self, entry: Logged, now: float, bucket_name: str, params: dict, query: dict, body: bytes):
        if self.revoked or entry.authorization != f"Bot {self.token}":
            return self._finish(entry, 401, {"message": "401: Unauthorized", "code": 0})
        injected = self._take_injection(entry.route)
        if injected and injected.kind == "cloudflare":
            entry.status = 429
            self.log.append(entry)
            html = b"<html><body>error code: 1015 You are being rate limited</body></html>"
            return 429, {"Content-Type": "text/html", "Retry-After": "3600"}, html
        if now < self._global_block:
            entry.violation = "during global retry_after"
        bucket = self._bucket(bucket_name, entry.major, now)
        # Only a route whose bucket the client has been told about can be "known exhausted".
        if now < bucket.told_exhausted_until and entry.route in self._told_routes:
            entry.violation = entry.violation or "bucket known exhausted"
        # Discord's global limit.
        self._global_sent = [t for t in self._global_sent if now - t < self.global_limit[1]]
        if injected and injected.kind in ("user", "shared", "global"):
            return self._too_many(entry, bucket, bucket_name, injected.kind, injected.retry_after, now)
        if len(self._global_sent) >= self.global_limit[0]:
            return self._too_many(entry, bucket, bucket_name, "global",
                                  self.global_limit[1] - (now - self._global_sent[0]), now)
        self._global_sent.append(now)
        if bucket.remaining <= 0:
            return self._too_many(entry, bucket, bucket_name, "user", bucket.reset_at - now, now)
        bucket.remaining -= 1
        self._told_routes.add(entry.route)
        rl = self._rate_headers(bucket, bucket_name, now)
        if bucket.remaining == 0:
            bucket.told_exhausted_until = bucket.reset_at
        if injected and injected.kind == "status":
            return self._finish(entry, injected.status, {"message": "Server Error", "code": 0}, rl)
        if injected and injected.kind == "body":
            return self._finish(entry, 200, injected.payload, rl)
        status, payload = self._route(entry.route, params, query, body)
        return self._finish(entry, status, payload, rl)

    def _too_many(self, entry, bucket, bucket_name, scope, retry_after, now):
        retry_after = max(retry_after, 0.001)
        if scope == "global":
            self._global_block = max(self._global_block, now + retry_after)
        else:
            bucket.told_exhausted_until = max(bucket.told_exhausted_until, now + retry_after)
            bucket.remaining = 0
            bucket.reset_at = now + retry_after
        entry.scope = scope
        headers = {"Via": "1.1 google", "X-RateLimit-Scope": scope,
                   "Retry-After": str(max(1, round(retry_after)))}
        if scope == "global":
            headers["X-RateLimit-Global"] = "true"
        else:
            self._told_routes.add(entry.route)
            headers.update(self._rate_headers(bucket, bucket_name, now))
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                "global": scope == "global"}
        return self._finish(entry, 429, body, headers)

    def _bucket(self, name: str, major: str, now: float) -> Bucket:
        limit, window = self.limits[name]
        b = self._buckets.setdefault((name, major), Bucket(limit, window, limit, 0.0))
        if now >= b.reset_at:
            b.remaining, b.reset_at = b.limit, now + b.window
        return b

    def _rate_headers(self, b: Bucket, name: str, now: float) -> dict:
        after = max(b.reset_at - now, 0.0)
        return {
            "X-RateLimit-Limit": str(b.limit), "X-RateLimit-Remaining": str(b.remaining),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}", "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": f"hash-{name}",
        }

    def _take_injection(self, route: str) -> Injection | None:
        for inj in self.injections:
            if inj.route in (route, "*") and inj.times > 0:
                inj.times -= 1
                return inj
        return None

    def _finish(self, entry: Logged, status: int, payload, headers: dict | None = None):
        entry.status = status
        self.log.append(entry)
        body = json.dumps(payload).encode()
        return status, {"Content-Type": "application/json", **(headers or {})}, body

    def _record(self, now, method, route, path, query, headers, status, payload):
        entry = Logged(now, method, route, path, query, status,
                       authorization=headers.get("Authorization"))
        return self._finish(entry, status, payload)

    # ------------------------------------------------------------------ the routes
    def _route(self, route: str, p: dict, q: dict, body: bytes):
        handler = getattr(self, f"_r_{route}")
        return handler(p, q, body)

    def _r_me(self, p, q, body):
        return 200, self.users[self.self_id]

    def _r_my_guilds(self, p, q, body):
        after = int(q.get("after", 0))
        out = [g for gid, g in sorted(self.guilds.items(), key=lambda kv: int(kv[0])) if int(gid) > after]
        return 200, out[: int(q.get("limit", 200))]

    def _r_guild(self, p, q, body):
        return 200, self.guilds[p["guild"]]

    def _r_guild_channels(self, p, q, body):
        return 200, [c for c in self.channels.values()
                     if c.get("guild_id") == p["guild"] and c["type"] not in (10, 11, 12)]

    def _r_active_threads(self, p, q, body):
        threads = [c for c in self.channels.values() if c.get("guild_id") == p["guild"]
                   and c["type"] in (10, 11, 12) and not c["thread_metadata"]["archived"]]
        return 200, {"threads": threads, "members": []}

    def _r_archived(self, p, q, body):
        if p["channel"] in self.forbidden | self.forbidden_archived:
            return 403, {"message": "Missing Access", "code": 50001}
        threads = sorted(
            (c for c in self.channels.values() if c.get("parent_id") == p["channel"]
             and c["type"] in (10, 11) and c["thread_metadata"]["archived"]),
            key=lambda c: c["thread_metadata"]["archive_timestamp"], reverse=True)
        if "before" in q:
            before = q["before"]
            threads = [t for t in threads if t["thread_metadata"]["archive_timestamp"] < before]
        limit = int(q.get("limit", 50))
        return 200, {"threads": threads[:limit], "members": [], "has_more": len(threads) > limit}

    def _r_roles(self, p, q, body):
        return 200, self.roles[p["guild"]]

    def _r_members(self, p, q, body):
        if not self.members_intent:
            return 403, {"message": "Missing Access", "code": 50001}
        after = int(q.get("after", 0))
        members = [m for uid, m in sorted(self.members[p["guild"]].items(), key=lambda kv: int(kv[0]))
                   if int(uid) > after]
        return 200, members[: int(q.get("limit", 1))]

    def _r_member(self, p, q, body):
        member = self.members[p["guild"]].get(p["user"])
        if member is None:
            return 404, {"message": "Unknown Member", "code": 10007}
        return 200, member

    def _r_channel(self, p, q, body):
        ch = self.channels.get(p["channel"])
        if ch is None:
            return 404, {"message": "Unknown Channel", "code": 10003}
        return 200, ch

    def _r_open_dm(self, p, q, body):
        recipient = json.loads(body or b"{}").get("recipient_id")
        if recipient not in self.users:
            return 400, {"message": "Invalid Recipient(s)", "code": 50033}
        return 200, self.open_dm_channel(recipient)

    def _r_messages(self, p, q, body):
        channel_id = p["channel"]
        if channel_id in self.forbidden:
            return 403, {"message": "Missing Access", "code": 50001}
        if channel_id not in self.channels:
            return 404, {"message": "Unknown Channel", "code": 10003}
        if sum(k in q for k in ("before", "after", "around")) > 1:
            return 400, {"message": "before, after and around are mutually exclusive", "code": 50035}
        limit = int(q.get("limit", 50))
        if not 1 <= limit <= 100:
            return 400, {"message": "Invalid Form Body (limit)", "code": 50035}
        ordered = sorted(self.messages[channel_id].values(), key=lambda m: int(m["id"]))
        if "after" in q:
            page = [m for m in ordered if int(m["id"]) > int(q["after"])][:limit]
        elif "before" in q:
            page = [m for m in ordered if int(m["id"]) < int(q["before"])][-limit:]
        elif "around" in q:
            at = int(q["around"])
            older = [m for m in ordered if int(m["id"]) < at][-(limit // 2):] if limit > 1 else []
            newer = [m for m in ordered if int(m["id"]) >= at][: limit - len(older)]
            page = older + newer
        else:
            page = ordered[-limit:]
        return 200, [self._render(m) for m in reversed(page)]

    def _render(self, m: dict) -> dict:
        out = json.loads(json.dumps(m))
        reactions = self.reactions.get(m["id"], {})
        if reactions:
            out["reactions"] = [
                {"count": len(users), "count_details": {"burst": 0, "normal": len(users)},
                 "me": self.self_id in users, "me_burst": False, "burst_colors": [],
                 "emoji": {"id": eid or None, "name": name}}
                for (name, eid), users in reactions.items() if users
            ]
        channel = self.channels[m["channel_id"]]
        mentions_me = any(u["id"] == self.self_id for u in m["mentions"])
        if not self.content_intent and channel["type"] != 1 and not mentions_me:
            out.update(content="", embeds=[], attachments=[], components=[])
        return out

    def _r_reactors(self, p, q, body):
        emoji = unquote(p["emoji"])
        name, _, eid = emoji.partition(":")
        users = self.reactions.get(p["message"], {}).get((name, eid), [])
        after = int(q.get("after", 0))
        chosen = sorted((u for u in users if int(u) > after), key=int)[: int(q.get("limit", 25))]
        return 200, [self.users[u] for u in chosen]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeDiscord:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle and delayed
                # ACKs add 40 ms to every request.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _any(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = fake.handle(method, self.path, self.headers, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._any("GET")

            def do_POST(self):
                self._any("POST")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v10"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


@pytest.fixture
def fake():
    """A running fake Discord; tests import this fixture from here."""
    server = FakeDiscord().start()
    yield server
    server.stop()


def make_client(server: FakeDiscord, **kwargs):
    from zos_cli.sources.discord.client import DiscordClient, DiscordToken

    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("max_wait", 5.0)
    return DiscordClient(DiscordToken(server.token), server.base_url, **kwargs)


def config_for(server: FakeDiscord, **sections):
    """A zos Config pointing at the fake (and any other sections, e.g. servers=…)."""
    from zos_cli.config import Config

    data = {"discord": {"api_base": server.base_url}, **sections}
    return Config.model_validate(data)


def poll_with(db, server: FakeDiscord, config=None, **options):
    """One library-level poll against the fake; returns the PollReport."""
    from zos_cli.sources.discord.client import DiscordToken
    from zos_cli.ingest.poll import PollOptions, run_poll

    client_kw = {k: options.pop(k) for k in ("max_wait", "stop", "on_warning") if k in options}
    return run_poll(db, config or config_for(server), DiscordToken(server.token),
                    PollOptions(**options), backoff_base=0.01, **client_kw)


def small_world(server: FakeDiscord) -> None:
    """One guild 100 with channels 200 (general) and 201 (random), users 501-503."""
    server.add_guild("100", "Guild")
    for uid, name in (("501", "ann"), ("502", "bob"), ("503", "cyd")):
        server.add_user(uid, name, global_name=name.title())
        server.add_member("100", uid)
    server.add_channel("100", "200", "general")
    server.add_channel("100", "201", "random")


def backfill_with(db, server: FakeDiscord, config=None, *, channel_ids=(), guild_ids=(),
                  since=None, **client_options):
    """One library-level `ingest --token` against the fake; returns the BackfillReport."""
    from zos_cli.ingest.backfill import BackfillOptions, run_backfill
    from zos_cli.sources.discord.client import DiscordToken

    client_options.setdefault("backoff_base", 0.01)
    options = BackfillOptions(list(channel_ids), list(guild_ids), since)
    return run_backfill(db, config or config_for(server), DiscordToken(server.token), options,
                        **client_options)
