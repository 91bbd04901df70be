"""Property: over generated exports (and damaged copies), an ingest either succeeds or reports
the documented input error for the file, keeps what came before the problem, and a second
ingest of the same files adds nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.exports import Export, emoji, message, reaction, role, snowflake, user
from zos_cli.store import db as db_module
from zos_cli.store import migrations
from zos_cli.config import Config
from zos_cli.ingest.run import ingest_exports

PEOPLE = [user(str(100 + i), f"u{i}", roles=[role("9", "members")]) for i in range(4)]
TEXTS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def export_files(draw):
    files = []
    used: set[int] = set()
    for f in range(draw(st.integers(1, 3))):
        minutes = sorted(draw(st.sets(st.integers(0, 500), max_size=10)) - used)
        used.update(minutes)
        ex = Export(channel_id=str(2001 + f), channel_name=f"c{f}",
                    exported_at=draw(st.sampled_from(["2024-03-10T00:00:00+00:00",
                                                      "2024-03-11T00:00:00.1234567-04:00"])))
        earlier: list[str] = []
        for m in minutes:
            mid = snowflake(m)
            who = draw(st.sampled_from(PEOPLE))
            reply = draw(st.sampled_from(earlier)) if earlier and draw(st.booleans()) else None
            reacts = [reaction(emoji("👍"), draw(st.lists(st.sampled_from(PEOPLE), max_size=3,
                                                          unique_by=lambda u: u["id"])))]
            ex.add(message(mid, who, draw(TEXTS), reply_to=reply, reactions=reacts,
                           mentions=draw(st.lists(st.sampled_from(PEOPLE), max_size=2))))
            earlier.append(mid)
        files.append(ex)
    return files


def damage(raw: bytes, data) -> bytes:
    kind = data.draw(st.sampled_from(["none", "none", "cut", "flip", "insert"]))
    at = data.draw(st.integers(0, max(0, len(raw) - 1)))
    if kind == "cut":
        return raw[:at]
    if kind == "flip":
        return raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1:]
    if kind == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    return raw


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=export_files(), data=st.data())
def test_ingest_succeeds_or_reports_the_input_error(tmp_path_factory, files, data):
    folder = tmp_path_factory.mktemp("exports")
    paths, intact = [], set()
    for i, ex in enumerate(files):
        path = folder / f"{i}.json"
        raw = ex.dumps(data.draw(st.sampled_from([None, 2])))
        damaged = damage(raw, data)
        path.write_bytes(damaged)
        paths.append(str(path))
        if damaged == raw:
            intact.add(str(path))
    db_path = folder / "zos.db"
    db = db_module.connect(db_path, create=True)
    migrations.apply(db, db_path)
    try:
        summary = ingest_exports(db, Config(), paths, batch_messages=data.draw(
            st.sampled_from([1, 3, 2000])))
        for problem in summary["errors"]:
            assert problem["file"] in paths and problem["file"] not in intact
            assert ", at " in problem["error"]
        stored = {r[0] for r in db.execute("SELECT id FROM messages")}
        expected = {m["id"] for p, ex in zip(paths, files) if p in intact for m in ex.messages}
        assert expected <= stored  # every intact file entirely, whatever the others hold
        assert summary["messages_new"] == len(stored)
        # Balance is always the ledger's sum.
        drift = db.execute(
            "SELECT count(*) FROM topics t WHERE abs(t.balance - (SELECT coalesce(sum(amount), 0) "
            "FROM salience_ledger l WHERE l.topic_key = t.key)) > 1e-6").fetchone()[0]
        assert drift == 0
        before = (db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0], len(stored))
        again = ingest_exports(db, Config(), paths)
        assert again["messages_new"] == 0 and again["reactions_new"] == 0
        assert (db.execute("SELECT count(*) FROM salience_ledger").fetchone()[0],
                db.execute("SELECT count(*) FROM messages").fetchone()[0]) == before
    finally:
        db.close()
