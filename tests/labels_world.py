"""A built world for the label and reference tests (tests/test_labels*.py): two servers,
a name in both, two people of one name, a thread, custom emoji, subjects.

Server A (Tidepool Makers): #general, #show-and-tell and its thread "Kiln build log"; server
B (Kiln Club): #general and #glaze-lab. Theo is in both; two Sams in A (sam2 without the
Members role, MEMBERS); Mo only in B; a bot whose nickname holds a line break. Subjects:
kiln in A, glaze in both."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from tests.conftest import Cli
from tests.exports import Export, emoji, message, reaction, role, snowflake, user
from tests.salience_support import earn_all
from zos_cli.config import load_config
from zos_cli.store import db as database

A, B = "1001", "1002"
THEO_ID, JUN_ID, SAM1, SAM2, MO, BOT = "101", "102", "103", "104", "105", "106"
MEMBERS = "4001"   # server A's gate role in the gated tests; 104 lacks it


def people(nick_theo: str = "Theo") -> dict:
    member = [role(MEMBERS, "Members")]
    return {
        THEO_ID: user(THEO_ID, "theo.builds", nickname=nick_theo, roles=member),
        JUN_ID: user(JUN_ID, "junbug", nickname="Jun", roles=member),
        SAM1: user(SAM1, "sam1", nickname="Sam", roles=member),
        SAM2: user(SAM2, "sam2", nickname="Sam", roles=[]),
        BOT: user(BOT, "helper", nickname="Helper\nBot", bot=True, roles=member),
    }


def build_world(tmp_path: Path, db_path: Path) -> sqlite_utils.Database:
    """Ingest the world's exports into `db_path` and earn the subjects; the open database."""
    p = people()
    mo = user(MO, "mo", nickname="Mo")
    folder = tmp_path / "exports"
    general = Export(channel_id="2001", channel_name="general", guild_id=A,
                     guild_name="Tidepool Makers", exported_at="2024-03-02T00:00:00.000+00:00")
    for i, who in enumerate((THEO_ID, JUN_ID, SAM1, SAM2, BOT)):
        general.add(message(snowflake(i), p[who], f"hello {i}"))
    general.add(message(snowflake(9), p[JUN_ID], "look :glaze: here",
                        inline_emojis=[emoji("glaze", "3001")]))
    general.add(message(snowflake(10), p[THEO_ID], "nice", reply_to=snowflake(9),
                        reactions=[reaction(emoji("kiln_fire", "3002"), [p[JUN_ID]])]))
    general.write(folder / "a-general.json")
    Export(channel_id="2002", channel_name="show-and-tell", guild_id=A,
           guild_name="Tidepool Makers", messages=[message(snowflake(11), p[THEO_ID], "x")]
           ).write(folder / "a-show.json")
    Export(channel_id="2003", channel_name="Kiln build log", channel_type="GuildPublicThread",
           guild_id=A, guild_name="Tidepool Makers", parent_id="2002",
           parent_name="show-and-tell", messages=[message(snowflake(12), p[JUN_ID], "y")]
           ).write(folder / "a-thread.json")
    for channel, name in (("2101", "general"), ("2102", "glaze-lab")):
        Export(channel_id=channel, channel_name=name, guild_id=B, guild_name="Kiln Club",
               messages=[message(snowflake(20 + int(channel) % 10), p[THEO_ID], "hi"),
                         message(snowflake(30 + int(channel) % 10), mo, "hey")]
               ).write(folder / f"b-{name}.json")
    r = Cli(db_path)("ingest", str(folder))
    assert r.exit_code == 0, r.stderr
    db = database.open_database(db_path)
    earn_all(db, load_config(None), [(f"server:{A}:subject:kiln", 12.0),
                                     (f"server:{A}:subject:glaze", 12.0),
                                     (f"server:{B}:subject:glaze", 12.0)])
    return db
