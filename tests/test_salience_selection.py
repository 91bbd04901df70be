"""The nightly budget (with reallocation), target selection, and what a reflection spends."""

from __future__ import annotations

import pytest

from tests.salience_support import T0, balances, earn_all, rows
from zos_cli.store import db as database
from zos_cli.config import Config
from zos_cli.salience import after_reflection, allocate, decay, select_targets
from zos_cli.salience.selection import apportion, budget_plan
from zos_cli.topics import InvalidTopicKey

SUBJECT = "server:1:subject:chess"


def allocated(config, demand):
    return {g: v["allocated"] for g, v in allocate(config, demand).items()}


def test_the_default_budget_splits_60_targets_by_the_group_shares():
    plan = allocate(Config(), {g: 100 for g in ("social", "global", "spaces", "semantic",
                                                 "culture", "self")})
    assert {g: v["base"] for g, v in plan.items()} == {
        "social": 18, "global": 9, "spaces": 18, "semantic": 9, "culture": 6, "self": 2}
    assert {g: v["allocated"] for g, v in plan.items()} == {
        "social": 18, "global": 9, "spaces": 18, "semantic": 9, "culture": 6, "self": 2}


def test_unused_shares_go_to_groups_with_remaining_demand():
    config = Config()
    assert allocated(config, {"social": 30, "spaces": 5, "culture": 2}) == {
        "social": 30, "global": 0, "spaces": 5, "semantic": 0, "culture": 2, "self": 0}
    # two hungry groups share what is left by their shares (.30 / .30)
    assert allocated(config, {"social": 100, "spaces": 100}) == {
        "social": 30, "global": 0, "spaces": 30, "semantic": 0, "culture": 0, "self": 0}
    # …and by .30 / .15 when their shares differ; nothing is handed out beyond the budget
    plan = allocated(config, {"social": 100, "global": 100, "self": 7})
    assert (plan["social"], plan["global"], plan["self"]) == (40, 20, 2)
    assert sum(v for g, v in plan.items() if g != "self") == 60


def test_apportion_adds_up_with_largest_remainders():
    assert apportion(10, {"a": 0.3, "b": 0.15, "c": 0.3, "d": 0.15, "e": 0.1}) == {
        "a": 3, "b": 2, "c": 3, "d": 1, "e": 1}
    assert apportion(7, {"a": 0.0, "b": 1.0}) == {"a": 0, "b": 7}
    assert apportion(0, {"a": 1.0}) == {"a": 0}


def _users_and_channels(db, config, n=8):
    earn_all(db, config, [(f"server:1:user:{100 + i}", 11.0 + i) for i in range(n)]
             + [(f"server:1:channel:{10 + i}", 20.0 + i) for i in range(n)]
             + [("server:1:user:999", 5.0)])


def test_a_layer_takes_eligible_topics_by_balance_up_to_its_groups_share(db):
    config = Config.model_validate({"reflection": {"nightly_targets": 10}})
    _users_and_channels(db, config)  # demand: 8 social, 8 spaces → 5 + 5 after reallocation
    targets = select_targets(db, config, categories=["users"], layer_max_targets=15)
    assert [t["topic_key"] for t in targets] == [f"server:1:user:{i}" for i in (107, 106, 105, 104, 103)]
    assert set(targets[0]) == {"topic_key", "category", "group", "balance", "last_activity_at"}
    assert targets[0] == {"topic_key": "server:1:user:107", "category": "users", "group": "social",
                          "balance": 18.0, "last_activity_at": T0}
    assert len(select_targets(db, config, categories=["users"], layer_max_targets=15,
                              max_targets=2)) == 2
    assert len(select_targets(db, config, categories=["users"], layer_max_targets=1)) == 1
    # the 5.0 user is below min_salience unless the layer asks for less
    low = select_targets(db, Config(), categories=["users"], layer_max_targets=50, min_salience=0)
    assert low[-1]["topic_key"] == "server:1:user:999"


def test_one_topic_can_be_asked_for(db, config):
    _users_and_channels(db, config)
    only = select_targets(db, config, categories=["users"], layer_max_targets=15,
                          topic_key="server:1:user:101")
    assert [t["topic_key"] for t in only] == ["server:1:user:101"]
    assert select_targets(db, config, categories=["channels"], layer_max_targets=15,
                          topic_key="server:1:user:101") == []
    with pytest.raises(InvalidTopicKey):
        select_targets(db, config, categories=["users"], layer_max_targets=1, topic_key="user:x")


def test_budget_plan_lists_the_topics_of_each_group_and_layer(db, config):
    _users_and_channels(db, config, n=3)
    from zos_cli.reflect.layers import get_layer
    from zos_cli.reflect.targets import next_targets

    user = get_layer("user")
    plan = budget_plan(db, config, layers=next_targets(db, config, [user]))
    spaces = next(g for g in plan["groups"] if g["group"] == "spaces")
    assert spaces["targets"] == ["server:1:channel:12", "server:1:channel:11", "server:1:channel:10"]
    assert plan["layers"] == [{"layer": "user", "categories": ["users"],
                               "max_targets": user.spec.max_targets,
                               "targets": ["server:1:user:102", "server:1:user:101",
                                           "server:1:user:100"]}]


def test_a_reflection_costing_2_on_a_balance_of_20_leaves_3(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])
    with database.write_transaction(db):
        result = after_reflection(db, config, SUBJECT, 2000, "2024-03-02T00:00:00Z", "RUN1")
    assert result == {"spent": 2.0, "reset": 18.0, "retain": 3.0, "balance": 3.0}
    assert balances(db)[SUBJECT] == 3.0
    assert rows(db, SUBJECT)[1:] == [("spend", -2.0, None), ("reset", -18.0, None),
                                     ("retain", 3.0, None)]
    stamped = db.execute("SELECT DISTINCT created_at, layer_run_id, reason FROM salience_ledger "
                         "WHERE transaction_type = 'retain'").fetchall()
    assert stamped == [("2024-03-02T00:00:00.000000+00:00", "RUN1",
                        "reflection RUN1: tokens=2000 cost=2")]


def test_a_reflection_costing_more_than_the_balance_spends_the_balance(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])
    with database.write_transaction(db):
        result = after_reflection(db, config, SUBJECT, 50_000, T0)
    assert (result["spent"], result["reset"], result["retain"]) == (20.0, 0.0, 30.0)


def test_a_failed_reflection_leaves_the_balance_unchanged(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])
    with pytest.raises(RuntimeError):
        with database.write_transaction(db):
            after_reflection(db, config, SUBJECT, 2000, T0)
            raise RuntimeError("the model answer was invalid")  # the target fails: rollback
    assert balances(db)[SUBJECT] == 20.0
    assert rows(db, SUBJECT, "spend", "reset", "retain") == []


# ---------------------------------------------------------------- a run whose as-of is in the past
T1 = "2024-03-01T18:00:00.000000+00:00"  # after T0


def test_a_past_run_spends_from_the_balance_at_its_as_of_and_keeps_what_came_after(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])            # at T0
    earn_all(db, config, [(SUBJECT, 10.0)], at=T1)     # after it: not read by a run at T0
    with database.write_transaction(db):
        result = after_reflection(db, config, SUBJECT, 2000, T0, "RUN1")
    # from 20 (the balance at T0), not 30: the 10 earned later stays
    assert result == {"spent": 2.0, "reset": 18.0, "retain": 3.0, "balance": 13.0}
    assert rows(db, SUBJECT) == [("earn", 20.0, None), ("spend", -2.0, None),
                                 ("reset", -18.0, None), ("retain", 3.0, None),
                                 ("earn", 10.0, None)]
    assert {r[0] for r in db.execute("SELECT created_at FROM salience_ledger WHERE "
                                     "layer_run_id = 'RUN1'")} == {T0}


def test_a_past_run_never_takes_more_than_the_topic_holds_now(db, config):
    earn_all(db, config, [(SUBJECT, 20.0)])
    decay(db, config, "2024-04-01T00:00:00Z")  # decay rows after T0 took more than came in
    now = balances(db)[SUBJECT]
    assert now < 20.0
    with database.write_transaction(db):
        result = after_reflection(db, config, SUBJECT, 2000, T0)
    assert (result["spent"], result["reset"]) == (2.0, pytest.approx(now - 2.0))
    assert result["balance"] == pytest.approx(3.0)


def test_selection_at_a_past_as_of_ranks_by_the_balances_then(db, config):
    early, late, new = (f"server:1:channel:{i}" for i in (10, 11, 12))
    earn_all(db, config, [(early, 20.0), (late, 12.0)])
    earn_all(db, config, [(late, 30.0), (new, 15.0)], at=T1)
    now = select_targets(db, config, categories=["channels"], layer_max_targets=15)
    assert [t["topic_key"] for t in now] == [late, early, new]
    then = select_targets(db, config, categories=["channels"], layer_max_targets=15, as_of=T0)
    assert [(t["topic_key"], t["balance"]) for t in then] == [(early, 20.0), (late, 12.0)]
    # the as-of of a run with nothing after it changes nothing
    assert select_targets(db, config, categories=["channels"], layer_max_targets=15,
                          as_of=T1) == now
    # min_salience against the balance then: 12 is not enough for a floor of 15
    assert [t["topic_key"] for t in select_targets(
        db, config, categories=["channels"], layer_max_targets=15, min_salience=15.0,
        as_of=T0)] == [early]
