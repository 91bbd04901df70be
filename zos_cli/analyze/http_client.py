"""The httpx pieces the safe fetcher builds on: a request pinned to a checked address, the
client it sends with, and the charset of a text body. Split from fetch.py to keep each module
readable; fetch.py re-exports `pinned_request` and `default_client`.
"""

from __future__ import annotations

import codecs
import re
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from zos_cli.analyze.addresses import IPAddress, Target

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def pinned_request(
    client: httpx.Client, target: Target, ip: IPAddress, *, headers: dict[str, str], timeouts: dict
) -> httpx.Request:
    """A GET for `target` that connects to `ip` and to nothing else.

    The URL carries the IP, so httpx/httpcore never resolve anything; `Host:` carries the
    original authority, so virtual hosting works; for https the `sni_hostname` extension makes
    httpcore send the original name as SNI and verify the certificate against it (not against
    the IP). `timeouts` is kept by reference: httpcore reads it on every socket read, so the
    caller can shrink `read` as the deadline nears."""
    literal = f"[{ip.compressed}]" if ip.version == 6 else str(ip)
    extensions: dict[str, object] = {"timeout": timeouts}
    headers = {**headers, "Host": target.host_header}
    if target.scheme == "https":
        if target.ip is None:
            extensions["sni_hostname"] = target.host
        # Connections pool by (scheme, IP, port). Reusing a TLS connection verified for one name
        # for another name on the same IP would skip the second certificate check, so https
        # connections are not kept alive. Plain http has no identity to mix up.
        headers["Connection"] = "close"
    url = f"{target.scheme}://{literal}:{target.port}{target.path_query}"
    return client.build_request("GET", url, headers=headers, extensions=extensions)


def default_client(connect_timeout: float = 5.0) -> httpx.Client:
    """The client the Fetcher builds for itself. trust_env=False: no proxy variables (a proxy
    would resolve names itself and undo the pinning), no .netrc. No cookies are ever stored:
    requests go to IPs, so a jar would share cookies between sites on one address."""
    return httpx.Client(
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(15.0, connect=connect_timeout),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )


def body_charset(response: httpx.Response, body: bytes) -> str:
    """The header's charset, else a <meta charset> near the top, else UTF-8."""
    candidates = [response.charset_encoding]
    match = _META_CHARSET.search(body[:4096])
    if match:
        candidates.append(match.group(1).decode("ascii"))
    for name in candidates:
        if name:
            try:
                return codecs.lookup(name).name
            except LookupError:
                pass
    return "utf-8"
