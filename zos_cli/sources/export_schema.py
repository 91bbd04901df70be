"""The DiscordChatExporter JSON shape (docs/ingest.md#the-export-format), as msgspec structs, and its conversion into
the source-agnostic records of `zos_cli.records`.

Unknown keys are ignored (DiscordChatExporter adds fields over time); a missing required key
(a message's `id`, `timestamp` or `author`, a user's `id`) is a decode error naming the field.

The structs are `gc=False` and their arrays tuples (an empty one is the shared `()`): a decoded
message is then almost no objects for Python's cycle collector to count and visit, which
otherwise costs more than the decoding. Decoded JSON cannot hold a reference cycle.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date as date_type
from datetime import datetime, timedelta
from typing import Annotated

import msgspec

from zos_cli import records, timeutil
from zos_cli.ids import MAX_SNOWFLAKE
from zos_cli.records import (
    AttachmentRecord,
    MessageRecord,
    ReactionRecord,
    RoleRecord,
    UserRecord,
)


# Numbers are stored as SQLite integers (signed 64-bit): one beyond is a decode error naming
# its field and message, not an OverflowError while writing.
StoredInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class XRole(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    name: str | None = None
    color: str | None = None
    position: StoredInt | None = None


class XUser(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Compared with == by `RecordBuilder.user`, so that a user seen on many messages converts
    once."""

    id: str
    name: str | None = None
    discriminator: str | None = None
    nickname: str | None = None
    isBot: bool = False
    roles: tuple[XRole, ...] | None = None
    avatarUrl: str | None = None


class XEmoji(msgspec.Struct, kw_only=True, gc=False):
    id: str | None = None
    name: str | None = None
    isAnimated: bool = False


class XReaction(msgspec.Struct, kw_only=True, gc=False):
    emoji: XEmoji
    count: Count = 0
    users: tuple[XUser, ...] = ()


class XAttachment(msgspec.Struct, kw_only=True, gc=False):
    id: str | None = None
    url: str | None = None
    fileName: str | None = None
    fileSizeBytes: Count | None = None


class XEmbed(msgspec.Struct, kw_only=True, gc=False):
    url: str | None = None


class XSticker(msgspec.Struct, kw_only=True, gc=False):
    id: str | None = None
    name: str | None = None
    format: str | None = None
    sourceUrl: str | None = None


class XReference(msgspec.Struct, kw_only=True, gc=False):
    type: str | None = None
    messageId: str | None = None
    channelId: str | None = None
    guildId: str | None = None


class XMessage(msgspec.Struct, kw_only=True, gc=False):
    id: str
    type: str = "Default"
    timestamp: str
    timestampEdited: str | None = None
    isPinned: bool = False
    content: str | None = ""
    author: XUser
    attachments: tuple[XAttachment, ...] = ()
    embeds: tuple[XEmbed, ...] = ()
    stickers: tuple[XSticker, ...] = ()
    reactions: tuple[XReaction, ...] = ()
    mentions: tuple[XUser, ...] = ()
    reference: XReference | None = None
    inlineEmojis: tuple[XEmoji, ...] = ()


class XGuild(msgspec.Struct, kw_only=True, gc=False):
    id: str
    name: str | None = None
    iconUrl: str | None = None


class XChannel(msgspec.Struct, kw_only=True, gc=False):
    id: str
    type: str
    categoryId: str | None = None
    category: str | None = None
    name: str | None = None
    topic: str | None = None


message_decoder = msgspec.json.Decoder(XMessage)
message_list_decoder = msgspec.json.Decoder(list[XMessage])
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


# The shape DiscordChatExporter writes (`2024-03-06T09:12:44.118-05:00`, 0/3/7 fractional
# digits, a whole-hour offset). Converting it to UTC changes only its date and hour, and its
# validity depends only on its date and offset (the pattern checks the rest): so the first time
# of each (local date, offset) goes through `datetime`, which validates and converts it, and
# gives the UTC date and hour of each of that date's 24 local hours for the times after it.
_COMMON_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([01][0-9]|2[0-3])(:[0-5][0-9]:[0-5][0-9])(?:\.([0-9]{1,7}))?"
    r"(Z|[+-][0-9]{2}:00)?"
)
_HOURS = tuple(f"T{hour:02d}" for hour in range(24))
_ONE_DAY = timedelta(days=1)
_UTC_HOURS_MAX_DATES = 256  # < 0.5 MB; exports are chronological, a few recent dates suffice
_utc_hours: dict[str, list[str]] = {}  # local date + offset → UTC 'YYYY-MM-DDTHH' by local hour


def stored_time(text: str, field: str) -> str:
    """Export times (any offset, 0/3/7 fractional digits) to the stored UTC form."""
    m = _COMMON_TIME.fullmatch(text)
    if m is None:
        return _stored_time_of_any(text, field)
    date, hour, minutes_seconds, fraction, offset = m.groups()
    hours = _utc_hours.get(date + (offset or "Z"))
    if hours is None:
        return _learn_utc_hours(text, field, date, offset)
    micros = "000000" if fraction is None else (fraction + "00000")[:6]  # 7 digits: truncated
    return f"{hours[int(hour)]}{minutes_seconds}.{micros}+00:00"


def _learn_utc_hours(text: str, field: str, date: str, offset: str | None) -> str:
    stored = _stored_time_of_any(text, field)  # raises for an invalid date or offset
    shift = 0 if offset is None or offset == "Z" else int(offset[:3])  # '-05:00' → -5
    try:  # UTC = local - shift: the local day's hours fall on the UTC day before or after
        if shift > 0:
            day_before = (date_type.fromisoformat(date) - _ONE_DAY).isoformat()
            hours = [day_before + h for h in _HOURS[24 - shift:]] + \
                [date + h for h in _HOURS[:24 - shift]]
        else:
            day_after = (date_type.fromisoformat(date) + _ONE_DAY).isoformat()
            hours = [date + h for h in _HOURS[-shift:]] + [day_after + h for h in _HOURS[:-shift]]
    except OverflowError:  # at the ends of the calendar: not cached
        return stored
    if len(_utc_hours) >= _UTC_HOURS_MAX_DATES:
        _utc_hours.clear()
    _utc_hours[date + (offset or "Z")] = hours
    return stored


def _stored_time_of_any(text: str, field: str) -> str:
    try:
        dt = datetime.fromisoformat(text)  # 3.11 reads 7 fractional digits (truncated to 6)
    except (TypeError, ValueError):
        try:
            return timeutil.normalize(text)
        except (AttributeError, ValueError):
            raise RecordError(f"`{field}` is not an ISO-8601 time: {text!r}") from None
    try:
        return timeutil.to_stored(dt)  # (the common shapes take stored_time's cached path)
    except ValueError as exc:
        raise RecordError(f"`{field}` {text!r} is {exc}") from None


def check_snowflake(value: str | None, field: str) -> str:
    if (not value or not value.isdigit() or not value.isascii() or len(value) > 20
            or (len(value) == 20 and int(value) > MAX_SNOWFLAKE)):
        raise RecordError(f"`{field}` {value!r} is not a Discord id (a string of digits, "
                          "at most 2^64 - 1)")
    return value


def link_urls(content: str, embeds: Sequence[XEmbed]) -> list[str]:
    """Links in the text and the embeds' own links, each once, in order of appearance."""
    seen: dict[str, None] = {}
    if "://" in content:  # in every link the pattern matches, whatever the scheme's case
        for match in _URL.findall(content):
            url = _trim_url(match)
            if len(url) > 8:
                seen.setdefault(url, None)
    for embed in embeds:
        if embed.url and embed.url[:4].lower() == "http":
            seen.setdefault(embed.url, None)
    return list(seen)


def _trim_url(match: str) -> str:
    """A matched link without the punctuation that follows it in the sentence — except a
    closing parenthesis the link itself opened (`…/wiki/Kiln_(pottery)`)."""
    url = match
    while url and url[-1] in _URL_TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def custom_emoji_occurrences(content: str, inline: Sequence[XEmoji]) -> list[str]:
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
        # id → the distinct shapes of that user seen so far, with their records. Looked up by
        # id and compared, which is cheaper than hashing the whole user; one id has a few
        # shapes (an author carries roles, the same user as a reactor does not).
        self._users: dict[str, list[tuple[XUser, UserRecord]]] = {}
        self._user_count = 0

    def user(self, x: XUser, field: str) -> UserRecord:
        shapes = self._users.get(x.id)
        if shapes is not None:
            for seen, record in shapes:
                if seen == x:
                    return record
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
        if self._user_count > 50_000:  # bound memory on pathological files
            self._users.clear()
            self._user_count = 0
        shapes = self._users.setdefault(x.id, [])
        if len(shapes) >= 8:  # a user renamed over and over: keep the lookup short
            del shapes[0]
            self._user_count -= 1
        shapes.append((x, record))
        self._user_count += 1
        return record

    def message(self, x: XMessage) -> MessageRecord:
        message_id = x.id
        if not (message_id.isdigit() and message_id.isascii() and len(message_id) < 20):
            check_snowflake(message_id, "id")  # raises, with the message, unless it is valid
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
        # Most messages have no mentions, attachments, links, stickers or emoji: the checks
        # below skip the work (and the calls) for them.
        return MessageRecord(
            id=message_id,
            channel_id=self.channel_id,
            author=self.user(x.author, "author"),
            created_at=stored_time(x.timestamp, "timestamp"),
            message_type=x.type or "Default",
            content=content,
            edited_at=stored_time(x.timestampEdited, "timestampEdited") if x.timestampEdited
            else None,
            reply_to_id=reply_to,
            mentions=[self.user(u, "mentions") for u in x.mentions] if x.mentions else [],
            role_mention_ids=sorted(set(_RAW_ROLE_MENTION.findall(content)))
            if "<@&" in content else [],
            attachments=[
                AttachmentRecord(url=a.url, id=a.id, file_name=a.fileName,
                                 size_bytes=a.fileSizeBytes)
                for a in x.attachments if a.url
            ] if x.attachments else [],
            link_urls=link_urls(content, x.embeds)
            if x.embeds or "://" in content else [],
            stickers=[msgspec.structs.asdict(s) for s in x.stickers] if x.stickers else [],
            inline_custom_emoji_ids=custom_emoji_occurrences(content, x.inlineEmojis)
            if x.inlineEmojis or "<" in content else [],
            is_pinned=x.isPinned,
            reactions=reactions,
            thread_id=thread_id,
            observed_at=self.observed_at,
        )
