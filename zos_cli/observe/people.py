"""The people writes of one `observe` batch: users, per-server tracking, roles, role sets.

`batch` is the writer's `observe.batch.BatchRows` in progress (see `observe.rows`). A long run (an export
ingest) sees the same few hundred people in every batch; `WrittenPeople` remembers what this
writer last wrote for each of them, so a row whose upsert would change nothing is not sent
again (a users row, a role, a user's role set). Every one of those upserts is idempotent —
writing the same values twice leaves the row as writing them once — so skipping a repeat is
exact as long as no one else changed the rows in between: the memory is dropped whenever
another connection committed (`PRAGMA data_version`), and only a writer whose caller makes
no other people writes on its connection between batches turns it on (`zos ingest`; `zos poll`
records API member roles in the same transactions, so it does not).
"""

from __future__ import annotations

from zos_cli.ids import json_ids
from zos_cli.observe.rows import ensure_server
from zos_cli.privacy.gate import gate_role, holds_role
from zos_cli.privacy.quarantine import apply_gate_change
from zos_cli.records import UserRecord

_MIN_SEEN = ("CASE WHEN {c} IS NULL OR excluded.{c} < {c} THEN coalesce(excluded.{c}, {c}) "
             "ELSE {c} END")
_MAX_SEEN = ("CASE WHEN {c} IS NULL OR excluded.{c} > {c} THEN coalesce(excluded.{c}, {c}) "
             "ELSE {c} END")

# A profile field takes the observation's value only when the observation is not older than
# the one the row holds (exports overlap and arrive in any order: the newest exportedAt wins).
_NEWER = "coalesce(excluded.profile_observed_at, '') >= coalesce(profile_observed_at, '')"
_PROFILE = "CASE WHEN " + _NEWER + " THEN coalesce(excluded.{c}, {c}) ELSE {c} END"
_UPSERT_USERS = (
    "INSERT INTO users (id, name, display_name, discriminator, avatar_url, is_bot, "
    "is_deleted, profile_observed_at, first_seen_at, last_seen_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT (id) DO UPDATE SET name = {_PROFILE.format(c='name')}, "
    f"display_name = {_PROFILE.format(c='display_name')}, "
    f"discriminator = {_PROFILE.format(c='discriminator')}, "
    f"avatar_url = {_PROFILE.format(c='avatar_url')}, "
    f"is_bot = {_PROFILE.format(c='is_bot')}, is_deleted = {_PROFILE.format(c='is_deleted')}, "
    f"profile_observed_at = {_MAX_SEEN.format(c='profile_observed_at')}, "
    f"first_seen_at = {_MIN_SEEN.format(c='first_seen_at')}, "
    f"last_seen_at = {_MAX_SEEN.format(c='last_seen_at')}")
_UPSERT_TRACKING = (
    "INSERT INTO user_server_tracking (user_id, server_id, nickname, first_seen_at, "
    "last_seen_at, message_count, roles_known, roles_refreshed_at, profile_observed_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, server_id) DO UPDATE SET "
    f"nickname = {_PROFILE.format(c='nickname')}, "
    f"first_seen_at = {_MIN_SEEN.format(c='first_seen_at')}, "
    f"last_seen_at = {_MAX_SEEN.format(c='last_seen_at')}, "
    "message_count = message_count + excluded.message_count, "
    "roles_known = max(roles_known, excluded.roles_known), "
    f"roles_refreshed_at = {_MAX_SEEN.format(c='roles_refreshed_at')}, "
    f"profile_observed_at = {_MAX_SEEN.format(c='profile_observed_at')}")
# (user ?1, server ?2, observed ?3): the observation is not older than the stored role set.
_NOT_OLDER = ("coalesce((SELECT roles_refreshed_at FROM user_server_tracking WHERE user_id = ?1 "
              "AND server_id = ?2), '') <= coalesce(?3, '')")
_NEWER_ROLE = "coalesce(excluded.observed_at, '') >= coalesce(observed_at, '')"
_ROLE_FIELD = "CASE WHEN " + _NEWER_ROLE + " THEN coalesce(excluded.{c}, {c}) ELSE {c} END"
UPSERT_ROLE = (
    "INSERT INTO roles (id, server_id, name, color, position, observed_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    f"name = {_ROLE_FIELD.format(c='name')}, color = {_ROLE_FIELD.format(c='color')}, "
    f"position = {_ROLE_FIELD.format(c='position')}, "
    f"observed_at = {_MAX_SEEN.format(c='observed_at')}")

# Rows remembered per kind before the memory starts over (bounds a run over a huge server).
REMEMBERED_LIMIT = 20_000


def is_deleted_user(user: UserRecord) -> bool:
    """Discord replaces a deleted account by 'Deleted User' (or 'deleted_user_…')."""
    name = user.name or ""
    return name == "Deleted User" or name.startswith("deleted_user_")


class WrittenPeople:
    """What one writer last wrote per user, role and role set, while no one else wrote."""

    def __init__(self):
        self.users: dict[str, tuple] = {}       # id → (values without the span, first, last)
        self.roles: dict[str, tuple] = {}       # id → the roles row
        # user → (server, role ids, observed at)
        self.role_sets: dict[str, tuple[str, frozenset, str]] = {}
        self.data_version: int | None = None

    def still_valid(self, db) -> None:
        """Called inside each batch's transaction: forget everything if another connection
        committed since the last batch (it may have changed or deleted these rows)."""
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self.data_version:
            self.forget()
            self.data_version = version
        for remembered in (self.users, self.roles, self.role_sets):
            if len(remembered) > REMEMBERED_LIMIT:
                remembered.clear()

    def forget(self) -> None:
        self.users.clear()
        self.roles.clear()
        self.role_sets.clear()


class _People:
    """What one batch learned about people. Per (user id, server id or None) a row
    [nickname, first seen, last seen, new messages, roles known, roles observed at, nickname
    observed at]; the users' spans are folded from these rows afterwards. The latest record
    per user and per (user, server) the latest role set shown — latest by observation time
    (an export's exportedAt, a poll's time), then by message order: a batch may hold
    overlapping exports of different ages."""

    __slots__ = ("places", "latest", "observed", "roles_now")

    def __init__(self):
        self.places: dict[tuple[str, str | None], list] = {}
        self.latest: dict[str, UserRecord] = {}
        self.observed: dict[str, str] = {}      # user → when `latest` was observed
        self.roles_now: dict[tuple[str, str], list] = {}

    def note(self, user: UserRecord, server_id, at, authored: bool, observed) -> None:
        when = observed or ""  # (compared as stored UTC text; unknown counts as oldest)
        uid = user.id
        if when >= self.observed.get(uid, ""):
            self.latest[uid] = user
            self.observed[uid] = when
        key = (uid, server_id)
        row = self.places.get(key)
        roles = user.roles
        if row is None:
            self.places[key] = [user.nickname or None, at, at, int(authored),
                                int(roles is not None), observed if roles is not None else None,
                                observed]
        else:
            if user.nickname and when >= (row[6] or ""):
                row[0], row[6] = user.nickname, observed
            if at is not None:
                if row[1] is None or at < row[1]:
                    row[1] = at
                if row[2] is None or at > row[2]:
                    row[2] = at
            if authored:
                row[3] += 1
            if roles is not None:
                if row[5] is not None and when < row[5]:
                    return  # an older role set than the one already taken
                row[4], row[5] = 1, observed
        if roles is not None and server_id is not None:
            self.roles_now[key] = roles


def write_people(batch) -> None:
    """Users (the latest record, first/last seen as author or reactor), per-server tracking,
    roles and each user's current role set, from the new and newer observations; and, for
    the counts, every user each source saw (written or not)."""
    people = _People()
    note = people.note
    new = batch.new_id_set
    for obs in batch.effective:
        m, sid = obs.message, obs.channel.server_id
        at, observed = m.created_at, m.observed_at
        note(m.author, sid, at, m.id in new, observed)
        for u in m.mentions:
            note(u, sid, None, False, observed)
        for r in m.reactions or ():
            for u in r.users:
                note(u, sid, at, False, observed)
    _count_seen(batch, people.latest)
    if not people.latest:
        return
    conn = batch.db.conn
    remembered = batch.written_people
    user_rows = _user_rows(people.places, people.latest, people.observed, remembered)
    if user_rows:
        conn.executemany(_UPSERT_USERS, user_rows)
    tracking = [(uid, sid, *row) for (uid, sid), row in people.places.items()
                if sid is not None]
    if tracking:
        conn.executemany(_UPSERT_TRACKING, tracking)
    if people.roles_now:
        _write_roles(batch, people.roles_now, people.places, remembered)


def _count_seen(batch, latest: dict[str, UserRecord]) -> None:
    """Who each source saw: the effective observations' users are `latest`; the others
    (older or equal observations of stored messages) are walked here."""
    by_source = batch.counts.users_by_source
    sources = {obs.source_id for obs in batch.observations}
    effective = batch.effective
    if len(sources) == 1:
        seen = by_source[next(iter(sources))]
        seen.update(latest)
        rest = batch.observations if len(effective) != len(batch.observations) else ()
    else:
        for obs in effective:
            _add_users(by_source[obs.source_id], obs.message)
        rest = batch.observations
    if rest:
        written = {id(obs) for obs in effective}
        for obs in rest:
            if id(obs) not in written:
                _add_users(by_source[obs.source_id], obs.message)


def _add_users(seen: set[str], m) -> None:
    seen.add(m.author.id)
    seen.update(u.id for u in m.mentions)
    for r in m.reactions or ():
        seen.update(u.id for u in r.users)


def _user_rows(places, latest, observed: dict[str, str],
               remembered: WrittenPeople | None) -> list[tuple]:
    spans: dict[str, list] = {}
    for (uid, _), row in places.items():
        first, last = row[1], row[2]
        if first is None:
            continue
        span = spans.get(uid)
        if span is None:
            spans[uid] = [first, last]
        else:
            if first < span[0]:
                span[0] = first
            if last > span[1]:
                span[1] = last
    rows = []
    for uid, u in latest.items():
        values = (u.name, u.display_name or u.nickname or u.name, u.discriminator,
                  u.avatar_url, int(u.is_bot), int(is_deleted_user(u)), observed[uid] or None)
        first, last = spans.get(uid) or (None, None)
        if remembered is not None:
            before = remembered.users.get(uid)
            if before is not None and before[0] == values:
                # The stored span already covers this one: the upsert would change nothing.
                if first is None or (before[1] is not None and before[1] <= first
                                     and last <= before[2]):
                    continue
            if before is not None and before[1] is not None:
                # min/max: the row now holds the union of what was written.
                first = before[1] if first is None or before[1] < first else first
                last = before[2] if last is None or before[2] > last else last
            remembered.users[uid] = (values, first, last)
        rows.append((uid, *values, first, last))
    return rows


def _write_roles(batch, roles_now: dict[tuple[str, str], list], places: dict,
                 remembered: WrittenPeople | None) -> None:
    conn = batch.db.conn
    role_rows = {}
    for (uid, sid), roles in roles_now.items():
        observed = places[(uid, sid)][5]
        for r in roles:
            known = role_rows.get(r.id)
            if known is None or (observed or "") >= (known[5] or ""):  # the newest shown
                role_rows[r.id] = (r.id, sid, r.name, r.color, r.position, observed)
    if remembered is not None:
        role_rows = {rid: row for rid, row in role_rows.items()
                     if remembered.roles.get(rid) != row}
        remembered.roles.update(role_rows)
        roles_now = _changed_role_sets(roles_now, places, remembered.role_sets)
    if role_rows:
        conn.executemany(UPSERT_ROLE, list(role_rows.values()))
    if not roles_now:
        return
    gated = _gate_holders(batch, roles_now)  # before: who held their server's gate role
    # The role set an observation shows is the user's whole current set in that server —
    # unless a newer one is stored (the tracking upsert, just made, keeps the newest time).
    conn.executemany(
        "DELETE FROM user_roles WHERE user_id = ?1 AND server_id = ?2 "
        "AND role_id NOT IN (SELECT value FROM json_each(?4)) AND " + _NOT_OLDER,
        [(uid, sid, places[(uid, sid)][5], json_ids(r.id for r in roles))
         for (uid, sid), roles in roles_now.items()],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO user_roles (user_id, role_id, server_id, seen_at) "
        "SELECT ?1, ?3, ?2, ?5 WHERE " + _NOT_OLDER.replace("?3", "?4"),
        [(uid, sid, r.id, places[(uid, sid)][5], batch.now)
         for (uid, sid), roles in roles_now.items() for r in roles],
    )
    for (uid, sid), (role, held) in gated.items():
        holds = holds_role(batch.db, uid, role)
        if holds != held:  # docs/privacy.md#quarantine: losing the role quarantines, regaining restores
            apply_gate_change(batch.db, sid, uid, holds)


def _gate_holders(batch, roles_now: dict) -> dict[tuple[str, str], tuple[str, bool]]:
    """(user, server) → (the server's gate role, whether the user holds it now), for the
    role sets about to be written in servers that have a gate role."""
    roles: dict[str, str | None] = {}
    out = {}
    for uid, sid in roles_now:
        if sid not in roles:
            roles[sid] = gate_role(batch.db, batch.config, sid)
        if roles[sid]:
            out[(uid, sid)] = (roles[sid], holds_role(batch.db, uid, roles[sid]))
    return out


def _changed_role_sets(roles_now: dict[tuple[str, str], list], places: dict,
                       role_sets: dict[str, tuple[str, frozenset, str]]) -> dict:
    """The role sets to write: all but those this writer wrote last for the same user.
    user_roles is keyed by (user, role), so one user's writes in two servers can interact
    (a role row of one server blocks the same role id in another): only the user's last
    write, in one server, is remembered, and a user shown in two servers at once is written
    whole."""
    servers_of: dict[str, int] = {}
    for uid, _ in roles_now:
        servers_of[uid] = servers_of.get(uid, 0) + 1
    changed = {}
    for (uid, sid), roles in roles_now.items():
        if servers_of[uid] > 1:
            role_sets.pop(uid, None)
            changed[(uid, sid)] = roles
            continue
        shown = (sid, frozenset(r.id for r in roles), places[(uid, sid)][5])
        if role_sets.get(uid) != shown:
            role_sets[uid] = shown
            changed[(uid, sid)] = roles
    return changed


def record_member_roles(db, *, server_id: str, user_id: str, user: dict, nickname: str | None,
                        roles: list[tuple[str, str | None, str | None, int | None]],
                        at: str) -> None:
    """One member's whole current role set in a server as the API reports it (no roles when
    no longer a member), replacing the stored one: the server and user rows it refers to,
    the roles (id, name, color, position), user_roles, and the tracking row's
    `roles_known`. `user` is the API's user object (or just {"id": …}). Caller holds the
    write transaction; `sources.discord.roles` decides what changed."""
    ensure_server(db, server_id)
    # The row user_roles refers to. Seen times are left to the observations (a member lookup
    # is not the user seen: a backfill of 2020 history would make everyone last seen today).
    db.execute(
        "INSERT INTO users (id, name, display_name, discriminator, is_bot) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        [user_id, user.get("username"), nickname or user.get("global_name")
         or user.get("username"), user.get("discriminator"), int(bool(user.get("bot")))],
    )
    for role_id, name, color, position in roles:
        db.execute(UPSERT_ROLE, [role_id, server_id, name, color, position, at])
    db.execute("DELETE FROM user_roles WHERE user_id = ? AND server_id = ?", [user_id, server_id])
    db.conn.executemany(
        "INSERT INTO user_roles (user_id, role_id, server_id, seen_at) VALUES (?, ?, ?, ?)",
        [(user_id, role_id, server_id, at) for role_id in sorted((r[0] for r in roles), key=int)],
    )
    db.execute(
        "INSERT INTO user_server_tracking (user_id, server_id, nickname, roles_known, "
        "roles_refreshed_at, profile_observed_at) VALUES (?, ?, ?, 1, ?, ?) "
        "ON CONFLICT (user_id, server_id) DO UPDATE SET roles_known = 1, "
        "roles_refreshed_at = excluded.roles_refreshed_at, "
        "nickname = coalesce(excluded.nickname, nickname), "
        "profile_observed_at = excluded.profile_observed_at",
        [user_id, server_id, nickname, at, at],
    )
