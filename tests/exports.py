"""Building DiscordChatExporter-shaped exports in tests (docs/ingest.md#the-export-format).

    from tests.exports import Export, user, message, reaction, emoji, snowflake
    alice, bob = user("101", "alice"), user("102", "bob")
    ex = Export(channel_id="2001")
    m1 = ex.add(message(snowflake(0), alice, "hi"))
    ex.add(message(snowflake(1), bob, "hello", reply_to=m1, reactions=[reaction(emoji("👍"), [alice])]))
    path = ex.write(tmp_path / "general.json")

`write` produces the indented layout DiscordChatExporter writes (`indent=None` for compact).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

DISCORD_EPOCH_MS = 1420070400000
BASE_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def snowflake(minutes: float = 0, seq: int = 0, *, base: datetime = BASE_TIME) -> str:
    """A snowflake created `minutes` after `base` (sequence `seq` within the millisecond)."""
    ms = int((base + timedelta(minutes=minutes)).timestamp() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (seq & 0xFFF))


def time_of(snowflake_id: str, offset_hours: int = 0, digits: int = 3) -> str:
    """The export timestamp of a snowflake, in a given UTC offset and fractional precision."""
    ms = (int(snowflake_id) >> 22) + DISCORD_EPOCH_MS
    tz = timezone(timedelta(hours=offset_hours))
    dt = datetime.fromtimestamp(ms / 1000, tz=tz)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{dt.microsecond:06d}{'0' * 3}"[:digits]
    return text + dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:]


def role(id: str, name: str = "member", position: int = 1, color: str | None = None) -> dict:
    return {"id": id, "name": name, "color": color, "position": position}


def user(id: str, name: str, *, nickname: str | None = None, bot: bool = False,
         roles: list[dict] | None = None, discriminator: str = "0000") -> dict:
    doc = {
        "id": id,
        "name": name,
        "discriminator": discriminator,
        "nickname": nickname or name,
        "color": None,
        "isBot": bot,
        "roles": roles if roles is not None else [],
        "avatarUrl": f"https://cdn.discordapp.com/embed/avatars/{int(id) % 5}.png",
    }
    return doc


def reactor(u: dict) -> dict:
    """A reacting user as exports write it: without roles."""
    return {k: v for k, v in u.items() if k != "roles"}


def emoji(name: str, id: str = "", animated: bool = False) -> dict:
    return {
        "id": id,
        "name": name,
        "code": name if not id else name,
        "isAnimated": animated,
        "imageUrl": f"https://cdn.discordapp.com/emojis/{id}.png" if id else
        "https://cdn.jsdelivr.net/gh/twitter/twemoji@latest/assets/svg/1f44d.svg",
    }


def reaction(e: dict, users: list[dict], count: int | None = None) -> dict:
    return {"emoji": e, "count": count if count is not None else len(users),
            "users": [reactor(u) for u in users]}


def attachment(id: str, file_name: str = "photo.png", size: int = 12345) -> dict:
    return {"id": id, "url": f"https://cdn.discordapp.com/attachments/1/{id}/{file_name}",
            "fileName": file_name, "fileSizeBytes": size}


def message(id: str, author: dict, content: str = "", *, type: str | None = None,
            reply_to: dict | str | None = None, mentions: list[dict] = (),
            reactions: list[dict] = (), attachments: list[dict] = (), embeds: list[dict] = (),
            inline_emojis: list[dict] = (), edited: str | None = None, pinned: bool = False,
            timestamp: str | None = None, reference: dict | None = None) -> dict:
    reply_id = reply_to["id"] if isinstance(reply_to, dict) else reply_to
    doc = {
        "id": id,
        "type": type or ("Reply" if reply_id else "Default"),
        "timestamp": timestamp or time_of(id),
        "timestampEdited": edited,
        "callEndedTimestamp": None,
        "isPinned": pinned,
        "content": content,
        "author": author,
        "attachments": list(attachments),
        "components": [],
        "embeds": list(embeds),
        "stickers": [],
        "reactions": list(reactions),
        "mentions": list(mentions),
        "inlineEmojis": list(inline_emojis),
    }
    if reply_id:
        doc["reference"] = {"type": "Default", "messageId": reply_id, "channelId": None,
                            "guildId": None}
    if reference is not None:
        doc["reference"] = reference
    return doc


@dataclass
class Export:
    channel_id: str = "2001"
    channel_name: str = "general"
    channel_type: str = "GuildTextChat"
    guild_id: str = "1001"
    guild_name: str = "Test Guild"
    parent_id: str | None = None
    parent_name: str | None = None
    exported_at: str = "2024-03-10T12:00:00.000+00:00"
    messages: list[dict] = field(default_factory=list)
    with_count: bool = True

    def add(self, msg: dict) -> dict:
        self.messages.append(msg)
        return msg

    def doc(self) -> dict:
        doc = {
            "guild": {"id": self.guild_id, "name": self.guild_name,
                      "iconUrl": "https://cdn.discordapp.com/icons/1/a.png"},
            "channel": {"id": self.channel_id, "type": self.channel_type,
                        "categoryId": self.parent_id, "category": self.parent_name,
                        "name": self.channel_name, "topic": None},
            "dateRange": {"after": None, "before": None},
            "exportedAt": self.exported_at,
            "messages": self.messages,
        }
        if self.with_count:
            doc["messageCount"] = len(self.messages)
        return doc

    def dumps(self, indent: int | None = 2) -> bytes:
        return json.dumps(self.doc(), indent=indent, ensure_ascii=False).encode("utf-8")

    def write(self, path: Path, indent: int | None = 2) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.dumps(indent))
        return path


def dm_export(channel_id: str, name: str, *, group: bool = False, **kwargs) -> Export:
    return Export(channel_id=channel_id, channel_name=name,
                  channel_type="DirectGroupTextChat" if group else "DirectTextChat",
                  guild_id="0", guild_name="Direct Messages", **kwargs)
