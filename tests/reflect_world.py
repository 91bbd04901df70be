"""A small community for reflection tests, stored through the real ingest path.

    world = build_world(db, tmp_path, users=4, messages_each=12)
    world.user_key("alice")  ->  "server:1001:user:101"

Exports are written with `tests.exports` and ingested with `zos_cli.ingest.run.ingest_exports`, so
messages, users, reactions, topics and salience are exactly what `zos ingest` would store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.exports import Export, emoji, message, reaction, role, snowflake, user
from zos_cli.config import Config

GUILD = "1001"
GENERAL, RANDOM = "2001", "2002"
DM_CHANNEL = "3001"
SELF_ID = "999"
GATE_ROLE = "7001"
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


def config_for(**reflection) -> Config:
    return Config.model_validate({
        "discord": {"self_user_id": SELF_ID},
        "reflection": {"retry_backoff_seconds": 0.01, **reflection},
    })


@dataclass
class World:
    users: dict[str, dict] = field(default_factory=dict)    # name → export user
    ids: dict[str, str] = field(default_factory=dict)        # name → id
    message_ids: list[str] = field(default_factory=list)
    dm_message_ids: list[str] = field(default_factory=list)

    def user_key(self, name: str) -> str:
        return f"server:{GUILD}:user:{self.ids[name]}"

    def global_key(self, name: str) -> str:
        return f"user:{self.ids[name]}"


def _name(i: int) -> str:
    return NAMES[i] if i < len(NAMES) else f"user{i}"


def build_world(db, folder: Path, *, users: int = 4, messages_each: int = 12,
                gated: tuple[str, ...] = (), dm_with: str | None = None,
                dm_texts: tuple[str, ...] = (), texts: dict[str, str] | None = None,
                mention_zos: tuple[str, ...] = (), start_minutes: float = 0, config: Config | None = None) -> World:
    """Users post in turn in #general and #random, each replying to the previous author and
    reacting to them, so every user, their dyads and the channels earn salience.
    `gated` users lack the privacy-gate role (the others hold it; when none is gated no gate
    role is configured by the caller). `dm_with` adds a consented DM with zos; the messages of
    the users in `mention_zos` mention zos's account."""
    from zos_cli.privacy import consent
    from zos_cli.ingest.run import ingest_exports

    config = config or config_for()
    world = World()
    gate = role(GATE_ROLE, "member")
    for i in range(users):
        name = _name(i)
        uid = str(101 + i)
        roles = [] if name in gated else [gate]
        world.users[name] = user(uid, name, nickname=name.capitalize(), roles=roles)
        world.ids[name] = uid
    texts = texts or {}
    general = Export(channel_id=GENERAL, channel_name="general", guild_id=GUILD)
    rand = Export(channel_id=RANDOM, channel_name="random", guild_id=GUILD)
    names = list(world.users)
    previous = None
    minute = start_minutes
    thumbs, party = emoji("👍"), emoji("party", "5001")
    for round_ in range(messages_each):
        for i, name in enumerate(names):
            author = world.users[name]
            minute += 7
            export = general if (round_ + i) % 3 else rand
            text = texts.get(name, f"{name} talks about kilns and glazes, round {round_}")
            reactions = []
            if previous is not None and previous["author"]["id"] != author["id"]:
                reactions = [reaction(thumbs if round_ % 2 else party, [previous["author"]])]
            msg = message(snowflake(minute, i), author, text,
                          mentions=[user(SELF_ID, "zos", bot=True)] if name in mention_zos else (),
                          reply_to=previous if previous is not None and previous in export.messages
                          else None, reactions=reactions)
            export.add(msg)
            world.message_ids.append(msg["id"])
            previous = msg
    paths = [str(general.write(folder / "general.json")), str(rand.write(folder / "random.json"))]
    if dm_with:
        consent.grant(db, world.ids[dm_with])
        zos = user(SELF_ID, "zos", bot=True)
        dm = Export(channel_id=DM_CHANNEL, channel_name=dm_with, channel_type="DirectTextChat",
                    guild_id="0", guild_name="Direct Messages")
        for j, text in enumerate(dm_texts or ("hello zos", "I have been glazing all week")):
            minute += 3
            who = world.users[dm_with] if j % 2 == 0 else zos
            msg = dm.add(message(snowflake(minute, 0), who, text))
            world.dm_message_ids.append(msg["id"])
        paths.append(str(dm.write(folder / "dm.json")))
    summary = ingest_exports(db, config, paths)
    assert not summary["errors"], summary
    return world
