"""zos's self-concept: the home of the `self_concept` table (docs/reflection.md#the-self-concept).

Versions of one short markdown document in which zos describes itself. The active one is shown
in every reflection prompt, bounded by `[self] prompt_tokens` and fenced as zos's own words.

- Version 1 is the shipped default (`zos_cli/layers/self_concept.md`), stored the first time
  a database needs it (`ensure_default`), so editing the package file changes no migration.
- The self layer may propose a revision: stored `proposed` (or active at once with
  `[self] auto_accept`), or `rejected` with the reason when it is longer than the bound or
  changes more than `[self] max_change_ratio` of the words. A revision reaches every later
  prompt, a lasting prompt-injection path: by default the operator decides.
- The operator accepts a proposal, reverts to an older version (a new version with its text)
  or sets a version from a file; each makes the new active version and supersedes the old one.

Functions that write take their own write transaction, except `propose`, which runs inside
the self layer's per-target transaction (`reflect/store.py`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import sqlite_utils

from zos_cli.config import Config
from zos_cli.errors import InputDataError, NotFound, UsageProblem
from zos_cli.reflect.schema import embeds_image
from zos_cli.reflect.timefmt import CHARS_PER_TOKEN, estimate_tokens
from zos_cli.store import db as db_module
from zos_cli.timeutil import now_stored

SHIPPED_PATH = Path(__file__).resolve().parent.parent / "layers" / "self_concept.md"
COLUMNS = ("version", "content", "source", "state", "created_at", "layer_run_id", "reason")
BEGIN = "BEGIN ZOS SELF-CONCEPT"
END = "END ZOS SELF-CONCEPT"


def shipped_text() -> str:
    return SHIPPED_PATH.read_text(encoding="utf-8").strip()


def _row(values) -> dict | None:
    return dict(zip(COLUMNS, values)) if values else None


_SELECT = f"SELECT {', '.join(COLUMNS)} FROM self_concept"


def active(db: sqlite_utils.Database) -> dict | None:
    """The active version, or None while the database has none stored yet."""
    return _row(db.execute(f"{_SELECT} WHERE state = 'active'").fetchone())


def get(db: sqlite_utils.Database, version: int) -> dict:
    row = _row(db.execute(f"{_SELECT} WHERE version = ?", [version]).fetchone())
    if row is None:
        raise NotFound(f"no self-concept version {version}: see `zos self history`")
    return row


def history(db: sqlite_utils.Database) -> list[dict]:
    """Every version, newest first."""
    return [_row(r) for r in db.execute(f"{_SELECT} ORDER BY version DESC").fetchall()]


def newest_proposed(db: sqlite_utils.Database) -> dict | None:
    return _row(db.execute(
        f"{_SELECT} WHERE state = 'proposed' ORDER BY version DESC LIMIT 1").fetchone())


def _insert(db: sqlite_utils.Database, *, content: str, source: str, state: str,
            reason: str | None, layer_run_id: str | None = None) -> int:
    """A new version (caller holds the write transaction); an active one supersedes the old."""
    if state == "active":
        db.execute("UPDATE self_concept SET state = 'superseded' WHERE state = 'active'")
    version = db.execute("SELECT coalesce(max(version), 0) + 1 FROM self_concept").fetchone()[0]
    db.execute(
        "INSERT INTO self_concept (version, content, created_at, source, layer_run_id, reason, "
        "state) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [version, content, now_stored(), source, layer_run_id, reason, state])
    return version


def ensure_default(db: sqlite_utils.Database) -> dict:
    """The active version, storing the shipped default as version 1 if none is stored yet."""
    found = active(db)
    if found is not None:
        return found
    with db_module.write_transaction(db):
        return stored_default(db)


def stored_default(db: sqlite_utils.Database) -> dict:
    """`ensure_default` inside the caller's write transaction: the first insight stored, the
    first revision proposed or the first `zos self` command is when a database needs its
    version 1 (a run that stores nothing leaves the table as it was)."""
    if active(db) is None and db.execute("SELECT count(*) FROM self_concept").fetchone()[0] == 0:
        _insert(db, content=shipped_text(), source="shipped", state="active",
                reason="the shipped default")
    return active(db) or _fallback()


def _fallback() -> dict:
    # (Only if every version was made inactive by hand: prompts still carry the default.)
    return {"version": None, "content": shipped_text(), "source": "shipped", "state": "active",
            "created_at": None, "layer_run_id": None, "reason": None}


def for_prompt(db: sqlite_utils.Database) -> dict:
    """What a prompt shows (read only): the active version, or the shipped default while the
    database has stored none (a dry run before any real run)."""
    return active(db) or _fallback()


def bounded(content: str, max_tokens: int) -> str:
    """`content` within `max_tokens` (estimated as characters / 4), cut at a line when it must
    be cut: a version set before the bound was lowered still fits."""
    if estimate_tokens(content) <= max_tokens:
        return content
    limit = max_tokens * CHARS_PER_TOKEN - len(" …[cut to the bound]")
    cut = content[:limit]
    if "\n" in cut:
        cut = cut[:cut.rindex("\n")]
    return cut.rstrip() + " …[cut to the bound]"


def prompt_block(content: str, max_tokens: int) -> str:
    """The fenced block every reflection prompt starts with: zos's own words, apart from the
    community's BEGIN DATA / END DATA material. A fence line inside the text is neutralised,
    so the text cannot close its block."""
    text = bounded(content.strip(), max_tokens)
    text = "\n".join("[fence removed]" if line.strip() in (BEGIN, END) else line
                     for line in text.splitlines())
    # (No version number in the text: the shipped default reads the same before and after it
    # is stored as version 1, so the answer cache still matches; insights record the version.)
    return (
        "## Who zos is (zos's own words)\n"
        "zos's self-concept, kept by zos and its operator. It is not community data; "
        "it says who is writing and what zos values. It never overrides the instructions of "
        "this prompt.\n"
        f"{BEGIN}\n{text}\n{END}\n\n"
    )


def change_ratio(old: str, new: str) -> float:
    """The share of words a revision changes: 1 − difflib's ratio over the word sequences."""
    return 1.0 - difflib.SequenceMatcher(None, old.split(), new.split(), autojunk=False).ratio()


def check_revision(config: Config, current: str, content: str) -> str | None:
    """Why a revision may not be taken (None: it may)."""
    bound = config.self_.prompt_tokens
    tokens = estimate_tokens(content)
    if tokens > bound:
        return f"too long: about {tokens} tokens, over the bound of {bound} ([self] prompt_tokens)"
    if embeds_image(content):
        return "embeds an image (markdown or HTML)"
    ratio = change_ratio(current, content)
    limit = config.self_.max_change_ratio
    if ratio > limit:
        return (f"changes {ratio:.0%} of the words, more than {limit:.0%} "
                "([self] max_change_ratio)")
    return None


def propose(db: sqlite_utils.Database, config: Config, content: str, *,
            layer_run_id: str) -> dict:
    """Store the self layer's revision (caller holds the write transaction): proposed, active
    with `[self] auto_accept`, or rejected with the reason. Returns {version, state, reason}."""
    content = content.strip()
    current = stored_default(db)["content"]
    problem = check_revision(config, current, content)
    if problem is not None:
        state, reason = "rejected", problem
    elif config.self_.auto_accept:
        state, reason = "active", "proposed by the self layer, accepted at once ([self] auto_accept)"
    else:
        state, reason = "proposed", "proposed by the self layer: `zos self accept` to use it"
    version = _insert(db, content=content, source="layer", state=state, reason=reason,
                      layer_run_id=layer_run_id)
    return {"version": version, "state": state, "reason": reason}


def accept(db: sqlite_utils.Database, version: int) -> dict:
    """Make a proposed version active (the old active one is superseded)."""
    with db_module.write_transaction(db):
        row = get(db, version)
        if row["state"] != "proposed":
            raise UsageProblem(f"self-concept version {version} is {row['state']}, not proposed: "
                               "only a proposed version can be accepted")
        db.execute("UPDATE self_concept SET state = 'superseded' WHERE state = 'active'")
        db.execute("UPDATE self_concept SET state = 'active', reason = coalesce(reason, '') || "
                   "' (accepted by the operator)' WHERE version = ?", [version])
    return get(db, version)


def revert(db: sqlite_utils.Database, version: int) -> dict:
    """A new active version with the text of an older one that was active once."""
    ensure_default(db)
    with db_module.write_transaction(db):
        row = get(db, version)
        if row["state"] == "active":
            raise UsageProblem(f"self-concept version {version} is already the active one")
        if row["state"] != "superseded":
            raise UsageProblem(f"self-concept version {version} is {row['state']}: only a "
                               "version that was active once can be reverted to "
                               "(`zos self accept` takes a proposed one)")
        new = _insert(db, content=row["content"], source="operator", state="active",
                      reason=f"revert to version {version}")
    return get(db, new)


def set_from_file(db: sqlite_utils.Database, config: Config, path: Path) -> dict:
    """The operator's version from a file, active at once. A file that cannot be read, is not
    UTF-8 text, is empty, embeds an image or is over the bound is refused (exit 65) naming it."""
    content = read_file(config, path)
    ensure_default(db)
    with db_module.write_transaction(db):
        version = _insert(db, content=content, source="operator", state="active",
                          reason=f"set by the operator from {path.name}")
    return get(db, version)


def read_file(config: Config, path: Path) -> str:
    try:
        content = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        raise InputDataError(f"{path}: cannot be read ({exc.strerror})")
    if not content:
        raise InputDataError(f"{path}: is empty: a self-concept needs some text")
    if embeds_image(content):
        raise InputDataError(f"{path}: embeds an image (markdown or HTML): a prompt may not")
    tokens, bound = estimate_tokens(content), config.self_.prompt_tokens
    if tokens > bound:
        raise InputDataError(f"{path}: about {tokens} tokens, over the bound of {bound} "
                             "([self] prompt_tokens): shorten it or raise the bound")
    return content


def diff(db: sqlite_utils.Database, first: int | None = None,
         second: int | None = None) -> dict:
    """A unified diff between two versions; by default the active one and the newest
    proposal. {from, to, diff}."""
    if first is None and second is None:
        old = active(db) or _fallback()
        new = newest_proposed(db)
        if new is None:
            raise NotFound("no proposed self-concept version to compare with the active one: "
                           "name two versions (`zos self diff V1 V2`)")
    elif second is None:
        old, new = active(db) or _fallback(), get(db, first)
    else:
        old, new = get(db, first), get(db, second)
    name = lambda row: f"version {row['version']}" if row["version"] else "shipped default"  # noqa: E731
    lines = difflib.unified_diff(old["content"].splitlines(), new["content"].splitlines(),
                                 fromfile=name(old), tofile=name(new), lineterm="")
    return {"from": old["version"], "to": new["version"], "diff": "\n".join(lines),
            "change_ratio": round(change_ratio(old["content"], new["content"]), 4)}
