"""Context assembly: what a reflection reads, how it names people, and its token budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reflect_world import GATE_ROLE, GUILD, SELF_ID, build_world, config_for
from zos_cli.privacy import consent
from zos_cli.config import Config
from zos_cli.reflect.context import build_context
from zos_cli.reflect.layers import get_layer, load_layer_file
from zos_cli.reflect.material import target_from_key
from zos_cli.reflect.run import RunOptions, run_layer
from zos_cli.reflect.timefmt import estimate_tokens, relative

AS_OF = "2024-03-01T18:00:00.000000+00:00"


def context_for(db, config, key, layer="user", as_of=AS_OF, **overrides):
    lay = get_layer(layer)
    if overrides:
        lay = _with(lay, **overrides)
    return build_context(db, config, lay, target_from_key(key), as_of)


def _with(layer, **changes):
    spec = layer.spec.model_copy(update=changes)
    return type(layer)(spec, layer.path, layer.template_path, layer.origin, layer.hash,
                       layer.search)


@pytest.mark.parametrize("when, expected", [
    ("2024-03-01T17:59:30+00:00", "just now"),
    ("2024-03-01T17:55:00+00:00", "5 minutes ago"),
    ("2024-03-01T17:00:00+00:00", "1 hour ago"),
    ("2024-02-29T12:00:00+00:00", "yesterday"),
    ("2024-02-27T18:00:00+00:00", "3 days ago"),
    ("2024-02-01T18:00:00+00:00", "4 weeks ago"),
    ("2023-09-01T18:00:00+00:00", "5 months ago"),
    ("2021-03-01T18:00:00+00:00", "3 years ago"),
    ("2024-03-03T18:00:00+00:00", "in 2 days"),
])
def test_relative_times(when, expected):
    assert relative(when, AS_OF) == expected


def test_user_context_reads_their_messages_with_relative_times(db, tmp_path):
    world = build_world(db, tmp_path, users=3, messages_each=5)
    context = context_for(db, config_for(), world.user_key("bob"))
    assert [m["author_id"] for m in context.messages] == [world.ids["bob"]] * 5
    assert [m["created_at"] for m in context.messages] == sorted(
        m["created_at"] for m in context.messages)
    data = context.prompt.split("BEGIN DATA\n")[-1].split("\nEND DATA")[0].splitlines()
    assert len(data) == 5
    assert data[0].startswith("[") and " ago · #" in data[0]
    assert '] Bob (replying to Alice): "bob talks about kilns' in context.prompt
    assert context.new_mark.id == context.messages[-1]["id"]
    assert context.scope() == "public"


def test_budget_keeps_the_newest_messages(db, tmp_path):
    world = build_world(db, tmp_path, users=2, messages_each=40)  # (runs past AS_OF)
    after = "2024-03-02T12:00:00.000000+00:00"
    full = context_for(db, config_for(), world.user_key("alice"), as_of=after,
                       context_tokens=100_000)
    small = context_for(db, config_for(), world.user_key("alice"), as_of=after,
                        context_tokens=1500)
    assert len(full.messages) == 40
    assert 0 < len(small.messages) < 40
    assert small.messages == full.messages[-len(small.messages):]
    assert small.tokens <= 1500
    assert small.tokens == estimate_tokens(small.prompt) + estimate_tokens(
        __import__("zos_cli.reflect.llm", fromlist=["SYSTEM_PROMPT"]).SYSTEM_PROMPT)


@settings(max_examples=15, deadline=None)
@given(budget=st.integers(min_value=900, max_value=6000))
def test_prompt_never_exceeds_the_budget(budget, tmp_path_factory):
    from zos_cli.store import db as db_module
    from zos_cli.store import migrations

    folder = tmp_path_factory.mktemp("budget")
    db = db_module.connect(folder / "z.db", create=True)
    migrations.apply(db, folder / "z.db")
    try:
        world = build_world(db, folder, users=2, messages_each=30)
        context = context_for(db, config_for(), world.user_key("alice"), context_tokens=budget)
        assert context.tokens <= budget
        assert context.messages  # the newest message always fits these budgets
    finally:
        db.close()


def test_people_without_the_gate_role_are_chat_n_and_never_named(db, tmp_path):
    texts = {n: f"message from someone, about glazes" for n in ("alice", "bob", "carol")}
    world = build_world(db, tmp_path, users=3, messages_each=6, gated=("bob",), texts=texts)
    config = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                    "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    context = context_for(db, config, f"server:{GUILD}:channel:2001", layer="channel")
    assert "Bob" not in context.prompt and "bob" not in context.prompt
    assert "<chat_1>" in context.prompt
    assert context.aliased == {world.ids["bob"]: "<chat_1>"}
    assert "People named in it: Alice, Carol." in context.prompt
    assert "1 participant appears as <chat_N>" in context.prompt
    # Carol's own context names the gated user she replies to only as <chat_1>.
    carol = context_for(db, config, world.user_key("carol"))
    assert "(replying to <chat_1>)" in carol.prompt and "Bob" not in carol.prompt


def test_gated_user_is_never_a_target(db, db_path, tmp_path, cli):
    world = build_world(db, tmp_path, users=3, messages_each=12, gated=("bob",))
    config = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                    "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    summary = run_layer(db, config, RunOptions(layer="user"))
    assert world.user_key("bob") not in summary["targets"]
    assert summary["targets"]
    toml = tmp_path / "zos.toml"
    toml.write_text(f'[servers."{GUILD}"]\nprivacy_gate_role = "{GATE_ROLE}"\n')
    result = cli("--config", str(toml), "reflect", "--layer", "user", "--topic",
                 world.user_key("bob"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {world.user_key('bob')}: a user without the privacy-gate role of server "
        f"{GUILD} is never analysed\n")


def test_a_gated_user_takes_no_place_under_the_target_limit(db, tmp_path):
    # Bob earned before the gate was configured (as when someone loses the role), and has
    # the highest balance: the limit counts the others, not him.
    from zos_cli.store import db as db_module
    from zos_cli.reflect.targets import choose_targets
    from zos_cli.salience import SalienceEngine

    world = build_world(db, tmp_path, users=3, messages_each=12)
    engine = SalienceEngine(db, config_for())
    with db_module.write_transaction(db):
        engine.earn(world.user_key("bob"), 50.0, "2024-03-05T00:00:00.000000+00:00")
        engine.flush("test: bob is the busiest")
    gated = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                   "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    with db_module.write_transaction(db):  # Bob loses the role
        db.execute("DELETE FROM user_roles WHERE user_id = ?", [world.ids["bob"]])
    layer = get_layer("user")
    assert [t.key for t in choose_targets(db, config_for(), layer, max_targets=1)] == [
        world.user_key("bob")]
    for limit in (1, 2):
        keys = [t.key for t in choose_targets(db, gated, layer, max_targets=limit)]
        assert len(keys) == limit and world.user_key("bob") not in keys


def test_mentions_and_markup_become_names(db, tmp_path):
    texts = {"alice": "hey <@102> look at <#2002> <:party:5001> <@&7001>"}
    world = build_world(db, tmp_path, users=2, messages_each=2, texts=texts)
    context = context_for(db, config_for(), world.user_key("alice"))
    assert '"hey @Bob look at #random :party: @member"' in context.prompt


def test_prior_insights_by_retrieval_profile(db, db_path, tmp_path):
    world = build_world(db, tmp_path, users=2, messages_each=3)
    key = world.user_key("alice")
    strengths = [5.0, 0.1, 3.0, 0.2, 4.0, 0.3, 2.0, 0.4, 1.0, 0.5]
    db.execute("INSERT INTO layer_runs (id, layer_name, layer_hash, status, started_at, as_of) "
               "VALUES ('r', 'user', 'h', 'completed', ?, ?)", [AS_OF, AS_OF])
    for i, strength in enumerate(strengths):
        db.execute(
            "INSERT INTO insights (id, topic_key, category, content, sources_scope_max, "
            "layer_run_id, strength, confidence, importance, novelty, valence_joy, created_at) "
            "VALUES (?, ?, 'user_reflection', ?, 'public', 'r', ?, 0.5, 0.5, 0.5, 0.5, ?)",
            [f"I{i:02d}", key, f"insight {i}", strength, f"2024-02-{10 + i:02d}T00:00:00.000000+00:00"])
    db.execute("UPDATE insights SET quarantined = 1 WHERE id = 'I09'")
    db.execute("UPDATE insights SET supersedes = 'I00' WHERE id = 'I08'")

    def shown(retrieval):
        return [p["id"] for p in context_for(db, config_for(), key, retrieval=retrieval).prior]

    assert shown("recent") == ["I08", "I07", "I06", "I05", "I04", "I03", "I02", "I01"]
    assert shown("deep") == ["I04", "I02", "I06", "I08", "I07", "I05", "I03", "I01"]
    assert shown("balanced") == ["I08", "I04", "I07", "I02", "I06", "I05", "I03"]
    assert "I00" not in context_for(db, config_for(), key).prompt  # superseded
    assert "I09" not in context_for(db, config_for(), key).prompt  # quarantined


def test_dm_context_for_a_global_user_rechecks_consent(db, tmp_path):
    world = build_world(db, tmp_path, users=2, messages_each=2, dm_with="alice",
                        dm_texts=("kiln secrets", "tell me more", "the glaze is blue"))
    context = context_for(db, config_for(), world.global_key("alice"))
    assert [m["id"] for m in context.messages] == world.dm_message_ids
    assert context.scope() == "dm"
    assert "direct messages" in context.prompt and "zos" in context.prompt
    consent.revoke(db, world.ids["alice"])
    assert context_for(db, config_for(), world.global_key("alice")).messages == []


def test_local_layer_overrides_a_shipped_one(tmp_path):
    local = tmp_path / "layers"
    local.mkdir()
    shipped = get_layer("user")
    (local / "user.toml").write_text(
        shipped.path.read_text().replace("max_targets = 15", "max_targets = 40"))
    layer = get_layer("user", local)
    assert layer.origin == "local" and layer.spec.max_targets == 40
    assert layer.template_path == shipped.template_path  # found in the shipped folder
    assert layer.hash != shipped.hash
    (local / "user.md.j2").write_text('{% extends "_reflection.md.j2" %}{% block focus %}X{% endblock %}')
    assert get_layer("user", local).hash != layer.hash


def test_layer_hash_covers_extended_templates(tmp_path):
    folder = tmp_path / "layers"
    folder.mkdir()
    (folder / "_base.md.j2").write_text("base {% block b %}{% endblock %}")
    (folder / "mine.md.j2").write_text('{% extends "_base.md.j2" %}{% block b %}x{% endblock %}')
    (folder / "mine.toml").write_text(
        'name = "mine"\ncategory = "users"\ndescription = "d"\ngoal = "g"\nmax_targets = 1\n'
        'context_tokens = 1000\ninsight_category = "mine"\ntemplate = "mine.md.j2"\n')
    first = load_layer_file(folder / "mine.toml", "local", [folder]).hash
    (folder / "_base.md.j2").write_text("changed {% block b %}{% endblock %}")
    assert load_layer_file(folder / "mine.toml", "local", [folder]).hash != first


@pytest.mark.parametrize("text, message", [
    ('name = "user"\n', "layer file {path}: category: required; description: required; goal: "
     "required; max_targets: required; context_tokens: required; insight_category: required; "
     "template: required"),
    ('name = "user"\ncategory = "people"\ndescription = "d"\ngoal = "g"\nmax_targets = 1\n'
     'context_tokens = 1000\ninsight_category = "x"\ntemplate = "user.md.j2"\nwhat = 1\n',
     "layer file {path}: category: Value error, unknown topic category people (known: "
     "channels, dyad_in_channel, dyads, emoji, roles, self, subjects, threads, "
     "user_in_channel, users); what: unknown setting"),
])
def test_bad_layer_files_are_config_errors(tmp_path, cli, text, message):
    local = Path("layers")
    local.mkdir()
    (local / "user.toml").write_text(text)
    result = cli("reflect", "--layer", "user")
    assert result.exit_code == 78
    assert result.stderr == "Error: " + message.format(path=local / "user.toml") + "\n"


def test_unknown_layer_is_a_usage_error(cli):
    result = cli("reflect", "--layer", "nope")
    assert result.exit_code == 2
    assert result.stderr == ("Error: no layer named 'nope': choose one of channel, dyad, emoji, "
                             "reconcile, self, subject, synthesis, user (see `zos reflect --list`)\n")


def test_list_layers_json(cli):
    result = cli("reflect", "--list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    # In the night's order ([nightly] layers).
    assert [r["name"] for r in rows] == [
        "user", "dyad", "channel", "subject", "emoji", "synthesis", "reconcile", "self"]
    user = rows[0]
    assert user["category"] == "users" and user["origin"] == "shipped"
    assert len(user["hash"]) == 64
    lines = cli("reflect", "--list", "--nl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == rows
    # One document with --nl is one line too.
    summary = cli("reflect", "--layer", "user", "--dry-run", "--nl").stdout
    assert summary.count("\n") == 1 and json.loads(summary)["targets"] == []


def test_the_emoji_layer_reads_messages_using_the_emoji_in_their_text(db, tmp_path):
    # Exports write a custom emoji as :party: in the text (its id only in inlineEmojis), so
    # the messages are found through custom_emoji_ids, as well as through reactions.
    from tests.exports import Export, emoji, message, reaction, snowflake, user
    from zos_cli.ingest.run import ingest_exports

    alice, bob = user("101", "alice"), user("102", "bob")
    party = emoji("party", "5001")
    ex = Export(channel_id="2001", channel_name="general", guild_id=GUILD)
    ex.add(message(snowflake(1), alice, "kiln day :party:", inline_emojis=[party]))
    ex.add(message(snowflake(2), bob, "glaze test", reactions=[reaction(party, [alice])]))
    ex.add(message(snowflake(3), bob, "nothing festive here"))
    assert not ingest_exports(db, config_for(), [str(ex.write(tmp_path / "g.json"))])["errors"]
    prompt = context_for(db, config_for(), f"server:{GUILD}:emoji:5001", layer="emoji").prompt
    assert '"kiln day :party:"' in prompt and '"glaze test"' in prompt
    assert "nothing festive" not in prompt


def test_a_mention_of_someone_outside_the_gate_is_chat_n_in_the_text(db, tmp_path):
    # Exports write mentions as @Name in the text; the mentions list says who they are.
    from tests.exports import Export, message, role, snowflake, user
    from zos_cli.ingest.run import ingest_exports

    member = role(GATE_ROLE, "member")
    alice = user("101", "alice", nickname="Alice", roles=[member])
    bob = user("102", "bob_user", nickname="Bobby B", roles=[])
    ex = Export(channel_id="2001", channel_name="general", guild_id=GUILD)
    ex.add(message(snowflake(1), alice, "@Bobby B and @bob_user, see the kiln", mentions=[bob]))
    ex.add(message(snowflake(2), bob, "thanks"))
    config = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                    "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
    assert not ingest_exports(db, config, [str(ex.write(tmp_path / "g.json"))])["errors"]
    prompt = context_for(db, config, f"server:{GUILD}:channel:2001", layer="channel").prompt
    assert '"@<chat_1> and @<chat_1>, see the kiln"' in prompt
    assert "Bobby" not in prompt and "bob_user" not in prompt


def test_a_run_clock_in_the_past_reads_nothing_after_it(db, tmp_path):
    world = build_world(db, tmp_path, users=2, messages_each=6)
    times = sorted(r[0] for r in db.execute("SELECT created_at FROM messages"))
    as_of = times[len(times) // 2]
    context = context_for(db, config_for(), world.user_key("alice"), as_of=as_of)
    assert context.messages and all(m["created_at"] <= as_of for m in context.messages)
    later = context_for(db, config_for(), world.user_key("alice"), as_of=times[-1])
    assert len(later.messages) > len(context.messages)
