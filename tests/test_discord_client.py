"""The Discord client over real HTTP against the fake server: buckets, 429s, 5xx, 401, 403,
Cloudflare, and the token staying secret."""

from __future__ import annotations

import pickle

import pytest

from tests.fake_discord import FakeDiscord, fake, make_client  # noqa: F401
from zos_cli.sources.discord import api
from zos_cli.sources.discord.client import USER_AGENT, DiscordToken, resolve_token
from zos_cli.sources.discord.errors import (
    CloudflareBan,
    DiscordForbidden,
    DiscordNotFound,
    DiscordRequestFailed,
    DiscordUnauthorized,
    InvalidRequestBudgetExceeded,
    RateLimitWaitTooLong,
)
from zos_cli.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_TEMPORARY, ConfigError


def _world(fake: FakeDiscord, channels: int = 1) -> None:
    fake.add_guild("100", "Guild")
    fake.add_user("501", "ann")
    for i in range(channels):
        fake.add_channel("100", str(200 + i), f"c{i}")
        fake.post(str(200 + i), "501", f"hello {i}")


# ---------------------------------------------------------------------------- the token
def test_missing_token_names_both_ways(monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(ConfigError) as err:
        resolve_token(None)
    assert err.value.exit_code == EXIT_CONFIG
    assert err.value.message == (
        "no Discord bot token: pass --token TOKEN or set the DISCORD_TOKEN environment variable"
    )


def test_token_from_environment_and_never_shown(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "Bot  s3cr3t.token.value ")
    token = resolve_token(None)
    assert token.authorization() == "Bot s3cr3t.token.value"
    for text in (repr(token), str(token), f"{token}", f"{token!r}", repr([token])):
        assert "s3cr3t" not in text
    with pytest.raises(TypeError):
        pickle.dumps(token)
    assert resolve_token("flag.token").authorization() == "Bot flag.token"


def test_malformed_token_is_a_config_error():
    with pytest.raises(ConfigError):
        DiscordToken("two words")


def test_headers_sent(fake):
    _world(fake)
    with make_client(fake) as client:
        assert api.current_user(client)["id"] == fake.self_id
        assert "fake-token" not in repr(client)
    entry = fake.requests("me")[0]
    assert entry.authorization == f"Bot {fake.token}"
    assert entry.user_agent == USER_AGENT
    assert USER_AGENT.startswith("DiscordBot (https://") and USER_AGENT.endswith(", 0.1.0)")


# ---------------------------------------------------------------------------- buckets
def test_never_sends_on_an_exhausted_bucket(fake):
    _world(fake, channels=2)
    fake.limits["messages"] = (3, 0.15)
    with make_client(fake) as client:
        for _ in range(7):
            for channel in ("200", "201"):
                assert api.messages(client, channel, limit=10)
        waited = sum(client.limiter.waits)
    assert len(fake.requests("messages")) == 14
    assert fake.violations() == []
    assert [e.status for e in fake.requests()] == [200] * 14
    # 7 requests per channel on 3 per 0.15 s: at least two bucket resets waited for.
    assert waited >= 0.2


def test_routes_sharing_a_bucket_respect_it_together(fake):
    _world(fake)
    fake.limits["guild"] = (2, 0.15)
    with make_client(fake) as client:
        for _ in range(4):
            api.guild_channels(client, "100")
            api.active_threads(client, "100")
    assert fake.violations() == []
    assert all(e.status == 200 for e in fake.requests())
    assert {e.route for e in fake.requests()} == {"guild_channels", "active_threads"}


# ---------------------------------------------------------------------------- 429s
@pytest.mark.parametrize("scope", ["user", "shared", "global"])
def test_429_waits_retry_after(fake, scope):
    _world(fake)
    fake.inject("messages", scope, retry_after=0.12)
    with make_client(fake) as client:
        assert api.messages(client, "200")[0]["content"] == "hello 0"
        assert client.rate_limited == 1
        assert client.requests == 2
    first, second = fake.requests("messages")
    assert (first.status, first.scope, second.status) == (429, scope, 200)
    assert second.t - first.t >= 0.12
    assert fake.violations() == []


class _FakeClock:
    """Injected clock for limiter unit tests: time moves only when the limiter sleeps."""

    def __init__(self):
        self.now, self.slept = 100.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_global_429_pauses_every_route():
    from zos_cli.sources.discord.ratelimit import RateLimiter, route_key

    clock = _FakeClock()
    limiter = RateLimiter(clock, max_wait=10)
    messages = route_key("GET", "/channels/1/messages")
    other = route_key("GET", "/guilds/2/channels")
    limiter.acquire(*messages)
    limiter.rate_limited(*messages, {}, 2.0, is_global=True, scope="global")
    limiter.acquire(*other)
    assert clock.slept == [2.0]


def test_bucket_learned_once_serves_every_channel():
    from zos_cli.sources.discord.ratelimit import RateLimiter, route_key

    clock = _FakeClock()
    limiter = RateLimiter(clock, max_wait=10)
    a, b = route_key("GET", "/channels/1/messages"), route_key("GET", "/channels/2/messages")
    assert a == ("GET /channels/{major}/messages", "channels/1") and a[0] == b[0]
    assert route_key("GET", "/channels/1/messages/5/reactions/%F0%9F%8E%89") == (
        "GET /channels/{major}/messages/{id}/reactions/{emoji}", "channels/1")
    headers = {"x-ratelimit-bucket": "h", "x-ratelimit-limit": "2", "x-ratelimit-remaining": "0",
               "x-ratelimit-reset-after": "1.5"}
    limiter.acquire(*a)
    limiter.update(*a, headers)
    limiter.acquire(*b)                  # another channel: its own state, no wait
    assert clock.slept == []
    limiter.acquire(*a)                  # exhausted: wait for the reset (+1 ms of rounding)
    assert clock.slept == [1.501]


def test_client_side_global_window():
    from zos_cli.sources.discord.ratelimit import RateLimiter, route_key

    clock = _FakeClock()
    limiter = RateLimiter(clock, max_wait=10, per_second=3)
    for i in range(4):
        limiter.acquire(*route_key("GET", f"/channels/{i}/messages"))
    assert clock.slept == [1.0]


def test_wait_beyond_max_wait_exits_75(fake):
    _world(fake)
    fake.inject("messages", "user", retry_after=3.0)
    with make_client(fake, max_wait=0.5) as client:
        with pytest.raises(RateLimitWaitTooLong) as err:
            api.messages(client, "200")
    assert err.value.exit_code == EXIT_TEMPORARY
    assert "more than --max-wait 0.5 s" in err.value.message
    assert len(fake.requests()) == 1


def test_cloudflare_ban_stops_at_once(fake):
    _world(fake)
    fake.inject("messages", "cloudflare")
    with make_client(fake) as client:
        with pytest.raises(CloudflareBan) as err:
            api.messages(client, "200")
    assert err.value.exit_code == EXIT_TEMPORARY
    assert "Cloudflare" in err.value.message
    assert len(fake.requests()) == 1


# ---------------------------------------------------------------------------- 5xx, 401, 403
def test_5xx_storm_retried_with_growing_backoff(fake):
    _world(fake)
    fake.inject("messages", "status", times=3, status=502)
    with make_client(fake, backoff_base=0.03) as client:
        assert api.messages(client, "200")
    log = fake.requests("messages")
    assert [e.status for e in log] == [502, 502, 502, 200]
    gaps = [b.t - a.t for a, b in zip(log, log[1:])]
    assert gaps[0] >= 0.03 and gaps[1] >= 0.06 and gaps[2] >= 0.12


def test_5xx_gives_up_after_five_tries(fake):
    _world(fake)
    fake.inject("messages", "status", times=50, status=500)
    with make_client(fake) as client:
        with pytest.raises(DiscordRequestFailed) as err:
            api.messages(client, "200")
    assert err.value.exit_code == EXIT_FAILED
    assert err.value.message == "GET /channels/200/messages: Discord answered 500 5 times in a row; try again later"
    assert len(fake.requests()) == 5


def test_401_stops_everything(fake):
    _world(fake)
    fake.revoked = True
    with make_client(fake) as client:
        with pytest.raises(DiscordUnauthorized) as err:
            api.current_user(client)
        with pytest.raises(DiscordUnauthorized):
            api.messages(client, "200")
    assert err.value.exit_code == EXIT_CONFIG
    assert err.value.message == (
        "Discord rejected the bot token (401 Unauthorized): check --token or DISCORD_TOKEN; "
        "zos sent no further request"
    )
    assert len(fake.requests()) == 1


def test_403_and_404_are_typed(fake):
    _world(fake)
    fake.forbidden.add("200")
    with make_client(fake) as client:
        with pytest.raises(DiscordForbidden) as err:
            api.messages(client, "200")
        assert "Missing Access" in err.value.message
        with pytest.raises(DiscordNotFound):
            api.channel(client, "999")
        assert api.guild_member(client, "100", "777") is None


def test_invalid_request_budget_stops_before_a_ban(fake):
    _world(fake)
    fake.forbidden.add("200")
    with make_client(fake, invalid_budget=3) as client:
        for _ in range(3):
            with pytest.raises(DiscordForbidden):
                api.messages(client, "200")
        with pytest.raises(InvalidRequestBudgetExceeded) as err:
            api.messages(client, "200")
    assert err.value.exit_code == EXIT_TEMPORARY
    assert len(fake.requests()) == 3


def test_network_errors_never_show_the_token():
    token = DiscordToken("very.secret.token")
    from zos_cli.sources.discord.client import DiscordClient

    with DiscordClient(token, "http://127.0.0.1:9/api/v10", backoff_base=0.001) as client:
        with pytest.raises(DiscordRequestFailed) as err:
            client.get("/users/@me")
    assert "very.secret" not in str(err.value) and err.value.__cause__ is None
    assert err.value.__suppress_context__
    assert "(5 tries)" in err.value.message


# ---------------------------------------------------------------------------- pagination
def test_reactors_beyond_one_page_arrive_once(fake):
    _world(fake)
    msg = fake.post("200", "501", "react to me")
    for i in range(250):
        fake.add_user(str(10_000 + i), f"u{i}")
        fake.react("200", msg["id"], str(10_000 + i), "🎉")
    fake.react("200", msg["id"], "501", "blob", "333")
    with make_client(fake) as client:
        users = api.reactors(client, "200", msg["id"], {"id": None, "name": "🎉"})
        custom = api.reactors(client, "200", msg["id"], {"id": "333", "name": "blob"})
    assert sorted(u["id"] for u in users) == [str(10_000 + i) for i in range(250)]
    assert [u["id"] for u in custom] == ["501"]
    assert len(fake.requests("reactors")) == 4


def test_discords_global_limit_is_waited_out(fake):
    _world(fake, channels=3)
    fake.global_limit = (5, 0.2)     # stricter than zos's own 50/s: Discord answers 429 global
    with make_client(fake) as client:
        for _ in range(4):
            for channel in ("200", "201", "202"):
                assert api.messages(client, channel)
        assert client.rate_limited >= 1
    ok = [e for e in fake.requests() if e.status == 200]
    assert len(ok) == 12
    assert {e.scope for e in fake.requests() if e.status == 429} == {"global"}
    assert fake.violations() == []


def test_a_request_that_timed_out_still_counts_as_sent(fake):
    # The server received it (and answered too late): `requests` reports the load as sent.
    _world(fake)
    fake.delay = 0.4
    with make_client(fake, timeout=0.1) as client:
        with pytest.raises(DiscordRequestFailed):
            api.current_user(client)
        tries = client.requests
    fake.delay = 0.0
    assert tries == client.server_error_tries == 5
