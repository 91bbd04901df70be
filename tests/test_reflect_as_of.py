"""`zos reflect --as-of T` with T in the past (before the newest stored activity): the run
chooses its targets and spends from their balances at T, keeps the ledger rows after T, and
`zos salience rebuild` gives back the same balances."""

from __future__ import annotations

import json

import pytest

from tests.exports import Export, message, snowflake, user

ALICE, BOB = user("101", "alice"), user("102", "bob")
CHANNEL = "server:1001:channel:{}"
AS_OF = "2024-03-01T13:00:00.000000+00:00"  # an hour after the first message


def channel_export(folder, channel_id: str, *, before: int, after: int):
    """`before` messages a minute apart from 12:00, `after` more from 22:00 (after AS_OF),
    alice and bob taking turns."""
    ex = Export(channel_id=channel_id, channel_name=f"c{channel_id}")
    minutes = [float(i) for i in range(before)] + [600.0 + i for i in range(after)]
    for i, at in enumerate(minutes):
        ex.add(message(snowflake(at, seq=int(channel_id) % 4096), (ALICE, BOB)[i % 2],
                       f"message {i} in {channel_id}: the kiln, the glaze and the firing"))
    return ex.write(folder / f"{channel_id}.json")


def ingest(cli, folder, *config) -> None:
    # --batch-size 1: every message's ledger rows are stamped with its own time (an aggregated
    # row is stamped with the newest event of its batch, and counts as after T when that is)
    result = cli(*config, "ingest", str(folder), "--batch-size", "1", "--json")
    assert result.exit_code == 0, result.stderr


def reflect(cli, *args) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def ledger_sum(db, key: str, where: str = "1", *params) -> float:
    return db.execute(f"SELECT coalesce(sum(amount), 0) FROM salience_ledger WHERE topic_key = ? "
                      f"AND {where}", [key, *params]).fetchone()[0]


def state(db) -> dict[str, tuple]:
    return {key: (balance, last) for key, balance, last in db.execute(
        "SELECT key, balance, last_activity_at FROM topics")}


def test_a_past_run_spends_from_the_balance_at_its_as_of(db, tmp_path, cli):
    channel_export(tmp_path / "export", "2001", before=12, after=4)
    ingest(cli, tmp_path / "export")
    key = CHANNEL.format("2001")
    current = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()[0]
    at_t = ledger_sum(db, key, "created_at <= ?", AS_OF)
    later = db.execute("SELECT id, amount FROM salience_ledger WHERE topic_key = ? AND "
                       "created_at > ? ORDER BY id", [key, AS_OF]).fetchall()
    assert 10 <= at_t < current and later  # t1 < t2 < T < t3

    summary = reflect(cli, "reflect", "--layer", "channel", "--as-of", AS_OF)
    assert summary["targets"] == [key] and summary["as_of"] == AS_OF

    spent = min(summary["tokens_used"] * 0.001, at_t)
    rows = dict(db.execute(
        "SELECT transaction_type, amount FROM salience_ledger WHERE topic_key = ? AND "
        "layer_run_id = ? AND created_at = ?", [key, summary["layer_run_id"], AS_OF]).fetchall())
    assert rows == {"spend": pytest.approx(-spent), "reset": pytest.approx(-(at_t - spent)),
                    "retain": pytest.approx(1.5 * spent)}
    # the rows after T are kept: only what the reflection could read was reset
    assert db.execute("SELECT id, amount FROM salience_ledger WHERE topic_key = ? AND "
                      "created_at > ? ORDER BY id", [key, AS_OF]).fetchall() == later
    balance = db.execute("SELECT balance FROM topics WHERE key = ?", [key]).fetchone()[0]
    assert balance == pytest.approx(current - at_t + 1.5 * spent)
    assert db.execute("SELECT salience_spent FROM insights").fetchone()[0] == pytest.approx(spent)


def test_rebuild_after_a_past_run_gives_the_same_balances(db, tmp_path, cli):
    # A cost that leaves the channel warm (retain > 1.0) after its reset: the later messages'
    # transfers into it then do not depend on whether the reset came first (rebuild) or not
    # (the stored earns), just as no cap is reached after T.
    config = tmp_path / "zos.toml"
    config.write_text("[salience]\ncost_per_token = 0.005\n")
    channel_export(tmp_path / "export", "2001", before=12, after=4)
    ingest(cli, tmp_path / "export", "--config", str(config))
    summary = reflect(cli, "--config", str(config), "reflect", "--layer", "channel",
                      "--as-of", AS_OF)
    assert summary["status"] == "completed"
    retain = db.execute("SELECT amount FROM salience_ledger WHERE transaction_type = 'retain'"
                        ).fetchone()[0]
    assert retain > 1.0
    before = state(db)

    result = cli("--config", str(config), "salience", "rebuild", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["spends_reapplied"] == 1
    after = state(db)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key][0] == pytest.approx(before[key][0], abs=1e-9), key
        assert after[key][1] == before[key][1], key
    assert json.loads(cli("salience", "check", "--json").stdout)["ok"] is True


def test_a_past_run_chooses_its_targets_by_their_balances_then(db, tmp_path, cli):
    folder = tmp_path / "export"
    channel_export(folder, "2001", before=14, after=0)   # the most salient at T
    channel_export(folder, "2002", before=10, after=14)  # less at T, the most now
    channel_export(folder, "2003", before=0, after=12)   # nothing at T
    ingest(cli, folder)
    now = reflect(cli, "reflect", "--layer", "channel", "--dry-run")
    assert now["targets"][0] == CHANNEL.format("2002")
    assert CHANNEL.format("2003") in now["targets"]

    then = reflect(cli, "reflect", "--layer", "channel", "--dry-run", "--as-of", AS_OF)
    assert then["targets"] == [CHANNEL.format("2001"), CHANNEL.format("2002")]
    one = reflect(cli, "reflect", "--layer", "channel", "--max-targets", "1", "--as-of", AS_OF)
    assert one["targets"] == [CHANNEL.format("2001")]


def test_nothing_salient_at_a_past_as_of_says_when(db, tmp_path, cli):
    channel_export(tmp_path / "export", "2001", before=0, after=14)
    ingest(cli, tmp_path / "export")
    summary = reflect(cli, "reflect", "--layer", "channel", "--as-of", AS_OF)
    assert summary["layer_run_id"] is None and summary["targets"] == []
    assert summary["note"] == ("nothing salient for layer channel: no channels/threads topic "
                               f"has a balance of 10 or more at {AS_OF}")
