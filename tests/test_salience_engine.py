"""The engine's arithmetic (docs/salience.md#the-arithmetic-of-an-earn: earn(), caps, propagation, spillover, warming) with the
exact values of issue 3, on a real database file."""

from __future__ import annotations

import pytest

from tests.salience_support import (
    T0, balances, dm, earn_all, ledger_sums, msg, react, rows, run,
)
from zos_cli.store import db as database
from zos_cli.config import Config
from zos_cli.salience import SalienceEngine, after_reflection

UIC = "server:1:user_in_channel:10:100"
USER = "server:1:user:100"
CHANNEL = "server:1:channel:10"


def test_one_message_by_a_new_user_in_a_new_channel(db, config):
    run(db, config, [msg(1, "100")])
    assert balances(db) == {UIC: 1.0, USER: 1.0, CHANNEL: 1.0}
    assert rows(db, USER) == [("earn", 1.0, None)]  # nothing was warm: no propagation
    topic = db.execute("SELECT category, budget_group, server_id, is_global, last_activity_at "
                       "FROM topics WHERE key = ?", [UIC]).fetchone()
    assert topic == ("user_in_channel", "social", "1", 0, T0)


def test_with_an_attachment_each_earns_1_2(db, config):
    run(db, config, [msg(1, "100", has_media=True)])
    assert balances(db) == {UIC: 1.2, USER: 1.2, CHANNEL: 1.2}


def test_reply_to_another_user_earns_the_dyad_1_5(db, config):
    run(db, config, [msg(1, "200"), msg(2, "100", reply_to_author_id="200")])
    assert rows(db, "server:1:dyad:100:200", "earn") == [("earn", 1.5, None)]
    assert rows(db, "server:1:dyad_in_channel:10:100:200", "earn") == [("earn", 1.5, None)]
    # the dyad was cold when the message came: its dic earn gives it nothing
    assert balances(db)["server:1:dyad:100:200"] == 1.5


def test_150_messages_by_one_user_cap_the_user_at_exactly_100(db, config):
    run(db, config, [msg(1000 + i, "100") for i in range(150)])
    b = balances(db)
    assert b[USER] == 100.0
    assert b[UIC] == 40.0 and b[CHANNEL] == 150.0
    assert ledger_sums(db)[USER] == pytest.approx(100.0, abs=1e-9)


def test_propagation_reaches_only_warm_topics_and_never_cascades(db, config):
    other_uic = "server:1:user_in_channel:10:200"
    earn_all(db, config, [(CHANNEL, 5.0), (other_uic, 5.0)])
    assert balances(db) == {CHANNEL: 6.5, other_uic: 5.0}  # the channel was warm: +0.3 × 5
    earn_all(db, config, [(UIC, 2.0)])
    b = balances(db)
    assert b[CHANNEL] == pytest.approx(7.1)   # warm related: + 0.3 × 2
    assert b[other_uic] == 5.0                # channel → its other uic would be a cascade
    assert USER not in b                      # the cold related user receives nothing
    assert rows(db, CHANNEL, "propagate") == [("propagate", 1.5, other_uic),
                                              ("propagate", pytest.approx(0.6), UIC)]


def test_a_balance_of_exactly_1_is_not_warm(db, config):
    earn_all(db, config, [(CHANNEL, 1.0), (UIC, 2.0)])
    assert balances(db)[CHANNEL] == 1.0


def test_spillover_gives_half_the_overflow_to_each_warm_related_topic(db, config):
    earn_all(db, config, [(CHANNEL, 5.0), (USER, 5.0), (UIC, 39.0)])
    before = balances(db)
    assert before == {CHANNEL: pytest.approx(16.7), USER: pytest.approx(16.7), UIC: 39.0}
    earn_all(db, config, [(UIC, 3.0)])   # cap 40: credited 1, overflow 2
    b = balances(db)
    assert b[UIC] == 40.0
    for key in (CHANNEL, USER):
        assert rows(db, key)[-2:] == [("propagate", pytest.approx(0.9), UIC),
                                      ("spillover", pytest.approx(1.0), UIC)]
        assert b[key] == pytest.approx(before[key] + 1.9)


def test_a_cap_refuses_what_a_related_topic_cannot_hold(db, config):
    earn_all(db, config, [(USER, 99.5), (UIC, 10.0)])
    assert balances(db)[USER] == 100.0  # offered 3.0, held 0.5: the rest evaporates
    assert rows(db, USER)[-1] == ("propagate", pytest.approx(0.5), UIC)


def test_second_server_activity_warms_the_global_user_once(db, config):
    run(db, config, [msg(1, "100", server="1"), msg(2, "100", server="2", channel="20"),
                     msg(3, "100", server="3", channel="30")], aggregate=False)
    assert rows(db, "user:100", "warm") == [("warm", 5.0, None)]
    # after warming, the server-2 user earn propagates 0.3 into the warm global user, and so
    # does the (first) server-3 user earn
    assert balances(db)["user:100"] == pytest.approx(5.0 + 0.3 + 0.3)
    assert rows(db, "user:100", "propagate") == [
        ("propagate", pytest.approx(0.3), "server:2:user:100"),
        ("propagate", pytest.approx(0.3), "server:3:user:100")]


def test_a_dm_warms_the_global_user_before_its_own_earn(db, config):
    run(db, config, [dm(1, "100", ["100"]), dm(2, "100", ["100"])])
    assert rows(db, "user:100") == [("warm", 5.0, None), ("earn", 3.0, None)]


def test_global_dyad_is_warmed_when_both_users_are_warm(db, config):
    events = [msg(1, "100"), msg(2, "200"), dm(3, "100", ["100"], channel="91"),
              dm(4, "200", ["200"], channel="92"), msg(5, "100", reply_to_author_id="200")]
    run(db, config, events)
    assert rows(db, "dyad:100:200", "warm") == [("warm", 5.0, None)]
    # warm, so the server dyad's reply earn propagates into it
    assert rows(db, "dyad:100:200", "propagate")[0] == (
        "propagate", pytest.approx(0.45), "server:1:dyad:100:200")


def test_privacy_gate_reads_user_roles(db):
    config = Config.model_validate({"servers": {"1": {"privacy_gate_role": "7"}}})
    with database.write_transaction(db):
        db.execute("INSERT INTO servers (id, created_at, updated_at) VALUES ('1', ?, ?)", [T0, T0])
        for uid in ("100", "200"):
            db.execute("INSERT INTO users (id) VALUES (?)", [uid])
        db.execute("INSERT INTO roles (id, server_id) VALUES ('7', '1')")
        db.execute("INSERT INTO user_roles VALUES ('100', '7', '1', ?)", [T0])
    run(db, config, [msg(1, "200"), msg(2, "100", reply_to_author_id="200"), react(2, "100", "200")])
    assert set(balances(db)) == {UIC, USER, CHANNEL}  # 200 has no role: no topic, no dyad


def test_emoji_propagates_to_the_user_who_used_it(db, config):
    run(db, config, [msg(i, "100") for i in range(1, 3)])
    run(db, config, [msg(9, "100", custom_emoji_ids=("77",))], aggregate=False)
    assert rows(db, USER, "propagate")[-1] == ("propagate", pytest.approx(0.15), "server:1:emoji:77")


def test_threads_as_topics_link_thread_and_parent_channel(db):
    config = Config.model_validate({"servers": {"1": {"threads_as_topics": True}}})
    thread = "server:1:thread:20"
    run(db, config, [msg(i, "100", channel="20", parent_channel_id="10") for i in range(1, 6)])
    b = balances(db)
    assert CHANNEL not in b and b[thread] > 1.0
    meta = db.execute("SELECT metadata FROM topics WHERE key = ?", [thread]).fetchone()[0]
    assert meta == '{"parent_channel_id": "10"}'
    earn_all(db, config, [(CHANNEL, 5.0)])
    assert rows(db, CHANNEL) == [("earn", 5.0, None)]
    run(db, config, [msg(9, "100", channel="20", parent_channel_id="10")], aggregate=False)
    assert rows(db, CHANNEL)[-1] == ("propagate", pytest.approx(0.3), thread)


def test_aggregated_rows_explain_the_batch(db, config):
    run(db, config, [msg(11, "100"), msg(12, "100"), msg(15, "100")], reason="ingest X")
    reasons = dict(db.execute(
        "SELECT transaction_type, reason FROM salience_ledger WHERE topic_key = ?", [UIC]))
    assert reasons == {
        "earn": "ingest X: 3 × message (messages 11..15)",
        "propagate": "ingest X: 2 × propagate from 2 topics: server:1:channel:10, "
                     "server:1:user:100 (message 15)",
    }
    sources = dict(db.execute(
        "SELECT transaction_type, source_topic FROM salience_ledger WHERE topic_key = ?", [USER]))
    assert sources == {"earn": None, "propagate": UIC}  # one source: named in its column


def test_one_earn_row_per_topic_and_batch_counts_each_kind(db, config):
    """docs/salience.md#aggregated-rows aggregates per topic and row type: a dyad's replies, mentions and reactions of
    one batch are one earn row whose reason counts each kind, in the order they first came."""
    dyad = "server:1:dyad:100:200"
    run(db, config, [msg(11, "200"), msg(12, "100", reply_to_author_id="200"),
                     react(12, "100", "200"), msg(13, "100", mentioned_user_ids=("200",)),
                     msg(14, "100", reply_to_author_id="200")], reason="ingest X")
    earns = db.execute("SELECT amount, reason FROM salience_ledger WHERE topic_key = ? AND "
                       "transaction_type = 'earn'", [dyad]).fetchall()
    assert earns == [(pytest.approx(1.5 + 0.5 + 2.0 + 1.5),
                      "ingest X: 2 × reply, 1 × reaction, 1 × mention (messages 12..14)")]
    assert balances(db)[dyad] == pytest.approx(ledger_sums(db)[dyad])


def test_engine_sees_what_other_writers_did_between_batches(db, config):
    key = "server:1:channel:30"
    engine = earn_all(db, config, [(key, 200.0)])
    assert balances(db)[key] == 150.0  # capped
    with database.write_transaction(db):
        after_reflection(db, config, key, 2000, T0)  # spend 2, reset 148, retain 3
    assert balances(db)[key] == pytest.approx(3.0)
    run(db, config, [msg(50, "300", channel="30")], engine=engine)
    # uic earn: +0.3 into the warm channel; channel earn: +1.0 (a stale 150 would refuse it)
    assert balances(db)[key] == pytest.approx(4.3)


def test_a_rolled_back_flush_is_forgotten(db, config):
    engine = SalienceEngine(db, config)
    engine.apply(msg(1, "100"))
    with pytest.raises(RuntimeError):
        with database.write_transaction(db):
            engine.flush("doomed")
            raise RuntimeError("the batch failed")
    assert balances(db) == {}
    run(db, config, [msg(2, "100")], engine=engine)
    assert balances(db) == {UIC: 1.0, USER: 1.0, CHANNEL: 1.0}


def test_zos_account_learned_by_polling_is_used_for_self_mentions(db, config):
    with database.write_transaction(db):
        database.set_state(db, "discord.self_user_id", "999")
    run(db, config, [msg(1, "100", mentioned_user_ids=("999",))])
    b = balances(db)
    assert b["server:1:self:zos"] == 5.0
    assert not any(key.startswith("server:1:dyad:") for key in b)  # not a dyad with zos
