"""The safe fetcher against a real HTTP server on 127.0.0.1 (and a second one on 127.0.0.2).

No test reaches outside this machine: resolvers are fakes that fail the test on any name they
were not told about, and every test client refuses to connect anywhere but 127.0.0.1/127.0.0.2.
Private-range addresses appear only as inputs the fetcher must refuse before connecting.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from zos_cli.analyze.addresses import (
    DEFAULT_POLICY,
    AddressPolicy,
    domain_matches,
    normalize_url,
    parse_ipv4_loose,
    parse_url,
)
from zos_cli.analyze.fetch import Fetcher, fetch, pinned_request

UA = "zos-test/1.0"
LOCAL = AddressPolicy.allowing("127.0.0.1")  # 127.0.0.2 stays refused: it is loopback
STOP = threading.Event()  # set at teardown so held responses let go at once


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def send(self, code: int, body: bytes = b"", ctype: str = "text/html; charset=utf-8",
             **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - one route table
        server = self.server
        host = self.headers.get("Host", "")
        with server.lock:
            server.log.append((self.path, host))
        path, name = self.path, host.split(":")[0]
        try:
            if path == "/robots.txt":
                if name == "robots-down.invalid":
                    return self.send(503, b"down")
                if name == "robots-missing.invalid":
                    return self.send(404, b"none")
                return self.send(200, b"User-agent: *\nDisallow: /private\n", "text/plain")
            if path in ("/", "/page", "/private"):
                return self.send(200, "<html><title>héllo</title>a page</html>".encode())
            if path.startswith("/chain/"):
                n = int(path.rsplit("/", 1)[1])
                if n == 0:
                    return self.send(200, b"end of chain")
                return self.send(302, Location=f"/chain/{n - 1}")
            if path == "/to-refused":
                return self.send(302, Location=f"http://127.0.0.2:{server.other_port}/")
            if path == "/to-ftp":
                return self.send(302, Location="ftp://zos-test.invalid/file")
            if path == "/to-junk":
                return self.send(302, Location="http://[::1")
            if path == "/to-evil":
                return self.send(302, Location=f"http://evil.invalid:{server.server_port}/page")
            if path == "/set-cookie":
                return self.send(200, b"crumbs", "text/plain", Set_Cookie="id=1; Path=/")
            if path == "/echo-host":
                return self.send(200, host.encode(), "text/plain")
            if path == "/latin1":
                return self.send(200, "café".encode("latin-1"), "text/plain; charset=iso-8859-1")
            if path == "/gzip":
                return self.send(200, gzip.compress(b"<p>squeezed</p>"), Content_Encoding="gzip")
            if path == "/gzip-bomb":
                bomb = gzip.compress(b"\0" * 5_000_000)  # ~5 KB on the wire
                return self.send(200, bomb, Content_Encoding="gzip")
            if path == "/missing":
                return self.send(404, b"no")
            if path == "/down":
                return self.send(503, b"later")
            if path in ("/big-declared", "/image.png"):
                # Headers now, body only after a pause: a fetcher that returns quickly did not
                # wait for (or read) the body.
                self.send_response(200)
                self.send_header("Content-Type", "image/png" if "png" in path else "text/html")
                self.send_header("Content-Length", "50000000")
                self.end_headers()
                self.wfile.flush()
                STOP.wait(3)
                return None
            if path == "/big-stream":  # no Content-Length: the cap must trip while streaming
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"x" * 65536)
                return None
            if path == "/slow-headers":
                STOP.wait(3)
                return self.send(200, b"late")
            if path == "/late-stall":  # headers late, then one byte, then nothing
                STOP.wait(0.6)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"x")
                self.wfile.flush()
                STOP.wait(3)
                return None
            if path == "/slow-drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    if STOP.wait(0.05):
                        break
                return None
            return self.send(404, b"unknown")
        except (BrokenPipeError, ConnectionResetError):
            return None  # the fetcher hung up on purpose


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the concurrency test connects a dozen at once


def _serve(address: str) -> ThreadingHTTPServer:
    server = Server((address, 0), Handler)
    server.lock, server.log = threading.Lock(), []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers():
    main = _serve("127.0.0.1")
    try:
        refused = _serve("127.0.0.2")  # Linux answers on all of 127/8
    except OSError:
        main.shutdown()
        pytest.skip("cannot bind 127.0.0.2")
    main.other_port = refused.other_port = refused.server_port
    yield main, refused
    STOP.set()
    for server in (main, refused):
        server.shutdown()
        server.server_close()


@pytest.fixture
def srv(servers):
    """The main server with an empty request log (and the 127.0.0.2 one, also emptied)."""
    for server in servers:
        with server.lock:
            server.log.clear()
    return servers[0]


class LocalOnly(httpx.HTTPTransport):
    """A transport that fails the test rather than connect anywhere but the two test servers."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.connections.append(request.url.host)
        assert request.url.host in ("127.0.0.1", "127.0.0.2"), f"tried {request.url}"
        return super().handle_request(request)


def resolver(table: dict[str, list[str]] | None = None):
    """A fake DNS: the names in `table` only; any other lookup fails the test."""
    table = table or {}
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise AssertionError(f"unexpected DNS lookup of {host!r}")
        return list(table[host])

    resolve.calls = calls
    return resolve


LOCAL_NAMES = {
    name: ["127.0.0.1"]
    for name in ("zos-test.invalid", "evil.invalid", "robots-down.invalid", "robots-missing.invalid")
}


@pytest.fixture
def make(srv):
    """Builds a Fetcher wired to the test server: policy allows 127.0.0.1 only, fake DNS,
    a guarded client, short timeouts. Returns (fetcher_factory, transport, base_url)."""
    transport = LocalOnly()
    client = httpx.Client(transport=transport, trust_env=False)
    made: list[Fetcher] = []

    def factory(**kw) -> Fetcher:
        options = dict(user_agent=UA, policy=LOCAL, resolver=resolver(LOCAL_NAMES),
                       client=client, max_bytes=1_000_000, connect_timeout=2, total_timeout=5)
        options.update(kw)
        made.append(Fetcher(**options))
        return made[-1]

    yield factory, transport, f"http://zos-test.invalid:{srv.server_port}"
    for fetcher in made:
        fetcher.close()
    client.close()


def paths(server) -> list[str]:
    with server.lock:
        return [path for path, _host in server.log]


# -- URLs and addresses, no network ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a?b=1#frag", "http://example.com/a?b=1"),
        ("https://EXAMPLE.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://2130706433:8080/", "http://127.0.0.1:8080/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://017700000001/", "http://127.0.0.1/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://[::ffff:127.0.0.1]:99/", "http://[::ffff:7f00:1]:99/"),
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        ("http://example.com./", "http://example.com/"),
    ],
)
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd", "ftp://example.com/", "data:text/html,<b>x</b>",
        "javascript:alert(1)", "gopher://example.com/", "http:///nohost", "//example.com/",
        "http://user:pw@example.com/", "http://example.com@10.0.0.1/",
        "http://example.com\\@10.0.0.1/", "http://exa mple.com/", "http://example.com/\nx",
        "http://1.2.3.4.5/", "http://256.0.0.1/", "http://example.123/",
        "http://%31%32%37.0.0.1/", "http://[fe80::1%25eth0]/", "http://example.com:0/",
        "http://example.com:99999/", "", "not a url",
    ],
)
def test_invalid_urls_are_refused_before_any_lookup(url, srv):
    dns = resolver()
    result = fetch(url, user_agent=UA, max_bytes=1000, resolver=dns)
    assert normalize_url(url) is None
    assert result.status == "invalid_url" and result.text is None
    assert dns.calls == [] and paths(srv) == []


def test_numeric_hosts_read_like_inet_aton():
    loopback = ipaddress.ip_address("127.0.0.1")
    for host in ("2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1", "127.0.1"):
        assert parse_ipv4_loose(host) == loopback, host
    assert parse_ipv4_loose("example.com") is None
    assert parse_ipv4_loose("10.0.0.1") == ipaddress.ip_address("10.0.0.1")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.0.0.2", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "100.64.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "240.0.0.1",
        "255.255.255.255", "192.0.0.8", "198.18.0.1", "::", "::1", "fe80::1", "fc00::1",
        "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1",
        "64:ff9b::a9fe:a9fe", "2002:a00:1::", "2001:db8::1",
    ],
)
def test_default_policy_refuses(address):
    assert DEFAULT_POLICY.refuses(ipaddress.ip_address(address)) is not None
    assert AddressPolicy(allow_private_addresses=True).refuses(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111",
                                     "::ffff:8.8.8.8"])
def test_default_policy_admits_public(address):
    assert DEFAULT_POLICY.refuses(ipaddress.ip_address(address)) is None


def test_allowing_policy_admits_only_what_it_lists():
    assert LOCAL.refuses(ipaddress.ip_address("127.0.0.1")) is None
    assert LOCAL.refuses(ipaddress.ip_address("127.0.0.2")) == "127.0.0.2 is loopback"


def test_domain_matching():
    assert domain_matches("example.com", ["example.com"])
    assert domain_matches("a.b.example.com", ["EXAMPLE.com."])
    assert not domain_matches("notexample.com", ["example.com"])
    assert not domain_matches("example.com", ["a.example.com"])


def test_pinned_request_for_https_keeps_the_name_for_host_sni_and_certificate():
    client = httpx.Client(trust_env=False)
    target = parse_url("https://Example.com:8443/p?q=1")
    timeouts = {"connect": 1, "read": 1, "write": 1, "pool": 1}
    request = pinned_request(client, target, ipaddress.ip_address("93.184.216.34"),
                             headers={"User-Agent": UA}, timeouts=timeouts)
    assert str(request.url) == "https://93.184.216.34:8443/p?q=1"
    assert request.headers["Host"] == "example.com:8443"
    assert request.extensions["sni_hostname"] == "example.com"
    assert request.extensions["timeout"] is timeouts  # shrunk in place while streaming
    assert request.headers["Connection"] == "close"  # no TLS reuse across names on one IP
    v6 = pinned_request(client, parse_url("https://example.com/"),
                        ipaddress.ip_address("2606:4700::1111"), headers={}, timeouts=timeouts)
    assert str(v6.url) == "https://[2606:4700::1111]/" and v6.headers["Host"] == "example.com"
    literal = pinned_request(client, parse_url("https://93.184.216.34/"),
                             ipaddress.ip_address("93.184.216.34"), headers={}, timeouts=timeouts)
    assert "sni_hostname" not in literal.extensions  # SNI never carries an address
    client.close()


# -- SSRF: refused before any packet ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/page", "http://localhost:{port}/page", "http://10.0.0.1/",
        "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/page", "http://2130706433:{port}/page",
        "http://0x7f.1:{port}/page", "http://017700000001:{port}/page", "http://[::1]:{port}/",
        "http://mixed.invalid/", "http://rebind.invalid:{port}/page",
    ],
)
def test_ssrf_inputs_blocked_by_the_default_policy(url, servers, srv):
    transport = LocalOnly()
    dns = resolver({"localhost": ["127.0.0.1", "::1"], "mixed.invalid": ["93.184.216.34", "10.0.0.1"],
                    "rebind.invalid": ["127.0.0.1"]})
    with httpx.Client(transport=transport, trust_env=False) as client:
        result = fetch(url.format(port=srv.server_port), user_agent=UA, max_bytes=10_000,
                       resolver=dns, client=client)
    assert result.status == "blocked_address", result
    assert result.detail and " is " in result.detail
    assert transport.connections == []
    assert [paths(server) for server in servers] == [[], []]
    if "[" in url or url.split("//")[1][0].isdigit():
        assert dns.calls == []  # address literals, however spelled, never reach DNS


def test_resolver_answer_that_is_no_address_is_blocked(make, srv):
    new, transport, _ = make
    assert new(resolver=resolver({"odd.invalid": ["not-an-ip"]})).fetch("http://odd.invalid/").status == "blocked_address"
    assert transport.connections == [] and paths(srv) == []


# -- fetching from the local server -----------------------------------------------------------


def test_ok_page_connects_to_the_checked_address_with_the_original_host(make, srv):
    new, transport, base = make
    result = new().fetch(base + "/page#top")
    assert result.status == "ok", result
    assert (result.http_status, result.content_type) == (200, "text/html")
    assert "héllo" in result.text and result.final_url == base + "/page"
    assert set(transport.connections) == {"127.0.0.1"}
    with srv.lock:
        assert srv.log == [("/robots.txt", f"zos-test.invalid:{srv.server_port}"),
                           ("/page", f"zos-test.invalid:{srv.server_port}")]


def test_default_client_echo_host(srv):
    dns = resolver({"zos-test.invalid": ["127.0.0.1"]})
    result = fetch(f"http://zos-test.invalid:{srv.server_port}/echo-host", user_agent=UA,
                   max_bytes=1000, policy=LOCAL, resolver=dns)
    assert result.status == "ok" and result.text == f"zos-test.invalid:{srv.server_port}"
    assert dns.calls == ["zos-test.invalid", "zos-test.invalid"]  # robots.txt, then the page


def test_default_client_keeps_no_cookies(srv):
    dns = resolver({"zos-test.invalid": ["127.0.0.1"]})
    with Fetcher(user_agent=UA, policy=LOCAL, resolver=dns) as fetcher:
        assert fetcher.fetch(f"http://zos-test.invalid:{srv.server_port}/set-cookie").ok
        assert len(fetcher._client.cookies.jar) == 0  # requests go to IPs: a jar would mix sites


def test_decoding(make):
    new, _, base = make
    fetcher = new()
    assert fetcher.fetch(base + "/latin1").text == "café"
    assert fetcher.fetch(base + "/gzip").text == "<p>squeezed</p>"


def test_robots_disallow_and_cache(make, srv):
    new, _, base = make
    fetcher = new()
    assert fetcher.fetch(base + "/private").status == "robots_disallowed"
    assert fetcher.fetch(base + "/page").status == "ok"
    assert paths(srv) == ["/robots.txt", "/page"]  # robots.txt read once; /private never asked


def test_robots_missing_allows_and_robots_down_disallows(make, srv):
    new, _, _ = make
    fetcher, port = new(), srv.server_port
    assert fetcher.fetch(f"http://robots-missing.invalid:{port}/private").status == "ok"
    assert fetcher.fetch(f"http://robots-down.invalid:{port}/page").status == "robots_disallowed"
    assert fetcher.fetch(f"http://robots-down.invalid:{port}/").status == "robots_disallowed"
    assert paths(srv) == ["/robots.txt", "/private", "/robots.txt"]


def test_robots_fetched_once_under_concurrency(make, srv):
    new, _, base = make
    fetcher = new()
    results: list = [None] * 12

    def work(i: int) -> None:
        results[i] = fetcher.fetch(base + "/page").status

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 12
    assert paths(srv).count("/robots.txt") == 1 and paths(srv).count("/page") == 12


def test_redirect_cap(make, srv):
    new, _, base = make
    fetcher = new()
    result = fetcher.fetch(base + "/chain/6")
    assert result.status == "too_many_redirects" and result.final_url == base + "/chain/1"
    assert [p for p in paths(srv) if p.startswith("/chain")] == [f"/chain/{n}" for n in range(6, 0, -1)]
    assert fetcher.fetch(base + "/chain/5").text == "end of chain"  # five hops are fine


def test_redirect_to_a_refused_address_sends_nothing_there(make, servers, srv):
    new, transport, base = make
    result = new().fetch(base + "/to-refused")
    assert result.status == "blocked_address", result
    assert result.final_url == f"http://127.0.0.2:{srv.other_port}/"
    assert "127.0.0.2" not in transport.connections
    assert paths(servers[1]) == []


def test_redirects_are_rechecked_for_scheme_and_domain(make, srv):
    new, _, base = make
    fetcher = new()
    assert fetcher.fetch(base + "/to-ftp").status == "invalid_url"
    assert fetcher.fetch(base + "/to-junk").status == "invalid_url"
    result = new(deny_domains=["evil.invalid"]).fetch(base + "/to-evil")
    assert result.status == "denied_domain"
    assert paths(srv) == ["/robots.txt", "/to-ftp", "/to-junk", "/robots.txt", "/to-evil"]


@pytest.mark.parametrize(
    ("allow", "deny", "status"),
    [
        ((), ["zos-test.invalid"], "denied_domain"),
        ((), ["invalid"], "denied_domain"),  # a domain covers its sub-domains
        ((), ["test.invalid"], "ok"),  # ...but not names that merely end alike
        (["other.example"], (), "denied_domain"),
        (["invalid"], (), "ok"),
        (["zos-test.invalid"], ["zos-test.invalid"], "denied_domain"),  # deny wins
    ],
)
def test_domain_lists(make, srv, allow, deny, status):
    new, _, base = make
    dns = resolver(LOCAL_NAMES)
    result = new(allow_domains=allow, deny_domains=deny, resolver=dns).fetch(base + "/page")
    assert result.status == status
    if status == "denied_domain":
        assert paths(srv) == [] and dns.calls == []


def test_too_large_by_content_length_without_reading(make):
    new, _, base = make
    started = time.monotonic()
    result = new(max_bytes=100_000).fetch(base + "/big-declared")
    assert result.status == "too_large" and result.http_status == 200
    assert time.monotonic() - started < 1.5  # the server holds the body back for 3 s


def test_too_large_while_streaming(make):
    new, _, base = make
    assert new(max_bytes=100_000).fetch(base + "/big-stream").status == "too_large"
    assert new(max_bytes=100_000).fetch(base + "/gzip-bomb").status == "too_large"


def test_not_text_without_reading_the_body(make):
    new, _, base = make
    started = time.monotonic()
    result = new().fetch(base + "/image.png")
    assert (result.status, result.content_type, result.text) == ("not_text", "image/png", None)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-drip", "/late-stall"])
def test_total_timeout_is_wall_clock(make, path):
    """/late-stall: headers at 0.6 s, then a stall. A read timeout fixed when the request went
    out would end near 1.0 + 0.6 s; the deadline shrinks it, so the fetch ends near 1.0 s."""
    new, _, base = make
    fetcher = new(total_timeout=1.0)
    fetcher.fetch(base + "/robots.txt")  # robots.txt read first: only the page is timed
    started = time.monotonic()
    result = fetcher.fetch(base + path)
    assert result.status == "timeout"
    assert time.monotonic() - started < 1.4  # the drip alone would take 5 s


def test_slow_lookup_counts_against_the_deadline(make):
    def slow(host: str, port: int) -> list[str]:
        time.sleep(1.5)
        return ["127.0.0.1"]

    new, _, _ = make
    started = time.monotonic()
    assert new(resolver=slow, total_timeout=0.3).fetch("http://slow.invalid/").status == "timeout"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(("path", "code"), [("/missing", 404), ("/down", 503)])
def test_http_errors(make, path, code):
    new, _, base = make
    result = new().fetch(base + path)
    assert (result.status, result.http_status, result.text) == ("http_error", code, None)


def test_closed_port_is_unreachable(make):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    new, _, _ = make
    assert new().fetch(f"http://zos-test.invalid:{port}/").status == "unreachable"


def test_client_must_not_trust_the_environment():
    with httpx.Client() as client, pytest.raises(ValueError):
        Fetcher(user_agent=UA, client=client)
    with Fetcher(user_agent=UA) as fetcher:
        assert fetcher._client.trust_env is False
