"""The Discord REST endpoints zos reads, as small functions over `DiscordClient`.

Pagination lives here: every generator follows Discord's cursors and stops on a short page.
Message pages come back newest first, even with `after=` (docs/discord.md#the-rest-api).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from zos_cli.sources.discord.client import DiscordClient
from zos_cli.sources.discord.errors import DiscordNotFound, DiscordRequestFailed

PAGE = 100                  # messages, reactors
GUILDS_PAGE = 200
MEMBERS_PAGE = 1000


def _unexpected(path: str, expected: str, method: str = "GET") -> DiscordRequestFailed:
    return DiscordRequestFailed(f"{method} {path}: Discord answered 200 with something else "
                                f"than {expected}; try again later")


def _object(path: str, body, *, key: str = "id", method: str = "GET") -> dict:
    """A 200 body that must be one object (with `key`): anything else is this request's
    failure, never a crash further on."""
    if not isinstance(body, dict) or (key and key not in body):
        raise _unexpected(path, f"an object with {key!r}" if key else "an object", method)
    return body


def _objects(path: str, body, *, key: str = "id") -> list[dict]:
    """A 200 body that must be a list of objects (each with `key`); none is an empty list."""
    if body is None:
        return []
    if not isinstance(body, list) or not all(isinstance(o, dict) and key in o for o in body):
        raise _unexpected(path, f"a list of objects with {key!r}")
    return body


def _body(path: str, body) -> dict:
    """A 200 body that must be an object of lists (`{"threads": […], …}`); none is {}."""
    return {} if body is None else _object(path, body, key="")


def current_user(client: DiscordClient) -> dict:
    return _object("/users/@me", client.get("/users/@me"))


def guilds(client: DiscordClient) -> list[dict]:
    """Every guild the bot is in (`/users/@me/guilds`, paged by `after`)."""
    out: list[dict] = []
    after = None
    while True:
        page = _objects("/users/@me/guilds",
                        client.get("/users/@me/guilds", {"limit": GUILDS_PAGE, "after": after}))
        out.extend(page)
        if len(page) < GUILDS_PAGE:
            return out
        after = max(page, key=lambda g: int(g["id"]))["id"]


def guild(client: DiscordClient, guild_id: str) -> dict:
    path = f"/guilds/{guild_id}"
    return _object(path, client.get(path))


def guild_channels(client: DiscordClient, guild_id: str) -> list[dict]:
    path = f"/guilds/{guild_id}/channels"
    return _objects(path, client.get(path))


def active_threads(client: DiscordClient, guild_id: str) -> list[dict]:
    path = f"/guilds/{guild_id}/threads/active"
    return _objects(path, _body(path, client.get(path)).get("threads"))


def archived_public_threads(client: DiscordClient, channel_id: str) -> Iterator[dict]:
    """Archived public threads of a channel, newest archive first (`before=<ISO>`, `has_more`)."""
    before = None
    while True:
        path = f"/channels/{channel_id}/threads/archived/public"
        body = _body(path, client.get(path, {"limit": PAGE, "before": before}))
        threads = _objects(path, body.get("threads"))
        yield from threads
        if not body.get("has_more") or not threads:
            return
        before = min(t.get("thread_metadata", {}).get("archive_timestamp", "") for t in threads)


def channel(client: DiscordClient, channel_id: str) -> dict:
    path = f"/channels/{channel_id}"
    return _object(path, client.get(path))


def messages(client: DiscordClient, channel_id: str, *, limit: int = PAGE,
             before: str | None = None, after: str | None = None) -> list[dict]:
    """One page, newest first. `before` and `after` are exclusive snowflake bounds."""
    path = f"/channels/{channel_id}/messages"
    return _objects(path, client.get(path, {"limit": limit, "before": before, "after": after}))


def emoji_path(emoji: dict) -> str:
    """The URL segment of a reaction emoji: the character, or `name:id` for custom ones."""
    text = f"{emoji.get('name') or '_'}:{emoji['id']}" if emoji.get("id") else emoji["name"]
    return quote(text, safe=":")


def reactors(client: DiscordClient, channel_id: str, message_id: str, emoji: dict) -> list[dict]:
    """Every user who reacted with `emoji` (paged by user id, 100 at a time)."""
    out: list[dict] = []
    after = None
    path = f"/channels/{channel_id}/messages/{message_id}/reactions/{emoji_path(emoji)}"
    while True:
        page = _objects(path, client.get(path, {"limit": PAGE, "after": after}))
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = max(page, key=lambda u: int(u["id"]))["id"]


def guild_roles(client: DiscordClient, guild_id: str) -> list[dict]:
    path = f"/guilds/{guild_id}/roles"
    return _objects(path, client.get(path))


def guild_members(client: DiscordClient, guild_id: str) -> Iterator[dict]:
    """Every member (needs the Server Members intent; 403 without it)."""
    after = None
    while True:
        path = f"/guilds/{guild_id}/members"
        page = _objects(path, client.get(path, {"limit": MEMBERS_PAGE, "after": after}), key="user")
        yield from page
        if len(page) < MEMBERS_PAGE:
            return
        after = max(page, key=lambda m: int(m["user"]["id"]))["user"]["id"]


def guild_member(client: DiscordClient, guild_id: str, user_id: str) -> dict | None:
    """One member, or None when the user is no longer in the server."""
    try:
        path = f"/guilds/{guild_id}/members/{user_id}"
        return _object(path, client.get(path), key="user")
    except DiscordNotFound:
        return None


def open_dm(client: DiscordClient, user_id: str) -> dict:
    """The DM channel with a user (created if needed): `POST /users/@me/channels`."""
    path = "/users/@me/channels"
    return _object(path, client.post(path, {"recipient_id": user_id}), method="POST")
