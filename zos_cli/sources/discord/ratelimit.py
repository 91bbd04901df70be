"""Discord's rate limits as the client keeps them: per bucket, global, and invalid requests.

A route (method + path with only its top-level resource kept, e.g.
`GET /channels/123/messages/{id}/reactions/{emoji}`) learns its bucket from the
`X-RateLimit-Bucket` header; routes that answer with the same bucket hash share one state per
top-level resource. The client never sends on a bucket it knows is exhausted before its reset,
pauses every route after a global 429, and keeps its own count of invalid requests (401, 403,
429 other than `shared`) so it stops long before Discord's 10,000-per-10-minutes ban.

Times are the clock's monotonic seconds; `X-RateLimit-Reset-After` (relative) is used rather
than the absolute `X-RateLimit-Reset`, so a skewed local clock cannot make zos send early.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from zos_cli.sources.discord.errors import InvalidRequestBudgetExceeded, RateLimitWaitTooLong

# Top-level resources whose id is part of a rate-limit bucket (Discord's "major parameters").
_MAJOR = ("channels", "guilds", "webhooks")
_ID = re.compile(r"^\d+$")

GLOBAL_REQUESTS_PER_SECOND = 50
# X-RateLimit-Reset-After has millisecond precision: rounded down, a reset counted from the
# moment the answer arrived can still fall up to half a millisecond before Discord's, and a
# request sent then lands on the exhausted bucket. One more millisecond covers the rounding.
RESET_AFTER_ROUNDING = 0.001
INVALID_WINDOW_SECONDS = 600.0
# Discord bans at 10,000 invalid requests in 10 minutes; zos stops at a tenth of that.
INVALID_REQUEST_BUDGET = 1000


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def route_key(method: str, path: str) -> tuple[str, str]:
    """(route, major) for a request path such as `/channels/1/messages/2/reactions/%F0%9F%91%8D`.

    The route is the path's template (`GET /channels/{major}/messages/{id}/reactions/{emoji}`),
    the same for every channel, so one response teaches the bucket of the route everywhere;
    `major` is the top-level resource (`channels/1`), '' when there is none. Bucket states are
    kept per (bucket, major), as Discord counts them.
    """
    parts = [p for p in path.split("?")[0].split("/") if p]
    out: list[str] = []
    major = ""
    for i, part in enumerate(parts):
        prev = parts[i - 1] if i else ""
        if i == 1 and prev in _MAJOR:
            major = f"{prev}/{part}"
            out.append("{major}")
        elif prev == "reactions":
            out.append("{emoji}")
        elif _ID.match(part):
            out.append("{id}")
        else:
            out.append(part)
    return f"{method.upper()} /" + "/".join(out), major


@dataclass
class BucketState:
    limit: int | None = None
    remaining: int | None = None
    reset_at: float = 0.0          # monotonic time at which `remaining` is back to `limit`


class RateLimiter:
    """Everything the client must respect before it sends one request."""

    def __init__(self, clock: Clock, *, max_wait: float, per_second: int = GLOBAL_REQUESTS_PER_SECOND,
                 invalid_budget: int = INVALID_REQUEST_BUDGET):
        self.clock = clock
        self.max_wait = max_wait
        self.per_second = per_second
        self.invalid_budget = invalid_budget
        self._bucket_of_route: dict[str, str] = {}
        self._buckets: dict[tuple[str, str], BucketState] = {}
        self._global_until = 0.0
        self._sent: deque[float] = deque()
        self._invalid: deque[float] = deque()
        self.waits: list[float] = []     # every wait taken, in seconds (for the summary)

    # -------------------------------------------------------------- before a request
    def acquire(self, route: str, major: str) -> None:
        """Wait until `route` may be sent, or raise when the wait is beyond `max_wait`."""
        self._check_invalid_budget()
        while True:
            now = self.clock.monotonic()
            wait = max(self._global_until - now, self._global_window_wait(now), self._bucket_wait(route, major, now))
            if wait <= 0:
                break
            self._wait(wait, f"the rate limit of {route}")
        state = self._state(route, major)
        if state is not None and state.remaining is not None:
            # Count the request now so a missing header on its answer cannot let us overshoot.
            state.remaining -= 1
        self._sent.append(self.clock.monotonic())

    def _bucket_wait(self, route: str, major: str, now: float) -> float:
        state = self._state(route, major)
        if state is None or state.remaining is None:
            return 0.0
        if now >= state.reset_at:
            state.remaining = state.limit
            return 0.0
        return state.reset_at - now if state.remaining <= 0 else 0.0

    def _global_window_wait(self, now: float) -> float:
        while self._sent and now - self._sent[0] >= 1.0:
            self._sent.popleft()
        if len(self._sent) < self.per_second:
            return 0.0
        return 1.0 - (now - self._sent[0])

    def _wait(self, seconds: float, what: str) -> None:
        if seconds > self.max_wait:
            raise RateLimitWaitTooLong(
                f"Discord asks zos to wait {seconds:.1f} s for {what}, more than --max-wait "
                f"{self.max_wait:g} s: try again later or raise --max-wait"
            )
        self.waits.append(seconds)
        self.clock.sleep(seconds)

    def _state(self, route: str, major: str) -> BucketState | None:
        bucket = self._bucket_of_route.get(route)
        return None if bucket is None else self._buckets.get((bucket, major))

    # -------------------------------------------------------------- after a response
    def update(self, route: str, major: str, headers) -> None:
        """Learn the bucket of `route` and its state from a response's X-RateLimit-* headers."""
        bucket = headers.get("x-ratelimit-bucket")
        if not bucket:
            return
        self._bucket_of_route[route] = bucket
        state = self._buckets.setdefault((bucket, major), BucketState())
        limit, remaining = _int(headers.get("x-ratelimit-limit")), _int(headers.get("x-ratelimit-remaining"))
        reset_after = _float(headers.get("x-ratelimit-reset-after"))
        if limit is not None:
            state.limit = limit
        if remaining is not None:
            state.remaining = remaining
        if reset_after is not None:
            state.reset_at = self.clock.monotonic() + reset_after + RESET_AFTER_ROUNDING

    def rate_limited(self, route: str, major: str, headers, retry_after: float, *, is_global: bool,
                     scope: str | None) -> None:
        """A 429: pause the bucket (or every route, when global) for `retry_after`; the next
        `acquire` takes the wait (and raises when it is beyond `max_wait`)."""
        if scope != "shared":
            self.note_invalid()
        until = self.clock.monotonic() + retry_after
        if is_global:
            self._global_until = max(self._global_until, until)
            return
        self.update(route, major, headers)
        bucket = self._bucket_of_route.get(route) or f"route:{route}"
        self._bucket_of_route[route] = bucket
        state = self._buckets.setdefault((bucket, major), BucketState())
        state.remaining = 0
        state.limit = state.limit or 1
        state.reset_at = max(state.reset_at, until)

    def note_invalid(self) -> None:
        self._invalid.append(self.clock.monotonic())

    def _check_invalid_budget(self) -> None:
        now = self.clock.monotonic()
        while self._invalid and now - self._invalid[0] >= INVALID_WINDOW_SECONDS:
            self._invalid.popleft()
        if len(self._invalid) >= self.invalid_budget:
            raise InvalidRequestBudgetExceeded(
                f"{len(self._invalid)} invalid requests (401/403/429) in 10 minutes: zos stops "
                "before Discord bans this address; check the bot's permissions and try later"
            )


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
