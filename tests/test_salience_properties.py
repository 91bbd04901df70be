"""Properties over random event sequences: the maintained balance always equals the ledger,
aggregation never changes a balance, and earning never passes a cap."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.salience_support import dm, msg, react
from zos_cli.store import db as database
from zos_cli import topics
from zos_cli.store import migrations
from zos_cli.config import Config
from zos_cli.salience import SalienceEngine, after_reflection, decay
from zos_cli.salience.queries import check

USERS = ["100", "200", "300", "400"]
DAYS = [f"2024-03-{d:02d}T{h:02d}:00:00.000000+00:00" for d in range(1, 29, 3) for h in (9, 21)]


@contextmanager
def fresh_db():
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "zos.db"
        db = database.connect(path, create=True)
        migrations.apply(db, path)
        try:
            yield db
        finally:
            db.close()


@st.composite
def event_at(draw, mid: int, at: str):
    server = draw(st.sampled_from(["1", "2"]))
    channel = draw(st.sampled_from(["10", "11"]))
    author = draw(st.sampled_from(USERS))
    kind = draw(st.sampled_from(["message", "message", "reaction", "dm"]))
    if kind == "dm":
        return dm(mid, author, [author], channel=f"9{USERS.index(author)}", at=at)
    if kind == "reaction":
        return react(mid - 1, author, draw(st.sampled_from(USERS)), server=server,
                     channel=channel, emoji=draw(st.sampled_from(["", "77"])), at=at)
    return msg(mid, author, server=server, channel=channel, at=at,
               has_media=draw(st.booleans()),
               reply_to_author_id=draw(st.one_of(st.none(), st.sampled_from(USERS))),
               mentioned_user_ids=tuple(draw(st.lists(st.sampled_from(USERS), max_size=2))),
               custom_emoji_ids=tuple(draw(st.lists(st.just("77"), max_size=2))),
               mentioned_role_ids=tuple(draw(st.lists(st.just("5"), max_size=1))))


@st.composite
def histories(draw, max_events=60):
    """Events in time order, with flush points, spends and decays between them."""
    n = draw(st.integers(min_value=1, max_value=max_events))
    steps, mid = [], 1000
    for i in range(n):
        at = DAYS[min(i * len(DAYS) // n, len(DAYS) - 1)]
        mid += 2
        steps.append(("event", draw(event_at(mid, at))))
        roll = draw(st.integers(min_value=0, max_value=9))
        if roll == 0:
            steps.append(("flush", None))
        elif roll == 1:
            steps.append(("reflect", (at, draw(st.integers(min_value=0, max_value=40_000)))))
        elif roll == 2:
            steps.append(("decay", at))
    return steps


def play(db, config, steps, *, aggregate=True) -> None:
    engine = SalienceEngine(db, config, aggregate=aggregate)
    for op, arg in steps:
        if op == "event":
            engine.apply(arg)
            continue
        if not aggregate and op == "flush":
            continue
        with database.write_transaction(db):
            engine.flush("prop")
        if op == "reflect":
            at, tokens = arg
            top = db.execute("SELECT key FROM topics ORDER BY balance DESC, key LIMIT 1").fetchone()
            if top:
                with database.write_transaction(db):
                    after_reflection(db, config, top[0], tokens, at)
        elif op == "decay":
            decay(db, config, arg)
    with database.write_transaction(db):
        engine.flush("prop")


@settings(max_examples=25, deadline=None)
@given(histories())
def test_balance_equals_the_ledger_after_any_sequence(steps):
    config = Config()
    with fresh_db() as db:
        play(db, config, steps)
        result = check(db, tolerance=1e-9)
        assert result["ok"], result["mismatches"]
        capped = db.execute(
            "SELECT key, balance FROM topics t WHERE NOT EXISTS (SELECT 1 FROM salience_ledger l "
            "WHERE l.topic_key = t.key AND l.transaction_type = 'retain')").fetchall()
        for key, balance in capped:  # only a reflection's retain may pass a cap
            assert -1e-9 <= balance <= topics.cap_of(key, config.salience.caps) + 1e-9


small_caps = st.fixed_dictionaries({
    "dyad": st.sampled_from([4.0, 80.0]),
    "user_in_channel": st.sampled_from([3.0, 40.0]),
    "server_user": st.sampled_from([6.0, 100.0]),
})


@settings(max_examples=20, deadline=None)
@given(histories(max_events=40), small_caps)
def test_aggregating_rows_never_changes_a_balance(steps, caps):
    """Batched rows with lazily folded transfers == one row per change given one by one,
    per topic and per row type — also when small caps make the order of transfers matter."""
    events = [s for s in steps if s[0] in ("event", "flush")]
    config = Config.model_validate({"salience": {"caps": caps}})
    with fresh_db() as batched, fresh_db() as one_by_one:
        play(batched, config, events, aggregate=True)
        play(one_by_one, config, events, aggregate=False)
        a = dict(batched.execute("SELECT key, balance FROM topics").fetchall())
        b = dict(one_by_one.execute("SELECT key, balance FROM topics").fetchall())
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-9), key
        by_type = ("SELECT topic_key, transaction_type, sum(amount) FROM salience_ledger "
                   "GROUP BY 1, 2")
        ta = {(k, t): v for k, t, v in batched.execute(by_type)}
        tb = {(k, t): v for k, t, v in one_by_one.execute(by_type)}
        for key in ta.keys() | tb.keys():
            assert ta.get(key, 0.0) == pytest.approx(tb.get(key, 0.0), abs=1e-9), key
        assert batched.execute("SELECT count(*) FROM salience_ledger").fetchone()[0] <= \
            one_by_one.execute("SELECT count(*) FROM salience_ledger").fetchone()[0]
