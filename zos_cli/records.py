"""Normalized Discord records: what the export reader and the API client both produce, and
what the one writer (`zos_cli.observe.writer`) stores. The same message from an export or the API
becomes the same record (ids, times, authors, flags, relations, reactions).

All times are in the stored form of `zos_cli.timeutil.to_stored`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The attachments zos reads as images (and may send to a vision model): by MIME type, and by
# file-name ending where no type is stored (exports carry none).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")

# DiscordChatExporter channel type names → stored channel types.
CHANNEL_TYPES_BY_EXPORT_NAME = {
    "GuildTextChat": "text",
    "GuildNews": "news",
    "GuildVoiceChat": "voice",
    "GuildStageVoice": "stage",
    "GuildCategory": "category",
    "GuildForum": "forum",
    "GuildDirectory": "directory",
    "GuildMedia": "media",
    "DirectTextChat": "dm",
    "DirectGroupTextChat": "group_dm",
    "GuildNewsThread": "news_thread",
    "GuildPublicThread": "public_thread",
    "GuildPrivateThread": "private_thread",
}

# Discord API channel type integers → stored channel types.
CHANNEL_TYPES_BY_API_INT = {
    0: "text",
    1: "dm",
    2: "voice",
    3: "group_dm",
    4: "category",
    5: "news",
    10: "news_thread",
    11: "public_thread",
    12: "private_thread",
    13: "stage",
    14: "directory",
    15: "forum",
    16: "media",
}

THREAD_TYPES = frozenset({"news_thread", "public_thread", "private_thread"})
DM_TYPES = frozenset({"dm", "group_dm"})

# Discord API message type integers → the names DiscordChatExporter uses (stored as is).
MESSAGE_TYPES_BY_API_INT = {
    0: "Default",
    1: "RecipientAdd",
    2: "RecipientRemove",
    3: "Call",
    4: "ChannelNameChange",
    5: "ChannelIconChange",
    6: "ChannelPinnedMessage",
    7: "GuildMemberJoin",
    8: "UserPremiumGuildSubscription",
    9: "UserPremiumGuildSubscriptionTier1",
    10: "UserPremiumGuildSubscriptionTier2",
    11: "UserPremiumGuildSubscriptionTier3",
    12: "ChannelFollowAdd",
    14: "GuildDiscoveryDisqualified",
    15: "GuildDiscoveryRequalified",
    18: "ThreadCreated",
    19: "Reply",
    20: "ChatInputCommand",
    21: "ThreadStarterMessage",
    22: "GuildInviteReminder",
    23: "ContextMenuCommand",
    24: "AutoModerationAction",
    46: "PollResult",
}

# Message types that are a person talking (everything else is a system message).
CONVERSATIONAL_TYPES = frozenset(
    {"Default", "Reply", "ChatInputCommand", "ContextMenuCommand", "ThreadStarterMessage"}
)
THREAD_CREATED = "ThreadCreated"


@dataclass
class RoleRecord:
    id: str
    name: str | None = None
    color: str | None = None
    position: int | None = None


@dataclass
class UserRecord:
    id: str
    name: str | None = None
    display_name: str | None = None      # server nickname, else global name, else name
    discriminator: str | None = None
    is_bot: bool = False
    avatar_url: str | None = None
    nickname: str | None = None          # server nickname when known
    roles: list[RoleRecord] | None = None  # None: roles unknown (older exports, reactors)


@dataclass
class ChannelRecord:
    id: str
    type: str                            # a stored channel type (see above)
    server_id: str | None                # None for DMs
    server_name: str | None = None
    server_icon_url: str | None = None
    name: str | None = None
    parent_id: str | None = None         # threads: the parent channel
    category_id: str | None = None
    category_name: str | None = None
    topic: str | None = None
    participant_ids: list[str] | None = None  # DMs: everyone in it except zos itself

    @property
    def is_dm(self) -> bool:
        return self.type in DM_TYPES

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES


@dataclass
class AttachmentRecord:
    url: str
    id: str | None = None
    file_name: str | None = None
    size_bytes: int | None = None
    content_type: str | None = None


@dataclass
class ReactionRecord:
    emoji_name: str                      # the character for unicode, the name for custom
    emoji_id: str = ""                   # '' for unicode emoji
    count: int = 0                       # what Discord reports (may exceed len(users))
    users: list[UserRecord] = field(default_factory=list)

    @property
    def is_custom(self) -> bool:
        return self.emoji_id != ""


@dataclass
class MessageRecord:
    id: str
    channel_id: str
    author: UserRecord
    created_at: str
    message_type: str = "Default"
    content: str = ""
    edited_at: str | None = None
    reply_to_id: str | None = None
    mentions: list[UserRecord] = field(default_factory=list)
    role_mention_ids: list[str] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    link_urls: list[str] = field(default_factory=list)   # from content and embeds
    stickers: list[dict] = field(default_factory=list)
    inline_custom_emoji_ids: list[str] = field(default_factory=list)  # one per occurrence
    is_pinned: bool = False
    reactions: list[ReactionRecord] | None = None  # None: not known in this observation
    thread_id: str | None = None         # a thread this message started
    observed_at: str | None = None       # exportedAt of the export, or the fetch time
