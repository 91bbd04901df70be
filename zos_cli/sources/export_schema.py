"""The DiscordChatExporter JSON shape (FORMATS.md), as msgspec structs, and its conversion into
the source-agnostic records of `zos_cli.records`.

Unknown keys are ignored (DiscordChatExporter adds fields over time); a missing required key
(a message's `id`, `timestamp` or `author`, a user's `id`) is a decode error naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import msgspec

from zos_cli import records, timeutil
from zos_cli.records import (
    AttachmentRecord,
    MessageRecord,
    ReactionRecord,
    RoleRecord,
    UserRecord,
)


class XRole(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str | None = None
    color: str | None = None
    position: int | None = None


class XUser(msgspec.Struct, frozen=True, kw_only=True):
    """Frozen (hashable) so that the same user object seen on many messages converts once."""

    id: str
    name: str | None = None
    discriminator: str | None = None
    nickname: str | None = None
    isBot: bool = False
    roles: tuple[XRole, ...] | None = None
    avatarUrl: str | None = None


class XEmoji(msgspec.Struct, kw_only=True):
    id: str | None = None
    name: str | None = None
    isAnimated: bool = False


class XReaction(msgspec.Struct, kw_only=True):
    emoji: XEmoji
    count: int = 0
    users: list[XUser] = []


class XAttachment(msgspec.Struct, kw_only=True):
    id: str | None = None
    url: str | None = None
    fileName: str | None = None
    fileSizeBytes: int | None = None


class XEmbed(msgspec.Struct, kw_only=True):
    url: str | None = None


class XSticker(msgspec.Struct, kw_only=True):
    id: str | None = None
    name: str | None = None
    format: str | None = None
    sourceUrl: str | None = None


class XReference(msgspec.Struct, kw_only=True):
    type: str | None = None
    messageId: str | None = None
    channelId: str | None = None
    guildId: str | None = None


class XMessage(msgspec.Struct, kw_only=True):
    id: str
    type: str = "Default"
    timestamp: str
    timestampEdited: str | None = None
    isPinned: bool = False
    content: str | None = ""
    author: XUser
    attachments: list[XAttachment] = []
    embeds: list[XEmbed] = []
    stickers: list[XSticker] = []
    reactions: list[XReaction] = []
    mentions: list[XUser] = []
    reference: XReference | None = None
    inlineEmojis: list[XEmoji] = []


class XGuild(msgspec.Struct, kw_only=True):
    id: str
    name: str | None = None
    iconUrl: str | None = None


class XChannel(msgspec.Struct, kw_only=True):
    id: str
    type: str
    categoryId: str | None = None
    category: str | None = None
    name: str | None = None
    topic: str | None = None


message_decoder = msgspec.json.Decoder(XMessage)
guild_decoder = msgspec.json.Decoder(XGuild)
channel_decoder = msgspec.json.Decoder(XChannel)
str_decoder = msgspec.json.Decoder(str | None)
int_decoder = msgspec.json.Decoder(int | None)

# Discord allows 4,000 characters; anything far beyond is not a real message.
MAX_CONTENT_CHARS = 100_000

_RAW_CUSTOM_EMOJI = re.compile(r"<a?:[A-Za-z0-9_~]+:(\d+)>")
_RAW_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_URL = re.compile(r"https?://[^\s<>\"'`|\[\]{}]+", re.I)
_URL_TRAILING = ".,;:!?)*_~'\""


class RecordError(ValueError):
    """A message that decodes but cannot become a record (bad id, time, size)."""


def stored_time(text: str, field: str) -> str:
    """Export times (any offset, 0/3/7 fractional digits) to the stored UTC form."""
    try:
        dt = datetime.fromisoformat(text)  # 3.11 reads 7 fractional digits (truncated to 6)
    except (TypeError, ValueError):
        try:
            return timeutil.normalize(text)
        except (AttributeError, ValueError):
            raise RecordError(f"`{field}` is not an ISO-8601 time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    elif dt.utcoffset():
        dt = dt.astimezone(timezone.utc)
    return dt.isoformat(timespec="microseconds")  # timeutil.to_stored, inlined (hot path)


def check_snowflake(value: str | None, field: str) -> str:
    if not value or not value.isdigit() or not value.isascii() or len(value) > 20:
        raise RecordError(f"`{field}` {value!r} is not a Discord id (a string of digits)")
    return value


def link_urls(content: str, embeds: list[XEmbed]) -> list[str]:
    """Links in the text and the embeds' own links, each once, in order of appearance."""
    seen: dict[str, None] = {}
    if "http" in content or "HTTP" in content:
        for match in _URL.findall(content):
            url = match.rstrip(_URL_TRAILING)
            if len(url) > 8:
                seen.setdefault(url, None)
    for embed in embeds:
        if embed.url and embed.url[:4].lower() == "http":
            seen.setdefault(embed.url, None)
    return list(seen)


def custom_emoji_occurrences(content: str, inline: list[XEmoji]) -> list[str]:
    """Custom emoji ids, one per occurrence in the text.

    Raw Discord markdown (`--markdown false` exports, the API) carries `<:name:id>`; formatted
    exports render each as `:name:` and list each emoji once in `inlineEmojis`, so there the
    occurrences of `:name:` are counted (at least one per listed emoji)."""
    raw = _RAW_CUSTOM_EMOJI.findall(content) if "<" in content else None
    if raw:
        return raw
    found: list[str] = []
    for emoji in inline:
        if emoji.id and emoji.name:
            found.extend([emoji.id] * max(1, content.count(f":{emoji.name}:")))
    return found


class RecordBuilder:
    """Converts decoded export messages to records; users are converted once per distinct
    user object (a channel repeats the same few hundred authors millions of times)."""

    def __init__(self, channel_id: str, observed_at: str | None):
        self.channel_id = channel_id
        self.observed_at = observed_at
        self._users: dict[XUser, UserRecord] = {}

    def user(self, x: XUser, field: str) -> UserRecord:
        cached = self._users.get(x)
        if cached is not None:
            return cached
        check_snowflake(x.id, f"{field}.id")
        roles = None
        if x.roles is not None:
            roles = [RoleRecord(check_snowflake(r.id, f"{field}.roles.id"), r.name, r.color,
                                r.position) for r in x.roles]
        record = UserRecord(
            id=x.id,
            name=x.name,
            display_name=x.nickname or x.name,
            discriminator=x.discriminator,
            is_bot=x.isBot,
            avatar_url=x.avatarUrl,
            nickname=x.nickname,
            roles=roles,
        )
        if len(self._users) > 50_000:  # bound memory on pathological files
            self._users.clear()
        self._users[x] = record
        return record

    def message(self, x: XMessage) -> MessageRecord:
        check_snowflake(x.id, "id")
        content = x.content or ""
        if len(content) > MAX_CONTENT_CHARS:
            raise RecordError(
                f"content of {len(content):,} characters is enormous (Discord allows 4,000; "
                f"zos accepts up to {MAX_CONTENT_CHARS:,})"
            )
        reference = x.reference
        reply_to = None
        thread_id = None
        if reference is not None:
            if x.type == "Reply" and reference.messageId:
                reply_to = check_snowflake(reference.messageId, "reference.messageId")
            elif x.type == records.THREAD_CREATED and reference.channelId:
                thread_id = check_snowflake(reference.channelId, "reference.channelId")
        reactions = []
        for r in x.reactions:
            emoji_id = r.emoji.id or ""
            if emoji_id:
                check_snowflake(emoji_id, "reactions.emoji.id")
            reactions.append(ReactionRecord(
                emoji_name=r.emoji.name or emoji_id,
                emoji_id=emoji_id,
                count=max(r.count, len(r.users)),
                users=[self.user(u, "reactions.users") for u in r.users],
            ))
        return MessageRecord(
            id=x.id,
            channel_id=self.channel_id,
            author=self.user(x.author, "author"),
            created_at=stored_time(x.timestamp, "timestamp"),
            message_type=x.type or "Default",
            content=content,
            edited_at=stored_time(x.timestampEdited, "timestampEdited") if x.timestampEdited
            else None,
            reply_to_id=reply_to,
            mentions=[self.user(u, "mentions") for u in x.mentions],
            role_mention_ids=sorted(set(_RAW_ROLE_MENTION.findall(content)))
            if "<@&" in content else [],
            attachments=[
                AttachmentRecord(url=a.url, id=a.id, file_name=a.fileName,
                                 size_bytes=a.fileSizeBytes)
                for a in x.attachments if a.url
            ],
            link_urls=link_urls(content, x.embeds),
            stickers=[msgspec.structs.asdict(s) for s in x.stickers] if x.stickers else [],
            inline_custom_emoji_ids=custom_emoji_occurrences(content, x.inlineEmojis),
            is_pinned=x.isPinned,
            reactions=reactions,
            thread_id=thread_id,
            observed_at=self.observed_at,
        )
