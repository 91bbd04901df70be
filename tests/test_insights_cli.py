"""`zos insights list/show/search/export/runs/calls/delete`."""

from __future__ import annotations

import json

import pytest

from tests.reflect_world import build_world


@pytest.fixture
def stored(db, tmp_path, cli):
    """Offline insights for users and channels, plus a dm, a derived and a quarantined one."""
    world = build_world(db, tmp_path, users=3, messages_each=12)
    assert cli("reflect", "--layer", "user").exit_code == 0
    assert cli("reflect", "--layer", "channel").exit_code == 0
    run_id = db.execute("SELECT id FROM layer_runs WHERE layer_name = 'user'").fetchone()[0]
    key = world.user_key("alice")
    for insight_id, scope, quarantined, text in [
        ("01DM000000000000000000000A", "dm", 0, "private kiln worries shared in direct messages"),
        ("01DER00000000000000000000B", "derived", 0, "mixed understanding of glaze chemistry"),
        ("01QUA00000000000000000000C", "public", 1, "quarantined note about glaze"),
    ]:
        db.execute(
            "INSERT INTO insights (id, topic_key, category, content, sources_scope_max, "
            "layer_run_id, quarantined, strength, confidence, importance, novelty, valence_joy, "
            "created_at) VALUES (?, ?, 'manual', ?, ?, ?, ?, 1, 0.5, 0.5, 0.5, 0.5, "
            "'2030-01-01T00:00:00.000000+00:00')",
            [insight_id, key, text, scope, run_id, quarantined])
    return world


def listed(cli, *args):
    result = cli("insights", "list", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_list_filters(stored, cli):
    everything = listed(cli, "--include-quarantined", "--sort", "created")
    assert len(everything) == 3 + 2 + 3  # users, channels, the three inserted
    assert [r["created_at"] for r in everything] == sorted(
        (r["created_at"] for r in everything), reverse=True)
    # The default order (issue 19): strongest first after fading, the same rows.
    strongest = listed(cli, "--include-quarantined")
    assert sorted(r["id"] for r in strongest) == sorted(r["id"] for r in everything)
    assert [r["effective_strength"] for r in strongest] == sorted(
        (r["effective_strength"] for r in strongest), reverse=True)
    assert "01QUA00000000000000000000C" not in {r["id"] for r in listed(cli)}
    public = listed(cli, "--scope", "public")
    assert public and {r["sources_scope_max"] for r in public} == {"public"}
    assert [r["id"] for r in listed(cli, "--scope", "dm")] == ["01DM000000000000000000000A"]
    assert [r["id"] for r in listed(cli, "--scope", "derived")] == ["01DER00000000000000000000B"]
    assert {r["category"] for r in listed(cli, "--category", "channel_reflection")} == {
        "channel_reflection"}
    alice = listed(cli, "--topic", stored.user_key("alice"))
    assert {r["topic_key"] for r in alice} == {stored.user_key("alice")} and len(alice) == 3
    assert len(listed(cli, "--limit", "2")) == 2
    assert len(listed(cli, "--since", "2029-12-31")) == 2
    assert listed(cli, "--topic", "server:1:user:2") == []


def test_list_nl_and_table(stored, cli):
    result = cli("insights", "list", "--nl", "--limit", "3")
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["id"] for line in lines)
    table = cli("insights", "list", "--limit", "1")
    assert "label" in table.stdout and "topic_key" not in table.stdout and table.exit_code == 0
    assert "topic_key" in cli("insights", "list", "--limit", "1", "--keys").stdout


def test_bad_scope_is_a_usage_error(stored, cli):
    result = cli("insights", "list", "--scope", "secret")
    assert result.exit_code == 2
    assert result.stderr == "Error: --scope 'secret': choose public, dm or derived\n"
    # With --json too: nothing on stdout (it was a lone "[", not JSON).
    for bad in (["--scope", "secret"], ["--since", "garbage"], ["--limit", "-1"]):
        result = cli("insights", "list", *bad, "--json")
        assert (result.exit_code, result.stdout) == (2, ""), bad


def test_show(stored, cli, db):
    insight_id = db.execute("SELECT id FROM insights WHERE category = 'user_reflection' "
                            "LIMIT 1").fetchone()[0]
    doc = json.loads(cli("insights", "show", insight_id, "--json").stdout)
    assert doc["id"] == insight_id and doc["metadata"]["reflector"] == "offline"
    assert len(doc["sources"]["messages"]) == 12
    assert doc["layer_run"]["layer_name"] == "user" and doc["layer_run"]["status"] == "completed"
    assert doc["calls"] == [] and doc["supersedes_chain"] == [] and doc["superseded_by"] == []
    human = cli("insights", "show", insight_id)
    assert human.exit_code == 0 and "Source messages" in human.stdout
    missing = cli("insights", "show", "NOPE")
    assert missing.exit_code == 1  # not found, as for a topic key zos has never seen
    assert missing.stderr == "Error: no insight NOPE: see `zos insights list` for ids\n"


def test_search_ranks_and_respects_scope(stored, cli):
    hits = json.loads(cli("insights", "search", "glaze", "--json").stdout)
    assert [h["id"] for h in hits] == ["01DER00000000000000000000B"]
    assert "[glaze]" in hits[0]["snippet"]
    both = json.loads(cli("insights", "search", "glaze", "--include-quarantined", "--json").stdout)
    assert {h["id"] for h in both} == {"01DER00000000000000000000B", "01QUA00000000000000000000C"}
    assert json.loads(cli("insights", "search", "kiln", "--scope", "public", "--json").stdout) == []
    odd = cli("insights", "search", 'kiln\'s "glaze" (OR) *', "--json")
    assert odd.exit_code == 0 and json.loads(odd.stdout) == []
    messages = json.loads(cli("insights", "search", "messages read", "--json").stdout)
    assert len(messages) == 5
    assert [m["rank"] for m in messages] == sorted(m["rank"] for m in messages)


def test_export_jsonl_and_markdown(stored, cli):
    result = cli("insights", "export")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 7 and {"subject", "supersedes", "open_questions"} <= set(rows[0])
    public = cli("insights", "export", "--scope", "public")
    assert len(public.stdout.splitlines()) == 5
    md = cli("insights", "export", "--format", "md").stdout
    assert md.startswith("# zos insights\n") and f"## {stored.user_key('alice')}" in md
    bad = cli("insights", "export", "--format", "xml")
    assert bad.exit_code == 2 and bad.stderr == "Error: --format 'xml': choose jsonl or md\n"


def test_runs_and_calls(stored, cli):
    runs = json.loads(cli("insights", "runs", "--json").stdout)
    assert [r["layer_name"] for r in runs] == ["channel", "user"]
    assert runs[1]["target_count"] == 3 and runs[1]["insights_created"] == 3
    assert json.loads(cli("insights", "runs", "--layer", "user", "--json").stdout)[0][
        "layer_name"] == "user"
    assert json.loads(cli("insights", "calls", "--json").stdout) == []
    table = cli("insights", "runs")
    assert table.exit_code == 0 and "channel" in table.stdout


def test_delete_needs_yes_without_a_terminal(stored, cli, db):
    result = cli("insights", "delete", "01DM000000000000000000000A")
    assert result.exit_code == 2
    assert result.stderr == ("Error: this would delete insight 01DM000000000000000000000A: "
                             "add --yes to confirm (there is no terminal to ask)\n")
    assert db.execute("SELECT count(*) FROM insights WHERE id = '01DM000000000000000000000A'"
                      ).fetchone()[0] == 1


def test_delete_leaves_a_tombstone_and_an_event(stored, cli, db):
    target = "01DM000000000000000000000A"
    result = cli("insights", "delete", target, "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["deleted"] == target
    assert db.execute("SELECT count(*) FROM insights WHERE id = ?", [target]).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM insights_fts WHERE insight_id = ?",
                      [target]).fetchone()[0] == 0
    assert json.loads(cli("insights", "search", "worries", "--json").stdout) == []
    assert db.execute("SELECT object_type, object_id, reason FROM tombstones").fetchall() == [
        ("insight", target, "operator deletion")]
    payload = db.execute("SELECT payload FROM events WHERE event_type = 'insight_deleted'"
                         ).fetchone()[0]
    assert json.loads(payload) == {"insight_id": target, "tombstone_id": doc["tombstone_id"]}
    assert "private kiln worries" not in payload
    again = cli("insights", "delete", target, "--yes")
    assert again.exit_code == 1
    assert again.stderr == f"Error: no insight {target}: see `zos insights list` for ids\n"


def test_negative_limits_are_usage_errors(stored, cli):
    for args in (["runs"], ["calls"], ["search", "kiln"]):
        result = cli("insights", *args, "--limit", "-1")
        assert result.exit_code == 2 and result.stdout == "", args


def test_export_takes_json_and_nl_like_every_command(cli):
    from tests.conftest import EXAMPLES

    cli("ingest", str(EXAMPLES / "export"))
    cli("reflect", "--layer", "user")
    lines = cli("insights", "export").stdout.splitlines()
    as_json = cli("insights", "export", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == [json.loads(x) for x in lines]
    assert cli("insights", "export", "--nl").stdout.splitlines() == lines
    refused = cli("insights", "export", "--json", "--format", "md")
    assert refused.exit_code == 2 and refused.stderr == (
        "Error: --json exports JSON: leave out --format md\n")
