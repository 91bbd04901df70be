"""Memory cards: what zos holds about one person, pair, channel or subject, in one document
(`zos insights about REF`, docs/insights.md).

`memory_card(db, ref, …)` gathers it: the strongest current insights of the topic (the same
listing as `insights list --topic KEY --sort effective`, with what a newer insight the card
could show replaced left out), the open questions those insights ask, the subjects they are
linked with, who the topic is closest to, and its salience at the card's as-of with its trend
over the 30 days before. Everything insight-borne obeys one scope filter (exactly the scope
asked for, as `insights list --scope`) and never shows a quarantined insight: a public card
holds nothing that came from a DM, not even a subject name. `insights/card_text.py` renders
it as Markdown or as a token-bounded block for a bot's system prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import sqlite_utils

from zos_cli import topics
from zos_cli.errors import NotFound
from zos_cli.ids import json_ids
from zos_cli.insights.queries import list_insights
from zos_cli.labels import Labeler, is_reference, label_rows, resolve_reference, server_place
from zos_cli.timeutil import parse_time, to_stored

if TYPE_CHECKING:
    from zos_cli.config import Insights

CARD_INSIGHTS = 10      # insights on a card (the prompt keeps those that fit its bound)
OPEN_QUESTIONS = 10
SUBJECTS = 10
CLOSEST = 5
TREND_DAYS = 30
# A change of at most this share of the larger balance (then or now) is "steady".
STEADY_SHARE = 0.05
SUBJECT_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
DOCUMENT_KEYS = ("ref", "label", "topic_key", "scope", "as_of", "insights", "open_questions",
                 "subjects", "closest", "salience")


@dataclass
class Card:
    """One memory card. `document()` is the JSON; `place` (the server's name, or
    "everywhere") lets the prompt name people without repeating it."""

    ref: str
    label: str
    topic_key: str
    scope: str
    as_of: str
    place: str
    insights: list[dict] = field(default_factory=list)
    open_questions: list[dict] = field(default_factory=list)
    subjects: list[dict] = field(default_factory=list)
    closest: list[dict] = field(default_factory=list)
    salience: dict = field(default_factory=dict)

    def document(self) -> dict:
        return {key: getattr(self, key) for key in DOCUMENT_KEYS}

    def short_name(self, label: str) -> str:
        """A label without its ` (place)`: `Jun (Tidepool Makers)` → `Jun`."""
        suffix = f" ({self.place})"
        return label[:-len(suffix)] if label.endswith(suffix) and label != suffix else label


def memory_card(db: sqlite_utils.Database, ref: str, *, as_of: str, scope: str = "public",
                server: str | None = None, global_: bool = False, config=None,
                settings: Insights | None = None, limit: int = CARD_INSIGHTS) -> Card:
    """The card of the topic `ref` names (a reference or a key: labels.resolve_reference;
    `server`, `global_`: --server, --global). `scope`: public, dm or derived (exactly that
    scope); `as_of`: the time strengths fade to and balances are summed to; `config`: for the
    privacy-gate roles of labels (None: those stored); `settings`: the half-lives.

    A reference that resolves to a topic zos has not stored yet gives an empty card; a key
    that names no stored topic is NotFound (exit 1), as for `salience show`."""
    key = resolve_reference(db, ref, config=config, server=server, global_=global_)
    topic = topics.parse(key)
    if db.execute("SELECT 1 FROM topics WHERE key = ?", [key]).fetchone() is None \
            and not is_reference(ref.strip()):
        raise NotFound(f"no topic {key} in the database: see `zos salience top` for the topics "
                       "zos knows, or give a reference such as @name")
    labeler = Labeler(db, config)
    label = labeler.labels([key])[key]
    current = list(list_insights(db, topic=key, scope=scope, current=True, limit=None,
                                 as_of=as_of, settings=settings))
    details = _details(db, [r["id"] for r in current])
    return Card(
        ref=ref, label=label, topic_key=key, scope=scope, as_of=as_of, place=server_place(db, topic.server_id),
        insights=list(label_rows(db, current[:max(limit, 0)], labeler=labeler)),
        open_questions=_open_questions(current, details),
        subjects=_subjects(db, topic, current, details, scope=scope, as_of=as_of,
                           settings=settings, labeler=labeler),
        closest=_closest(db, topic, as_of, labeler),
        salience=_salience(db, key, as_of),
    )


def _details(db, insight_ids: list[str]) -> dict[str, dict]:
    """What a listing row does not carry: subject, participants, place, open questions."""
    if not insight_ids:
        return {}
    rows = db.execute(
        "SELECT id, subject, participants, context_channel, context_thread, open_questions "
        "FROM insights WHERE id IN (SELECT value FROM json_each(?))", [json_ids(insight_ids)])
    return {i: {"subject": subject, "participants": set(_list(people)),
                "places": {c for c in (channel, thread) if c}, "questions": _list(questions)}
            for i, subject, people, channel, thread, questions in rows}


def _list(text: str | None) -> list:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _open_questions(current: list[dict], details: dict[str, dict]) -> list[dict]:
    """The questions the current insights leave open, strongest insight first; a question
    asked twice is listed once (with the stronger insight)."""
    seen, found = set(), []
    for row in current:
        for question in details.get(row["id"], {}).get("questions", []):
            text = " ".join(str(question).split())
            if text and text.casefold() not in seen:
                seen.add(text.casefold())
                found.append({"question": text, "insight_id": row["id"]})
    return found[:OPEN_QUESTIONS]


def _parts(topic: topics.Topic, refers_to: str) -> list[str]:
    kind = topics.KINDS[topic.kind]
    return [v for part, v in zip(kind.parts, topic.ids) if part.refers_to == refers_to]


def _subjects(db, topic: topics.Topic, current: list[dict], details: dict[str, dict], *,
              scope: str, as_of: str, settings, labeler: Labeler) -> list[dict]:
    """Subject topics linked with `topic`: those its own current insights name, and those
    whose current insights were made from its people's messages (all of a pair's) or in its
    channel. Only insights of the card's scope count, never a quarantined one."""
    server = topic.server_id if topic.server_id is not None else topics.ANY_SERVER
    named = {details[r["id"]]["subject"] for r in current if details.get(r["id"], {}).get("subject")}
    keys = set()
    for name in named:
        if not SUBJECT_NAME.fullmatch(name):
            continue  # (a hand-written row's subject: never a GLOB pattern)
        keys |= {k for (k,) in db.execute("SELECT key FROM topics WHERE key GLOB ?",
                                          [f"server:{server}:subject:{name}"])}
    people = set(_parts(topic, "user"))
    places = set(_parts(topic, "channel") + _parts(topic, "thread"))
    if (people or places) and topic.kind != "subject":
        subject_rows = list(list_insights(db, topic_glob=f"server:{server}:subject:*",
                                          scope=scope, current=True, limit=None, as_of=as_of,
                                          settings=settings))
        subject_details = _details(db, [r["id"] for r in subject_rows])
        for row in subject_rows:
            found = subject_details.get(row["id"])
            if found and people <= found["participants"] \
                    and (not places or places & found["places"]):
                keys.add(row["topic_key"])
    keys.discard(topic.key)
    balances = _balances(db, keys, as_of)
    ranked = sorted(keys, key=lambda k: (-balances.get(k, 0.0), k))[:SUBJECTS]
    labels = labeler.labels(ranked)
    return [{"label": labels[k], "topic_key": k, "balance": balances.get(k, 0.0)}
            for k in ranked]


def _closest(db, topic: topics.Topic, as_of: str, labeler: Labeler) -> list[dict]:
    """Who the topic is closest to, by a balance at `as_of`: for a person, the other side of
    their dyads (the dyad's balance); for a channel, the people most present in it (their
    user-in-channel balance). Other kinds have none."""
    s = topic.server_id
    if topic.kind == "user":
        person = topic.ids[0]
        globs = topics.user_globs(person, ["dyad"], server_id=s)
    elif topic.kind == "channel":
        globs = [f"server:{s}:user_in_channel:{topic.ids[0]}:*"]
    else:
        return []
    keys = {k for pattern in globs
            for (k,) in db.execute("SELECT key FROM topics WHERE key GLOB ?", [pattern])}
    balances = _balances(db, keys, as_of)
    people: dict[str, float] = {}
    for key, balance in balances.items():
        if balance <= 0:
            continue
        parsed = topics.parse(key)
        other = ([u for u in parsed.ids if u != topic.ids[0]] if topic.kind == "user"
                 else [parsed.ids[1]])
        if other:
            person_key = topics.user(other[0], s)
            people[person_key] = max(balance, people.get(person_key, 0.0))
    ranked = sorted(people, key=lambda k: (-people[k], k))[:CLOSEST]
    labels = labeler.labels(ranked)
    return [{"label": labels[k], "topic_key": k, "balance": people[k]} for k in ranked]


def _balances(db, keys, as_of: str) -> dict[str, float]:
    """Each stored topic's balance at `as_of`: the sum of its ledger rows dated then or
    before (the index on (topic_id, created_at) serves it)."""
    if not keys:
        return {}
    return dict(db.execute(
        "SELECT t.key, coalesce((SELECT sum(l.amount) FROM salience_ledger l "
        "WHERE l.topic_id = t.id AND l.created_at <= ?), 0.0) FROM topics t "
        "WHERE t.key IN (SELECT value FROM json_each(?))", [as_of, json_ids(keys)]).fetchall())


def _salience(db, key: str, as_of: str) -> dict:
    """The balance at `as_of` and how it moved over the TREND_DAYS before."""
    since = to_stored(parse_time(as_of) - timedelta(days=TREND_DAYS))
    now = _balances(db, [key], as_of).get(key, 0.0)
    then = _balances(db, [key], since).get(key, 0.0)
    change = now - then
    if abs(change) <= STEADY_SHARE * max(abs(now), abs(then)):
        direction = "steady"
    else:
        direction = "rising" if change > 0 else "falling"
    return {"balance": now, "trend": {"days": TREND_DAYS, "since": since, "balance_then": then,
                                      "change": change, "direction": direction}}
