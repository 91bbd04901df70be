"""A plain reference model of salience earning, written from docs/salience.md (once the README's
*Salience* section), not from the engine: one event at a time, each transfer given one by one,
balances in a dict. `reference_balances(texts, config)` reads the raw DiscordChatExporter JSON
of one ingest run and returns {topic_key: balance}.

config (plain dict, every key optional): caps {field: cap}, weights {name: w}, focus
{server: f}, gate {server: role id}, threads_as_topics {server: bool}, self_user_id, consents
(ids with an active dm_read grant), propagation, spillover, warm_threshold, warming_amount.

Readings taken where docs/salience.md says nothing (the engine's, reported as open):
zos's own account is an ordinary user in servers (its messages and reactions earn, it forms
dyads), except that a mention of it earns only the self topic; a global dyad warmed by a
global user's earn crossing the threshold is warm for the event's later earns only.
"""

from __future__ import annotations

import json
import re

CAPS = {"server_user": 100.0, "channel": 150.0, "thread": 50.0, "dyad": 80.0,
        "user_in_channel": 40.0, "dyad_in_channel": 30.0, "subject": 60.0, "role": 80.0,
        "emoji": 60.0, "server_self": 100.0, "global_user": 150.0, "global_dyad": 100.0,
        "global_self": 200.0}
WEIGHTS = {"message": 1.0, "media_multiplier": 1.2, "reply": 1.5, "mention": 2.0, "emoji": 0.5,
           "thread_create": 2.0, "reaction": 0.5, "self_mention": 5.0, "dm": 1.5}
SERVER_CAP = {"user": "server_user", "self": "server_self"}  # other kinds: the kind's name
GLOBAL_CAP = {"user": "global_user", "dyad": "global_dyad", "self": "global_self"}
THREAD_TYPES = {"GuildNewsThread", "GuildPublicThread", "GuildPrivateThread"}
ROLE_MENTION = re.compile(r"<@&(\d+)>")
RAW_EMOJI = re.compile(r"<a?:\w+:(\d+)>")
LINK = re.compile(r"https?://", re.IGNORECASE)


def pair(a, b):
    return tuple(sorted((a, b), key=int))


def parse(key):
    """(server or None, kind, ids) of a topic key."""
    parts = key.split(":")
    return (parts[1], parts[2], parts[3:]) if parts[0] == "server" else (None, parts[0], parts[1:])


class Reference:
    def __init__(self, config):
        self.caps = {**CAPS, **config.get("caps", {})}
        self.w = {**WEIGHTS, **config.get("weights", {})}
        self.focus = config.get("focus", {})
        self.gate = config.get("gate", {})
        self.threads_as_topics = config.get("threads_as_topics", {})
        self.self_id = config.get("self_user_id")
        self.consents = set(config.get("consents", ()))
        self.p = config.get("propagation", 0.3)
        self.s = config.get("spillover", 0.5)
        self.threshold = config.get("warm_threshold", 1.0)
        self.warming = config.get("warming_amount", 5.0)
        self.balance: dict[str, float] = {}
        self.parents: dict[str, str] = {}     # thread id → parent channel id
        self.roles: dict[tuple, set] = {}     # (server, user) → roles shown (unknown: absent)
        self.servers: dict[str, set] = {}     # user id → servers where active
        self.stored: dict[str, str] = {}      # message id → author id
        self.pairs: set[tuple] = set()        # users with a server dyad that has earned
        self.warm: set[str] = set()           # warm at the start of the current event

    # --- the arithmetic ---------------------------------------------------------------
    def cap(self, key):
        server, kind, _ = parse(key)
        return self.caps[SERVER_CAP.get(kind, kind) if server else GLOBAL_CAP[kind]]

    def bal(self, key):
        return self.balance.get(key, 0.0)

    def give(self, key, amount):
        self.balance[key] = self.bal(key) + amount

    def relates(self, t, r, used_by):
        """Whether r is one of the related topics of docs/salience.md#related-topics of t (one hop)."""
        ts, tk, ti = parse(t)
        rs, rk, ri = parse(r)
        same = rs == ts
        if tk == "user" and ts:
            return (same and rk == "dyad" and ti[0] in ri) or \
                (same and rk == "user_in_channel" and ri[1] == ti[0]) or \
                (rs is None and rk == "user" and ri == ti)
        if tk == "dyad" and ts:
            return (same and rk == "user" and ri[0] in ti) or (rs is None and rk == "dyad" and ri == ti)
        if tk == "channel":
            return same and ((rk == "user_in_channel" and ri[0] == ti[0]) or
                             (rk == "thread" and self.parents.get(ri[0]) == ti[0]))
        if tk == "thread":
            return same and rk == "channel" and ri[0] == self.parents.get(ti[0])
        if tk == "user_in_channel":
            return same and ((rk == "user" and ri == ti[1:]) or (rk == "channel" and ri == ti[:1]))
        if tk == "dyad_in_channel":
            return same and ((rk == "dyad" and ri == ti[1:]) or (rk == "channel" and ri == ti[:1])
                             or (rk == "user" and ri[0] in ti[1:]))
        if tk == "emoji":
            return same and rk == "user" and ri == [used_by]
        if tk == "user":  # global user
            return (rs is not None and rk == "user" and ri == ti) or \
                (rs is None and rk == "dyad" and ti[0] in ri)
        if tk == "dyad":  # global dyad
            return (rs is None and rk == "user" and ri[0] in ti) or \
                (rs is not None and rk == "dyad" and ri == ti)
        return False  # subjects, roles, self

    def earn(self, t, a, used_by=None):
        server, kind, ids = parse(t)
        if kind == "dyad" and server:
            self.maybe_warm_dyad(*ids)
            self.pairs.add(tuple(ids))
        # warm: at the event's start, or by a warm row before this earn's transfers are read
        receivers = [r for r in sorted(self.warm) if r != t and self.relates(t, r, used_by)]
        before = self.bal(t)
        credited = min(a, self.cap(t) - before)
        self.give(t, credited)
        if kind == "user" and not server and before <= self.threshold < self.bal(t):
            self.warm_dyads_of(ids[0])  # (warm for the event's later earns)
        overflow = a - credited
        for r in receivers:
            self.give(r, min(self.p * a, self.cap(r) - self.bal(r)))
        if overflow > 0:
            for r in receivers:
                self.give(r, min(self.s * overflow, self.cap(r) - self.bal(r)))

    def event(self, earns, used_by=None):
        """One event: warmth read once, before its earns (warm rows count as before it)."""
        self.warm = {k for k, b in self.balance.items() if b > self.threshold}
        for key, amount in earns:
            self.earn(key, amount, used_by)

    def warm_row(self, key):
        self.give(key, min(self.warming, self.cap(key)))
        self.warm.add(key)

    def warm_global_user(self, user):
        """A global user at 0 gets a warm row; then its global dyads whose users are warm."""
        if self.bal(f"user:{user}") == 0:
            self.warm_row(f"user:{user}")
            self.warm_dyads_of(user)

    def warm_dyads_of(self, user):
        for pair_ in sorted(p for p in self.pairs if user in p):
            self.maybe_warm_dyad(*pair_)

    def maybe_warm_dyad(self, a, b):
        """When both global users of a pair that has a server dyad are warm (the moment)."""
        if self.bal(f"user:{a}") > self.threshold and self.bal(f"user:{b}") > self.threshold \
                and self.bal(f"dyad:{a}:{b}") == 0:
            self.warm_row(f"dyad:{a}:{b}")

    # --- events -------------------------------------------------------------------------
    def observed(self, server, user):
        """Not gated out; then the user is active here (warmed when it is a second server)."""
        if self.gated(server, user):
            return False
        seen = self.servers.setdefault(user, set())
        if server not in seen:
            seen.add(server)
            if len(seen) == 2:
                self.warm_global_user(user)
        return True

    def gated(self, server, user):
        role = self.gate.get(server)
        return role is not None and role not in self.roles.get((server, user), ())

    def message(self, m, server, channel):
        author = m["author"]["id"]
        self.stored[m["id"]] = author
        earns = [] if self.gated(server, author) else self.earns(m, server, channel, author)
        if earns:
            self.observed(server, author)  # authored here: active
        self.event(earns, used_by=author)
        self.reactions(m, server, author)

    def earns(self, m, server, channel, author):
        """A message's earns, in the order of docs/salience.md#what-earns."""
        f, w = self.focus.get(server, 1.0), self.w
        parent = self.parents.get(channel, channel)
        place = f"server:{server}:thread:{channel}" \
            if channel != parent and self.threads_as_topics.get(server) else \
            f"server:{server}:channel:{parent}"
        earns = []
        if m["type"] == "ThreadCreated":
            earns = [(f"server:{server}:user:{author}", w["thread_create"] * f),
                     (f"server:{server}:channel:{parent}", w["thread_create"] * f)]
        elif m["type"] in ("Default", "Reply"):
            content = m["content"]
            media = bool(m["attachments"]) or bool(LINK.search(content)) or \
                any(e.get("url") for e in m["embeds"])
            a = w["message"] * (w["media_multiplier"] if media else 1.0) * f
            earns = [(f"server:{server}:user_in_channel:{parent}:{author}", a),
                     (f"server:{server}:user:{author}", a), (place, a)]
            replied = self.stored.get((m.get("reference") or {}).get("messageId"))
            others = []
            if replied is not None and replied != author:
                others.append((replied, w["reply"]))
            mentioned = sorted({u["id"] for u in m["mentions"]})
            others += [(u, w["mention"]) for u in mentioned
                       if u not in (author, replied, self.self_id)]
            for other, weight in others:
                if not self.gated(server, other):
                    a_, b_ = pair(author, other)
                    earns += [(f"server:{server}:dyad:{a_}:{b_}", weight * f),
                              (f"server:{server}:dyad_in_channel:{parent}:{a_}:{b_}", weight * f)]
            raw = RAW_EMOJI.findall(content)
            emoji = raw or [e["id"] for e in m["inlineEmojis"] if e["id"]
                            for _ in range(max(1, content.count(f":{e['name']}:")))]
            earns += [(f"server:{server}:emoji:{e}", w["emoji"] * f) for e in emoji]
            earns += [(f"server:{server}:role:{r}", w["mention"] * f)
                      for r in sorted(set(ROLE_MENTION.findall(content)))]
            if self.self_id in mentioned and self.self_id not in (author, replied):
                earns.append((f"server:{server}:self:zos", w["self_mention"] * f))
        return earns

    def reactions(self, m, server, author):
        f = self.focus.get(server, 1.0)
        author_ok = not self.gated(server, author)
        for reactor, _, emoji in sorted({(u["id"], r["emoji"]["name"], r["emoji"]["id"])
                                         for r in m["reactions"] for u in r["users"]}):
            if reactor == author or not self.observed(server, reactor):
                continue
            a = self.w["reaction"] * f
            earns = [(f"server:{server}:user:{author}", a)] if author_ok else []
            earns.append((f"server:{server}:user:{reactor}", a))
            if author_ok:
                x, y = pair(author, reactor)
                earns.append((f"server:{server}:dyad:{x}:{y}", a))
            if emoji:
                earns.append((f"server:{server}:emoji:{emoji}", a))
            self.event(earns, used_by=reactor)

    def dm(self, m, participants):
        author = m["author"]["id"]
        if m["type"] not in ("Default", "Reply"):
            return
        if author in participants:
            self.warm_global_user(author)
            targets = [author]
        else:
            targets = sorted(participants, key=int)
        self.event([(f"user:{u}", self.w["dm"]) for u in targets])


def participants(doc, self_id):
    """A DM's participants: its authors and reactors and, for a 1:1 DM, the user it is named
    after when this file shows them (docs/ingest.md#dms-and-consent: known from the file), except zos."""
    users = [u for m in doc["messages"] for u in
             [m["author"], *m["mentions"], *(u for r in m["reactions"] for u in r["users"])]]
    people = {m["author"]["id"] for m in doc["messages"]} | {
        u["id"] for m in doc["messages"] for r in m["reactions"] for u in r["users"]}
    if doc["channel"]["type"] == "DirectTextChat":
        people |= {u["id"] for u in users if u["name"] == doc["channel"]["name"]}
    return people - {self_id}


def reference_balances(texts, config) -> dict[str, float]:
    """{topic_key: balance} after ingesting these exports (JSON texts) in one run."""
    ref = Reference(config)
    docs = [json.loads(t) for t in texts]
    merged, people = [], {}  # people: a DM channel's participants, over all its files
    for doc in docs:
        server, channel = doc["guild"]["id"], doc["channel"]["id"]
        if doc["channel"]["type"] in THREAD_TYPES:
            ref.parents[channel] = doc["channel"]["categoryId"]
        for m in doc["messages"]:
            for u in [m["author"], *m["mentions"]]:
                if "roles" in u:
                    ref.roles.setdefault((server, u["id"]), set()).update(
                        r["id"] for r in u["roles"])
        people.setdefault(channel, set()).update(participants(doc, ref.self_id))
        merged += [(int(m["id"]), m, server, channel) for m in doc["messages"]]
    done = set()  # a message in several files (re-exports) is new once
    for mid, m, server, channel in sorted(merged, key=lambda item: item[0]):
        if mid in done:
            continue
        done.add(mid)
        if server != "0":
            ref.message(m, server, channel)
        elif people[channel] and people[channel] <= ref.consents:
            ref.dm(m, people[channel])
    return {k: b for k, b in ref.balance.items() if b != 0}
