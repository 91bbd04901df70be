"""From a normalised event to the ordered earns of docs/salience.md#what-earns (a pure function).

Weights, server focus, the privacy gate and the self-interaction rules are applied here; the
arithmetic of an earn (caps, propagation, spillover, warming) is the engine's.

Choices the table leaves open, made here and documented in docs/salience.md#choices-made-here:
- A user without a server's privacy-gate role earns nothing and forms no dyads: their own
  messages and reactions earn nothing at all (zos does not observe them), and as the other
  side of a reply, mention or reaction they are left out (the rest still earns).
- user_in_channel and dyad_in_channel topics are keyed on the channel; a thread message counts
  for its parent channel, and earns its thread's own topic (instead of the channel topic) only
  when the server sets `threads_as_topics`.
- A DM message earns for its author when the author is one of the DM's participants (everyone
  but zos); a message by zos itself (or by an unlisted author) earns for every participant.
  DM reactions earn nothing (the table lists none).
- Earns whose amount is 0 (a zero weight or focus) are dropped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from zos_cli import topics
from zos_cli.events import LayerRunCompletedEvent, MessageEvent, ReactionEvent, SubjectNamedEvent
from zos_cli.records import THREAD_CREATED

Gate = Callable[[str, str], bool]


class Earn(NamedTuple):  # a NamedTuple: built several times per message, so it must be cheap
    topic: str
    amount: float
    kind: str                          # the weight that produced it: message, reply, mention…
    user_id: str | None = None         # emoji earns: who used the emoji (its related topic)
    parent_channel_id: str | None = None  # thread topics: the parent channel



def _memo(build, size: int):
    """Key builders validate their input; memoised because the same keys recur on every
    message. The keys are interned: the engine's index keeps the same string objects, so a
    cached key costs no second copy. The caches are bounded (memory must not grow with an
    export's length); the dyad ones hold the recent pairs, not every pair ever seen."""
    return lru_cache(maxsize=size)(lambda *parts: sys.intern(build(*parts)))


_user = _memo(topics.user, 1 << 14)
_channel = _memo(topics.channel, 1 << 12)
_thread = _memo(topics.thread, 1 << 12)
_uic = _memo(topics.user_in_channel, 1 << 14)
_dyad = _memo(topics.dyad, 1 << 13)
_dic = _memo(topics.dyad_in_channel, 1 << 13)
_emoji = _memo(topics.emoji, 1 << 12)
_role = _memo(topics.role, 1 << 12)


def events_to_earns(event, config, gate: Gate, *, self_user_id: str | None = None
                    ) -> list[tuple[str, float]]:
    """The ordered (topic_key, amount) earns of one event (docs/salience.md#what-earns).

    `gate(server_id, user_id)` answers the privacy-gate question (True when the server has no
    gate role). `self_user_id` (zos's own account) defaults to `config.discord.self_user_id`.
    """
    return [(e.topic, e.amount) for e in earn_list(event, config, gate, self_user_id=self_user_id)]


def earn_list(event, config, gate: Gate, *, self_user_id: str | None = None) -> list[Earn]:
    """Like events_to_earns, with what produced each earn (for ledger reasons and relations)."""
    self_id = self_user_id or config.discord.self_user_id
    if isinstance(event, MessageEvent):
        if event.server_id is None:
            earns = _dm_message(event, config, self_id)
        else:
            earns = _public_message(event, config, gate, self_id)
    elif isinstance(event, ReactionEvent):
        earns = _reaction(event, config, gate)
    elif isinstance(event, SubjectNamedEvent):
        focus = config.server(event.server_id).focus
        w = config.salience.weights.subject_mention * focus
        earns = [Earn(topics.subject(event.server_id, event.subject), w, "subject_mention")]
    elif isinstance(event, LayerRunCompletedEvent):
        earns = [Earn(topics.self_topic(), config.salience.weights.self_run, "self_run")]
    else:
        raise TypeError(f"not a salience event: {event!r}")
    return [e for e in earns if e.amount > 0]


def _public_message(ev: MessageEvent, config, gate: Gate, self_id: str | None) -> list[Earn]:
    s, author = ev.server_id, ev.author_id
    server = config.server(s)
    w = config.salience.weights
    focus = server.focus
    base_channel = ev.parent_channel_id or ev.channel_id
    if ev.message_type == THREAD_CREATED:
        # The one system message that earns: the creator and the channel the thread lives in.
        if not gate(s, author):
            return []
        amount = w.thread_create * focus
        return [Earn(_user(author, s), amount, "thread_create"),
                Earn(_channel(s, base_channel), amount, "thread_create")]
    if ev.is_system or not gate(s, author):
        return []

    amount = w.message * (w.media_multiplier if (ev.has_media or ev.has_links) else 1.0) * focus
    if ev.parent_channel_id is not None and server.threads_as_topics:
        space = Earn(_thread(s, ev.channel_id), amount, "message",
                     parent_channel_id=ev.parent_channel_id)
    else:
        space = Earn(_channel(s, base_channel), amount, "message")
    earns = [Earn(_uic(s, base_channel, author), amount, "message"),
             Earn(_user(author, s), amount, "message"),
             space]

    replied = ev.reply_to_author_id
    if replied and replied != author and gate(s, replied):
        r = w.reply * focus
        earns += [Earn(_dyad(author, replied, s), r, "reply"),
                  Earn(_dic(s, base_channel, author, replied), r, "reply")]

    seen: set[str] = set()
    m = w.mention * focus
    for uid in ev.mentioned_user_ids:
        if uid in seen:
            continue
        seen.add(uid)
        # Self-mentions earn nothing; a reply's automatic mention counts only as the reply;
        # mentioning zos earns the self topic below instead of a dyad.
        if uid == author or uid == replied or (self_id is not None and uid == self_id):
            continue
        if gate(s, uid):
            earns += [Earn(_dyad(author, uid, s), m, "mention"),
                      Earn(_dic(s, base_channel, author, uid), m, "mention")]

    e = w.emoji * focus
    earns += [Earn(_emoji(s, eid), e, "emoji", user_id=author) for eid in ev.custom_emoji_ids]
    earns += [Earn(_role(s, rid), m, "role_mention")
              for rid in dict.fromkeys(ev.mentioned_role_ids)]

    if (self_id is not None and self_id in seen and author != self_id and replied != self_id):
        earns.append(Earn(topics.self_topic(s), w.self_mention * focus, "self_mention"))
    return earns


def _dm_message(ev: MessageEvent, config, self_id: str | None) -> list[Earn]:
    if ev.is_system or ev.message_type == THREAD_CREATED:
        return []
    participants = [p for p in dict.fromkeys(ev.dm_participant_ids) if p != self_id]
    if ev.author_id in participants or not participants:
        earners = [] if ev.author_id == self_id else [ev.author_id]
    else:
        earners = participants
    amount = config.salience.weights.dm
    return [Earn(_user(p), amount, "dm") for p in earners]


def _reaction(ev: ReactionEvent, config, gate: Gate) -> list[Earn]:
    s, reactor, author = ev.server_id, ev.reactor_id, ev.message_author_id
    if s is None or reactor == author or not gate(s, reactor):
        return []  # DM reactions, self-reactions and unobserved reactors earn nothing
    amount = config.salience.weights.reaction * config.server(s).focus
    author_seen = gate(s, author)
    earns = []
    if author_seen:
        earns.append(Earn(_user(author, s), amount, "reaction"))
    earns.append(Earn(_user(reactor, s), amount, "reaction"))
    if author_seen:
        earns.append(Earn(_dyad(author, reactor, s), amount, "reaction"))
    if ev.emoji_id:
        earns.append(Earn(_emoji(s, ev.emoji_id), amount, "reaction", user_id=reactor))
    return earns
