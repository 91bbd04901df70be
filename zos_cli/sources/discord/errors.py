"""Typed errors of the Discord client, mapped onto zos's exit codes (docs/configuration.md#exit-codes).

Messages name the request (method and path, never headers) and say what to do. None of them
ever carries the token: the client builds them from its own words, not from httpx's.
"""

from __future__ import annotations

from zos_cli.errors import ConfigError, JobFailed, TemporaryFailure


class DiscordUnauthorized(ConfigError):
    """401: the token is wrong or revoked. Exit 78; the client sends nothing more."""


class CloudflareBan(TemporaryFailure):
    """An HTML 429 without a `Via` header: Cloudflare has banned this IP for a while (exit 75)."""


class RateLimitWaitTooLong(TemporaryFailure):
    """Discord asks for a wait longer than `--max-wait` (exit 75)."""


class InvalidRequestBudgetExceeded(TemporaryFailure):
    """zos itself stops before Discord's invalid-request ban would come (exit 75)."""


class DiscordRequestFailed(JobFailed):
    """A request that failed for good (5xx after every retry, network, other 4xx)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class DiscordForbidden(DiscordRequestFailed):
    """403: the bot may not read this resource (a channel is then skipped, not fatal)."""


class DiscordNotFound(DiscordRequestFailed):
    """404: the resource does not exist (or is not visible)."""
