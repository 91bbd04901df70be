"""The offline reflector: one insight per target per run, computed from the data it read.

Used when no model is configured anywhere (or with `--model offline`). It makes no model call
and no network request and writes no `llm_calls` row. The insight describes activity rhythm
(how much, over what span, at what hours and on which days), channels, conversation partners,
what they talk about (the distinctive terms, by tf-idf against the community's full-text
index, and the questions asked: `offline_terms`), what was shared (images, files and links,
naming what `zos analyze` read of them) and reaction culture — or, for synthesis, what the
server-scoped insights say; for the self layer, zos's own runs (how many, which layers, what
they attended to, what failed, what they spent). The top distinctive term is the insight's
`subject` (server targets read from public material only), so subject topics arise offline
too. Confidence is 1.0 (it is counting, not guessing), importance follows the topic's balance,
the one valence is curiosity 0.5, and `metadata.reflector = "offline"`. Storage supersedes the
topic's previous offline insight. Its token count is the context it read (salience spends on
that).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from zos_cli import topics
from zos_cli.reflect import analyses, offline_terms, self_work
from zos_cli.reflect.context import Context
from zos_cli.reflect.offline_terms import Corpus, Term
from zos_cli.reflect.schema import (IMAGE_MARKUP, SUBJECT_PATTERN, InsightOut, ReflectionOut,
                                   Valence)
from zos_cli.reflect.timefmt import relative
from zos_cli.timeutil import parse_time

REFLECTOR = "offline"
IMPORTANCE_BALANCE = 100.0   # a balance this high (a full server-user cap) is importance 1.0

_DAY_NAMES = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays",
              "Sundays")
_BANDS = ((0, 6, "at night (00–06 UTC)"), (6, 12, "in the morning (06–12 UTC)"),
          (12, 18, "in the afternoon (12–18 UTC)"), (18, 24, "in the evening (18–24 UTC)"))


def _top(counter: Counter, n: int = 3) -> str:
    items = counter.most_common(n)
    return ", ".join(f"{name} ({count})" for name, count in items)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class Words:
    """What the messages read say, in their own words (see `offline_terms`)."""
    terms: list[Term] = field(default_factory=list)
    questions: list[tuple[str, str | None]] = field(default_factory=list)  # (question, who)


def read_words(context: Context, corpus: Corpus | None) -> Words:
    """The distinctive terms and the questions of the messages read, leaving out those of
    people outside the privacy gate (their words are not analysed). Without a corpus (no
    full-text index) there are no terms; questions need none."""
    said = [m for m in context.messages if m["author_id"] not in context.aliased]
    texts = [m.get("readable", m["content"] or "") for m in said]
    per_person = context.target.kind not in ("user", "user_in_channel")
    questions = [(question, context.labels.get(said[i]["author_id"]) if per_person else None)
                 for i, question in offline_terms.questions_in(texts)]
    if corpus is None:
        return Words(questions=questions)
    spoken = corpus.conversational([m["id"] for m in said])
    material = [offline_terms.words_of(text, context.labels.values(),
                                       context.channel_names.values())
                for m, text in zip(said, texts) if m["id"] in spoken]
    # The people shown are not subjects (a name said twice is not a topic), nor is a
    # subject's own name what its messages say about it.
    aliases = set(context.aliased.values())
    exclude = offline_terms.fold(v for v in context.labels.values() if v not in aliases)
    if context.target.kind == "subject":
        exclude |= offline_terms.fold([context.target.name.replace("_", " ")])
    return Words(corpus.distinctive_terms(material, exclude), questions)


MAX_QUOTE_NAME_CHARS = 40


def words_sentences(words: Words) -> list[str]:
    sentences = []
    if words.terms:
        listed = ", ".join(f"{t.text} ({t.messages})" for t in words.terms)
        sentences.append(f"Distinctive terms (messages using each): {listed}.")
    if words.questions:
        quoted = []
        for question, who in words.questions:
            text = f"“{_unquote(question)}”"
            if who:
                text += f" ({analyses.flat(who, MAX_QUOTE_NAME_CHARS)})"
            quoted.append(text)
        sentences.append(f"Asked: {', '.join(quoted)}.")
    return sentences


def _unquote(text: str) -> str:
    return text.replace("“", "\"").replace("”", "\"")


def subject_of(context: Context, words: Words) -> str | None:
    """The top distinctive term that can name a subject topic, for a server target whose
    material is all public (a subject topic is the server's: never named from DM text).
    A subject's own insights and the self layer's name none."""
    target = context.target
    if (target.server_id is None or target.kind in ("subject", "self")
            or context.scope() != "public"):
        return None
    return next((t.text for t in words.terms if SUBJECT_PATTERN.match(t.text)), None)


def describe_messages(context: Context, words: Words) -> str:
    messages = context.messages
    target = context.target
    label = context.label or target.key
    times = [parse_time(m["created_at"]) for m in messages]
    first, last = min(times), max(times)
    since, until = relative(first, context.as_of), relative(last, context.as_of)
    span = f"all {since}" if since == until else f"from {since} to {until}"
    sentences = [f"{label}: {_plural(len(messages), 'message')} read, {span}."]
    bands = Counter(next(b[2] for b in _BANDS if b[0] <= t.hour < b[1]) for t in times)
    days = Counter(_DAY_NAMES[t.weekday()] for t in times)
    band, _ = bands.most_common(1)[0]
    day, _ = days.most_common(1)[0]
    sentences.append(f"Most active {band}, busiest on {day}.")

    channels = Counter(_channel_label(context, m) for m in messages)
    if len(channels) > 1 or target.kind not in ("channel", "thread"):
        sentences.append(f"Channels: {_top(channels)}.")

    aliased = set(context.aliased)
    if target.kind in ("user", "user_in_channel"):
        me = target.user_ids[0]
        partners = Counter(
            context.labels.get(m["reply_author_id"]) or m["reply_author_id"]
            for m in messages
            if m["reply_author_id"] and m["reply_author_id"] != me
            and m["reply_author_id"] not in aliased
        )
        if partners:
            sentences.append(f"Replies most to {_top(partners)}.")
    else:
        voices = Counter(context.labels[m["author_id"]] for m in messages
                         if m["author_id"] not in aliased)
        if voices:
            sentences.append(f"Most heard: {_top(voices)}.")
        others = len({m["author_id"] for m in messages if m["author_id"] in aliased})
        if others:
            sentences.append(f"Also {_plural(others, 'participant')} not analysed.")

    sentences += words_sentences(words)

    shared = shared_sentence(context)
    if shared:
        sentences.append(shared)

    reactions: Counter = Counter()
    for m in messages:
        for emoji, count in context.reactions.get(m["id"], []):
            reactions[emoji] += count
    if reactions:
        total = sum(reactions.values())
        sentences.append(f"{_plural(total, 'reaction')} on these messages, mostly {_top(reactions)}.")
    else:
        sentences.append("No reactions on these messages.")
    return " ".join(sentences)


MAX_NAMED_SHARES = 3       # titles and descriptions named in the sentence
MAX_SHARE_NAME_CHARS = 80


def shared_sentence(context: Context) -> str | None:
    """"Shared 3 images and 2 links: “Glaze wiki”, …." — what the messages read shared (by
    people inside the privacy gate), naming the titles of fetched links and the descriptions
    of analysed images, most shared first (then in time order), or None when nothing was."""
    counts: Counter = Counter()
    names: Counter = Counter()
    for m in context.messages:
        if m["author_id"] in context.aliased:
            continue
        for item in analyses.parse_media(m.get("media")) if m.get("has_media") else ():
            kind = "image" if item.is_image else "file"
            counts[kind] += 1
            _count_name(names, analyses.image_text(item) if kind == "image" else None)
        for link in analyses.parse_links(m.get("links")) if m.get("has_links") else ():
            counts["link"] += 1
            if link.status == "ok":
                _count_name(names, link.title or link.domain)
    if not counts:
        return None
    parts = [_plural(counts[k], k) for k in ("image", "file", "link") if counts[k]]
    said = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    named = [f"“{name}”" for name, _ in names.most_common(MAX_NAMED_SHARES)]
    more = " …" if len(names) > MAX_NAMED_SHARES else ""
    return f"Shared {said}" + (f": {', '.join(named)}{more}." if named else ".")


def _count_name(names: Counter, text: str | None) -> None:
    """Count a title or description under its one-line, bounded form; one that an insight
    may not hold (image markup, see schema.py) is left out rather than failing the target."""
    name = analyses.flat(text, MAX_SHARE_NAME_CHARS).replace("“", "\"").replace("”", "\"")
    if name and not IMAGE_MARKUP.search(name):
        names[name] += 1


def _channel_label(context: Context, message: dict) -> str:
    return context.channel_names.get(message["channel_id"], message["channel_id"])


def describe_insights(context: Context) -> str:
    sources = context.source_insights
    servers = Counter(topics.server_id_of(i["topic_key"]) for i in sources)
    newest = sources[-1]["content"]
    first_sentence = newest.split(". ")[0].rstrip(".")
    return (
        f"{context.label or context.target.key} across {_plural(len(servers), 'server')}: "
        f"{_plural(len(sources), 'new server insight')}; the newest says: {first_sentence}."
    )


MAX_CONTENT_CHARS = 4000  # InsightOut.content's bound


def reflect_offline(context: Context, corpus: Corpus | None = None) -> ReflectionOut:
    """The one offline insight of this target (the context must have material). `corpus`:
    the community's full-text index (`Corpus.open`, once per run); None, no distinctive terms."""
    subject = None
    if context.source_insights:
        content = describe_insights(context)
    elif context.work is not None and not context.work.empty:
        # The self layer: zos's own runs, then what was said by or to it. (No revision of
        # the self-concept: counting cannot say who zos should be.)
        content = self_work.describe(context.work)
        if context.messages:
            content += " " + describe_messages(context, read_words(context, corpus))
    else:
        words = read_words(context, corpus)
        content = describe_messages(context, words)
        subject = subject_of(context, words)
    importance = max(0.0, min(1.0, context.target.balance / IMPORTANCE_BALANCE))
    if len(content) > MAX_CONTENT_CHARS:  # (long display names)
        content = content[:MAX_CONTENT_CHARS - 1] + "…"
    insight = InsightOut(
        content=content,
        confidence=1.0,
        importance=round(importance, 4),
        novelty=1.0 if not context.prior else 0.5,
        strength_adjustment=1.0,
        valence=Valence(curiosity=0.5),
        subject=subject,
    )
    return ReflectionOut(insights=[insight])
