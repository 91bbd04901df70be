"""The one HTTP client for Discord's REST API (httpx), with the manners of a good bot.

- Rate limits from the headers, per bucket; a global 429 pauses every route; `max_wait` caps
  one wait (beyond it: exit 75); an HTML 429 without a `Via` header is a Cloudflare ban (75).
- 5xx and network errors: at most `server_error_tries` tries with growing backoff.
- 401: stop at once (exit 78) and never send another request. 403/404: typed errors the
  callers decide about (a forbidden channel is skipped).
- The token lives in a `DiscordToken` whose repr is redacted; errors are built from zos's own
  words (method, path, status, Discord's `message`), never from httpx's exceptions, and raised
  `from None`, so neither a traceback nor a log line can carry the Authorization header.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

from zos_cli import __version__
from zos_cli.sources.discord.errors import (
    CloudflareBan,
    DiscordForbidden,
    DiscordNotFound,
    DiscordRequestFailed,
    DiscordUnauthorized,
)
from zos_cli.sources.discord.ratelimit import Clock, RateLimiter, SystemClock, route_key
from zos_cli.errors import ConfigError, TemporaryFailure

log = logging.getLogger("zos.discord")

PROJECT_URL = "https://github.com/zos-project/zos"
USER_AGENT = f"DiscordBot ({PROJECT_URL}, {__version__})"
TOKEN_ENV = "DISCORD_TOKEN"
# A request answered 429 this many times in a row is given up (Discord is misbehaving).
MAX_RATE_LIMITED_TRIES = 8


class DiscordToken:
    """A bot token that never shows itself: not in repr, str, f-strings, pickles or logs."""

    __slots__ = ("_secret",)

    def __init__(self, value: str):
        value = value.strip()
        if value.lower().startswith("bot "):
            value = value[4:].strip()
        if not value or not value.isascii() or any(c.isspace() for c in value) or not value.isprintable():
            raise ConfigError(
                "the Discord bot token is empty or malformed: pass the token shown in the "
                f"developer portal with --token or {TOKEN_ENV}"
            )
        self._secret = value

    def authorization(self) -> str:
        return f"Bot {self._secret}"

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "<redacted>")

    def __repr__(self) -> str:
        return "DiscordToken(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):
        raise TypeError("a DiscordToken cannot be pickled")


def resolve_token(flag: str | None) -> DiscordToken:
    """The token from `--token`, else DISCORD_TOKEN; missing is a ConfigError (exit 78)."""
    value = flag if flag else os.environ.get(TOKEN_ENV)
    if not value or not value.strip():
        raise ConfigError(
            f"no Discord bot token: pass --token TOKEN or set the {TOKEN_ENV} environment variable"
        )
    return DiscordToken(value)


class DiscordClient:
    """Sequential, rate-limit-correct requests to one Discord API base URL."""

    def __init__(
        self,
        token: DiscordToken,
        base_url: str,
        *,
        max_wait: float = 60.0,
        clock: Clock | None = None,
        timeout: float = 30.0,
        server_error_tries: int = 5,
        backoff_base: float = 1.0,
        per_second: int = 50,
        invalid_budget: int = 1000,
    ):
        self.base_url = base_url.rstrip("/")
        self.clock = clock or SystemClock()
        self.limiter = RateLimiter(self.clock, max_wait=max_wait, per_second=per_second,
                                   invalid_budget=invalid_budget)
        self.server_error_tries = max(1, server_error_tries)
        self.backoff_base = backoff_base
        self.requests = 0          # requests actually sent
        self.rate_limited = 0      # 429 answers received
        self._token = token
        self._stopped_by_401 = False
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers={"Authorization": token.authorization(), "User-Agent": USER_AGENT},
            timeout=timeout,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"DiscordClient({self.base_url!r}, requests={self.requests})"

    def __enter__(self) -> DiscordClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -------------------------------------------------------------- requests
    def get(self, path: str, params: dict | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: dict | None = None) -> Any:
        return self.request("POST", path, json=json)

    def request(self, method: str, path: str, *, params: dict | None = None,
                json: dict | None = None) -> Any:
        """Send one API request (with every wait and retry it needs); return the decoded JSON."""
        if self._stopped_by_401:
            raise self._unauthorized()
        route, major = route_key(method, path)
        server_errors = rate_limits = 0
        while True:
            self.limiter.acquire(route, major)
            try:
                response = self._http.request(method, path.lstrip("/"), params=_clean(params), json=json)
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.TimeoutException):
                    self.requests += 1  # (sent, and perhaps answered too late: it counts)
                server_errors += 1
                reason = f"{type(exc).__name__} talking to {self.base_url}"
                if server_errors >= self.server_error_tries:
                    raise DiscordRequestFailed(
                        f"{method} {path}: {reason} ({server_errors} tries); check the network "
                        "and ZOS_DISCORD_API_BASE"
                    ) from None
                self._backoff(server_errors, reason)
                continue
            self.requests += 1
            status = response.status_code
            log.info("%s %s -> %s", method, path, status)
            self.limiter.update(route, major, response.headers)
            if status < 300:
                return self._decode(response, method, path)
            if status == 429:
                rate_limits += 1
                self._on_429(response, route, major, method, path, rate_limits)
                continue
            if status >= 500:
                server_errors += 1
                if server_errors >= self.server_error_tries:
                    raise DiscordRequestFailed(
                        f"{method} {path}: Discord answered {status} {server_errors} times in a "
                        "row; try again later",
                        status,
                    )
                self._backoff(server_errors, f"HTTP {status}")
                continue
            raise self._client_error(response, method, path)

    # -------------------------------------------------------------- answers
    def _on_429(self, response: httpx.Response, route: str, major: str, method: str, path: str,
                tries: int) -> None:
        self.rate_limited += 1
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type and "via" not in response.headers:
            self.limiter.note_invalid()
            raise CloudflareBan(
                "Cloudflare refused the request (an HTML 429 without Via): this address is "
                "temporarily banned for too many invalid requests; stop and try again in an hour"
            )
        body = _json_or_empty(response)
        retry_after = _retry_after(body, response.headers)
        scope = response.headers.get("x-ratelimit-scope")
        is_global = bool(body.get("global")) or scope == "global" or \
            response.headers.get("x-ratelimit-global", "").lower() == "true"
        log.info("rate limited on %s %s (%s, retry after %.3f s)", method, path,
                 scope or ("global" if is_global else "route"), retry_after)
        if tries >= MAX_RATE_LIMITED_TRIES:
            raise TemporaryFailure(
                f"{method} {path}: Discord answered 429 {tries} times in a row; try again later"
            )
        self.limiter.rate_limited(route, major, response.headers, retry_after,
                                  is_global=is_global, scope=scope)

    def _client_error(self, response: httpx.Response, method: str, path: str) -> Exception:
        status = response.status_code
        detail = self._token.redact(str(_json_or_empty(response).get("message") or "")).strip()
        said = f" ({detail})" if detail else ""
        if status == 401:
            self._stopped_by_401 = True
            self.limiter.note_invalid()
            return self._unauthorized()
        if status == 403:
            self.limiter.note_invalid()
            return DiscordForbidden(f"{method} {path}: forbidden{said}; the bot lacks access", 403)
        if status == 404:
            return DiscordNotFound(f"{method} {path}: not found{said}", 404)
        return DiscordRequestFailed(f"{method} {path}: Discord answered {status}{said}", status)

    def _unauthorized(self) -> DiscordUnauthorized:
        return DiscordUnauthorized(
            "Discord rejected the bot token (401 Unauthorized): check --token or "
            f"{TOKEN_ENV}; zos sent no further request"
        )

    def _decode(self, response: httpx.Response, method: str, path: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise DiscordRequestFailed(
                f"{method} {path}: Discord answered {response.status_code} with a body that is "
                "not JSON; check ZOS_DISCORD_API_BASE",
                response.status_code,
            ) from None

    def _backoff(self, attempt: int, reason: str) -> None:
        seconds = self.backoff_base * (2 ** (attempt - 1))
        log.info("%s; retrying in %.2f s", reason, seconds)
        self.clock.sleep(seconds)


def _clean(params: dict | None) -> dict | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


def _json_or_empty(response: httpx.Response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(body: dict, headers) -> float:
    for value in (body.get("retry_after"), headers.get("retry-after"),
                  headers.get("x-ratelimit-reset-after")):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return 1.0
