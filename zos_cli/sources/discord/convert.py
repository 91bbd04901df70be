"""Discord API JSON → `zos_cli.records`, the same records the export reader makes.

The same message read from a DiscordChatExporter export or from the API becomes the same
record: ids, stored UTC times, author, type names (`MESSAGE_TYPES_BY_API_INT`), flags,
`reply_to_id`, mentions, role mentions, attachments, link urls, reactions with emoji ids.
`observed_at` is the fetch time (an export's is its `exportedAt`).
"""

from __future__ import annotations

import re

from zos_cli import timeutil
from zos_cli.sources import export_schema
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
THREAD_CREATED_TYPE = 18
CDN = "https://cdn.discordapp.com"
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
# Sticker format_type → the names DiscordChatExporter writes.
_STICKER_FORMATS = {1: "Png", 2: "Apng", 3: "Lottie", 4: "Gif"}
_STICKER_EXT = {1: "png", 2: "png", 3: "json", 4: "gif"}


def message_type_name(value: int | None) -> str:
    return MESSAGE_TYPES_BY_API_INT.get(value or 0, f"Type{value}")


def user(data: dict, member: dict | None = None, roles_by_id: dict[str, RoleRecord] | None = None) -> UserRecord:
    """A user, with its server nickname and roles when a member object comes with it.

    Like DiscordChatExporter's `nickname`, the nickname is the server nickname, else the global
    display name, else the username, so both sources give the same record."""
    display = (member or {}).get("nick") or data.get("global_name") or data.get("username")
    roles = None
    if member is not None and "roles" in member:
        roles = [(roles_by_id or {}).get(str(r)) or RoleRecord(id=str(r)) for r in member["roles"]]
    return UserRecord(
        id=str(data["id"]),
        name=data.get("username"),
        display_name=display,
        discriminator=_discriminator(data.get("discriminator")),
        is_bot=bool(data.get("bot", False)),
        avatar_url=avatar_url(data),
        nickname=display,
        roles=roles,
    )


def avatar_url(data: dict) -> str:
    """The avatar url DiscordChatExporter writes for this user."""
    avatar = data.get("avatar")
    if avatar:
        ext = "gif" if avatar.startswith("a_") else "png"
        return f"{CDN}/avatars/{data['id']}/{avatar}.{ext}?size=512"
    discriminator = int(data.get("discriminator") or 0)
    index = discriminator % 5 if discriminator else (int(data["id"]) >> 22) % 6
    return f"{CDN}/embed/avatars/{index}.png"


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


def guild_icon_url(guild: dict) -> str:
    """The icon url DiscordChatExporter writes for a guild."""
    icon = guild.get("icon")
    if not icon:
        return f"{CDN}/embed/avatars/0.png"
    ext = "gif" if icon.startswith("a_") else "png"
    return f"{CDN}/icons/{guild['id']}/{icon}.{ext}?size=512"


def link_urls(content: str, embeds: list[dict]) -> list[str]:
    """URLs in the text, then embed urls, each once — by the export reader's own rules."""
    return export_schema.link_urls(
        content or "", [export_schema.XEmbed(url=e.get("url")) for e in embeds or []]
    )


def custom_emoji_ids(content: str) -> list[str]:
    """Custom emoji ids, one per `<:name:id>` occurrence (the API sends raw markdown)."""
    return export_schema.custom_emoji_occurrences(content or "", [])


def emoji_key(emoji: dict) -> tuple[str, str]:
    """(name, id or '') of an API emoji, named as the export reader names it."""
    emoji_id = str(emoji["id"]) if emoji.get("id") else ""
    return (emoji.get("name") or emoji_id, emoji_id)


def reaction(data: dict, users: list[dict] | None = None) -> ReactionRecord:
    name, emoji_id = emoji_key(data.get("emoji") or {})
    users = users or []
    return ReactionRecord(
        emoji_name=name,
        emoji_id=emoji_id,
        count=max(int(data.get("count", 0)), len(users)),
        users=[user(u) for u in users],
    )


def message(data: dict, *, observed_at: str, reactors: dict[tuple[str, str], list[dict]] | None = None,
            roles_by_id: dict[str, RoleRecord] | None = None) -> MessageRecord:
    """One API message. `reactors` maps `emoji_key` to the users fetched for that reaction;
    with `reactors=None` the reactions are not known in this observation (`reactions=None`,
    so the writer leaves the stored ones alone), otherwise a reaction whose users were not
    fetched keeps only its count."""
    type_int = data.get("type", 0)
    ref = data.get("message_reference") or {}
    reply_to = ref.get("message_id") if type_int == REPLY_TYPE else None
    # As in exports: a thread-created notice points at its thread through the reference.
    thread_id = ref.get("channel_id") if type_int == THREAD_CREATED_TYPE else None
    reactions = None if reactors is None else [
        reaction(r, reactors.get(emoji_key(r.get("emoji") or {})))
        for r in data.get("reactions") or []
    ]
    content = data.get("content") or ""
    return MessageRecord(
        id=str(data["id"]),
        channel_id=str(data["channel_id"]),
        author=user(data["author"], data.get("member"), roles_by_id),
        created_at=timeutil.normalize(data["timestamp"]),
        message_type=message_type_name(type_int),
        content=content,
        edited_at=timeutil.normalize(data["edited_timestamp"]) if data.get("edited_timestamp") else None,
        reply_to_id=str(reply_to) if reply_to else None,
        mentions=[user(m, m.get("member"), roles_by_id) for m in data.get("mentions") or []],
        role_mention_ids=sorted(set(_ROLE_MENTION.findall(content))
                                | {str(r) for r in data.get("mention_roles") or []}),
        attachments=[
            AttachmentRecord(
                url=a.get("url") or "",
                id=str(a["id"]) if a.get("id") else None,
                file_name=a.get("filename"),
                size_bytes=a.get("size"),
                content_type=a.get("content_type"),
            )
            for a in data.get("attachments") or [] if a.get("url")
        ],
        link_urls=link_urls(content, data.get("embeds") or []),
        stickers=[
            {
                "id": str(s["id"]),
                "name": s.get("name"),
                "format": _STICKER_FORMATS.get(s.get("format_type"), str(s.get("format_type"))),
                "sourceUrl": f"{CDN}/stickers/{s['id']}.{_STICKER_EXT.get(s.get('format_type'), 'png')}",
            }
            for s in data.get("sticker_items") or data.get("stickers") or []
        ],
        inline_custom_emoji_ids=custom_emoji_ids(content),
        is_pinned=bool(data.get("pinned", False)),
        reactions=reactions,
        thread_id=str(thread_id) if thread_id else None,
        observed_at=observed_at,
    )


def reaction_counts(data: dict) -> dict[tuple[str, str], int]:
    """(emoji name, emoji id or '') → count, as the API reports them on a message."""
    return {emoji_key(r.get("emoji") or {}): int(r.get("count", 0)) for r in data.get("reactions") or []}


def looks_like_missing_content_intent(page: list[dict], self_user_id: str | None) -> bool:
    """A page whose people-written messages all come without content, attachments, embeds,
    components or polls: the bot lacks the Message Content intent (Discord blanks those fields
    except in DMs and messages that mention the bot). System messages are left out of the test
    since they are legitimately empty, and so are sticker messages: stickers arrive without
    the intent too, so a sticker proves nothing either way."""
    considered = [
        m for m in page
        if m.get("type", 0) in (0, REPLY_TYPE) and not m.get("sticker_items")
        and not any(str(u.get("id")) == self_user_id for u in m.get("mentions") or [])
    ]
    if not considered:
        return False
    return all(
        not m.get("content") and not m.get("attachments") and not m.get("embeds")
        and not m.get("poll") and not m.get("components")
        for m in considered
    )
