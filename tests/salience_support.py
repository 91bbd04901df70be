"""Small builders shared by the salience tests: events, engine runs, balances and rows."""

from __future__ import annotations

from zos_cli.store import db as database
from zos_cli.events import MessageEvent, ReactionEvent
from zos_cli.salience import SalienceEngine

T0 = "2024-03-01T12:00:00.000000+00:00"


def msg(mid, author, *, server="1", channel="10", at=T0, mtype="Default", system=False,
        **facts) -> MessageEvent:
    return MessageEvent(message_id=str(mid), server_id=server, channel_id=channel,
                        author_id=author, created_at=at, message_type=mtype, is_system=system,
                        **facts)


def dm(mid, author, participants, *, channel="90", at=T0) -> MessageEvent:
    return MessageEvent(message_id=str(mid), server_id=None, channel_id=channel,
                        author_id=author, created_at=at, message_type="Default",
                        is_system=False, dm_participant_ids=tuple(participants))


def react(mid, author, reactor, *, server="1", channel="10", emoji="", at=T0) -> ReactionEvent:
    return ReactionEvent(message_id=str(mid), server_id=server, channel_id=channel,
                         message_author_id=author, reactor_id=reactor, created_at=at,
                         emoji_id=emoji)


def run(db, config, events, *, aggregate=True, reason="test", engine=None) -> SalienceEngine:
    """Apply `events` in order and flush them in one write transaction."""
    engine = engine or SalienceEngine(db, config, aggregate=aggregate)
    for event in events:
        engine.apply(event)
    with database.write_transaction(db):
        engine.flush(reason)
    return engine


def earn_all(db, config, earns, *, at=T0, aggregate=False) -> SalienceEngine:
    """The earn(topic, a) of docs/salience.md#the-arithmetic-of-an-earn for each (key, amount), then one flush."""
    engine = SalienceEngine(db, config, aggregate=aggregate)
    for key, amount in earns:
        engine.earn(key, amount, at)
    with database.write_transaction(db):
        engine.flush("test")
    return engine


def balances(db) -> dict[str, float]:
    return dict(db.execute("SELECT key, balance FROM topics").fetchall())


def rounded_balances(db) -> dict[str, float]:
    return dict(db.execute("SELECT key, round(balance, 9) FROM topics").fetchall())


def marked(db) -> int:
    """Messages stored `salience_pending`, not yet earned."""
    return db.execute("SELECT count(*) FROM messages WHERE salience_pending = 1").fetchone()[0]


def rebuilt_balances(db, folder) -> dict[str, float]:
    """The balances `zos salience rebuild` gives, on a copy of the database (in `folder`)."""
    from zos_cli.config import Config
    from zos_cli.salience.rebuild import rebuild

    copy = folder / "rebuilt.db"
    db.conn.execute("VACUUM INTO ?", [str(copy)])
    rebuilt = database.connect(copy)
    try:
        rebuild(rebuilt, Config())
        return rounded_balances(rebuilt)
    finally:
        rebuilt.close()


def rows(db, key, *types) -> list[tuple]:
    """(type, amount, source_topic) of a topic's ledger rows, oldest first."""
    sql = "SELECT transaction_type, amount, source_topic FROM salience_ledger WHERE topic_key = ?"
    params = [key]
    if types:
        sql += f" AND transaction_type IN ({', '.join('?' * len(types))})"
        params += list(types)
    return [tuple(r) for r in db.execute(sql + " ORDER BY created_at, rowid", params)]


def ledger_sums(db) -> dict[str, float]:
    return dict(db.execute(
        "SELECT topic_key, sum(amount) FROM salience_ledger GROUP BY topic_key").fetchall())
