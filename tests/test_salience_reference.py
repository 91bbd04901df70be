"""Differential test: balances after a real `zos ingest` (in-process CLI, real SQLite file)
equal those of the plain reference model (tests/salience_reference.py, written from docs/salience.md),
on generated exports and on a few hand-written tricky spots."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES, Cli
from tests.exports import (
    Export,
    attachment,
    dm_export,
    emoji,
    message,
    reaction,
    role,
    snowflake,
    user,
)
from tests.salience_reference import reference_balances

ZOS = "199"
GATE = "9000"
SERVER_A, SERVER_B = "1001", "1002"
BLOB, WAVE = emoji("blob", "5001"), emoji("wave", "5002")
THUMB = emoji("👍")


def people(gated: set[str] = frozenset(), role_id: str = GATE) -> list[dict]:
    """The same six people as one server shows them (a role id belongs to one server)."""
    ids = ["101", "102", "103", "104", "105", "1000"]  # "1000": numeric and text order differ
    return [user(i, f"u{i}", roles=[] if i in gated else [role(role_id, "members")])
            for i in ids]


def toml(cfg: dict) -> str:
    lines = [f'[discord]\nself_user_id = "{cfg.get("self_user_id", ZOS)}"', "[salience.caps]"]
    lines += [f"{k} = {v!r}" for k, v in cfg.get("caps", {}).items()]
    for server in (SERVER_A, SERVER_B):
        lines.append(f'[servers."{server}"]')
        lines.append(f"focus = {cfg.get('focus', {}).get(server, 1.0)!r}")
        threads = cfg.get("threads_as_topics", {}).get(server, False)
        lines.append(f"threads_as_topics = {str(threads).lower()}")
        if server in cfg.get("gate", {}):
            lines.append(f'privacy_gate_role = "{cfg["gate"][server]}"')
    return "\n".join(lines) + "\n"


def ingest(exports: list[Export | str], cfg: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(engine balances, reference balances) for these exports (or JSON texts) and this
    configuration, after one `zos ingest` run."""
    texts = [ex if isinstance(ex, str) else ex.dumps().decode() for ex in exports]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i, text in enumerate(texts):
            (root / "in").mkdir(exist_ok=True)
            (root / "in" / f"{i}.json").write_text(text, encoding="utf-8")
        (root / "zos.toml").write_text(toml(cfg), encoding="utf-8")
        cli = Cli(root / "zos.db")
        base = ("--config", str(root / "zos.toml"))
        assert cli(*base, "init-db").exit_code == 0
        for uid in cfg.get("consents", ()):
            assert cli(*base, "consent", "grant", uid).exit_code == 0
        batch = ("--batch-size", str(cfg["batch_size"])) if cfg.get("batch_size") else ()
        result = cli(*base, "ingest", "--json", *batch, str(root / "in"))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["errors"] == []
        conn = sqlite3.connect(root / "zos.db")
        engine = {k: b for k, b in conn.execute("SELECT key, balance FROM topics") if b}
        conn.close()
        # ... and rebuild after that one run gives the same balances (docs/salience.md#rebuild)
        assert cli(*base, "salience", "rebuild", "--yes").exit_code == 0
        conn = sqlite3.connect(root / "zos.db")
        rebuilt = {k: b for k, b in conn.execute("SELECT key, balance FROM topics") if b}
        conn.close()
        assert_same(rebuilt, engine)
    return engine, reference_balances(texts, {"self_user_id": ZOS, **cfg})


def assert_same(engine: dict[str, float], ref: dict[str, float]) -> None:
    diffs = {k: (engine.get(k, 0.0), ref.get(k, 0.0)) for k in set(engine) | set(ref)
             if abs(engine.get(k, 0.0) - ref.get(k, 0.0)) > 1e-9}
    assert not diffs, "engine vs reference: " + "; ".join(
        f"{k}: {e!r} vs {r!r}" for k, (e, r) in sorted(diffs.items()))


CAP_CHOICES = st.sampled_from([1.5, 2.0, 3.5, 8.0, 200.0])
CAP_FIELDS = ["server_user", "channel", "thread", "dyad", "user_in_channel", "dyad_in_channel",
              "role", "emoji", "server_self", "global_user", "global_dyad"]


@st.composite
def scenarios(draw):
    """A server with two channels and a thread, maybe a second server, a 1:1 DM and a group
    DM (with or without consent), 3–22 messages; small caps make caps and spillover matter."""
    gated = set(draw(st.sets(st.sampled_from(["102", "105"]))))
    by_server = {SERVER_A: people(gated), SERVER_B: people(role_id="9002")}
    cfg = {"caps": {f: draw(CAP_CHOICES) for f in draw(st.sets(st.sampled_from(CAP_FIELDS)))},
           "focus": {SERVER_A: draw(st.sampled_from([1.0, 0.5, 2.0])),
                     SERVER_B: draw(st.sampled_from([1.0, 1.5]))},
           "threads_as_topics": {SERVER_A: draw(st.booleans())},
           "gate": {SERVER_A: GATE} if gated and draw(st.booleans()) else {},
           "consents": sorted(draw(st.sets(st.sampled_from(["101", "104"])))),
           "batch_size": draw(st.sampled_from([None, 1, 3]))}  # balances never depend on it
    files = {
        "2001": Export(channel_id="2001", channel_name="general", guild_id=SERVER_A),
        "2002": Export(channel_id="2002", channel_name="art", guild_id=SERVER_A),
        "2101": Export(channel_id="2101", channel_name="log", guild_id=SERVER_A,
                       channel_type="GuildPublicThread", parent_id="2001", parent_name="general"),
    }
    if draw(st.booleans()):
        files["2201"] = Export(channel_id="2201", channel_name="b", guild_id=SERVER_B)
    zos = user(ZOS, "zos")
    dm_people = {"3001": [user(*draw(st.sampled_from([("101", "u101"), ("104", "u104")])))],
                 "3002": [user("101", "u101"), user("104", "u104")]}
    for channel in draw(st.sets(st.sampled_from(sorted(dm_people)))):
        files[channel] = dm_export(channel, dm_people[channel][0]["name"],
                                   group=channel == "3002")
    sent: dict[str, list[dict]] = {}  # server → its messages so far
    for i in range(draw(st.integers(3, 22))):
        where = draw(st.sampled_from(sorted(files)))
        ex, mid = files[where], snowflake(i)
        if where in dm_people:
            members = dm_people[where] + [zos]
            ex.add(message(mid, draw(st.sampled_from(members)), "hi", reactions=[
                reaction(THUMB, draw(st.lists(st.sampled_from(members), unique_by=str)))]))
            continue
        users = by_server[ex.guild_id]
        author = draw(st.sampled_from(users + [zos] * draw(st.sampled_from([0, 0, 1]))))
        earlier = sent.setdefault(ex.guild_id, [])
        reactions = [reaction(e, draw(st.lists(st.sampled_from(users + [zos]), max_size=4,
                                               unique_by=lambda u: u["id"])))
                     for e in draw(st.lists(st.sampled_from([THUMB, BLOB, WAVE]), max_size=2,
                                            unique_by=lambda e: e["name"]))]
        kind = draw(st.sampled_from(["text"] * 8 + ["ThreadCreated", "ChannelPinnedMessage"]))
        if kind == "ThreadCreated" and where == "2001":
            ex.add(message(mid, author, "log", type=kind, reactions=reactions, reference={
                "type": "Default", "messageId": None, "channelId": "2101", "guildId": SERVER_A}))
            continue
        if kind == "ChannelPinnedMessage" and earlier:
            ex.add(message(mid, author, "Pinned a message.", type=kind, reactions=reactions,
                           reference={"type": "Default", "messageId": earlier[-1]["id"],
                                      "channelId": where, "guildId": ex.guild_id}))
            continue
        reply = draw(st.sampled_from(earlier + ["9999"])) if earlier and draw(st.booleans()) else None
        mentions = draw(st.lists(st.sampled_from(users + [zos]), max_size=3))
        if isinstance(reply, dict) and draw(st.booleans()):
            mentions.append(reply["author"])  # the reply's automatic mention
        blobs = draw(st.integers(0, 2))
        text = " ".join(["hey"] + [":blob:"] * blobs + draw(st.lists(st.sampled_from(
            ["<@&7001>", "<@&7002>", "https://example.com/x", ":wave:"]), max_size=3)))
        inline = ([BLOB] if blobs else []) + ([WAVE] if ":wave:" in text else [])
        earlier.append(ex.add(message(
            mid, author, text, reply_to=reply, mentions=mentions, inline_emojis=inline,
            reactions=reactions,
            attachments=[attachment(str(8000 + i))] if draw(st.integers(0, 4)) == 0 else [])))
    exports = [ex for ex in files.values() if ex.messages]
    if draw(st.booleans()):  # a re-export of one channel, in the same run
        exports.append(draw(st.sampled_from(exports)))
    return exports, cfg


@settings(max_examples=30, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(scenario=scenarios())
def test_ingest_balances_equal_the_reference_model(scenario):
    exports, cfg = scenario
    assert_same(*ingest(exports, cfg))


# ---------------------------------------------------------------- hand-written tricky spots
ANN, BOB = user("101", "ann"), user("102", "bob")


def test_the_example_export_matches_the_reference():
    """Replies, a thread, pins, custom emoji, several reactors per emoji, a consented DM. The
    dyad of 405 and 612 pins the order of a message's reactions: by reactor, then emoji
    (405's two reactions warm it before 894's and 733's; in the export's order it would end
    at 10.06)."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((EXAMPLES / "export").glob("*.json"))]
    engine, ref = ingest(texts, {"self_user_id": "1180554433221100987",
                                 "consents": ["733410882256019477"]})
    assert_same(engine, ref)
    dyad = "server:1093876543210987520:dyad:405112233445566778:612993005118177290"
    assert engine[dyad] == pytest.approx(10.36)
    assert "user:733410882256019477" in engine  # the consented DM earned


def test_caps_overflow_and_spillover():
    """A media message leaves exactly 1.2 on each of its topics (warmth is read before the
    event); the next message overflows user_in_channel (cap 1.5) and spills to both."""
    ex = Export(channel_id="2001", guild_id=SERVER_A)
    ex.add(message(snowflake(0), ANN, "look https://example.com/pot"))
    ex.add(message(snowflake(1), ANN, "and more"))
    engine, ref = ingest([ex], {"caps": {"user_in_channel": 1.5}})
    assert_same(engine, ref)
    assert engine[f"server:{SERVER_A}:user_in_channel:2001:101"] == pytest.approx(1.5)
    # 1.2 + 0.3 (0.3 × 1.0) + 0.35 (0.5 × overflow 0.7) + its own earn 1.0
    assert engine[f"server:{SERVER_A}:user:101"] == pytest.approx(2.85)
    assert engine[f"server:{SERVER_A}:channel:2001"] == pytest.approx(2.85)


def test_a_replys_mention_self_mention_and_self_reaction_earn_nothing_more():
    ex = Export(channel_id="2001", guild_id=SERVER_A)
    first = ex.add(message(snowflake(0), ANN, "hi"))
    ex.add(message(snowflake(1), BOB, "hey @ann @bob", reply_to=first, mentions=[ANN, BOB],
                   reactions=[reaction(THUMB, [BOB])]))
    engine, ref = ingest([ex], {})
    assert_same(engine, ref)
    assert engine[f"server:{SERVER_A}:dyad:101:102"] == pytest.approx(1.5)  # the reply only


def test_a_global_dyad_warmed_before_a_dm_gets_its_share_of_the_dm():
    """Warm rows count as before the event: ann's DM warms user:ann and then dyad:ann:bob
    (bob is warm, they have a server dyad) before its earn, so the dyad is warm when user:ann
    earns 1.5 and receives 0.3 × 1.5 (it got nothing: it joined only at the next event)."""
    s1 = Export(channel_id="2001", guild_id=SERVER_A)
    s1.add(message(snowflake(0), ANN, "hi @bob", mentions=[BOB]))
    s1.add(message(snowflake(1), BOB, "hey"))
    s2 = Export(channel_id="2201", guild_id=SERVER_B)
    s2.add(message(snowflake(2), BOB, "hello"))  # bob: active in a second server, warm
    dm = dm_export("3001", "ann")
    dm.add(message(snowflake(3), ANN, "hi zos"))
    engine, ref = ingest([s1, s2, dm], {"consents": ["101"]})
    assert_same(engine, ref)
    assert engine["dyad:101:102"] == pytest.approx(5.45)


def test_reactions_to_a_join_message_do_not_make_its_author_active():
    """Being active in a server is authoring or reacting there (docs/salience.md#warming): bob waving at ann's
    join message earns ann's server user topic, but ann's first message there is still her
    first activity in a second server, which warms user:ann (she was never warmed)."""
    s1 = Export(channel_id="2001", guild_id=SERVER_A)
    s1.add(message(snowflake(0), ANN, "hi"))
    s2 = Export(channel_id="2201", guild_id=SERVER_B)
    s2.add(message(snowflake(1), ANN, "Joined the server.", type="GuildMemberJoin",
                   reactions=[reaction(emoji("👋"), [BOB])]))
    s2.add(message(snowflake(2), ANN, "hello everyone"))
    engine, ref = ingest([s1, s2], {})
    assert_same(engine, ref)
    assert engine["user:101"] == pytest.approx(5.3)  # warm 5.0 + 0.3 × her message's 1.0


def test_a_wave_at_a_join_message_is_remembered_across_runs_and_rebuilt(tmp_path):
    """What made ann's server topic earn without her acting is stored with the batch: split
    over two runs (a kill between them leaves the same), the wave and ann's first message give
    what one run gives, and rebuild agrees."""
    s1 = Export(channel_id="2001", guild_id=SERVER_A)
    s1.add(message(snowflake(0), ANN, "hi"))
    first = Export(channel_id="2201", guild_id=SERVER_B)
    first.add(message(snowflake(1), ANN, "Joined the server.", type="GuildMemberJoin",
                      reactions=[reaction(emoji("👋"), [BOB])]))
    later = Export(channel_id="2202", guild_id=SERVER_B)
    later.add(message(snowflake(2), ANN, "hello everyone"))
    one_run, _ = ingest([s1, first, later], {})
    cli = Cli(tmp_path / "zos.db")
    assert cli("init-db").exit_code == 0
    for i, export in enumerate(([s1, first], [later])):
        folder = tmp_path / f"run{i}"
        for j, ex in enumerate(export):
            ex.write(folder / f"{j}.json")
        assert cli("ingest", str(folder)).exit_code == 0
    conn = sqlite3.connect(tmp_path / "zos.db")
    two_runs = {k: b for k, b in conn.execute("SELECT key, balance FROM topics") if b}
    conn.close()
    assert_same(two_runs, one_run)
    assert two_runs["user:101"] == pytest.approx(5.3)
    assert cli("salience", "rebuild", "--yes").exit_code == 0
    conn = sqlite3.connect(tmp_path / "zos.db")
    rebuilt = {k: b for k, b in conn.execute("SELECT key, balance FROM topics") if b}
    conn.close()
    assert_same(rebuilt, one_run)
