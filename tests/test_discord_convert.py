"""The same message from a DiscordChatExporter export and from the API becomes the same record,
and other properties of the API converter."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from zos_cli.sources.discord import convert
from zos_cli.sources.export import ExportFile
from zos_cli.timeutil import normalize

GUILD, CHANNEL, THREAD = "100", "200", "250"


def _api_user(uid: str, username: str, global_name: str | None = None) -> dict:
    return {"id": uid, "username": username, "global_name": global_name, "discriminator": "0",
            "avatar": None}


def _export_user(api: dict) -> dict:
    """What DiscordChatExporter writes for an API user (an export without roles)."""
    return {"id": api["id"], "name": api["username"], "discriminator": "0000",
            "nickname": api["global_name"] or api["username"], "color": None, "isBot": False,
            "avatarUrl": f"https://cdn.discordapp.com/embed/avatars/{(int(api['id']) >> 22) % 6}.png"}


ANN = _api_user("1100000000000000001", "ann", "Ann A.")
BOB = _api_user("1100000000000000002", "bob")
CYD = _api_user("1100000000000000003", "cyd", "Cyd")

API = [
    {"id": "1212912186163200001", "channel_id": CHANNEL, "guild_id": GUILD, "type": 0,
     "author": ANN, "content": "see https://example.org/a, and <:blob:777> <:blob:777> <@&900>!",
     "timestamp": "2024-03-01T12:00:00.123000+00:00", "edited_timestamp": "2024-03-01T12:05:00.000000+00:00",
     "pinned": True, "mentions": [BOB, CYD], "mention_roles": ["900"],
     "attachments": [{"id": "31", "filename": "cat.png", "size": 1234, "url": "https://cdn.example/cat.png",
                      "proxy_url": "https://media.example/cat.png", "content_type": "image/png"}],
     "embeds": [{"url": "https://video.example/v", "title": "v"}],
     "reactions": [{"count": 2, "count_details": {"normal": 2, "burst": 0}, "me": False,
                    "emoji": {"id": None, "name": "👍"}},
                   {"count": 1, "count_details": {"normal": 1, "burst": 0}, "me": False,
                    "emoji": {"id": "777", "name": "blob"}}]},
    {"id": "1212912437834022912", "channel_id": CHANNEL, "guild_id": GUILD, "type": 19,
     "author": BOB, "content": "a reply", "timestamp": "2024-03-01T12:01:00.000000+00:00",
     "edited_timestamp": None, "pinned": False, "mentions": [ANN], "mention_roles": [],
     "attachments": [], "embeds": [],
     "message_reference": {"message_id": "1212912186163200001", "channel_id": CHANNEL, "guild_id": GUILD},
     "sticker_items": [{"id": "55", "name": "wave", "format_type": 1}]},
    {"id": "1212912689505239040", "channel_id": CHANNEL, "guild_id": GUILD, "type": 18,
     "author": CYD, "content": "a thread", "timestamp": "2024-03-01T12:02:00.000000+00:00",
     "edited_timestamp": None, "pinned": False, "mentions": [], "mention_roles": [],
     "attachments": [], "embeds": [],
     "message_reference": {"channel_id": THREAD, "guild_id": GUILD}},
    {"id": "1212912941176455168", "channel_id": CHANNEL, "guild_id": GUILD, "type": 7,
     "author": CYD, "content": "", "timestamp": "2024-03-01T12:03:00.000000+00:00",
     "edited_timestamp": None, "pinned": False, "mentions": [], "mention_roles": [],
     "attachments": [], "embeds": []},
]
REACTORS = {
    API[0]["id"]: {("👍", ""): [BOB, CYD], ("blob", "777"): [BOB]},
}


def _export_time(iso: str) -> str:
    """The same instant as an export from a machine at -04:00 with 7 fractional digits."""
    from datetime import datetime, timedelta, timezone

    dt = datetime.fromisoformat(iso).astimezone(timezone(timedelta(hours=-4)))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0" + "-04:00"


def _export_message(m: dict) -> dict:
    names = {0: "Default", 19: "Reply", 18: "ThreadCreated", 7: "GuildMemberJoin"}
    ref = m.get("message_reference")
    reactions = []
    for r in m.get("reactions", []):
        e = r["emoji"]
        users = REACTORS[m["id"]][(e["name"], e["id"] or "")]
        reactions.append({"emoji": {"id": e["id"] or "", "name": e["name"], "code": e["name"],
                                    "isAnimated": False, "imageUrl": ""},
                          "count": r["count"], "users": [_export_user(u) for u in users]})
    return {
        "id": m["id"], "type": names[m["type"]], "timestamp": _export_time(m["timestamp"]),
        "timestampEdited": _export_time(m["edited_timestamp"]) if m["edited_timestamp"] else None,
        "callEndedTimestamp": None, "isPinned": m["pinned"], "content": m["content"],
        "author": _export_user(m["author"]),
        "attachments": [{"id": a["id"], "url": a["url"], "fileName": a["filename"],
                         "fileSizeBytes": a["size"]} for a in m["attachments"]],
        "embeds": [{"title": e.get("title", ""), "url": e["url"]} for e in m["embeds"]],
        "stickers": [{"id": s["id"], "name": s["name"], "format": "Png",
                      "sourceUrl": f"https://cdn.discordapp.com/stickers/{s['id']}.png"}
                     for s in m.get("sticker_items", [])],
        "reactions": reactions, "mentions": [_export_user(u) for u in m["mentions"]],
        **({"reference": {"messageId": ref.get("message_id"), "channelId": ref.get("channel_id"),
                          "guildId": ref.get("guild_id")}} if ref else {}),
        "inlineEmojis": [],
    }


def test_export_and_api_give_the_same_records(tmp_path):
    export = {
        "guild": {"id": GUILD, "name": "Guild", "iconUrl": None},
        "channel": {"id": CHANNEL, "type": "GuildTextChat", "categoryId": None, "category": None,
                    "name": "general", "topic": None},
        "dateRange": {"after": None, "before": None},
        "exportedAt": "2024-03-02T00:00:00.0000000-04:00",
        "messages": [_export_message(m) for m in API],
        "messageCount": len(API),
    }
    path = tmp_path / "general.json"
    path.write_text(json.dumps(export, ensure_ascii=False, indent=2))
    with ExportFile(path) as reader:
        from_export = list(reader.messages())
    observed = normalize("2024-03-02T00:00:00-04:00")
    from_api = [convert.message(m, observed_at=observed, reactors=REACTORS.get(m["id"], {})) for m in API]
    for a in from_api:
        for att in a.attachments:
            assert att.content_type == "image/png"    # the API tells more than an export …
            att.content_type = None                    # … which is the only difference
    assert [dataclasses.asdict(r) for r in from_api] == [dataclasses.asdict(r) for r in from_export]
    first = from_api[0]
    assert first.link_urls == ["https://example.org/a", "https://video.example/v"]
    assert first.inline_custom_emoji_ids == ["777", "777"]
    assert first.role_mention_ids == ["900"] and first.is_pinned
    assert [(r.emoji_name, r.emoji_id, r.count, [u.id for u in r.users]) for r in first.reactions] == [
        ("👍", "", 2, [BOB["id"], CYD["id"]]), ("blob", "777", 1, [BOB["id"]])]
    assert from_api[1].reply_to_id == API[0]["id"] and from_api[2].thread_id == THREAD
    assert from_api[3].message_type == "GuildMemberJoin"


def test_reactions_not_fetched_are_unknown():
    record = convert.message(API[0], observed_at="x")
    assert record.reactions is None
    partial = convert.message(API[0], observed_at="x", reactors={})
    assert [(r.count, r.users) for r in partial.reactions] == [(2, []), (1, [])]


def test_channels_threads_and_dms():
    text = convert.channel({"id": "200", "guild_id": "100", "type": 0, "name": "general",
                            "parent_id": "150", "topic": "hi"}, server_name="G", category_name="Talk")
    assert (text.type, text.parent_id, text.category_id, text.category_name) == ("text", None, "150", "Talk")
    thread = convert.channel({"id": "250", "guild_id": "100", "type": 11, "name": "t", "parent_id": "200"})
    assert (thread.type, thread.parent_id, thread.category_id, thread.is_thread) == ("public_thread", "200", None, True)
    dm = convert.channel({"id": "300", "type": 1, "recipients": [ANN]}, self_user_id="9")
    assert (dm.type, dm.server_id, dm.participant_ids) == ("dm", None, [ANN["id"]])


def test_missing_content_intent_heuristic():
    blank = {"type": 0, "content": "", "attachments": [], "embeds": [], "mentions": []}
    assert convert.looks_like_missing_content_intent([blank, dict(blank)], "9")
    assert not convert.looks_like_missing_content_intent([blank, {**blank, "content": "hi"}], "9")
    assert not convert.looks_like_missing_content_intent([{**blank, "type": 7}], "9")   # joins
    assert not convert.looks_like_missing_content_intent([], "9")
    sticker = {**blank, "sticker_items": [{"id": "1", "name": "s", "format_type": 1}]}
    # Stickers arrive without the intent too: a sticker proves nothing, the blank one does.
    assert convert.looks_like_missing_content_intent([blank, sticker], "9")
    assert not convert.looks_like_missing_content_intent([sticker, dict(sticker)], "9")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.lists(st.sampled_from(["https://a.example/x", "http://b.example"]), max_size=3))
def test_link_rules_match_the_export_reader(content, embed_urls):
    from zos_cli.sources.export_schema import XEmbed, link_urls

    expected = link_urls(content, [XEmbed(url=u) for u in embed_urls])
    assert convert.link_urls(content, [{"url": u} for u in embed_urls]) == expected
