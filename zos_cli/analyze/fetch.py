"""The safe fetcher: read the page behind a link someone shared without letting the link aim us.

Every hop (the link, each redirect, each robots.txt) is parsed, checked against the domain lists
and -- after one lookup -- every address it resolves to is checked by the policy, all BEFORE a
connection; the connection then goes to a checked address, never to the name. Bodies stream under
a byte cap, only the accepted types are read (text for links; images when the caller asks for
them), and one wall-clock deadline covers it all. docs/analyze-safety.md says the rules in plain
English.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import httpx

from zos_cli.analyze.addresses import (
    DEFAULT_POLICY,
    AddressPolicy,
    IPAddress,
    Resolver,
    Target,
    domain_matches,
    parse_url,
    system_resolver,
)
from zos_cli.analyze.http_client import body_charset, default_client, pinned_request

__all__ = ["DEFAULT_ACCEPT", "STATUSES", "TEXT_TYPES", "FetchResult", "Fetcher", "default_client",
           "fetch", "pinned_request"]

STATUSES = (
    "ok", "robots_disallowed", "blocked_address", "denied_domain", "too_large", "not_text",
    "http_error", "too_many_redirects", "timeout", "invalid_url",
    "unreachable",  # lookup failed, connection refused/reset, TLS or protocol failure
)
TEXT_TYPES = ("text/html", "text/plain")
DEFAULT_ACCEPT = frozenset(TEXT_TYPES)  # what a link fetch reads unless told otherwise
_TEXT_ACCEPT_HEADER = "text/html,text/plain;q=0.9,*/*;q=0.1"
REDIRECT_CODES = (301, 302, 303, 307, 308)
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 asks crawlers to parse at least 500 KiB


@dataclass(frozen=True)
class FetchResult:
    status: str  # one of STATUSES
    url: str  # as given
    final_url: str | None = None  # the last normalized URL we got to (None if the input wasn't one)
    http_status: int | None = None
    content_type: str | None = None  # media type only, lower-cased ("text/html")
    text: str | None = None  # decoded body, only when status == "ok" and the type is text
    detail: str | None = None  # a short why, for logs ("10.0.0.1 is private")
    # the raw body, only when status == "ok" and the type is an accepted non-text one (an image)
    body: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Stop(Exception):
    """Ends a fetch early with a status; raised deep, turned into a FetchResult at the top."""

    def __init__(self, status: str, detail: str | None = None, **fields: object) -> None:
        super().__init__(status, detail)
        self.status, self.detail, self.fields = status, detail, fields


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Stop("timeout", "total time limit reached")
    return left


class _RobotsEntry:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.rules: RobotFileParser | bool | _Stop | None = None  # True: no rules, allow all
        self.kept = False


class Fetcher:
    """Fetches shared links safely. Thread-safe: one instance may serve many threads at once
    (httpx.Client is thread-safe; the robots cache is locked and each origin's robots.txt is
    fetched once while other threads wait for it). Not for asyncio: call it via
    `asyncio.to_thread`. Close it (or use `with`) to release connections."""

    def __init__(
        self,
        *,
        user_agent: str,
        policy: AddressPolicy = DEFAULT_POLICY,
        resolver: Resolver = system_resolver,
        max_bytes: int = 2_000_000,
        connect_timeout: float = 5.0,
        total_timeout: float = 15.0,
        max_redirects: int = 5,
        allow_domains: Iterable[str] = (),
        deny_domains: Iterable[str] = (),
        robots_max_bytes: int = ROBOTS_MAX_BYTES,
        client: httpx.Client | None = None,
        lookup_threads: int = 8,
    ) -> None:
        if client is not None and client.trust_env:
            raise ValueError("pass a client built with trust_env=False (proxies undo the pinning)")
        self.user_agent = user_agent
        self.policy, self.resolver = policy, resolver
        self.max_bytes, self.robots_max_bytes = max_bytes, robots_max_bytes
        self.connect_timeout, self.total_timeout = connect_timeout, total_timeout
        self.max_redirects = max_redirects
        self.allow_domains, self.deny_domains = tuple(allow_domains), tuple(deny_domains)
        self._owns_client = client is None
        self._client = client if client is not None else default_client(connect_timeout)
        # getaddrinfo has no timeout of its own; lookups run here so the deadline still holds.
        self._lookups = ThreadPoolExecutor(max_workers=lookup_threads, thread_name_prefix="zos-dns")
        self._robots: dict[tuple[str, str, int], _RobotsEntry] = {}
        self._robots_lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            self._client.close()

    def fetch(self, url: str, *, accept: Iterable[str] = DEFAULT_ACCEPT,
              max_bytes: int | None = None) -> FetchResult:
        """Fetch one link; never raises for anything the link or the far end does.

        `accept`: the media types to read (others end `not_text`, body unread); text/html and
        text/plain come back decoded in `text`, any other accepted type (images:
        `records.IMAGE_TYPES`) as bytes in `body`. `max_bytes`: this call's cap, default the
        Fetcher's -- so one Fetcher (one robots.txt cache) serves links and images alike."""
        deadline = time.monotonic() + self.total_timeout
        cap = self.max_bytes if max_bytes is None else max_bytes
        return self._run(url, deadline, cap, robots_txt=False, accept=frozenset(accept))

    # -- one fetch: hops until a body or a status ------------------------------------------

    def _run(self, url: str, deadline: float, cap: int, *, robots_txt: bool,
             accept: frozenset[str] = DEFAULT_ACCEPT) -> FetchResult:
        target = parse_url(url)
        if target is None:
            return FetchResult("invalid_url", url, detail="not a fetchable http(s) URL")
        try:
            for hop in range(self.max_redirects + 1):
                self._admit(target)
                addresses = self._checked_addresses(target, deadline)
                if not robots_txt:
                    self._check_robots(target, deadline)
                response = self._send(target, addresses, deadline, accept)
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_CODES and location:
                        if hop == self.max_redirects:
                            raise _Stop("too_many_redirects", f"more than {hop} redirects")
                        try:
                            next_target = parse_url(urljoin(target.url, location))
                        except ValueError:  # urljoin chokes on some junk (`http://[::1`)
                            next_target = None
                        if next_target is None:
                            raise _Stop("invalid_url", f"redirect to {location[:200]!r}")
                        target = next_target
                        continue
                    status, media, text, body = self._read(response, deadline, cap,
                                                           robots_txt=robots_txt, accept=accept)
                    return FetchResult("ok", url, target.url, status, media, text, body=body)
                finally:
                    response.close()  # mid-body this drops the connection: nothing more is read
        except _Stop as stop:
            return FetchResult(stop.status, url, target.url, detail=stop.detail, **stop.fields)
        raise AssertionError("unreachable: the loop returns or raises")

    def _admit(self, target: Target) -> None:
        if domain_matches(target.host, self.deny_domains):
            raise _Stop("denied_domain", f"{target.host} is on the deny list")
        if self.allow_domains and not domain_matches(target.host, self.allow_domains):
            raise _Stop("denied_domain", f"{target.host} is not on the allow list")

    def _checked_addresses(self, target: Target, deadline: float) -> list[IPAddress]:
        """Every address the host has, each passed by the policy; refuse if ANY is refused (a
        name answering both a public and a private address is an attack, not bad luck)."""
        if target.ip is not None:
            addresses: list[IPAddress] = [target.ip]  # a literal: no lookup at all
        else:
            future = self._lookups.submit(self.resolver, target.host, target.port)
            try:
                answers = future.result(timeout=_left(deadline))
            except FutureTimeout:
                raise _Stop("timeout", f"looking up {target.host}") from None
            except OSError as error:
                raise _Stop("unreachable", f"looking up {target.host}: {error}") from None
            addresses = []
            for answer in answers:
                try:
                    addresses.append(ipaddress.ip_address(answer))
                except ValueError:
                    raise _Stop("blocked_address", f"resolver gave {answer!r}") from None
            if not addresses:
                raise _Stop("unreachable", f"{target.host} has no addresses")
        for address in addresses:
            reason = self.policy.refuses(address)
            if reason is not None:
                raise _Stop("blocked_address", reason)
        return addresses

    def _send(self, target: Target, addresses: list[IPAddress], deadline: float,
              accept: frozenset[str]) -> httpx.Response:
        headers = {
            "User-Agent": self.user_agent,
            "Accept": (_TEXT_ACCEPT_HEADER if accept == DEFAULT_ACCEPT
                       else ",".join(sorted(accept))),
            "Accept-Encoding": "gzip, deflate",  # the two we can inflate with a size bound
        }
        failure = "no address answered"
        for address in addresses:  # all checked; try the next one if a connection is refused
            left = _left(deadline)
            timeouts = {"connect": min(self.connect_timeout, left), "read": left,
                        "write": left, "pool": left}
            request = pinned_request(self._client, target, address, headers=headers,
                                     timeouts=timeouts)
            try:
                return self._client.send(request, stream=True, follow_redirects=False)
            except httpx.TimeoutException:
                raise _Stop("timeout", f"no answer from {address}") from None
            except httpx.ConnectError as error:
                failure = f"{address}: {error}"
            except httpx.RemoteProtocolError as error:
                # httpx parses Location itself, even with redirects off, and fails on junk
                bad_redirect = "location header" in str(error).lower()
                raise _Stop("invalid_url" if bad_redirect else "unreachable", str(error)) from None
            except httpx.HTTPError as error:
                raise _Stop("unreachable", f"{address}: {error}") from None
        raise _Stop("unreachable", failure)

    def _read(self, response: httpx.Response, deadline: float, cap: int, *, robots_txt: bool,
              accept: frozenset[str]) -> tuple[int, str | None, str | None, bytes | None]:
        status = response.status_code
        media = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
        fields = {"http_status": status, "content_type": media}
        if not 200 <= status < 300:
            raise _Stop("http_error", f"HTTP {status}", **fields)
        # robots.txt is read whatever its type (servers label it badly); the rest only if accepted.
        if not robots_txt and media not in accept:
            raise _Stop("not_text", f"content type {media}", **fields)
        declared = response.headers.get("content-length", "")
        if not robots_txt and declared.isdigit() and int(declared) > cap:
            raise _Stop("too_large", f"Content-Length {declared} over {cap}", **fields)
        body = self._stream_body(response, deadline, cap, truncate=robots_txt, fields=fields)
        if robots_txt or media in TEXT_TYPES:
            return status, media, body.decode(body_charset(response, body), errors="replace"), None
        return status, media, None, body

    def _stream_body(self, response: httpx.Response, deadline: float, cap: int, *,
                     truncate: bool, fields: dict) -> bytes:
        """At most `cap` decoded bytes (and `cap` bytes on the wire). Over the cap: too_large,
        or for robots.txt the first `cap` bytes (RFC 9309 lets a crawler stop there)."""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise _Stop("not_text", f"content encoding {encoding}", **fields)
        # Our own inflater (gzip or zlib header, auto-detected) so a compression bomb can never
        # expand past the cap: max_length bounds every call.
        inflater = None if encoding in ("", "identity") else zlib.decompressobj(47)
        timeouts = response.request.extensions["timeout"]
        chunks = response.iter_raw()
        body, wire = bytearray(), 0
        try:
            while True:
                timeouts["read"] = _left(deadline)  # httpcore reads this before each recv
                chunk = next(chunks, None)
                if chunk is None:
                    break
                wire += len(chunk)
                data = chunk if inflater is None else inflater.decompress(chunk, cap + 1 - len(body))
                body += data
                if len(body) > cap or wire > cap:
                    if truncate:
                        return bytes(body[:cap])
                    raise _Stop("too_large", f"body over {cap} bytes", **fields)
        except httpx.TimeoutException:
            raise _Stop("timeout", "reading the body", **fields) from None
        except (httpx.HTTPError, zlib.error) as error:
            raise _Stop("unreachable", f"reading the body: {error}", **fields) from None
        _left(deadline)
        return bytes(body)

    # -- robots.txt ------------------------------------------------------------------------

    def _check_robots(self, target: Target, deadline: float) -> None:
        """Raise unless robots.txt of `target`'s origin lets `user_agent` fetch it. One answer per
        origin per Fetcher: the first thread to need an origin fetches robots.txt, the others
        wait for its answer."""
        while True:
            with self._robots_lock:
                entry = self._robots.get(target.origin)
                owner = entry is None
                if owner:
                    entry = self._robots[target.origin] = _RobotsEntry()
            if owner:
                try:
                    entry.rules, entry.kept = self._load_robots(target, deadline)
                finally:
                    if not entry.kept:  # not for sharing (or an error): the next caller asks anew
                        with self._robots_lock:
                            self._robots.pop(target.origin, None)
                    entry.done.set()
            else:
                if not entry.done.wait(_left(deadline)):
                    raise _Stop("timeout", "waiting for robots.txt")
                if not entry.kept:
                    continue
            rules = entry.rules
            if isinstance(rules, _Stop):
                raise _Stop(rules.status, rules.detail)
            if rules is True or rules.can_fetch(self.user_agent, target.url):
                return
            raise _Stop("robots_disallowed", f"robots.txt disallows {target.path_query}")

    def _load_robots(self, target: Target, deadline: float
                     ) -> tuple[RobotFileParser | bool | _Stop, bool]:
        """(rules, cache them?). A 2xx is parsed; a 4xx means no rules (allow all). Anything
        else disallows the origin (RFC 9309: unreachable robots.txt means full disallow) and
        the page fetch ends with `robots_disallowed` -- or with `unreachable`/`timeout` when
        that is what happened to robots.txt, which says more. All of it is cached for this
        Fetcher, except a timeout when robots.txt started with under half the time budget
        (an earlier slow hop, not this origin, used it up)."""
        started_with = deadline - time.monotonic()
        result = self._run(f"{target.scheme}://{target.host_header}/robots.txt", deadline,
                           self.robots_max_bytes, robots_txt=True)
        if result.status == "ok":
            parser = RobotFileParser()
            parser.parse((result.text or "").splitlines())  # also marks it read for can_fetch
            return parser, True
        if result.status == "http_error" and 400 <= (result.http_status or 0) < 500:
            return True, True
        why = f"robots.txt: {result.detail or result.status}"
        if result.status == "timeout":
            return _Stop("timeout", why), started_with >= self.total_timeout / 2
        if result.status == "unreachable":
            return _Stop("unreachable", why), True
        return _Stop("robots_disallowed", why), True


def fetch(
    url: str,
    *,
    user_agent: str,
    max_bytes: int,
    policy: AddressPolicy = DEFAULT_POLICY,
    resolver: Resolver = system_resolver,
    connect_timeout: float = 5.0,
    total_timeout: float = 15.0,
    max_redirects: int = 5,
    client: httpx.Client | None = None,
    allow_domains: Iterable[str] = (),
    deny_domains: Iterable[str] = (),
    accept: Iterable[str] = DEFAULT_ACCEPT,
) -> FetchResult:
    """One link with a throwaway Fetcher (no robots cache kept). For many links, use Fetcher."""
    with Fetcher(
        user_agent=user_agent, policy=policy, resolver=resolver, max_bytes=max_bytes,
        connect_timeout=connect_timeout, total_timeout=total_timeout,
        max_redirects=max_redirects, allow_domains=allow_domains, deny_domains=deny_domains,
        client=client,
    ) as fetcher:
        return fetcher.fetch(url, accept=accept)
