"""One home per table: in normal operation one module inserts and updates each table's rows.

Every `INSERT [OR …] INTO t`, `REPLACE INTO t` and `UPDATE t` in a string of zos_cli's code,
and every sqlite-utils write (`db["t"].insert(…)`, `db.table("t").upsert(…)`, …), must be in
the table's home module, or be one of the named exceptions below.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import zos_cli

PACKAGE = Path(zos_cli.__file__).parent
SCHEMA = PACKAGE.parent / "schema"

HOMES = {
    # the one writer (observe): places, messages and what hangs off them, people
    "servers": "observe/rows.py",
    "channels": "observe/rows.py",
    "messages": "observe/rows.py",
    "reactions": "observe/rows.py",
    "mentions": "observe/rows.py",
    "role_mentions": "observe/rows.py",
    "media_analysis": "observe/rows.py",
    "link_analysis": "observe/rows.py",
    "message_sources": "observe/rows.py",
    "users": "observe/people.py",
    "user_server_tracking": "observe/people.py",
    "roles": "observe/people.py",
    "user_roles": "observe/people.py",
    # ingest runs
    "ingest_log": "ingest/log.py",
    "poll_state": "ingest/cursors.py",
    "backfill_state": "ingest/cursors.py",
    # salience
    "topics": "salience/batch.py",
    "salience_ledger": "salience/batch.py",
    # reflection
    "layer_runs": "reflect/store.py",
    "insights": "reflect/store.py",
    "insight_sources": "reflect/store.py",
    "llm_calls": "reflect/store.py",
    "llm_call_sources": "reflect/store.py",
    "reflection_marks": "reflect/store.py",
    "llm_cache": "reflect/store.py",
    "self_concept": "reflect/self_concept.py",
    "insights_fts": "insights/queries.py",  # (triggers fill it; the module merges it)
    "subject_aliases": "reflect/subjects.py",
    # privacy
    "consents": "privacy/consent.py",
    # (triggers follow the writer; the module takes revoked DMs out, puts them back, merges)
    "messages_fts": "privacy/message_index.py",
    "insight_quarantines": "privacy/quarantine.py",
    # store
    "events": "store/audit.py",
    "tombstones": "store/audit.py",
    "zos_state": "store/db.py",
    "_schema_version": "store/migrations.py",  # (made by the migration runner itself)
    # (in a private in-memory database: the offline reflector tokenises with the index's tokenizer)
    "offline_words": "reflect/offline_terms.py",
}
NOT_IN_SCHEMA = {"_schema_version", "offline_words"}

# Tables nothing in zos_cli writes yet (or only the schema's migrations and triggers).
UNWRITTEN = {"salience_bulk_write", "chattiness_ledger", "speech_pressure", "conversation_log",
             "draft_history", "salience_ledger_new", "llm_call_sources_new"}

# Module allowed to write a table outside its home: privacy purge (forget/erase) rewrites
# across tables, whichever they are.
ANY_TABLE = {"privacy/purge.py": "privacy purge deletes and rewrites across tables"}

# (table, module, what the statement must match): a column a second stage fills in.
STAGES = [
    ("messages", "observe/writer.py", r"^UPDATE messages SET salience_pending = 1\b",
     "the writer marks new messages to earn later"),
    ("messages", "salience/pending.py", r"^UPDATE messages SET salience_pending = 0\b",
     "salience earns the marked messages and clears the mark"),
    ("messages", "salience/rebuild.py", r"^UPDATE messages SET salience_pending = 0\b",
     "a rebuild replays every message, the marked ones too"),
    ("insights", "privacy/quarantine.py", r"^UPDATE insights SET quarantined = ",
     "the quarantine flag follows insight_quarantines"),
    ("media_analysis", "analyze/store.py", r"^UPDATE media_analysis SET ",
     "the writer creates a row per attachment; analysis completes it"),
    ("link_analysis", "analyze/store.py", r"^UPDATE link_analysis SET ",
     "the writer creates a row per link; analysis completes it"),
]

# (`ON CONFLICT … DO UPDATE SET` updates the row the INSERT names: not a statement of its own)
_STATEMENT = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?!\s+SET\b))\s+[\"`\[]?(\w+)")
_DYNAMIC = re.compile(r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE)\s+\{\}")
_SQLITE_UTILS_WRITES = {"insert", "insert_all", "upsert", "upsert_all", "update", "delete",
                        "delete_where", "add_column", "create", "transform"}


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "text" (an f-string's `{VERSION_TABLE}` is that text)."""
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)}


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    """A string literal's text; an f-string's with its fields as `{}` (or a module
    constant's text)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
            elif isinstance(value.value, ast.Name) and value.value.id in constants:
                parts.append(constants[value.value.id])
            else:
                parts.append("{}")
        return "".join(parts)
    return None


def _strings(tree: ast.Module):
    """Every string literal and the function it is in (None: module level)."""
    constants = _constants(tree)

    def walk(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function
            text = _text(child, constants)
            if text is not None:
                yield child.lineno, text, inner
                continue  # (an f-string's parts are not strings of their own)
            yield from walk(child, inner)

    yield from walk(tree, None)


def _table_of(target: ast.AST) -> str | None:
    """`db["t"]` or `db.table("t")` → "t"."""
    if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
        return target.slice.value if isinstance(target.slice.value, str) else None
    if (isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute)
            and target.func.attr == "table" and target.args
            and isinstance(target.args[0], ast.Constant)):
        return target.args[0].value
    return None


def _called_with_tables(tree: ast.Module, function: str):
    """(line, table) of each call of `function` with a table name as a string argument."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == function:
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                        and re.fullmatch(r"\w+", arg.value):
                    yield node.lineno, arg.value


def writes() -> list[tuple[str, str, int, str]]:
    """(table, module relative to zos_cli, line, statement) for every write found. A
    statement whose table is a parameter (`f"INSERT INTO {table}"` in a helper) counts as a
    write of each table the helper is called with in its module; one never called so is
    reported with the table `{}`."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, text, function in _strings(tree):
            for match in _STATEMENT.finditer(text):
                statement = " ".join(text[match.start():].split())
                found.append((match.group(1), module, line, statement))
            for match in _DYNAMIC.finditer(text):
                statement = " ".join(text[match.start():].split())
                calls = list(_called_with_tables(tree, function)) if function else []
                found += [(table, module, at, f"{function}(): {statement}")
                          for at, table in calls] or [("{}", module, line, statement)]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _SQLITE_UTILS_WRITES):
                table = _table_of(node.func.value)
                if table is not None:
                    found.append((table, module, node.lineno, f"sqlite-utils {node.func.attr}"))
    return found


def _allowed(table: str, module: str, statement: str) -> bool:
    if HOMES.get(table) == module or module in ANY_TABLE:
        return True
    return any(t == table and m == module and re.search(pattern, statement)
               for t, m, pattern, _why in STAGES)


def test_every_write_is_in_its_tables_home_or_a_named_exception():
    stray = [f"{module}:{line}: {table} ({statement[:70]})"
             for table, module, line, statement in writes()
             if not _allowed(table, module, statement)]
    assert stray == [], "tables written outside their home module:\n" + "\n".join(stray)


def test_the_scan_sees_writes_and_every_home_still_writes_its_table():
    # (A scan that found nothing would pass the test above for the wrong reason.)
    written = {(table, module) for table, module, _line, _statement in writes()}
    missing = [f"{table} in {module}" for table, module in HOMES.items()
               if (table, module) not in written]
    assert missing == [], "home modules that no longer write their table: " + ", ".join(missing)
    for table, module, pattern, _why in STAGES:
        assert (table, module) in written, f"exception no longer needed: {table} in {module}"


def test_every_table_of_the_schema_has_a_home_or_is_named_unwritten():
    created = set()
    for path in SCHEMA.glob("*.sql"):
        created |= set(re.findall(r"CREATE (?:VIRTUAL )?TABLE (?:IF NOT EXISTS )?(\w+)",
                                  path.read_text(encoding="utf-8")))
    assert created, "no CREATE TABLE found in schema/"
    assert created - set(HOMES) - UNWRITTEN == set(), "a table of the schema with no home"
    assert set(HOMES) - NOT_IN_SCHEMA <= created
    written = {table for table, *_ in writes()}
    assert not written & UNWRITTEN, "a table named unwritten is written: give it a home"


def test_the_scan_reads_sqlite_utils_writes_and_helpers_too():
    tree = ast.parse('db["users"].upsert({}, pk="id")\ndb.table("roles").insert_all([])\n'
                     'q = "INSERT OR IGNORE INTO mentions"\n'
                     'def put(db, table):\n    db.execute(f"INSERT INTO {table} VALUES (1)")\n'
                     'put(db, "consents")\n')
    calls = [_table_of(n.func.value) for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in _SQLITE_UTILS_WRITES]
    assert sorted(calls) == ["roles", "users"]
    texts = list(_strings(tree))
    assert [m.group(1) for _l, text, _f in texts for m in _STATEMENT.finditer(text)] == [
        "mentions"]
    dynamic = [f for _l, text, f in texts if _DYNAMIC.search(text)]
    assert dynamic == ["put"]
    assert [t for _line, t in _called_with_tables(tree, "put")] == ["consents"]
