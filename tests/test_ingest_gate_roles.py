"""Salience in a server with a privacy-gate role does not depend on when roles become known.

The gate reads a user's role set as the run leaves it (the newest observation, in the files
or already stored): a reactor whose roles only show up when they author later, and a user
whose newer export shows a role they gained (or lost), count the same whether the run is
written in one transaction or many, killed and resumed, or rebuilt afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.exports import Export, emoji, message, reaction, role, snowflake, user
from tests.test_ingest_kill import start_writing, stored_messages, wait_until_stored
from zos_cli.store import db as db_module
from zos_cli.store import migrations
from zos_cli.salience.rebuild import rebuild

GATE, OTHER = "9", "8"
MEMBER, OUTSIDER = role(GATE, "member"), role(OTHER, "guest", position=0)
OLD, NEW = "2024-03-10T12:00:00.000+00:00", "2024-03-20T12:00:00.000+00:00"


def people(gate_for: dict[str, bool]) -> dict[str, dict]:
    return {uid: user(uid, f"u{uid}", roles=[MEMBER if holds else OUTSIDER])
            for uid, holds in gate_for.items()}


def make_exports(folder: Path, n: int = 60) -> list[Path]:
    """Two channels of one gated server. In the older export (#old) 105 lacks the gate role
    and 106 holds it; the newer export (#new) shows the reverse. 104 only reacts at first and
    authors (with the role) in the last messages; 103 never holds it."""
    old_roles = people({"101": True, "102": True, "103": False, "104": True, "105": False,
                        "106": True})
    new_roles = people({"101": True, "102": True, "103": False, "104": True, "105": True,
                        "106": False})
    old = Export(channel_id="2001", channel_name="old", exported_at=OLD)
    new = Export(channel_id="2002", channel_name="new", exported_at=NEW)
    rng = random.Random(7)
    blob = emoji("blob", "555")
    authors = ["101", "102", "103", "105", "106"]
    earlier: dict[str, list[str]] = {"2001": [], "2002": []}
    for i in range(n):
        ex = old if i % 2 == 0 else new
        shown = old_roles if ex is old else new_roles
        author = "104" if i >= n - 6 else rng.choice(authors)
        reactors = [shown[u] for u in rng.sample(["101", "102", "103", "104", "105", "106"], 3)
                    if u != author]
        parents = earlier[ex.channel_id]
        mid = snowflake(i)
        ex.add(message(mid, shown[author], f"m{i}",
                       reply_to=rng.choice(parents) if parents and i % 3 == 0 else None,
                       mentions=[shown[rng.choice(["101", "104", "105", "106"])]]
                       if i % 4 == 0 else [],
                       reactions=[reaction(rng.choice([emoji("👍"), blob]), reactors)]))
        parents.append(mid)
    return [old.write(folder / "old.json"), new.write(folder / "new.json")]


@pytest.fixture
def gated(tmp_path):
    folder = tmp_path / "exports"
    make_exports(folder)
    config = tmp_path / "zos.toml"
    config.write_text(f'[servers."1001"]\nprivacy_gate_role = "{GATE}"\n')
    return folder, config


def fresh(db_path: Path) -> Path:
    db = db_module.connect(db_path, create=True)
    migrations.apply(db, db_path)
    db.close()  # the last connection checkpoints and removes the WAL
    return db_path


def balances(db) -> dict[str, float]:
    return {key: round(balance, 9) for key, balance in
            db.execute("SELECT key, balance FROM topics WHERE balance != 0")}


def ingest(cli, folder: Path, config: Path, batch: int) -> dict:
    r = cli("--config", str(config), "ingest", str(folder), "--batch-size", str(batch), "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_gated_salience_is_the_same_for_any_batch_size_and_after_rebuild(tmp_path, gated):
    from tests.conftest import Cli
    from zos_cli.config import load_config

    folder, config = gated
    results = []
    for batch in (1, 4, 10_000):
        db_path = tmp_path / f"b{batch}.db"
        fresh(db_path)
        assert ingest(Cli(db_path), folder, config, batch)["messages_new"] == 60
        db = db_module.connect(db_path)
        results.append(balances(db))
        if batch == 1:
            rebuild(db, load_config(config))
            assert balances(db) == results[0]
        db.close()
    assert results[0] == results[1] == results[2]
    final = results[0]
    # the outcome the final roles give: 104's early reactions count, 105 (gained the role in
    # the newer export) counts from its first message, 106 (lost it) and 103 never do
    assert final["server:1001:user:104"] > 0
    assert final["server:1001:user:105"] > 0
    assert "server:1001:user:106" not in final
    assert "server:1001:user:103" not in final


def test_gated_salience_after_kills_ends_like_an_uninterrupted_run(tmp_path, gated):
    folder, config = gated
    template = fresh(tmp_path / "template.db")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def cmd(db_path: Path) -> list[str]:
        import sys
        return [sys.executable, "-m", "zos_cli", "--db", str(db_path), "--config", str(config),
                "ingest", str(folder), "--batch-size", "3", "--json"]

    baseline = tmp_path / "baseline.db"
    shutil.copy(template, baseline)
    done = subprocess.run(cmd(baseline), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    db = db_module.connect(baseline)
    expected = balances(db)
    db.close()

    rng = random.Random(3)
    killed = 0
    for attempt in range(12):
        db_path = tmp_path / f"run{attempt}.db"
        shutil.copy(template, db_path)
        proc, _ = start_writing(cmd(db_path), db_path, env)
        wait_until_stored(proc, db_path, rng.randint(1, 50))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate()
        assert stored_messages(db_path) <= 60
        finish = subprocess.run(cmd(db_path), env=env, capture_output=True, text=True)
        assert finish.returncode == 0, finish.stderr
        db = db_module.connect(db_path)
        assert balances(db) == expected, f"attempt {attempt}"
        db.close()
    assert killed >= 6


# ---------------------------------------------------------------- observations the writer skips
# The writer takes, of one message, only the newest observation, and that one only when it is
# new or newer than the stored one: the roles an older (or equal) observation carries are not
# written, so they must not open the gate either.

def one_run(tmp_path, folder: Path, config: Path, batch: int, **kwargs) -> dict[str, float]:
    from tests.conftest import Cli

    db_path = fresh(tmp_path / f"run{batch}.db")
    ingest(Cli(db_path), folder, config, batch)
    db = db_module.connect(db_path)
    try:
        return balances(db)
    finally:
        db.close()


def rebuilt(tmp_path, batch: int, config: Path) -> dict[str, float]:
    from zos_cli.config import load_config

    db = db_module.connect(tmp_path / f"run{batch}.db")
    try:
        rebuild(db, load_config(config))
        return balances(db)
    finally:
        db.close()


def gate_config(tmp_path) -> Path:
    config = tmp_path / "zos.toml"
    config.write_text(f'[servers."1001"]\nprivacy_gate_role = "{GATE}"\n')
    return config


def without_roles(u: dict) -> dict:
    return {k: v for k, v in u.items() if k != "roles"}


def test_roles_of_an_older_overlapping_export_do_not_open_the_gate(tmp_path):
    """A newer export of the channel without `roles` hides the older one's: 101 and 102 are
    left with roles unknown, so they earn nothing — whatever the batch size, and in rebuild."""
    folder = tmp_path / "exports"
    old = Export(channel_id="2001", exported_at=OLD)
    new = Export(channel_id="2001", exported_at=NEW)
    other = Export(channel_id="2002", channel_name="b", exported_at=OLD)
    member = people({"101": True, "102": True, "103": True})
    for i in range(8):
        author = member["101" if i % 2 else "102"]
        reactions = [reaction(emoji("👍"), [member["103"]])]
        old.add(message(snowflake(i), author, f"m{i}", reactions=reactions))
        new.add(message(snowflake(i), without_roles(author), f"m{i}", reactions=reactions))
    for i in range(8, 12):  # 101 and 102 react where 103 authors
        other.add(message(snowflake(i), member["103"], f"o{i}",
                          reactions=[reaction(emoji("👍"), [member["101"], member["102"]])]))
    old.write(folder / "a_old.json")
    new.write(folder / "b_new.json")
    other.write(folder / "c_other.json")
    config = gate_config(tmp_path)

    results = [one_run(tmp_path, folder, config, batch) for batch in (1, 10_000)]
    assert results[0] == results[1] == rebuilt(tmp_path, 1, config)
    assert not [key for key in results[0] if ":101" in key or ":102" in key]
    assert results[0]["server:1001:user:103"] > 0


def test_a_newer_stored_observation_hides_an_older_exports_roles(tmp_path):
    """Stored by an earlier run, the newer observation (without roles) stays: the older
    export's roles of 101 are not written, and 101's reactions earn nothing."""
    from tests.conftest import Cli

    member = people({"101": True, "103": True})
    newer, older = tmp_path / "newer", tmp_path / "older"
    new = Export(channel_id="2001", exported_at=NEW)
    old = Export(channel_id="2001", exported_at=OLD)
    for i in range(4):
        new.add(message(snowflake(i), without_roles(member["101"]), f"m{i}"))
        old.add(message(snowflake(i), member["101"], f"m{i}"))
    for i in range(4, 8):
        old.add(message(snowflake(i), member["103"], f"m{i}",
                        reactions=[reaction(emoji("👍"), [member["101"]])]))
    new.write(newer / "new.json")
    old.write(older / "old.json")
    config = gate_config(tmp_path)
    outcomes = []
    for batch in (1, 10_000):
        db_path = fresh(tmp_path / f"stored{batch}.db")
        ingest(Cli(db_path), newer, config, batch)
        ingest(Cli(db_path), older, config, batch)
        db = db_module.connect(db_path)
        outcomes.append(balances(db))
        assert db.execute("SELECT count(*) FROM user_roles WHERE user_id = '101'").fetchone() \
            == (0,)
        db.close()
    assert outcomes[0] == outcomes[1]
    assert not [key for key in outcomes[0] if ":101" in key]
    assert outcomes[0]["server:1001:user:103"] > 0


def test_an_erased_authors_messages_show_no_roles(tmp_path):
    """104 holds the role only where an erased user mentions them: those messages are not
    written, so 104's reactions earn nothing."""
    from zos_cli.ids import new_id

    member = people({"101": True, "103": True, "104": True})
    ex = Export(channel_id="2001")
    for i in range(6):
        ex.add(message(snowflake(i), member["103"], f"e{i}", mentions=[member["104"]]))
        ex.add(message(snowflake(i, 1), member["101"], f"k{i}",
                       reactions=[reaction(emoji("👍"), [member["104"]])]))
    folder = tmp_path / "exports"
    ex.write(folder / "general.json")
    config = gate_config(tmp_path)
    from tests.conftest import Cli

    for batch in (1, 10_000):
        db_path = fresh(tmp_path / f"run{batch}.db")
        db = db_module.connect(db_path)
        with db_module.write_transaction(db):
            db.execute("INSERT INTO tombstones (id, object_type, object_id, deleted_at, reason) "
                       "VALUES (?, 'user', '103', '2024-01-01T00:00:00.000000+00:00', 'erase')",
                       [new_id()])
        db.close()
        ingest(Cli(db_path), folder, config, batch)
    db = db_module.connect(tmp_path / "run1.db")
    first = balances(db)
    db.close()
    assert first == rebuilt(tmp_path, 10_000, config)
    assert first == rebuilt(tmp_path, 1, config)
    assert not [key for key in first if ":104" in key or ":103" in key]
    assert first["server:1001:user:101"] > 0


def test_a_channel_split_across_merge_groups_counts_the_observation_written(tmp_path,
                                                                            monkeypatch):
    """Beyond MAX_OPEN_FILES a channel's files may fall in two merge groups: the later group's
    observation with the same exportedAt is not written (the stored one is not older), so its
    role set (101 without the role) does not count either."""
    import zos_cli.ingest.run

    monkeypatch.setattr(zos_cli.ingest.run, "MAX_OPEN_FILES", 1)
    member = people({"101": True, "102": True, "103": True})
    guest = people({"101": False})
    first, second = Export(channel_id="2001"), Export(channel_id="2001")
    for i in range(10):
        author = "101" if i % 2 else "102"
        reactions = [reaction(emoji("👍"), [member["103"]])]
        first.add(message(snowflake(i), member[author], f"m{i}", reactions=reactions))
        if i < 5:  # the same messages, the same exportedAt, 101 shown without the role
            second.add(message(snowflake(i), {**member, **guest}[author], f"m{i}",
                               reactions=reactions))
    folder = tmp_path / "exports"
    first.write(folder / "a.json")
    second.write(folder / "b.json")
    config = gate_config(tmp_path)
    results = [one_run(tmp_path, folder, config, batch) for batch in (1, 10_000)]
    assert results[0] == results[1] == rebuilt(tmp_path, 1, config)
    assert results[0]["server:1001:user:101"] > 0
