"""`zos salience rebuild` after real ingests of the example export: the same balances with the
same weights, new balances with new weights, past spends and decays re-applied at their times,
DMs only while consent allows."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES
from zos_cli.privacy import consent
from zos_cli.store import db as database
from zos_cli.config import load_config
from zos_cli.salience import after_reflection, decay
from zos_cli.salience.clock import data_clock

PRIYA = "733410882256019477"
ZOS = "1180554433221100987"


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "zos.toml"
    path.write_text(f'[discord]\nself_user_id = "{ZOS}"\n')
    return path


def state(db) -> dict[str, tuple]:
    return {key: (balance, last) for key, balance, last in db.execute(
        "SELECT key, balance, last_activity_at FROM topics")}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][0] == pytest.approx(b[key][0], abs=1e-9), key
        assert a[key][1] == b[key][1], key


def ingest(cli, config_file, *extra) -> dict:
    r = cli("--config", str(config_file), "ingest", str(EXAMPLES / "export"), "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def rebuild(cli, config_file) -> dict:
    r = cli("--config", str(config_file), "salience", "rebuild", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_ingest_then_rebuild_gives_identical_balances(cli, db, config_file):
    consent.grant(db, PRIYA)
    summary = ingest(cli, config_file)
    assert summary["messages_new"] > 0 and summary["dm_skipped_without_consent"] == 0
    before = state(db)
    assert before["user:" + PRIYA][0] > 0  # the DM earned
    done = rebuild(cli, config_file)
    assert done["messages_replayed"] == summary["messages_new"]
    assert done["reactions_replayed"] == summary["reactions_new"]
    assert_same(state(db), before)
    assert json.loads(cli("salience", "check", "--json").stdout)["ok"] is True


def test_rebuild_reapplies_spends_and_decays_at_their_times(cli, db, config_file):
    config = load_config(config_file)
    ingest(cli, config_file)
    clock = data_clock(db)
    top = db.execute("SELECT key FROM topics ORDER BY balance DESC LIMIT 1").fetchone()[0]
    with database.write_transaction(db):
        after_reflection(db, config, top, 3000, clock, "RUN1")
    decay(db, config, "2024-04-15T00:00:00Z")
    before = state(db)
    kept = db.execute("SELECT id, transaction_type, created_at FROM salience_ledger "
                      "WHERE transaction_type IN ('spend', 'reset', 'retain', 'decay') "
                      "ORDER BY id").fetchall()
    assert len(kept) > 10
    done = rebuild(cli, config_file)
    assert done["spends_reapplied"] == 1 and done["decays_reapplied"] == len(kept) - 3
    assert_same(state(db), before)
    assert db.execute("SELECT id, transaction_type, created_at FROM salience_ledger "
                      "WHERE transaction_type IN ('spend', 'reset', 'retain', 'decay') "
                      "ORDER BY id").fetchall() == kept
    # decay stays idempotent after a rebuild
    assert decay(db, config, "2024-04-15T00:00:00Z")["rows"] == 0


def test_rebuild_with_new_weights_equals_an_ingest_with_them(cli, db, config_file, tmp_path):
    from tests.conftest import Cli

    ingest(cli, config_file)
    heavier = tmp_path / "heavier.toml"
    heavier.write_text(config_file.read_text()
                       + "[salience.weights]\nmessage = 2.0\nreaction = 1.25\nreply = 3.0\n")
    rebuild(cli, heavier)
    fresh_path = tmp_path / "fresh.db"
    fresh = Cli(fresh_path)
    assert fresh("init-db").exit_code == 0
    ingest(fresh, heavier)
    other = database.open_database(fresh_path)
    try:
        assert_same(state(db), state(other))
    finally:
        other.close()


def test_dm_messages_are_replayed_only_while_consent_allows(cli, db, config_file):
    consent.grant(db, PRIYA)
    ingest(cli, config_file)
    assert state(db)["user:" + PRIYA][0] > 0
    consent.revoke(db, PRIYA)
    done = rebuild(cli, config_file)
    assert done["dm_messages_skipped"] > 0
    assert state(db)["user:" + PRIYA][0] == 0.0
