"""Privacy end to end: canaries through ingest, reflection (a model that echoes what it reads),
and `consent revoke --forget` / `consent erase`, checked byte by byte in the database files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.conftest import Cli
from tests.conftest import scan_files as scan
from tests.exports import dm_export, message, snowflake, user
from tests.fake_openai import FakeOpenAI, Reply, echo_reply
from tests.reflect_world import DM_CHANNEL, SELF_ID, build_world, config_for
from zos_cli.privacy import consent
from zos_cli.store import db as database
from zos_cli.store import migrations
from zos_cli.config import Config
from zos_cli.ingest.run import ingest_exports
from zos_cli.reflect.run import RunOptions, run_layer

DM_CANARY = "QZXV-dm-canary"
PUBLIC_CANARY = "QZXV-public-canary"


NOTHING = {"db": 0, "-wal": 0, "-shm": 0}


@pytest.fixture
def model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with FakeOpenAI(default=echo_reply) as fake:
        yield fake


def model_config(server) -> Config:
    return Config.model_validate({
        "discord": {"self_user_id": SELF_ID},
        "reflection": {"retry_backoff_seconds": 0.01},
        "models": {"reflection": {"model": "openai/fake-model", "api_base": server.base_url,
                                  "max_tokens": 400}},
    })


def reflect(db, db_path, config, topic, cache=False):
    summary = run_layer(db, config, RunOptions(layer="user", topic=topic, cache=cache))
    assert summary["status"] == "completed", summary
    return summary


def test_forget_leaves_no_byte_of_a_consenting_users_dms(db, db_path, tmp_path, model):
    dm_texts = (f"{DM_CANARY} first", "noted", f'line one\nline "two" {DM_CANARY}-multi',
                "ok", f"{DM_CANARY} last")
    world = build_world(db, tmp_path, users=3, messages_each=2, dm_with="bob", dm_texts=dm_texts)
    config = model_config(model)
    reflect(db, db_path, config, world.global_key("bob"), cache=True)
    stored = db.execute("SELECT content, sources_scope_max FROM insights").fetchone()
    assert DM_CANARY in stored[0] and stored[1] == "dm"
    assert scan(db_path, DM_CANARY) != NOTHING  # negative control: the scan finds them
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert scan(db_path, DM_CANARY)["db"] > 0   # in the main file too, not only the WAL

    r = Cli(db_path)("consent", "revoke", "bob", "--forget", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    purge = json.loads(r.stdout)["purge"]
    assert purge["messages"] == len(dm_texts) and purge["insights"] == 1
    assert purge["llm_calls_scrubbed"] == 1 and purge["llm_cache_entries"] == 1
    assert scan(db_path, DM_CANARY) == NOTHING
    tombstones = db.execute("SELECT object_type, object_id, reason FROM tombstones").fetchall()
    assert tombstones and DM_CANARY not in json.dumps(tombstones)
    # public life goes on untouched
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == len(world.message_ids)

    # Re-ingesting the same export while consent stays revoked brings nothing back.
    summary = ingest_exports(db, config, [str(tmp_path / "dm.json")])
    assert summary["messages_new"] == 0
    assert scan(db_path, DM_CANARY) == NOTHING


def test_forget_scrubs_the_prompts_of_calls_that_failed(db, db_path, tmp_path, model):
    # Every DM has a quote or a newline, so its text is escaped twice in a stored prompt and
    # a search for it finds nothing: the calls are found by what their prompt carried.
    dm_texts = (f'she said "{DM_CANARY}" twice', f"first line\nsecond {DM_CANARY}",
                f'{DM_CANARY} and a backslash \\ "quoted"')
    world = build_world(db, tmp_path, users=2, messages_each=2, dm_with="bob", dm_texts=dm_texts)
    model.default = lambda request: Reply(content={"insights": "nope"})
    summary = run_layer(db, model_config(model),
                        RunOptions(layer="user", topic=world.global_key("bob")))
    assert summary["status"] == "failed" and summary["insights_created"] == 0
    calls = db.execute("SELECT count(*) FROM llm_calls WHERE prompt IS NOT NULL").fetchone()[0]
    assert calls >= 1 and scan(db_path, DM_CANARY) != NOTHING

    r = Cli(db_path)("consent", "revoke", "bob", "--forget", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["purge"]["llm_calls_scrubbed"] == calls
    assert scan(db_path, DM_CANARY) == NOTHING


def test_erase_leaves_no_byte_of_a_users_public_messages(db, db_path, tmp_path, model):
    world = build_world(db, tmp_path, users=3, messages_each=3,
                        texts={"carol": f"{PUBLIC_CANARY} carol's pottery notes"})
    config = model_config(model)
    reflect(db, db_path, config, world.user_key("carol"))
    reflect(db, db_path, config, world.user_key("alice"))   # alice's context quotes carol
    assert scan(db_path, PUBLIC_CANARY) != NOTHING
    r = Cli(db_path)("consent", "erase", "carol", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    purge = json.loads(r.stdout)["purge"]
    assert purge["messages"] == 3 and purge["users"] == 1 and purge["topics"] > 0
    assert scan(db_path, PUBLIC_CANARY) == NOTHING
    assert db.execute("SELECT count(*) FROM topics WHERE key LIKE ?",
                      [f"%{world.ids['carol']}%"]).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM users WHERE id = ?", [world.ids["carol"]]).fetchone()[0] == 0
    from zos_cli.salience.queries import check

    assert check(db)["ok"]
    # Reading the same exports again (changed files, so not skipped) brings nothing back.
    for name in ("general.json", "random.json"):
        with open(tmp_path / name, "a") as handle:
            handle.write("\n")
    again = ingest_exports(db, config, [str(tmp_path / "general.json"), str(tmp_path / "random.json")])
    assert again["files"] == 2 and again["messages_new"] == 0, again
    assert scan(db_path, PUBLIC_CANARY) == NOTHING
    assert db.execute("SELECT count(*) FROM users WHERE id = ?", [world.ids["carol"]]).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM reactions WHERE user_id = ?",
                      [world.ids["carol"]]).fetchone()[0] == 0


def test_destructive_commands_need_yes_without_a_terminal(db_path):
    cli = Cli(db_path)
    for args, what in ((["consent", "revoke", "77", "--forget"],
                        "erase every DM of 77 and what was made from them"),
                       (["consent", "erase", "77"], "erase everything zos holds about 77")):
        r = cli(*args)
        assert r.exit_code == 2
        assert r.stderr == (f"Error: this would {what}, for good: add --yes to confirm "
                            "(there is no terminal to ask)\n")
        assert r.stdout == ""


def test_a_dm_without_consent_leaves_no_byte(db, db_path, tmp_path):
    bob = user("55", "bob")
    dm = dm_export("3100", "bob")
    dm.add(message(snowflake(1), bob, f"{DM_CANARY} never to be stored"))
    dm.add(message(snowflake(2), user(SELF_ID, "zos", bot=True), f"{DM_CANARY} reply"))
    summary = ingest_exports(db, config_for(), [str(dm.write(tmp_path / "dm.json"))])
    assert summary["dm_skipped_without_consent"] == 2 and summary["messages_new"] == 0
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert scan(db_path, DM_CANARY) == NOTHING
    assert scan(db_path, "bob") == NOTHING  # not even the name of someone met only in a DM


def test_backups_are_reported_and_deleted_on_request(db, db_path, tmp_path):
    build_world(db, tmp_path, users=2, messages_each=1, dm_with="alice")
    backup = migrations.backup(db.conn, db_path, 1)
    cli = Cli(db_path)
    doc = json.loads(cli("consent", "revoke", "alice", "--forget", "--yes", "--json").stdout)
    assert doc["purge"]["backups"] == [str(backup)] and backup.exists()
    # The table says it on stdout (a warning would be silent without a terminal).
    table = cli("consent", "revoke", "alice", "--forget", "--yes")
    assert f"Backup made before this, still holding the content: {backup}" in table.stdout
    doc = json.loads(cli("consent", "erase", "alice", "--yes", "--include-backups", "--json").stdout)
    assert doc["purge"]["backups_deleted"] == [str(backup)] and not backup.exists()


# ---------------------------------------------------------------- stateful property
class ConsentMachine(RuleBasedStateMachine):
    """grant / revoke / ingest / reflect / forget in any order: DM content and DM-derived
    insights exist (unquarantined) only under an active consent; forget removes them all."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.folder = Path(tempfile.mkdtemp())
        self.path = self.folder / "zos.db"
        self.db = database.connect(self.path, create=True)
        migrations.apply(self.db, self.path)
        self.config = config_for()
        self.bob = user("55", "bob")
        self.zos = user(SELF_ID, "zos", bot=True)
        self.sent: list[dict] = []
        self.granted = False
        self.forgotten_after: set[str] = set()  # messages that must never come back

    def teardown(self):
        self.db.close()

    def _dm_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM messages WHERE visibility_scope = 'dm'").fetchone()[0]

    @rule()
    def grant(self):
        consent.grant(self.db, "55")
        self.granted = True

    @rule()
    def revoke(self):
        consent.revoke(self.db, "55")
        self.granted = False

    @rule(words=st.integers(1, 3))
    def ingest(self, words):
        before = self._dm_count()
        n = len(self.sent)
        self.sent.append(message(snowflake(n + 1), self.bob if n % 2 == 0 else self.zos,
                                 " ".join(["glaze"] * words) + f" {n}"))
        dm = dm_export(DM_CHANNEL, "bob")
        for m in self.sent:
            dm.add(m)
        ingest_exports(self.db, self.config, [str(dm.write(self.folder / "dm.json"))])
        if not self.granted:
            assert self._dm_count() == before, "a DM was stored without consent"

    @precondition(lambda self: self._dm_count() > 0)
    @rule()
    def reflect(self):
        run_layer(self.db, self.config, RunOptions(layer="user", topic="user:55"))

    @rule()
    def forget(self):
        consent.revoke_and_forget(self.db, "55", db_path=self.path)
        self.granted = False
        assert self._dm_count() == 0
        assert self.db.execute("SELECT count(*) FROM insights WHERE sources_scope_max <> 'public'"
                               ).fetchone()[0] == 0

    @invariant()
    def no_dm_derived_insight_in_use_without_consent(self):
        if self.granted:
            return
        in_use = self.db.execute(
            "SELECT count(*) FROM insights i JOIN insight_sources s ON s.insight_id = i.id "
            "JOIN messages m ON m.id = s.source_id AND s.source_type = 'message' "
            "WHERE m.visibility_scope = 'dm' AND i.quarantined = 0").fetchone()[0]
        assert in_use == 0


TestConsentMachine = ConsentMachine.TestCase
TestConsentMachine.settings = settings(max_examples=12, stateful_step_count=8, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])


def test_a_gate_role_lost_in_a_newer_export_quarantines_and_stops_reflection(tmp_path, db):
    from tests.conftest import Cli
    from tests.exports import Export, message, role, snowflake, user

    member = role("9001", "member")
    config = tmp_path / "zos.toml"
    config.write_text('[servers."1001"]\nprivacy_gate_role = "9001"\n')
    cli = Cli(db.conn.execute("PRAGMA database_list").fetchone()[2])
    with_role = Export(exported_at="2024-03-10T12:00:00+00:00", messages=[
        message(snowflake(i), user("101", "alice", roles=[member]), f"hello {i}")
        for i in range(12)])
    assert cli("--config", str(config), "ingest", str(with_role.write(tmp_path / "a.json"))
               ).exit_code == 0
    assert cli("--config", str(config), "reflect", "--layer", "user").exit_code == 0
    assert db.execute("SELECT quarantined FROM insights WHERE topic_key = "
                      "'server:1001:user:101'").fetchone() == (0,)
    assert cli("--config", str(config), "reflect", "--layer", "synthesis").exit_code == 0
    assert db.execute("SELECT count(*) FROM insights WHERE topic_key = 'user:101'"
                      ).fetchone() == (1,)
    without = Export(exported_at="2024-03-20T12:00:00+00:00", messages=[
        message(snowflake(20), user("101", "alice", roles=[]), "still here")])
    assert cli("--config", str(config), "ingest", str(without.write(tmp_path / "b.json"))
               ).exit_code == 0
    assert db.execute("SELECT count(*) FROM insights WHERE quarantined = 0").fetchone() == (0,)
    reasons = {r[0] for r in db.execute("SELECT reason FROM insight_quarantines")}
    assert reasons == {"gate:1001:101"}
    # No new global insight undoes it: synthesis passes her over.
    run = cli("--config", str(config), "reflect", "--layer", "synthesis", "--json")
    assert json.loads(run.stdout)["targets"] == []
    # Regaining the role (a still newer export) restores them.
    again = Export(exported_at="2024-03-30T12:00:00+00:00", messages=[
        message(snowflake(30), user("101", "alice", roles=[member]), "back")])
    cli("--config", str(config), "ingest", str(again.write(tmp_path / "c.json")))
    assert db.execute("SELECT count(*) FROM insights WHERE quarantined = 0").fetchone() == (2,)


def test_erase_takes_the_users_name_out_of_the_dm_file_paths(cli, db):
    from tests.conftest import EXAMPLES

    cli("ingest", str(EXAMPLES / "export"))
    assert db.execute("SELECT count(*) FROM ingest_log WHERE path LIKE '%priya_k%'"
                      ).fetchone() == (1,)
    assert cli("consent", "erase", "733410882256019477", "--yes").exit_code == 0
    paths = [r[0] for r in db.execute("SELECT path FROM ingest_log")]
    assert not any("priya_k" in p for p in paths) and len(paths) == 4
