"""Subjects with a lifecycle (docs/subjects.md): names through aliases, provisional and
established, a subject's key terms and messages, and the listings of `zos subjects`.

A subject is the topic `server:<s>:subject:<name>`. A name is normalised (reflect/schema.py
`fold_subject`), then mapped through `subject_aliases` (this module is its home): a merged or
renamed name keeps arriving at the subject it became. A subject is created provisional; it is
established once insights about `[subjects] promote_after` different targets name it, or
when an operator promotes it. Only established subjects are reflected on.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import sqlite_utils

from zos_cli import topics
from zos_cli.errors import NotFound, UsageProblem
from zos_cli.labels import resolve_server
from zos_cli.privacy.message_index import match_expression
from zos_cli.salience.batch import mark_established

if TYPE_CHECKING:  # (listings never import pydantic: start-up time)
    from zos_cli.config import Config

LIST_KEYS = ("name", "topic_key", "server_id", "state", "balance", "aliases", "insights",
             "last_activity_at")
MAX_KEY_TERMS = 20
SHOWN_MESSAGES = 10


# ---------------------------------------------------------------- names and aliases
def resolve(db: sqlite_utils.Database, server_id: str, name: str) -> str:
    """The subject a (normalised) name arrives at in a server: itself, or what it was merged
    or renamed into."""
    row = db.execute("SELECT subject FROM subject_aliases WHERE server_id = ? AND alias = ?",
                     [server_id, name]).fetchone()
    return row[0] if row else name


def aliases_of(db: sqlite_utils.Database, server_id: str, name: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT alias FROM subject_aliases WHERE server_id = ? AND subject = ? ORDER BY alias",
        [server_id, name])]


def alias_target(db: sqlite_utils.Database, key: str) -> str | None:
    """The subject a merged-away subject topic's name now arrives at (None: not an alias)."""
    t = topics.parse(key)
    if t.kind != "subject" or t.server_id is None:
        return None
    row = db.execute("SELECT subject FROM subject_aliases WHERE server_id = ? AND alias = ?",
                     [t.server_id, t.ids[0]]).fetchone()
    return row[0] if row else None


def set_alias(db: sqlite_utils.Database, server_id: str, alias: str, subject: str, at: str,
              event_id: str) -> list[str]:
    """Make `alias` arrive at `subject`, and every name that arrived at `alias` too (chains
    stay flat); a name that `subject` itself arrived at is one no more. Returns the names
    that now arrive at `subject` because of this. (Caller holds the write transaction.)"""
    db.execute("DELETE FROM subject_aliases WHERE server_id = ? AND alias = ?",
               [server_id, subject])
    moved = aliases_of(db, server_id, alias)
    db.execute("UPDATE subject_aliases SET subject = ? WHERE server_id = ? AND subject = ?",
               [subject, server_id, alias])
    db.execute("INSERT INTO subject_aliases (server_id, alias, subject, created_at, event_id) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT (server_id, alias) DO UPDATE SET "
               "subject = excluded.subject, created_at = excluded.created_at, "
               "event_id = excluded.event_id", [server_id, alias, subject, at, event_id])
    return sorted({alias, *moved})


# ---------------------------------------------------------------- provisional → established
def naming_targets(db: sqlite_utils.Database, server_id: str, name: str) -> int:
    """How many different targets (topics) standing insights about name the subject, its own
    topic and the topics merged into it left out."""
    own = [topics.subject(server_id, n) for n in [name, *aliases_of(db, server_id, name)]]
    return db.execute(
        "SELECT count(DISTINCT topic_key) FROM insights WHERE subject = ? AND topic_key GLOB ? "
        "AND quarantined = 0 AND topic_key NOT IN (SELECT value FROM json_each(?))",
        [name, topics.server_keys_glob(server_id), json.dumps(own)]).fetchone()[0]


def promote_named(db: sqlite_utils.Database, config: Config, server_id: str,
                  names: list[str]) -> list[str]:
    """Establish the provisional subjects among `names` that insights about enough different
    targets now name (caller holds the write transaction). Returns the keys promoted."""
    promoted = []
    for name in sorted(set(names)):
        key = topics.subject(server_id, name)
        row = db.execute("SELECT provisional FROM topics WHERE key = ?", [key]).fetchone()
        if row and row[0] and naming_targets(db, server_id, name) >= config.subjects.promote_after:
            promoted.append(key)
    mark_established(db, promoted)
    return promoted


def state_of(db: sqlite_utils.Database, key: str) -> str | None:
    """provisional | established | alias (merged away) | None (no such topic)."""
    row = db.execute("SELECT provisional FROM topics WHERE key = ?", [key]).fetchone()
    if row is None:
        return None
    if alias_target(db, key) is not None:
        return "alias"
    return "provisional" if row[0] else "established"


def refusal(db: sqlite_utils.Database, key: str) -> str | None:
    """Why a subject topic is not reflected on (None: it may be, or it is no subject)."""
    if topics.parse(key).kind != "subject":
        return None
    state = state_of(db, key)
    if state == "provisional":
        name = topics.parse(key).ids[0]
        return (f"{key} is a provisional subject, never reflected on: it is established once "
                f"insights name it again, or by `zos subjects promote {name}`")
    if state == "alias":
        t = topics.parse(key)
        into = topics.subject(t.server_id, alias_target(db, key))
        return f"{key} was merged into {into}: reflect on that subject"
    return None


# ---------------------------------------------------------------- key terms and messages
def key_terms(db: sqlite_utils.Database, server_id: str, name: str,
              limit: int = MAX_KEY_TERMS) -> list[str]:
    """The subject's key terms: the `subject_terms` of the standing insights naming it or
    about it, newest first, each once (ignoring case)."""
    key = topics.subject(server_id, name)
    terms: list[str] = []
    seen: set[str] = set()
    for (stored,) in db.execute(
            "SELECT subject_terms FROM insights WHERE subject_terms IS NOT NULL "
            "AND quarantined = 0 AND ((subject = ? AND topic_key GLOB ?) OR topic_key = ?) "
            "ORDER BY created_at DESC, id DESC", [name, topics.server_keys_glob(server_id), key]):
        for term in json.loads(stored):
            if term.lower() not in seen:
                seen.add(term.lower())
                terms.append(term)
            if len(terms) >= limit:
                return terms
    return terms


def _plurals(phrase: str) -> list[str]:
    """A subject name's phrase and its plural (the index has no stemming: "kiln" should find
    "kilns")."""
    words = phrase.replace("_", " ").split()
    if not words:
        return []
    last = words[-1]
    if last.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return [" ".join(words), " ".join([*words[:-1], plural])]


def search_expression(db: sqlite_utils.Database, server_id: str, name: str) -> str | None:
    """The messages_fts query for a subject: its name, its aliases (each also in the plural)
    and its key terms."""
    phrases = [p for n in [name, *aliases_of(db, server_id, name)] for p in _plurals(n)]
    return match_expression(phrases + key_terms(db, server_id, name))


def message_condition(db: sqlite_utils.Database, server_id: str,
                      name: str) -> tuple[str, list] | None:
    """(SQL condition over `m`, its parameters) for a subject's messages: those of its server
    the full-text index finds; None when nothing can match."""
    expression = search_expression(db, server_id, name)
    if expression is None:
        return None
    return ("m.server_id = ? AND m.id IN (SELECT CAST(rowid AS TEXT) FROM messages_fts "
            "WHERE messages_fts MATCH ?)", [server_id, expression])


# ---------------------------------------------------------------- finding a subject
def fold_name(text: str) -> str:
    """A subject name as typed ("Board games") to the form in keys (board_games)."""
    from zos_cli.reflect.schema import fold_subject

    try:
        name = fold_subject(text)
    except ValueError:
        name = None
    if not name or len(name) > 64:
        raise UsageProblem(f"{text!r} is not a subject name: letters, digits and underscores, "
                           "starting with a letter or underscore (spaces and dashes become _)")
    return name


def locate(db: sqlite_utils.Database, name: str, server: str | None) -> tuple[str, str]:
    """(server id, name) of a subject or alias name as typed. A name known in several
    servers needs `server` (exit 2, listing them); an unknown one is exit 1."""
    name = fold_name(name)
    server_id = resolve_server(db, server) if server is not None else None
    found = sorted({r[0] for r in db.execute(
        "SELECT server_id FROM topics WHERE category = 'subjects' AND key = "
        "'server:' || server_id || ':subject:' || ? UNION "
        "SELECT server_id FROM subject_aliases WHERE alias = ?", [name, name])})
    if server_id is not None:
        found = [s for s in found if s == server_id]
    if not found:
        where = f" in server {server_id}" if server_id else ""
        raise NotFound(f"no subject {name}{where}: see `zos subjects list`")
    if len(found) > 1:
        named = dict(db.execute(
            "SELECT id, name FROM servers WHERE id IN (SELECT value FROM json_each(?))",
            [json.dumps(found)]).fetchall())
        listed = ", ".join(f"{s} ({named[s]})" if named.get(s) else s for s in found)
        raise UsageProblem(f"subject {name} is in several servers: {listed}: give --server")
    return found[0], name


# ---------------------------------------------------------------- listings
# A subject's row, in one statement for any number of subjects: `n` is its name (the key after
# "server:<id>:subject:"); the names merged into it are its aliases, their activity counts as
# its own, and its insights are those about it or naming it in its server.
_NAME = "substr(t.key, length(t.server_id) + 17)"
_ROWS = f"""
SELECT key, server_id, name, provisional, balance, last_activity_at,
    (SELECT json_group_array(alias) FROM (SELECT a.alias FROM subject_aliases a
        WHERE a.server_id = s.server_id AND a.subject = s.name ORDER BY a.alias)) AS aliases,
    (SELECT count(*) FROM insights i WHERE i.quarantined = 0 AND (i.topic_key = s.key
        OR (i.subject = s.name AND i.topic_key GLOB 'server:' || s.server_id || ':*'))) AS insights,
    (SELECT max(o.last_activity_at) FROM subject_aliases a JOIN topics o
        ON o.key = 'server:' || a.server_id || ':subject:' || a.alias
        WHERE a.server_id = s.server_id AND a.subject = s.name) AS aliases_active
FROM (SELECT t.key, t.server_id, {_NAME} AS name, t.provisional, t.balance, t.last_activity_at
      FROM topics t WHERE t.category = 'subjects' AND t.server_id IS NOT NULL AND {{where}}) s
ORDER BY balance DESC, key"""


def _rows(db: sqlite_utils.Database, where: str, params: list) -> list[dict]:
    rows = []
    for key, server_id, name, provisional, balance, last, aliases, insights, aliases_active \
            in db.execute(_ROWS.format(where=where), params):
        rows.append({
            "name": name, "topic_key": key, "server_id": server_id,
            "state": "provisional" if provisional else "established", "balance": balance,
            "aliases": json.loads(aliases), "insights": insights,
            "last_activity_at": max(filter(None, (last, aliases_active)), default=None)})
    return rows


def list_subjects(db: sqlite_utils.Database, *, server: str | None = None,
                  state: str | None = None) -> list[dict]:
    """Every subject (names merged away are listed as aliases of theirs), highest balance
    first; `state`: provisional or established only."""
    if state not in (None, "provisional", "established"):
        raise ValueError(f"unknown subject state {state!r}")
    where, params = ["NOT EXISTS (SELECT 1 FROM subject_aliases a WHERE a.server_id = "
                     f"t.server_id AND a.alias = {_NAME})"], []
    if server is not None:
        where.append("t.server_id = ?")
        params.append(resolve_server(db, server))
    if state is not None:
        where.append("t.provisional = ?")
        params.append(1 if state == "provisional" else 0)
    return _rows(db, " AND ".join(where), params)


def show_subject(db: sqlite_utils.Database, config: Config, name: str, *,
                 server: str | None = None, messages: int = SHOWN_MESSAGES) -> dict:
    """One subject (an alias shows the subject it arrives at): its row, key terms, how many
    targets name it, its insights and its most recent matching messages (never those of
    people outside the server's privacy gate, who are never analysed)."""
    from zos_cli.privacy.gate import passes_gate

    server_id, typed = locate(db, name, server)
    name = resolve(db, server_id, typed)
    key = topics.subject(server_id, name)
    found_rows = _rows(db, "t.key = ?", [key])
    if not found_rows:  # (an alias of a subject whose topic is gone: cannot happen by zos)
        raise NotFound(f"no subject {name} in server {server_id}")
    doc = found_rows[0]
    doc["shown_as"] = typed if typed != name else None
    doc["key_terms"] = key_terms(db, server_id, name)
    doc["naming_targets"] = naming_targets(db, server_id, name)
    doc["insight_rows"] = [dict(zip(("id", "topic_key", "created_at", "content"), r))
                           for r in db.execute(
        "SELECT id, topic_key, created_at, content FROM insights WHERE quarantined = 0 AND "
        "(topic_key = ? OR (subject = ? AND topic_key GLOB ?)) "
        "ORDER BY created_at DESC, id DESC LIMIT 10",
        [key, name, topics.server_keys_glob(server_id)])]
    found = message_condition(db, server_id, name)
    doc["messages"] = []
    if found is not None:
        condition, params = found
        rows = db.execute(
            "SELECT m.id, m.channel_id, m.author_id, m.created_at, m.content FROM messages m "
            f"WHERE m.deleted_at IS NULL AND {condition} "
            "ORDER BY m.created_at DESC, CAST(m.id AS INTEGER) DESC", params)
        allowed: dict[str, bool] = {}
        for row in rows:
            author = row[2]
            if author not in allowed:
                allowed[author] = passes_gate(db, config, server_id, author)
            if allowed[author]:
                doc["messages"].append(dict(zip(
                    ("id", "channel_id", "author_id", "created_at", "content"), row)))
                if len(doc["messages"]) >= messages:
                    break
    return doc
