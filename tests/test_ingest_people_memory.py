"""The writer's memory of people rows it already wrote (`remember_people`, used by `zos ingest`)
only skips upserts that would change nothing: the tables end exactly as without it."""

from __future__ import annotations

import random

from tests.exports import snowflake
from zos_cli.store import db as db_module
from zos_cli.store import migrations
from zos_cli.observe.writer import Observation, ObservationWriter
from zos_cli.records import ChannelRecord, MessageRecord, ReactionRecord, RoleRecord, UserRecord

CHANNELS = [ChannelRecord(id="2001", type="text", server_id="1001", server_name="A"),
            ChannelRecord(id="3001", type="text", server_id="1002", server_name="B")]
# Role ids shared by both servers (not what Discord does, but what an export may hold):
# user_roles is keyed by (user, role), so one server's rows can block the other's.
ROLES = [RoleRecord("900", "r0", "#fff", 1), RoleRecord("901", "r1"), RoleRecord("901", None),
         RoleRecord("902", "r2", None, 3)]
PEOPLE_TABLES = ("users", "user_server_tracking", "roles", "user_roles")


class _Dropping:
    def apply(self, event):
        pass

    def flush(self, reason):
        return 0


def _user(rng: random.Random, i: int) -> UserRecord:
    roles = None if rng.random() < 0.3 else rng.sample(ROLES, rng.randint(0, 2))
    return UserRecord(id=str(100 + i), name=rng.choice([f"u{i}", f"u{i}b", None]),
                      display_name=rng.choice([None, f"U{i}"]),
                      nickname=rng.choice([None, "", f"n{i}"]), is_bot=rng.random() < 0.1,
                      avatar_url=rng.choice([None, f"https://a/{i}"]), roles=roles)


def _batches(seed: int) -> list[list[tuple[ChannelRecord, MessageRecord]]]:
    rng = random.Random(seed)
    batches = []
    for b in range(12):
        batch = []
        for k in range(rng.randint(1, 6)):
            minute = b * 10 + k
            created = f"2024-03-01T{rng.randint(0, 23):02d}:{minute % 60:02d}:00.000000+00:00"
            reactions = None
            if rng.random() < 0.5:
                reactions = [ReactionRecord("👍", users=[_user(rng, rng.randrange(4))
                                                        for _ in range(rng.randint(0, 2))])]
            message = MessageRecord(
                id=snowflake(minute), channel_id="", author=_user(rng, rng.randrange(4)),
                created_at=created, mentions=[_user(rng, rng.randrange(4))
                                              for _ in range(rng.randint(0, 2))],
                reactions=reactions, observed_at="2024-03-10T00:00:00.000000+00:00")
            channel = rng.choice(CHANNELS)
            message.channel_id = channel.id
            batch.append((channel, message))
        batches.append(batch)
    return batches


def _people_after(tmp_path, name: str, seed: int, remember: bool, meddle) -> list:
    path = tmp_path / f"{name}.db"
    db = db_module.connect(path, create=True)
    migrations.apply(db, path)
    other = db_module.connect(path)
    writer = ObservationWriter(db, None, source_type="export", source_id="run",
                               engine=_Dropping(), remember_people=remember)
    for number, batch in enumerate(_batches(seed)):
        with db_module.write_transaction(db):
            writer.write_batch([Observation(ch, m, "log") for ch, m in batch])
        meddle(other, number)
    tables = [sorted(tuple(row[:-1] if table == "user_roles" else row)  # seen_at is the time
                     for row in db.execute(f"SELECT * FROM {table}")) for table in PEOPLE_TABLES]
    other.close()
    db.close()
    return tables


def _nothing(other, number):
    pass


def _rename_and_drop_roles(other, number):
    """Another process changes people rows between two batches."""
    if number % 3 == 1:
        with db_module.write_transaction(other):
            other.execute("UPDATE users SET name = 'renamed', first_seen_at = NULL")
            other.execute("DELETE FROM user_roles")
            other.execute("UPDATE roles SET name = 'other'")


def test_remembering_people_writes_what_writing_them_all_writes(tmp_path):
    for seed in range(25):
        assert _people_after(tmp_path, f"all{seed}", seed, False, _nothing) == \
            _people_after(tmp_path, f"mem{seed}", seed, True, _nothing), seed


def test_a_change_by_another_connection_is_written_over_as_before(tmp_path):
    for seed in range(10):
        assert _people_after(tmp_path, f"all{seed}", seed, False, _rename_and_drop_roles) == \
            _people_after(tmp_path, f"mem{seed}", seed, True, _rename_and_drop_roles), seed
