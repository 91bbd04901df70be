"""Decay: nothing for 7 whole idle UTC days, then 1% a day compounded, one row per topic per
day, idempotent for the same day; only earns are activity."""

from __future__ import annotations

import pytest

from tests.salience_support import T0, balances, earn_all, rows
from zos_cli.store import db as database
from zos_cli.config import Config
from zos_cli.errors import UsageProblem
from zos_cli.salience import decay, resolve_as_of
from zos_cli.salience.clock import data_clock
from zos_cli.salience.decay import decay_days

SUBJECT = "server:1:subject:chess"


def day(d: int, time: str = "00:00:00.000000") -> str:
    return f"2024-03-{d:02d}T{time}+00:00"


def test_nothing_before_day_7_then_one_percent_a_day_compounded(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])  # last earn 2024-03-01 12:00
    assert decay(db, config, day(8, "23:59:59.999999"))["rows"] == 0
    assert balances(db)[SUBJECT] == 20.0
    first = decay(db, config, day(9, "08:00:00.000000"))
    assert (first["topics_decayed"], first["rows"]) == (1, 1)
    assert balances(db)[SUBJECT] == pytest.approx(19.8)
    assert db.execute("SELECT created_at FROM salience_ledger WHERE transaction_type = 'decay'"
                      ).fetchall() == [(day(9),)]
    again = decay(db, config, day(9, "23:00:00.000000"))  # same day: nothing more
    assert again["rows"] == 0 and balances(db)[SUBJECT] == pytest.approx(19.8)
    later = decay(db, config, day(12, "01:00:00.000000"))
    assert later["rows"] == 3 and later["topics"][0]["first_day"] == "2024-03-10"
    assert balances(db)[SUBJECT] == pytest.approx(20 * 0.99 ** 4)
    amounts = [a for _t, a, _s in rows(db, SUBJECT, "decay")]
    assert amounts == pytest.approx([-0.2, -0.198, -0.19602, -0.1940598])


def test_dry_run_writes_nothing(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])
    plan = decay(db, config, day(20), dry_run=True)
    assert plan["rows"] == 12 and plan["topics"][0]["balance_after"] == pytest.approx(20 * 0.99 ** 12)
    assert rows(db, SUBJECT, "decay") == []


def test_propagation_is_not_activity(db, config):
    channel, uic = "server:1:channel:10", "server:1:user_in_channel:10:100"
    earn_all(db, config, [(channel, 5.0)], at=day(1))
    earn_all(db, config, [(uic, 5.0)], at=day(5))  # propagates into the channel
    assert rows(db, channel)[-1][0] == "propagate"
    result = decay(db, config, day(9))
    assert [t["topic_key"] for t in result["topics"]] == [channel]  # uic's idle days run to the 12th
    assert decay(db, config, day(13))["topics"][-1]["topic_key"] == uic


def test_small_balances_are_left_alone(db):
    config = Config.model_validate({"salience": {"decay_min_balance": 1.0}})
    earn_all(db, config, [(SUBJECT, 0.5)])
    assert decay(db, config, day(30))["rows"] == 0


def test_a_balance_stops_decaying_once_it_falls_to_the_minimum(db):
    # Years idle: the rows stop on the day the balance reaches decay_min_balance, instead of
    # one row a day down to 1e-20 (a first decay after importing old history).
    config = Config.model_validate({"salience": {"decay_idle_days": 0, "decay_rate": 0.5,
                                                 "decay_min_balance": 1.0}})
    earn_all(db, config, [(SUBJECT, 8.0)])
    result = decay(db, config, "2030-01-01T00:00:00+00:00")
    assert result["rows"] == 3 and result["topics"][0]["last_day"] == "2024-03-04"
    assert balances(db)[SUBJECT] == pytest.approx(1.0)
    assert decay(db, config, "2031-01-01T00:00:00+00:00")["rows"] == 0


def test_idle_days_and_rate_are_configurable(db):
    config = Config.model_validate({"salience": {"decay_idle_days": 0, "decay_rate": 0.5}})
    earn_all(db, config, [(SUBJECT, 8.0)])
    decay(db, config, day(3))  # the 2nd and the 3rd decay
    assert balances(db)[SUBJECT] == pytest.approx(2.0)


def test_decay_days_arithmetic():
    assert list(decay_days(day(1, "23:59:59.000000"), None, day(8), 7)) == []
    assert [d.isoformat() for d in decay_days(day(1), None, day(10), 7)] == ["2024-03-09", "2024-03-10"]
    assert [d.isoformat() for d in decay_days(day(1), day(9), day(10), 7)] == ["2024-03-10"]


def _store_message(db, mid: str, server: str | None, at: str) -> None:
    with database.write_transaction(db):
        if server:
            db.execute("INSERT OR IGNORE INTO servers (id, created_at, updated_at) VALUES (?, ?, ?)",
                       [server, T0, T0])
        db.execute("INSERT OR IGNORE INTO users (id) VALUES ('100')")
        channel, ctype = (f"c{server}", "text") if server else ("dm", "dm")
        db.execute("INSERT OR IGNORE INTO channels (id, server_id, type, updated_at) "
                   "VALUES (?, ?, ?, ?)", [channel, server, ctype, T0])
        db.execute("INSERT INTO messages (id, channel_id, server_id, author_id, created_at, "
                   "message_type, visibility_scope, ingested_at) VALUES (?, ?, ?, '100', ?, "
                   "'Default', ?, ?)", [mid, channel, server, at, "public" if server else "dm", T0])


def test_the_data_clock_is_the_newest_stored_message(db):
    assert data_clock(db) is None
    assert resolve_as_of(db, None) > "2025"  # nothing stored: the wall clock
    _store_message(db, "1", "1", day(3))
    _store_message(db, "2", "2", day(7))
    _store_message(db, "3", None, day(5))
    assert data_clock(db) == day(7)
    assert resolve_as_of(db, None) == day(7)
    assert resolve_as_of(db, "2024-03-02T10:00:00-04:00") == day(2, "14:00:00.000000")
    assert resolve_as_of(db, "2024-03-02") == day(2)
    assert resolve_as_of(db, "now") > "2025"
    with pytest.raises(UsageProblem, match="--as-of 'yesterday' is not a time"):
        resolve_as_of(db, "yesterday")


def test_a_late_decay_takes_each_days_balance_as_nightly_decays_would(db, config):
    # The channel earns on the 1st and is idle after; on the 12th it receives a propagation
    # (not activity). Decaying late, on the 15th, must write what nightly runs wrote.
    channel, uic = "server:1:channel:10", "server:1:user_in_channel:10:100"
    earn_all(db, config, [(channel, 5.0)], at=day(1))
    earn_all(db, config, [(uic, 20.0)], at=day(12, "12:00:00.000000"))  # gives the channel 6
    late = decay(db, config, day(15))
    late_rows = [a for _t, a, _s in rows(db, channel, "decay")]
    late_balance = balances(db)[channel]

    from zos_cli.store import migrations

    path = db.conn.execute("PRAGMA database_list").fetchone()[2] + ".nightly"
    nightly_db = database.connect(path, create=True)
    migrations.apply(nightly_db, path)
    earn_all(nightly_db, config, [(channel, 5.0)], at=day(1))
    for d in range(9, 12):
        decay(nightly_db, config, day(d))
    earn_all(nightly_db, config, [(uic, 20.0)], at=day(12, "12:00:00.000000"))
    for d in range(12, 16):
        decay(nightly_db, config, day(d))
    nightly_rows = [a for _t, a, _s in rows(nightly_db, channel, "decay")]
    assert late["topics"][0]["days"] == 7
    assert late_rows == pytest.approx(nightly_rows)
    assert late_rows[0] == pytest.approx(-0.05)        # 1% of 5 on the 9th, not of 11
    assert late_balance == pytest.approx(balances(nightly_db)[channel])
