"""The Discord REST endpoints zos reads, as small functions over `DiscordClient`.

Pagination lives here: every generator follows Discord's cursors and stops on a short page.
Message pages come back newest first, even with `after=` (FORMATS.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from zos_cli.discord.client import DiscordClient
from zos_cli.discord.errors import DiscordNotFound

PAGE = 100                  # messages, reactors
GUILDS_PAGE = 200
MEMBERS_PAGE = 1000


def current_user(client: DiscordClient) -> dict:
    return client.get("/users/@me")


def guilds(client: DiscordClient) -> list[dict]:
    """Every guild the bot is in (`/users/@me/guilds`, paged by `after`)."""
    out: list[dict] = []
    after = None
    while True:
        page = client.get("/users/@me/guilds", {"limit": GUILDS_PAGE, "after": after}) or []
        out.extend(page)
        if len(page) < GUILDS_PAGE:
            return out
        after = max(page, key=lambda g: int(g["id"]))["id"]


def guild(client: DiscordClient, guild_id: str) -> dict:
    return client.get(f"/guilds/{guild_id}")


def guild_channels(client: DiscordClient, guild_id: str) -> list[dict]:
    return client.get(f"/guilds/{guild_id}/channels") or []


def active_threads(client: DiscordClient, guild_id: str) -> list[dict]:
    return (client.get(f"/guilds/{guild_id}/threads/active") or {}).get("threads", [])


def archived_public_threads(client: DiscordClient, channel_id: str) -> Iterator[dict]:
    """Archived public threads of a channel, newest archive first (`before=<ISO>`, `has_more`)."""
    before = None
    while True:
        body = client.get(
            f"/channels/{channel_id}/threads/archived/public", {"limit": PAGE, "before": before}
        ) or {}
        threads = body.get("threads", [])
        yield from threads
        if not body.get("has_more") or not threads:
            return
        before = min(t.get("thread_metadata", {}).get("archive_timestamp", "") for t in threads)


def channel(client: DiscordClient, channel_id: str) -> dict:
    return client.get(f"/channels/{channel_id}")


def messages(client: DiscordClient, channel_id: str, *, limit: int = PAGE,
             before: str | None = None, after: str | None = None) -> list[dict]:
    """One page, newest first. `before` and `after` are exclusive snowflake bounds."""
    return client.get(
        f"/channels/{channel_id}/messages", {"limit": limit, "before": before, "after": after}
    ) or []


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
        page = client.get(path, {"limit": PAGE, "after": after}) or []
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = max(page, key=lambda u: int(u["id"]))["id"]


def guild_roles(client: DiscordClient, guild_id: str) -> list[dict]:
    return client.get(f"/guilds/{guild_id}/roles") or []


def guild_members(client: DiscordClient, guild_id: str) -> Iterator[dict]:
    """Every member (needs the Server Members intent; 403 without it)."""
    after = None
    while True:
        page = client.get(f"/guilds/{guild_id}/members", {"limit": MEMBERS_PAGE, "after": after}) or []
        yield from page
        if len(page) < MEMBERS_PAGE:
            return
        after = max(page, key=lambda m: int(m["user"]["id"]))["user"]["id"]


def guild_member(client: DiscordClient, guild_id: str, user_id: str) -> dict | None:
    """One member, or None when the user is no longer in the server."""
    try:
        return client.get(f"/guilds/{guild_id}/members/{user_id}")
    except DiscordNotFound:
        return None


def open_dm(client: DiscordClient, user_id: str) -> dict:
    """The DM channel with a user (created if needed): `POST /users/@me/channels`."""
    return client.post("/users/@me/channels", {"recipient_id": user_id})
