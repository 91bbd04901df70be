"""DM-reading consent (docs/privacy.md#dm-consent): grants and revokes, and the one gate every job asks.

A grant is a row in `consents`; a revoke stamps `revoked_at` on the active grant (once); a
later grant is a new row. Consent rows are never overwritten or deleted, and every change is
an `events` row (ids only). A revoke quarantines what was made from the user's DMs, a new
grant releases it; `revoke_and_forget` and `erase` hand over to zos_cli.privacy to delete. `dm_may_be_stored` is the one answer to "may this DM be stored?":
ingest, poll and reflect all ask it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlite_utils

from zos_cli.store import db as db_module
from zos_cli.store.audit import record_event
from zos_cli.errors import UsageProblem
from zos_cli.ids import is_discord_id, new_id
from zos_cli.privacy import erase_user, forget_dm, lift_dm_quarantine, quarantine_dm_insights
from zos_cli.privacy import message_index
from zos_cli.timeutil import now_stored, parse_time, to_stored

log = logging.getLogger("zos.consent")

CONSENT_TYPES = ("dm_read",)
_COLUMNS = ("id", "user_id", "consent_type", "granted_at", "revoked_at", "server_id", "note")


def dm_may_be_stored(db: sqlite_utils.Database, participant_ids: Iterable[str], *,
                     self_id: str | None = None) -> bool:
    """True when every participant (everyone in the DM except zos itself) holds an active
    `dm_read` consent. A DM with no known participant is never stored: nobody consented.
    `self_id`: zos's own account, left out of stored participant lists that were made while
    it was not known (then it counted as a participant, until known)."""
    wanted = {p for p in participant_ids if p and p != self_id}
    return bool(wanted) and not without_consent(db, wanted)


def without_consent(db: sqlite_utils.Database, user_ids: Iterable[str]) -> list[str]:
    """Those of these users who hold no active `dm_read` consent, sorted by id: whom a DM
    refused by `dm_may_be_stored` still waits for."""
    wanted = sorted({u for u in user_ids if u}, key=int)
    if not wanted:
        return []
    granted = {row[0] for row in db.execute(
        f"SELECT DISTINCT user_id FROM consents WHERE consent_type = 'dm_read' "
        f"AND revoked_at IS NULL AND user_id IN ({','.join('?' * len(wanted))})", wanted)}
    return [u for u in wanted if u not in granted]


def granted_since(db: sqlite_utils.Database, participant_ids: Iterable[str], mark: str) -> bool:
    """Whether a `dm_read` grant of any of these users was recorded after `mark`, the id of
    another row (ids are ULIDs: they sort by the time they were made, whatever `--at` says)."""
    wanted = sorted({p for p in participant_ids if p})
    if not wanted:
        return False
    return db.execute(
        f"SELECT 1 FROM consents WHERE consent_type = 'dm_read' AND id > ? "
        f"AND user_id IN ({','.join('?' * len(wanted))}) LIMIT 1", [mark, *wanted]
    ).fetchone() is not None


def resolve_user(db: sqlite_utils.Database, user: str) -> str:
    """A Discord id as is, or a known `@name` (user name or display name) to its id."""
    text = user.strip()
    if is_discord_id(text):
        return text
    name = text[1:] if text.startswith("@") else text
    if not name:
        raise UsageProblem("USER is empty: give a Discord user id or a known @name")
    ids: list[str] = []
    # The user name as typed, then ignoring case, then the display name (same two ways).
    for column, collate in (("name", ""), ("name", " COLLATE NOCASE"),
                            ("display_name", ""), ("display_name", " COLLATE NOCASE")):
        ids = [r[0] for r in db.execute(
            f"SELECT id FROM users WHERE {column} = ?{collate} ORDER BY id", [name])]
        if ids:
            break
    if not ids:
        raise UsageProblem(
            f"no known user named @{name}: give their Discord id instead (right-click the user "
            "in Discord with developer mode on, Copy User ID)"
        )
    if len(ids) > 1:
        raise UsageProblem(f"@{name} matches several users ({', '.join(ids)}): give the id")
    return ids[0]


def _active(db: sqlite_utils.Database, user_id: str, consent_type: str) -> dict | None:
    row = db.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM consents WHERE user_id = ? AND consent_type = ? "
        "AND revoked_at IS NULL ORDER BY granted_at DESC, id DESC LIMIT 1",
        [user_id, consent_type],
    ).fetchone()
    return dict(zip(_COLUMNS, row)) if row else None


def _check_type(consent_type: str) -> None:
    if consent_type not in CONSENT_TYPES:
        raise UsageProblem(
            f"unknown consent type {consent_type!r}: use one of {', '.join(CONSENT_TYPES)}"
        )


def _when(at: str | None) -> str:
    if at is None:
        return now_stored()
    try:
        when = parse_time(at)
    except ValueError:
        raise UsageProblem(f"--at {at!r} is not an ISO-8601 time") from None
    try:
        return to_stored(when)
    except ValueError as exc:
        raise UsageProblem(f"--at {at!r} is {exc}") from None


def grant(db: sqlite_utils.Database, user: str, *, consent_type: str = "dm_read",
          server_id: str | None = None, note: str | None = None, at: str | None = None,
          config=None) -> dict:
    """Record a grant (a new row) unless one is already active. Returns the active row with
    `changed` saying whether a row was written. The user's stored DMs whose every participant
    now consents go back into the message index (`config`: to know zos's own account)."""
    _check_type(consent_type)
    if server_id is not None and not is_discord_id(server_id):
        raise UsageProblem(f"--server {server_id!r} is not a Discord server id (digits)")
    user_id = resolve_user(db, user)
    when = _when(at)
    with db_module.write_transaction(db):
        active = _active(db, user_id, consent_type)
        if active is not None:
            return {**active, "active": True, "changed": False}
        row = {"id": new_id(), "user_id": user_id, "consent_type": consent_type,
               "granted_at": when, "revoked_at": None, "server_id": server_id, "note": note}
        db.execute(
            f"INSERT INTO consents ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 7)})",
            [row[c] for c in _COLUMNS],
        )
        record_event(db, "consent_granted",
                     {"consent_id": row["id"], "user_id": user_id, "consent_type": consent_type,
                      "server_id": server_id}, when)
        # What an earlier revoke quarantined comes back (insights held for other reasons stay).
        restored = lift_dm_quarantine(db, user_id)
        me = db_module.self_user_id(db, config)
        message_index.restore_channels(db, [
            channel for channel, people in message_index.dm_channels_of(db, user_id)
            if dm_may_be_stored(db, people, self_id=me)])
    log.info("consent %s granted to %s (%s insights restored)", consent_type, user_id, restored)
    return {**row, "active": True, "changed": True, "insights_restored": restored}


def revoke(db: sqlite_utils.Database, user: str, *, consent_type: str = "dm_read",
           at: str | None = None) -> dict:
    """Stamp `revoked_at` on the active grant. With none active, nothing changes
    (`changed` false). Returns {user_id, consent_type, revoked_at, changed, consent_id}."""
    _check_type(consent_type)
    user_id = resolve_user(db, user)
    when = _when(at)
    with db_module.secure_delete(db), db_module.write_transaction(db):
        active = _active(db, user_id, consent_type)
        if active is None:
            return {"user_id": user_id, "consent_type": consent_type, "consent_id": None,
                    "revoked_at": None, "active": False, "changed": False,
                    "insights_quarantined": 0}
        if when < active["granted_at"]:
            raise UsageProblem(f"--at {when} is before the grant ({active['granted_at']})")
        db.execute("UPDATE consents SET revoked_at = ? WHERE id = ?", [when, active["id"]])
        quarantined = quarantine_dm_insights(db, user_id)
        # Their DMs stay stored (until a forget) but may no longer be used: out of the index.
        message_index.after_revoke(db, user_id)
        record_event(db, "consent_revoked",
                     {"consent_id": active["id"], "user_id": user_id, "consent_type": consent_type,
                      "insights_quarantined": quarantined}, when)
    log.info("consent %s of %s revoked (%s insights quarantined)", consent_type, user_id,
             quarantined)
    return {"user_id": user_id, "consent_type": consent_type, "consent_id": active["id"],
            "revoked_at": when, "active": False, "changed": True,
            "insights_quarantined": quarantined}


def revoke_and_forget(db: sqlite_utils.Database, user: str, *, db_path, consent_type: str =
                      "dm_read", at: str | None = None, include_backups: bool = False) -> dict:
    """`consent revoke --forget`: revoke (when still active), then erase the user's DM
    channels and everything made from them. Returns the revoke result with a `purge` report."""
    result = revoke(db, user, consent_type=consent_type, at=at)
    report = forget_dm(db, result["user_id"], db_path=db_path, include_backups=include_backups)
    return {**result, "purge": report.as_dict()}


def erase(db: sqlite_utils.Database, user: str, *, db_path,
          include_backups: bool = False) -> dict:
    """`consent erase`: revoke any active consent, then remove everything about the user."""
    result = revoke(db, user)
    report = erase_user(db, result["user_id"], db_path=db_path, include_backups=include_backups)
    return {"user_id": result["user_id"], "consent_revoked": result["changed"],
            "purge": report.as_dict()}


def list_consents(db: sqlite_utils.Database, *, active_only: bool = False) -> list[dict]:
    """Every grant row (newest first), with the user's name when known."""
    where = "WHERE c.revoked_at IS NULL" if active_only else ""
    rows = db.execute(
        f"SELECT c.user_id, c.consent_type, c.granted_at, c.revoked_at, c.id, c.server_id, "
        f"c.note, u.name FROM consents c LEFT JOIN users u ON u.id = c.user_id {where} "
        "ORDER BY c.granted_at DESC, c.id DESC"
    ).fetchall()
    keys = ("user_id", "consent_type", "granted_at", "revoked_at", "id", "server_id", "note",
            "user_name")
    return [dict(zip(keys, r)) for r in rows]


def consent_status(db: sqlite_utils.Database, user: str, *,
                   consent_type: str = "dm_read") -> dict:
    """Whether the user's consent is active now, and the history of grants and revokes."""
    _check_type(consent_type)
    user_id = resolve_user(db, user)
    name = db.execute("SELECT name FROM users WHERE id = ?", [user_id]).fetchone()
    history = [
        dict(zip(_COLUMNS, r))
        for r in db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM consents WHERE user_id = ? AND consent_type = ? "
            "ORDER BY granted_at, id",
            [user_id, consent_type],
        )
    ]
    active = next((h for h in reversed(history) if h["revoked_at"] is None), None)
    return {
        "user_id": user_id,
        "user_name": name[0] if name else None,
        "consent_type": consent_type,
        "active": active is not None,
        "granted_at": active["granted_at"] if active else None,
        "revoked_at": None if active else (history[-1]["revoked_at"] if history else None),
        "history": history,
    }
