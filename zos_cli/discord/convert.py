"""Discord API JSON → `zos_cli.records`, the same records the export reader makes.

The same message read from a DiscordChatExporter export or from the API becomes the same
record: ids, stored UTC times, author, type names (`MESSAGE_TYPES_BY_API_INT`), flags,
`reply_to_id`, mentions, role mentions, attachments, link urls, reactions with emoji ids.
`observed_at` is the fetch time (an export's is its `exportedAt`).
"""

from __future__ import annotations

import re

from zos_cli import timeutil
from zos_cli.records import (
    CHANNEL_TYPES_BY_API_INT,
    DM_TYPES,
    MESSAGE_TYPES_BY_API_INT,
    THREAD_TYPES,
    AttachmentRecord,
    ChannelRecord,
    MessageRecord,
    ReactionRecord,
    RoleRecord,
    UserRecord,
)

REPLY_TYPE = 19
CDN = "https://cdn.discordapp.com"
_URL = re.compile(r"https?://[^\s<>\"'`|]+", re.IGNORECASE)
_CUSTOM_EMOJI = re.compile(r"<a?:[A-Za-z0-9_~]+:(\d+)>")
# Sticker format_type → the names DiscordChatExporter writes.
_STICKER_FORMATS = {1: "Png", 2: "Apng", 3: "Lottie", 4: "Gif"}
_STICKER_EXT = {1: "png", 2: "png", 3: "json", 4: "gif"}


def message_type_name(value: int | None) -> str:
    return MESSAGE_TYPES_BY_API_INT.get(value or 0, f"Type{value}")


def user(data: dict, member: dict | None = None, roles_by_id: dict[str, RoleRecord] | None = None) -> UserRecord:
    """A user, with its server nickname and roles when a member object comes with it."""
    global_name = data.get("global_name")
    nickname = (member or {}).get("nick")
    roles = None
    if member is not None and "roles" in member and roles_by_id is not None:
        roles = [roles_by_id.get(r) or RoleRecord(id=r) for r in member["roles"]]
    avatar = data.get("avatar")
    return UserRecord(
        id=str(data["id"]),
        name=data.get("username"),
        display_name=nickname or global_name or data.get("username"),
        discriminator=_discriminator(data.get("discriminator")),
        is_bot=bool(data.get("bot", False)),
        avatar_url=f"{CDN}/avatars/{data['id']}/{avatar}.png" if avatar else None,
        nickname=nickname,
        roles=roles,
    )


def _discriminator(value: str | None) -> str | None:
    # New-style usernames have discriminator "0"; exports pad it to "0000".
    if value is None:
        return None
    return value.zfill(4)


def role(data: dict) -> RoleRecord:
    color = data.get("color")
    return RoleRecord(
        id=str(data["id"]),
        name=data.get("name"),
        color=f"#{color:06X}" if isinstance(color, int) and color else None,
        position=data.get("position"),
    )


def channel(data: dict, *, server_name: str | None = None, server_icon_url: str | None = None,
            category_name: str | None = None, self_user_id: str | None = None) -> ChannelRecord:
    """A guild channel, thread or DM; for threads `parent_id` is the parent channel, for other
    guild channels the API's `parent_id` is their category."""
    kind = CHANNEL_TYPES_BY_API_INT.get(data.get("type", 0), "unknown")
    is_dm = kind in DM_TYPES
    parent = data.get("parent_id")
    participants = None
    if is_dm:
        participants = sorted(
            (str(r["id"]) for r in data.get("recipients", []) if str(r["id"]) != self_user_id),
            key=int,
        )
    return ChannelRecord(
        id=str(data["id"]),
        type=kind,
        server_id=None if is_dm else str(data["guild_id"]),
        server_name=None if is_dm else server_name,
        server_icon_url=None if is_dm else server_icon_url,
        name=data.get("name"),
        parent_id=str(parent) if parent and kind in THREAD_TYPES else None,
        category_id=str(parent) if parent and kind not in THREAD_TYPES else None,
        category_name=category_name if kind not in THREAD_TYPES else None,
        topic=data.get("topic"),
        participant_ids=participants,
    )


def guild_icon_url(guild: dict) -> str | None:
    icon = guild.get("icon")
    return f"{CDN}/icons/{guild['id']}/{icon}.png" if icon else None


def link_urls(content: str, embeds: list[dict]) -> list[str]:
    """URLs in the text, then embed urls, each once, in order of appearance."""
    seen: dict[str, None] = {}
    for url in _URL.findall(content or ""):
        seen.setdefault(url.rstrip(".,;:!?)]}>"), None)
    for embed in embeds or []:
        if embed.get("url"):
            seen.setdefault(embed["url"], None)
    return list(seen)


def custom_emoji_ids(content: str) -> list[str]:
    return _CUSTOM_EMOJI.findall(content or "")


def reaction(data: dict, users: list[dict] | None = None) -> ReactionRecord:
    emoji = data.get("emoji") or {}
    return ReactionRecord(
        emoji_name=emoji.get("name") or "",
        emoji_id=str(emoji["id"]) if emoji.get("id") else "",
        count=int(data.get("count", 0)),
        users=[user(u) for u in users or []],
    )


def message(data: dict, *, observed_at: str, reactors: dict[tuple[str, str], list[dict]] | None = None,
            roles_by_id: dict[str, RoleRecord] | None = None) -> MessageRecord:
    """One API message. `reactors` maps (emoji name, emoji id or '') to the users fetched for
    that reaction; reactions whose users were not fetched keep only their count."""
    type_int = data.get("type", 0)
    ref = data.get("message_reference") or {}
    reply_to = ref.get("message_id") if type_int == REPLY_TYPE else None
    reactions = None
    if "reactions" in data or reactors is not None:
        reactions = []
        for r in data.get("reactions") or []:
            emoji = r.get("emoji") or {}
            key = (emoji.get("name") or "", str(emoji["id"]) if emoji.get("id") else "")
            reactions.append(reaction(r, (reactors or {}).get(key)))
    thread = data.get("thread")
    return MessageRecord(
        id=str(data["id"]),
        channel_id=str(data["channel_id"]),
        author=user(data["author"], data.get("member"), roles_by_id),
        created_at=timeutil.normalize(data["timestamp"]),
        message_type=message_type_name(type_int),
        content=data.get("content") or "",
        edited_at=timeutil.normalize(data["edited_timestamp"]) if data.get("edited_timestamp") else None,
        reply_to_id=str(reply_to) if reply_to else None,
        mentions=[user(m, m.get("member"), roles_by_id) for m in data.get("mentions") or []],
        role_mention_ids=[str(r) for r in data.get("mention_roles") or []],
        attachments=[
            AttachmentRecord(
                url=a.get("url") or "",
                id=str(a["id"]) if a.get("id") else None,
                file_name=a.get("filename"),
                size_bytes=a.get("size"),
                content_type=a.get("content_type"),
            )
            for a in data.get("attachments") or []
        ],
        link_urls=link_urls(data.get("content") or "", data.get("embeds") or []),
        stickers=[
            {
                "id": str(s["id"]),
                "name": s.get("name"),
                "format": _STICKER_FORMATS.get(s.get("format_type"), str(s.get("format_type"))),
                "sourceUrl": f"{CDN}/stickers/{s['id']}.{_STICKER_EXT.get(s.get('format_type'), 'png')}",
            }
            for s in data.get("sticker_items") or data.get("stickers") or []
        ],
        inline_custom_emoji_ids=custom_emoji_ids(data.get("content") or ""),
        is_pinned=bool(data.get("pinned", False)),
        reactions=reactions,
        thread_id=str(thread["id"]) if thread and thread.get("id") else None,
        observed_at=observed_at,
    )


def reaction_counts(data: dict) -> dict[tuple[str, str], int]:
    """(emoji name, emoji id or '') → count, as the API reports them on a message."""
    out: dict[tuple[str, str], int] = {}
    for r in data.get("reactions") or []:
        emoji = r.get("emoji") or {}
        out[(emoji.get("name") or "", str(emoji["id"]) if emoji.get("id") else "")] = int(r.get("count", 0))
    return out


def looks_like_missing_content_intent(page: list[dict], self_user_id: str | None) -> bool:
    """A page whose people-written messages all come without content, attachments, embeds,
    stickers or polls: the bot lacks the Message Content intent (Discord blanks those fields
    except in DMs and messages that mention the bot). System messages are left out of the test
    since they are legitimately empty."""
    considered = [
        m for m in page
        if m.get("type", 0) in (0, REPLY_TYPE)
        and not any(str(u.get("id")) == self_user_id for u in m.get("mentions") or [])
    ]
    if not considered:
        return False
    return all(
        not m.get("content") and not m.get("attachments") and not m.get("embeds")
        and not m.get("sticker_items") and not m.get("poll") and not m.get("components")
        for m in considered
    )
