"""The engine's memory is bounded by the number of topics, not by the number of events: after
many batches over the same few users, every structure it keeps is as large as after the first
few (measured by what it holds, not by timing)."""

from __future__ import annotations

import random

from tests.salience_support import msg, react
from zos_cli.store import db as database
from zos_cli.salience import SalienceEngine

USERS = [str(100 + i) for i in range(12)]


def batch_of_events(rng: random.Random, start: int, count: int) -> list:
    events = []
    for n in range(start, start + count):
        author = rng.choice(USERS)
        other = rng.choice([u for u in USERS if u != author])
        at = f"2024-03-01T12:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}+00:00"
        facts = {}
        if n % 3 == 0:
            facts["reply_to_author_id"] = other
        elif n % 3 == 1:
            facts["mentioned_user_ids"] = (other,)
        events.append(msg(1000 + n, author, channel=rng.choice(["10", "11"]), at=at, **facts))
        if n % 4 == 0:
            events.append(react(1000 + n, author, other, at=at))
    return events


def sizes(engine: SalienceEngine) -> dict[str, int]:
    idx = engine.index
    return {
        "topics": len(idx.info), "balances": len(idx.balance), "active": len(idx.active),
        "relations": len(idx._exact), "receptive sets": len(idx.receptive),
        "receptive members": sum(len(m) for m in idx.receptive.values()),
        "members' marks": sum(len(m) for m in idx.seen.values()),
        "offer logs": len(idx.offers),
        "offers kept": sum(len(log.seqs) for log in idx.offers.values()),
        "dyad partners": sum(len(p) for p in idx.dyad_partners.values()),
        "pending rows": len(engine.pending), "new topics": len(idx.new),
        "batch bases": len(idx.base),
    }


def test_engine_state_does_not_grow_with_the_number_of_events(db, config):
    rng = random.Random(5)
    engine = SalienceEngine(db, config)
    after: list[dict[str, int]] = []
    for b in range(20):
        for event in batch_of_events(rng, b * 150, 150):
            engine.apply(event)
        with database.write_transaction(db):
            engine.flush(f"batch {b}")
        after.append(sizes(engine))
    topics = db.execute("SELECT count(*) FROM topics").fetchone()[0]
    early, late = after[9], after[-1]
    assert late["topics"] == topics == early["topics"]  # every topic exists by batch 10
    for name, value in late.items():
        assert value <= max(early[name], topics), (name, early[name], value)
    # Nothing of a batch is kept once it is written.
    assert late["pending rows"] == late["new topics"] == late["batch bases"] == 0
    assert late["offers kept"] == 0
    assert all(members for members in engine.index.receptive.values())  # no empty sets
