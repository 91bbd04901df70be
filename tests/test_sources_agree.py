"""The same server history stored once through the API (`zos ingest --token`, and a first
`zos poll`) and once through a DiscordChatExporter export of it must store the same: messages,
reactions, mentions, people, media and links, and the same salience balance on every topic
(issue 4: one writer, fed by the export reader and the API client "the same way").

The history lives in the fake Discord (real HTTP on 127.0.0.1); the export is written from the
same world by the rules of docs/ingest.md#the-export-format (raw markdown, as `--markdown false` exports it, so that
content, role mentions and custom emoji are in the text as the API gives them). What only one
source can know is listed in `EXPECTED` and left out of the comparison, each with why.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from tests import exports
from tests.conftest import Cli
from tests.fake_discord import fake  # noqa: F401

GUILD, CATEGORY, GENERAL, RANDOM, THREAD = "100", "150", "200", "201", "250"
ANN, BOB, CYD, DEE = "501", "502", "503", "504"
MOD, MEMBER = "110", "111"
BLOB = "777"
EXPORTED_AT = "2024-03-02T08:00:00.0000000-04:00"


# ---------------------------------------------------------------------------- the history
def build_history(fake) -> None:
    """A small server: a category, two channels, a thread started by a ThreadCreated notice,
    replies, user and role mentions (and one of zos), custom emoji in the text, an attachment,
    links in text and embeds, a sticker, a pin, a member join with a wave, edits, and
    reactions by several users, custom emoji among them."""
    fake.add_guild(GUILD, "Tidepool")
    fake.add_role(GUILD, MOD, "mod", color=0xE67E22, position=2)
    fake.add_role(GUILD, MEMBER, "member", color=0, position=1)
    for uid, name, global_name in ((ANN, "ann", "Ann"), (BOB, "bob", None), (CYD, "cyd", "Cyd"),
                                   (DEE, "dee", "Dee")):
        fake.add_user(uid, name, global_name=global_name)
    fake.add_member(GUILD, ANN, [MOD, MEMBER], nick="annie")
    fake.add_member(GUILD, BOB, [MEMBER])
    fake.add_member(GUILD, CYD, [MEMBER])
    fake.add_member(GUILD, DEE, [])
    fake.add_member(GUILD, fake.self_id, [MEMBER])
    fake.add_channel(GUILD, CATEGORY, "Talk", type=4)
    fake.add_channel(GUILD, GENERAL, "general", parent_id=CATEGORY, topic="kilns and glazes")
    fake.add_channel(GUILD, RANDOM, "random", parent_id=CATEGORY)
    zos = fake.self_id

    m1 = fake.post(GENERAL, ANN, "hello everyone, plans at https://example.org/kiln",
                   embeds=[{"type": "link", "url": "https://video.example/v", "title": "v"}])
    m2 = fake.post(GENERAL, BOB, "hi ann <:blob:777> <:blob:777>", reply_to=m1["id"], mentions=[ANN])
    m3 = fake.post(RANDOM, CYD, "random thought for <@502> and <@&110>", mentions=[BOB],
                   mention_roles=[MOD])
    m4 = fake.post(GENERAL, ANN, "look", attachments=[{
        "id": "3001", "filename": "kiln.png", "size": 2048, "content_type": "image/png",
        "url": "https://cdn.discordapp.com/attachments/200/3001/kiln.png",
        "proxy_url": "https://media.discordapp.net/attachments/200/3001/kiln.png"}])
    fake.add_thread(GENERAL, THREAD, "kiln log")
    m5 = fake.post(GENERAL, CYD, "kiln log", type=18, thread_id=THREAD)
    m5["message_reference"] = {"channel_id": THREAD, "guild_id": GUILD}
    m6 = fake.post(THREAD, CYD, "first firing at 1200C")
    m7 = fake.post(THREAD, ANN, "nice! <:blob:777>", reply_to=m6["id"], mentions=[CYD])
    m8 = fake.post(RANDOM, BOB, f"<@{zos}> what do you think?", mentions=[zos])
    m9 = fake.post(GENERAL, DEE, "", type=7)
    m10 = fake.post(RANDOM, ANN, "first draft")
    m11 = fake.post(THREAD, BOB, "<@501> see https://example.org/a?b=1.", mentions=[ANN])
    m12 = fake.post(GENERAL, zos, "I think so")
    m13 = fake.post(GENERAL, ANN, "")
    m13["sticker_items"] = [{"id": "55", "name": "wave", "format_type": 1}]
    m13["pinned"] = True
    m14 = fake.post(GENERAL, ANN, "", type=6)
    m14["message_reference"] = {"message_id": m13["id"], "channel_id": GENERAL, "guild_id": GUILD}
    m15 = fake.post(RANDOM, DEE, "hi all, I read the draft", reply_to=m10["id"], mentions=[ANN])
    m16 = fake.post(RANDOM, CYD, "<:blob:777> <@504> welcome", mentions=[DEE])
    fake.edit(RANDOM, m10["id"], "second draft, see https://example.org/draft")
    fake.edit(GENERAL, m2["id"], "hi ann! <:blob:777> <:blob:777>")

    for msg, user, name, emoji_id in (
        (m1, BOB, "👍", None), (m1, CYD, "👍", None), (m1, DEE, "👍", None), (m1, BOB, "blob", BLOB),
        (m2, ANN, "🎉", None), (m2, ANN, "blob", BLOB), (m2, BOB, "🎉", None),
        (m4, CYD, "blob", BLOB), (m4, BOB, "❤️", None),
        (m6, ANN, "🔥", None), (m6, BOB, "🔥", None),
        (m9, BOB, "👋", None), (m12, ANN, "👍", None), (m8, zos, "👍", None),
        (m3, BOB, "blob", BLOB), (m15, ANN, "❤️", None), (m16, DEE, "blob", BLOB),
        (m11, ANN, "👍", None), (m11, CYD, "👍", None),
    ):
        fake.react(msg["channel_id"], msg["id"], user, name, emoji_id)


# ---------------------------------------------------------------------------- the export
_TYPE_NAMES = {0: "Default", 19: "Reply", 18: "ThreadCreated", 7: "GuildMemberJoin",
               6: "ChannelPinnedMessage"}
_STICKER_FORMATS = {1: "Png", 2: "Apng", 3: "Lottie", 4: "Gif"}


def _export_time(iso: str | None) -> str | None:
    """The same instant as DiscordChatExporter writes it on a machine at -04:00 (7 digits)."""
    if iso is None:
        return None
    dt = datetime.fromisoformat(iso).astimezone(timezone(timedelta(hours=-4)))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0-04:00"


def _export_role(role: dict) -> dict:
    return exports.role(role["id"], role["name"], role["position"],
                        f"#{role['color']:06X}" if role["color"] else None)


def _export_user(fake, user_id: str, *, with_roles: bool = True) -> dict:
    """A user as DiscordChatExporter writes it: nickname = server nickname, else global name,
    else name; colour of the highest coloured role; roles (not for reactors)."""
    u = fake.users[user_id]
    member = fake.members[GUILD].get(user_id)
    roles = [r for r in fake.roles[GUILD] if member and r["id"] in member["roles"]]
    roles.sort(key=lambda r: -r["position"])
    coloured = [r for r in roles if r["color"]]
    doc = exports.user(user_id, u["username"], bot=bool(u.get("bot")),
                       nickname=(member or {}).get("nick") or u["global_name"] or u["username"],
                       roles=[_export_role(r) for r in roles])
    doc["color"] = f"#{coloured[0]['color']:06X}" if coloured else None
    doc["avatarUrl"] = f"https://cdn.discordapp.com/embed/avatars/{(int(user_id) >> 22) % 6}.png"
    return doc if with_roles else exports.reactor(doc)


def _export_message(fake, m: dict) -> dict:
    doc = exports.message(
        m["id"], _export_user(fake, m["author"]["id"]), m["content"],
        type=_TYPE_NAMES[m["type"]], timestamp=_export_time(m["timestamp"]),
        edited=_export_time(m["edited_timestamp"]), pinned=m["pinned"],
        mentions=[_export_user(fake, u["id"]) for u in m["mentions"]],
        attachments=[{"id": a["id"], "url": a["url"], "fileName": a["filename"],
                      "fileSizeBytes": a["size"]} for a in m["attachments"]],
        embeds=[{"title": e.get("title", ""), "url": e.get("url"), "timestamp": None,
                 "description": "", "thumbnail": None, "images": [], "fields": [],
                 "inlineEmojis": []} for e in m["embeds"]],
        reactions=[
            exports.reaction(exports.emoji(name, eid or ""),
                             [_export_user(fake, u, with_roles=False) for u in users])
            for (name, eid), users in fake.reactions.get(m["id"], {}).items() if users
        ],
        inline_emojis=[exports.emoji("blob", BLOB)] if f":{BLOB}>" in m["content"] else [],
    )
    ref = m.get("message_reference")
    if ref:
        doc["reference"] = {"type": "Default", "messageId": ref.get("message_id"),
                            "channelId": ref.get("channel_id"), "guildId": ref.get("guild_id")}
    doc["stickers"] = [{"id": s["id"], "name": s["name"],
                        "format": _STICKER_FORMATS[s["format_type"]],
                        "sourceUrl": f"https://cdn.discordapp.com/stickers/{s['id']}.png"}
                       for s in m.get("sticker_items", [])]
    return doc


def write_export(fake, folder) -> None:
    """One file per channel and thread, as DiscordChatExporter writes them."""
    types = {0: "GuildTextChat", 11: "GuildPublicThread"}
    for channel_id, ch in fake.channels.items():
        if ch["type"] not in types:
            continue
        parent = fake.channels.get(ch["parent_id"]) if ch["parent_id"] else None
        ex = exports.Export(channel_id=channel_id, channel_name=ch["name"],
                            channel_type=types[ch["type"]], guild_id=GUILD, guild_name="Tidepool",
                            parent_id=parent["id"] if parent else None,
                            parent_name=parent["name"] if parent else None,
                            exported_at=EXPORTED_AT)
        for m in sorted(fake.messages[channel_id].values(), key=lambda m: int(m["id"])):
            ex.add(_export_message(fake, m))
        doc = ex.doc()
        doc["guild"]["iconUrl"] = "https://cdn.discordapp.com/embed/avatars/0.png"
        doc["channel"]["topic"] = ch.get("topic")
        (folder / f"Tidepool - {ch['name']} [{channel_id}].json").write_text(
            json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")


# ---------------------------------------------------------------------------- the stores
def _store(tmp_path, name: str, fake, gate: str | None, *runs: list[str]) -> Cli:
    """A new database filled by the real CLI: each of `runs` is one command's arguments."""
    config = tmp_path / f"{name}.toml"
    lines = ["[discord]", f'self_user_id = "{fake.self_id}"']   # what a poll would learn
    if gate:
        lines += [f'[servers."{GUILD}"]', f'privacy_gate_role = "{gate}"']
    config.write_text("\n".join(lines) + "\n")
    cli = Cli(tmp_path / f"{name}.db")
    cli.config = config
    assert cli("init-db").exit_code == 0
    env = {"DISCORD_TOKEN": fake.token, "ZOS_DISCORD_API_BASE": fake.base_url}
    for args in runs:
        result = cli("--config", str(config), *args, "--json", env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["errors"] == []
    return cli


def _rows(cli: Cli, sql: str) -> set[tuple]:
    con = sqlite3.connect(cli.db_path)
    try:
        return {tuple(r) for r in con.execute(sql)}
    finally:
        con.close()


# What is compared. Left out everywhere, as they are times of the observation, not of the
# history: ingested_at, updated_at, source_exported_at, profile_observed_at, observed_at,
# roles_refreshed_at, seen_at, message_sources and ingest_log (an export's exportedAt and
# file, or the fetch time and the API run).
TABLES = {
    "servers": "SELECT id, name, icon_url FROM servers",
    "channels": "SELECT id, server_id, name, type, parent_id, category_id, category_name, topic, "
                "participant_ids, created_at FROM channels",
    "messages": "SELECT id, channel_id, server_id, author_id, content, created_at, edited_at, "
                "message_type, visibility_scope, reactions_aggregate, reply_to_id, thread_id, "
                "has_media, has_links, is_pinned, stickers, custom_emoji_ids, deleted_at FROM messages",
    # Expected: a reaction's created_at is when it was observed (exportedAt, or the fetch).
    "reactions": "SELECT message_id, user_id, emoji, emoji_id, is_custom, removed_at FROM reactions",
    "mentions": "SELECT message_id, user_id FROM mentions",
    "role_mentions": "SELECT message_id, role_id FROM role_mentions",
    # Expected: display_name (and the server nickname below) is the server nickname in an
    # export; the API's messages carry no member object, so there it is the global name.
    "users": "SELECT id, name, discriminator, avatar_url, is_bot, is_deleted, first_seen_at, "
             "last_seen_at FROM users",
    "user_server_tracking": "SELECT user_id, server_id, first_seen_at, last_seen_at, "
                            "message_count FROM user_server_tracking",
    # Expected: without a privacy-gate role the API learns no roles (REST messages carry no
    # member object, and zos asks for members only in gated servers); an export gives every
    # author's and mentioned user's roles. So these are compared in the gated server only.
    "roles": "SELECT id, server_id, name, color, position FROM roles",
    "user_roles": "SELECT user_id, role_id, server_id FROM user_roles",
    "roles_known": "SELECT user_id, server_id, roles_known FROM user_server_tracking",
    # Expected: content_type is API-only (an export's attachment has no MIME type).
    "media_analysis": "SELECT message_id, attachment_id, url, file_name, size_bytes, description, "
                      "analyzed_at FROM media_analysis",
    "link_analysis": "SELECT message_id, url, domain, title, summary, analyzed_at FROM link_analysis",
    "topics": "SELECT key, category, budget_group, server_id, is_global, provisional, "
              "last_activity_at FROM topics",
}
ROLES_ONLY_WHEN_GATED = ("roles", "user_roles", "roles_known")


def _differences(a: Cli, b: Cli, tables) -> dict:
    out = {}
    for table in tables:
        ra, rb = _rows(a, TABLES[table]), _rows(b, TABLES[table])
        if ra != rb:
            out[table] = {"only_first": sorted(ra - rb), "only_second": sorted(rb - ra)}
    return out


def _balances(cli: Cli) -> dict[str, float]:
    return dict(_rows(cli, "SELECT key, round(balance, 9) FROM topics"))


def _unequal(a: dict, b: dict) -> dict:
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


@pytest.mark.parametrize("gate", [None, MEMBER], ids=["open", "gated"])
def test_api_and_export_store_the_same(tmp_path, fake, gate):
    build_history(fake)
    folder = tmp_path / "export"
    folder.mkdir()
    write_export(fake, folder)
    exported = _store(tmp_path, "export", fake, gate, ["ingest", str(folder)])
    backfilled = _store(tmp_path, "backfill", fake, gate, ["ingest", "--token", fake.token])
    polled = _store(tmp_path, "poll", fake, gate, ["poll", "--initial-messages", "1000"])
    tables = [t for t in TABLES if gate or t not in ROLES_ONLY_WHEN_GATED]
    assert len(_rows(exported, "SELECT id FROM messages")) == 16
    for api in (backfilled, polled):
        assert _differences(exported, api, tables) == {}
        # The expected differences are what they are said to be, and no more.
        assert _rows(api, "SELECT display_name FROM users WHERE id = '501'") == {("Ann",)}
        assert _rows(exported, "SELECT display_name FROM users WHERE id = '501'") == {("annie",)}
        assert _rows(api, "SELECT content_type FROM media_analysis") == {("image/png",)}

    # Salience. A backfill and a poll earn at their end, in one snowflake order over all they
    # stored, as an export ingest does over its files (docs/salience.md#order-and-time): the same balances, though
    # they read channel after channel (and a backfill each channel newest page first). And
    # `salience rebuild` of either API store gives them again.
    exported_balances = _balances(exported)
    for api in (backfilled, polled):
        assert _unequal(exported_balances, _balances(api)) == {}
    order = [p.split(":")[-1] for (_, p) in sorted(_rows(
        backfilled, "SELECT started_at, path FROM ingest_log"))]
    assert order == [GENERAL, RANDOM, THREAD]
    # (Earned channel by channel, in that order, the balances would differ: pinned so that
    # this test keeps proving the run-wide order matters.)
    files = {c: str(next(folder.glob(f"*[[]{c}[]].json"))) for c in order}
    one_by_one = _store(tmp_path, "one_by_one", fake, gate, *[["ingest", files[c]] for c in order])
    assert _unequal(_balances(one_by_one), exported_balances) != {}
    for api in (backfilled, polled):
        assert api("--config", str(api.config), "salience", "rebuild", "--yes").exit_code == 0
        assert _unequal(exported_balances, _balances(api)) == {}


def test_backfill_earns_in_event_time(tmp_path, fake):
    """Two pages of one channel: the backfill must earn what the export earns (a first poll,
    which writes oldest first, does)."""
    fake.add_guild(GUILD, "Tidepool")
    for uid, name in ((ANN, "ann"), (BOB, "bob"), (CYD, "cyd")):
        fake.add_user(uid, name, global_name=name)
        fake.add_member(GUILD, uid, [])
    fake.add_channel(GUILD, GENERAL, "general")
    posted = []
    for i in range(150):   # the newest 100 are the first page; #120 replies to #10 on the second
        parent = posted[10] if i == 120 else None
        posted.append(fake.post(GENERAL, (ANN, BOB, CYD)[i % 3], f"message {i}",
                                reply_to=parent and parent["id"],
                                mentions=[parent["author"]["id"]] if parent else []))
    folder = tmp_path / "export"
    folder.mkdir()
    write_export(fake, folder)
    exported = _balances(_store(tmp_path, "export", fake, None, ["ingest", str(folder)]))
    polled = _balances(_store(tmp_path, "poll", fake, None, ["poll"]))
    assert _unequal(exported, polled) == {}
    backfilled = _balances(_store(tmp_path, "backfill", fake, None, ["ingest", "--token", fake.token]))
    assert _unequal(exported, backfilled) == {}

