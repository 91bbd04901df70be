"""Generate a large DiscordChatExporter-shaped export (one channel) for the ingest benchmark.

    python benchmarks/gen_export.py OUT.json --messages 200000 [--seed 7]

The file has the layout DiscordChatExporter writes (indented JSON, messages at indent 4) and a
realistic mix: 300 users with a role each, 20% replies, 15% mentions, 20% of messages with 1–2
reactions by 1–2 users, 5% attachments, 6% links (with an embed), 5% custom emoji, and about
1.3 KB per message (1M messages ≈ 1.3 GB), like real exports whose user objects repeat in
full on every message. Written with string templates, not json.dumps per message, so 1M
messages take well under a minute.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

EPOCH_MS = 1420070400000
GUILD_ID = "1093876543210987520"
CHANNEL_ID = "1093876544121149511"
EMOJI_ID = "1150321987654321152"
WORDS = ("kiln glaze clay wheel trim bisque cone studio shelf brick frame mug bowl glaze wax "
         "resist slip throw center pull tool sponge rib wedging table fire cool crack craze "
         "today tomorrow saturday maybe really nice thanks great idea see you soon").split()


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return text.replace("\n", "\n" + pad)


def _user(i: int, roles: list[dict]) -> dict:
    uid = str(400000000000000000 + i * 7919)
    return {"id": uid, "name": f"maker_{i}", "discriminator": "0000", "nickname": f"Maker {i}",
            "color": "#5865F2", "isBot": False, "roles": roles,
            "avatarUrl": f"https://cdn.discordapp.com/avatars/{uid}/{i:032x}.png?size=512"}


def _snowflake(dt: datetime, seq: int) -> str:
    return str(((int(dt.timestamp() * 1000) - EPOCH_MS) << 22) | (seq & 0xFFF))


def generate(out: Path, messages: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    roles = [{"id": str(1093877120554565632 + r), "name": f"Role {r}", "color": "#ED4245",
              "position": r} for r in range(4)]
    users = [_user(i, rng.sample(roles, 1)) for i in range(300)]
    author_blocks = [_indent(json.dumps(u, indent=2, ensure_ascii=False), 6) for u in users]
    mention_blocks = [_indent(json.dumps(u, indent=2, ensure_ascii=False), 8) for u in users]
    reactor_blocks = [_indent(json.dumps({k: v for k, v in u.items() if k != "roles"}, indent=2),
                              12) for u in users]
    emoji_blocks = {
        "👍": '{\n            "id": "",\n            "name": "👍",\n            "code": "thumbsup",'
              '\n            "isAnimated": false,\n            "imageUrl": "https://cdn.jsdelivr.'
              'net/gh/twitter/twemoji@latest/assets/svg/1f44d.svg"\n          }',
        "🔥": '{\n            "id": "",\n            "name": "🔥",\n            "code": "fire",'
              '\n            "isAnimated": false,\n            "imageUrl": "https://cdn.jsdelivr.'
              'net/gh/twitter/twemoji@latest/assets/svg/1f525.svg"\n          }',
        "tidepool": '{\n            "id": "' + EMOJI_ID + '",\n            "name": "tidepool",'
                    '\n            "code": "tidepool",\n            "isAnimated": false,\n'
                    '            "imageUrl": "https://cdn.discordapp.com/emojis/' + EMOJI_ID +
                    '.png"\n          }',
    }
    start = datetime(2021, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    step_ms = max(1, int(3 * 365 * 24 * 3600 * 1000 / max(messages, 1)))
    ids: list[str] = []
    written = 0
    t0 = time.monotonic()
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(
            '{\n  "guild": {\n    "id": "' + GUILD_ID + '",\n    "name": "Benchmark Guild",\n'
            '    "iconUrl": null\n  },\n  "channel": {\n    "id": "' + CHANNEL_ID + '",\n'
            '    "type": "GuildTextChat",\n    "categoryId": null,\n    "category": null,\n'
            '    "name": "general",\n    "topic": null\n  },\n  "dateRange": {\n'
            '    "after": null,\n    "before": null\n  },\n'
            '  "exportedAt": "2024-03-06T09:12:44.118-05:00",\n  "messages": [\n')
        for n in range(messages):
            dt = start + timedelta(milliseconds=n * step_ms)
            mid = _snowflake(dt, n)
            ids.append(mid)
            a = rng.randrange(len(users))
            words = " ".join(rng.choices(WORDS, k=rng.randint(3, 30)))
            kind, reference, mentions, embeds, attachments, inline = "Default", "", [], "", "", ""
            roll = rng.random()
            if roll < 0.20 and len(ids) > 1:
                kind = "Reply"
                parent = ids[-1 - rng.randint(1, min(50, len(ids) - 1))]
                reference = (',\n      "reference": {\n        "type": "Default",\n'
                             f'        "messageId": "{parent}",\n        "channelId": '
                             f'"{CHANNEL_ID}",\n        "guildId": "{GUILD_ID}"\n      }}')
            if rng.random() < 0.15:
                mentions = [rng.randrange(len(users))]
                words = f"@{users[mentions[0]]['nickname']} " + words
            if rng.random() < 0.06:
                url = f"https://example.org/posts/{n}"
                words += " " + url
                embeds = ('\n        {\n          "title": "A post",\n          "url": "' + url +
                          '",\n          "timestamp": null,\n          "description": "",\n'
                          '          "images": [],\n          "fields": [],\n'
                          '          "inlineEmojis": []\n        }\n      ')
            if rng.random() < 0.05:
                attachments = ('\n        {\n          "id": "' + mid + '",\n          "url": '
                               f'"https://cdn.discordapp.com/attachments/{CHANNEL_ID}/{mid}/p.png'
                               '",\n          "fileName": "p.png",\n'
                               '          "fileSizeBytes": 48213\n        }\n      ')
            if rng.random() < 0.05:
                words += " :tidepool:"
                inline = "\n        " + emoji_blocks["tidepool"].replace("\n  ", "\n") + "\n      "
            reactions = []
            if rng.random() < 0.20:
                for emoji in rng.sample(list(emoji_blocks), rng.randint(1, 2)):
                    who = rng.sample(range(len(users)), rng.randint(1, 2))
                    reactions.append(
                        '        {\n          "emoji": ' + emoji_blocks[emoji] +
                        f',\n          "count": {len(who) + rng.randint(0, 1)},\n'
                        '          "users": [\n            ' +
                        ",\n            ".join(reactor_blocks[w] for w in who) +
                        "\n          ]\n        }")
            mention_text = ",\n        ".join(mention_blocks[m] for m in mentions)
            stamp = dt.isoformat(timespec="milliseconds")
            f.write(
                ("    },\n" if n else "") +
                '    {\n      "id": "' + mid + '",\n      "type": "' + kind + '",\n'
                '      "timestamp": "' + stamp + '",\n      "timestampEdited": null,\n'
                '      "callEndedTimestamp": null,\n      "isPinned": false,\n'
                '      "content": ' + json.dumps(words, ensure_ascii=False) + ',\n'
                '      "author": ' + author_blocks[a] + ',\n'
                '      "attachments": [' + attachments + '],\n      "components": [],\n'
                '      "embeds": [' + embeds + '],\n      "stickers": [],\n'
                '      "reactions": [' + ("\n" + ",\n".join(reactions) + "\n      "
                                          if reactions else "") + '],\n'
                '      "mentions": [' + ("\n        " + mention_text + "\n      "
                                         if mentions else "") + ']' + reference + ',\n'
                '      "inlineEmojis": [' + inline + ']\n')
            written += 1
        f.write(("    }\n" if written else "") + '  ],\n  "messageCount": ' + str(written) + "\n}\n")
    return {"path": str(out), "messages": written, "bytes": out.stat().st_size,
            "seconds": round(time.monotonic() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(generate(args.out, args.messages, args.seed)))


if __name__ == "__main__":
    main()
