"""`zos subjects merge` and `rename`: one subject becomes another (docs/subjects.md#merging).

In one write transaction:
- the balance moves by two ledger rows (salience/merge.py): FROM ends at 0, INTO takes what
  its cap lets in, and the summary says what the cap refused;
- the insights about FROM move to INTO, and the server's insights naming FROM name INTO, each
  keeping what it was in its metadata (reflect/store.py `move_subject_insights`);
- FROM becomes an alias of INTO (so do the names that arrived at FROM), so its name keeps
  arriving at INTO;
- INTO is established when either was, or when insights about enough targets now name it;
- an `events` row (`subject_merged`) records it, with the ids and amounts.
FROM's topic and its ledger rows stay: its history ends with the merge_out row.

A rename is a merge into a new name (its topic is made, in FROM's state). Merging back into a
name that was merged into FROM takes that alias away again.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from zos_cli import topics
from zos_cli.config import Config
from zos_cli.errors import NotFound, UsageProblem
from zos_cli.ids import new_id
from zos_cli.reflect import subjects
from zos_cli.reflect.store import move_subject_insights
from zos_cli.salience import merge as ledger_merge
from zos_cli.salience.batch import ensure_topic, mark_established, mark_provisional
from zos_cli.store import db as db_module
from zos_cli.store.audit import record_event


@dataclass
class _Plan:
    server_id: str
    from_name: str
    into_name: str
    into_exists: bool      # INTO's topic is stored (a live subject, or one merged into FROM)
    reversal: bool         # INTO is a name that was merged into FROM

    @property
    def from_key(self) -> str:
        return topics.subject(self.server_id, self.from_name)

    @property
    def into_key(self) -> str:
        return topics.subject(self.server_id, self.into_name)


def _plan(db: sqlite_utils.Database, from_text: str, into_text: str, server: str | None,
          rename: bool) -> _Plan:
    server_id, from_name = subjects.locate(db, from_text, server)
    merged_into = subjects.resolve(db, server_id, from_name)
    if merged_into != from_name:
        raise UsageProblem(f"subject {from_name} was merged into {merged_into} already (it is "
                           f"an alias of {merged_into})")
    into_name = subjects.fold_name(into_text)
    if into_name == from_name:
        raise UsageProblem(f"{from_text!r} and {into_text!r} are the same subject")
    arrives_at = subjects.resolve(db, server_id, into_name)
    reversal = arrives_at == from_name
    if arrives_at != into_name and not reversal:
        raise UsageProblem(f"{into_name} is an alias of {arrives_at}: merge into {arrives_at}")
    into_key = topics.subject(server_id, into_name)
    into_exists = db.execute("SELECT 1 FROM topics WHERE key = ?", [into_key]).fetchone() is not None
    if rename and into_exists and not reversal:
        raise UsageProblem(f"subject {into_name} exists in server {server_id}: `zos subjects "
                           f"merge {from_name} {into_name}` merges into it")
    if not rename and not into_exists:
        raise NotFound(f"no subject {into_name} in server {server_id}: `zos subjects rename "
                       f"{from_name} {into_name}` gives {from_name} a new name")
    return _Plan(server_id, from_name, into_name, into_exists, reversal)


def _state(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.execute("SELECT provisional FROM topics WHERE key = ?", [key]).fetchone()
    return None if row is None else ("provisional" if row[0] else "established")


def _insight_count(db: sqlite_utils.Database, key: str) -> int:
    return db.execute("SELECT count(*) FROM insights WHERE topic_key = ?", [key]).fetchone()[0]


def merge(db: sqlite_utils.Database, config: Config, from_text: str, into_text: str, *,
          server: str | None = None, rename: bool = False, dry_run: bool = False) -> dict:
    """Merge (or rename) subject FROM into INTO; with `dry_run`, only say what it would do.
    Returns the summary (see docs/subjects.md#merging for its keys)."""
    if dry_run:
        return _summary(db, config, _plan(db, from_text, into_text, server, rename), rename)
    with db_module.write_transaction(db):
        plan = _plan(db, from_text, into_text, server, rename)
        merge_id = new_id()
        at = ledger_merge.merge_time(db, plan.from_key, plan.into_key)
        from_state = _state(db, plan.from_key)
        into_state = _state(db, plan.into_key) if not plan.reversal else from_state
        if not plan.into_exists:
            ensure_topic(db, plan.into_key, at)
        amounts = ledger_merge.merge_balances(db, config, plan.from_key, plan.into_key, at,
                                              merge_id)
        moved = move_subject_insights(db, plan.server_id, plan.from_name, plan.into_name,
                                      merge_id)
        aliases = subjects.set_alias(db, plan.server_id, plan.from_name, plan.into_name, at,
                                     merge_id)
        established = (from_state == "established" or into_state == "established"
                       or subjects.naming_targets(db, plan.server_id, plan.into_name)
                       >= config.subjects.promote_after)
        (mark_established if established else mark_provisional)(db, [plan.into_key])
        doc = _document(plan, rename, amounts, moved, aliases,
                        "established" if established else "provisional", at, merge_id)
        record_event(db, "subject_merged",
                     {k: v for k, v in doc.items() if k not in ("dry_run", "state")}
                     | {"into_state": doc["state"]}, event_id=merge_id)
    return doc


def _summary(db: sqlite_utils.Database, config: Config, plan: _Plan, rename: bool) -> dict:
    """What a merge would do now (a dry run)."""
    amounts = ledger_merge.plan(db, config, plan.from_key, plan.into_key)
    moved = _insight_count(db, plan.from_key)
    aliases = sorted({plan.from_name, *subjects.aliases_of(db, plan.server_id, plan.from_name)})
    states = {_state(db, plan.from_key), None if plan.reversal else _state(db, plan.into_key)}
    state = "established" if "established" in states else "provisional (unless named enough)"
    at = ledger_merge.merge_time(db, plan.from_key, plan.into_key)
    return {**_document(plan, rename, amounts, moved, aliases, state, at, None), "dry_run": True}


def _document(plan: _Plan, rename: bool, amounts: ledger_merge.MergeAmounts, moved: int,
              aliases: list[str], state: str, at: str, merge_id: str | None) -> dict:
    return {
        "action": "rename" if rename else "merge",
        "server_id": plan.server_id,
        "from": plan.from_name, "into": plan.into_name,
        "from_key": plan.from_key, "into_key": plan.into_key,
        "balance_moved": amounts.moved, "balance_taken": amounts.taken,
        "refused_by_cap": amounts.refused, "cap": amounts.cap,
        "into_balance_before": amounts.into_before, "into_balance_after": amounts.into_after,
        "insights_moved": moved, "aliases_added": aliases, "state": state,
        "merged_at": at, "merge_id": merge_id, "dry_run": False,
    }


def promote(db: sqlite_utils.Database, name: str, *, server: str | None = None) -> dict:
    """`zos subjects promote NAME`: an operator establishes a subject (an alias: the subject
    it arrives at). Returns {name, topic_key, server_id, state, changed}."""
    with db_module.write_transaction(db):
        server_id, typed = subjects.locate(db, name, server)
        name = subjects.resolve(db, server_id, typed)
        key = topics.subject(server_id, name)
        before = _state(db, key)
        if before is None:
            raise NotFound(f"no subject {name} in server {server_id}")
        changed = before == "provisional"
        if changed:
            mark_established(db, [key])
            record_event(db, "subject_promoted", {"topic_key": key, "by": "operator"})
    return {"name": name, "topic_key": key, "server_id": server_id, "state": "established",
            "changed": changed}
