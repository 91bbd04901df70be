"""What the offline reflector reads in the words of a target's messages: the distinctive terms,
weighed by tf-idf against the community's own full-text index, and the questions asked.

- **Terms.** A term is a token as the full-text index (`messages_fts`, FTS5, tokenizer
  `unicode61 remove_diacritics 2`) makes it: the target's texts are tokenised by the same
  tokenizer, in a private in-memory database (no text is written anywhere). Its weight is
  tf × idf: tf = how many of the target's messages use it, idf = ln((1 + N) / (1 + df)) + 1,
  with N the messages in the index and df those using the term (`fts5vocab`, a `temp`
  table: no schema change). A term must be in at least `MIN_TERM_MESSAGES` of the target's
  messages, 3–40 characters long with a letter in it, known to the index, and neither a stop
  word (`stop_words.BUILT_IN` plus `[subjects] stop_words`) nor a word of the name of a
  person the messages show. URLs, mentions, `<chat_N>` aliases, channel links and custom
  emoji codes are not words; nor is what Discord writes for a join or a pin (only
  conversational messages and thread names count).
- **Questions.** Sentences ending in `?`, each on one line and at most 120 characters, the
  newest `MAX_QUESTIONS` (shown oldest first), duplicates once; one holding image markup
  (which an insight may not hold) is left out.

The caller decides whose messages these are: only the target's material, never a message by
a person outside the privacy gate (`offline.py`).
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import sqlite_utils

from zos_cli.config import Config
from zos_cli.records import CONVERSATIONAL_TYPES, THREAD_CREATED
from zos_cli.reflect.analyses import flat
from zos_cli.reflect.schema import IMAGE_MARKUP
from zos_cli.reflect.stop_words import BUILT_IN

INDEX = "messages_fts"                     # the full-text index (migration 0010)
VOCAB = "messages_fts_vocab"               # its fts5vocab 'row' table, in `temp`
TOKENIZER = "unicode61 remove_diacritics 2"
TERM_TYPES = CONVERSATIONAL_TYPES | {THREAD_CREATED}   # a thread's name is its creator's words

MAX_TERMS = 5
MIN_TERM_MESSAGES = 2      # a word said once is not what someone talks about
MIN_TERM_CHARS = 3
MAX_TERM_CHARS = 40
MAX_QUESTIONS = 3
DF_BATCH = 50              # terms looked up in the index at a time
MAX_QUESTION_CHARS = 120


@dataclass(frozen=True)
class Term:
    text: str
    messages: int     # the target's messages using it (tf)
    documents: int    # the index's messages using it (df)
    score: float


# ---------------------------------------------------------------- tokenising as the index does
def _tokenizer() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE offline_words USING "
                 f"fts5(content, tokenize = '{TOKENIZER}')")
    conn.execute("CREATE VIRTUAL TABLE offline_words_vocab USING fts5vocab(offline_words, 'row')")
    return conn


def message_frequencies(texts: Iterable[str], minimum: int = 1) -> dict[str, int]:
    """term → how many of `texts` use it, tokenised exactly as the index tokenises (the same
    FTS5 tokenizer, in a private in-memory database closed at once)."""
    conn = _tokenizer()
    try:
        conn.executemany("INSERT INTO offline_words (content) VALUES (?)",
                         [(t,) for t in texts if t])
        return dict(conn.execute("SELECT term, doc FROM offline_words_vocab WHERE doc >= ?",
                                 [minimum]))
    finally:
        conn.close()


def fold(words: Iterable[str]) -> frozenset[str]:
    """Words as the index stores them ("Café" → "cafe"; "board games" → "board", "games")."""
    return frozenset(message_frequencies([" ".join(words)]))


# ---------------------------------------------------------------- what is not a word
_URL = re.compile(r"(?:\bhttps?://|\bwww\.)\S+", re.IGNORECASE)
_ALIAS = re.compile(r"<chat_\d+>")
_MENTION = re.compile(r"@\S+")
_CHANNEL = re.compile(r"#[\w-]+")
_CUSTOM_EMOJI = re.compile(r":[A-Za-z0-9_~]+:")


def words_of(text: str, people: Iterable[str] = (), places: Iterable[str] = ()) -> str:
    """The text without what is not a word of it: URLs, mentions (`@` and a person's name as
    shown, longest first, else the next word), aliases, channel links (`places`: "#name" as
    shown, else the next word), custom emoji codes."""
    text = _URL.sub(" ", text)
    text = _ALIAS.sub(" ", text)
    marked = {"@" + n for n in people if n} | {p for p in places if p.startswith("#")}
    for name in sorted(marked, key=len, reverse=True):
        text = text.replace(name, " ")
    text = _MENTION.sub(" ", text)
    text = _CUSTOM_EMOJI.sub(" ", text)
    return _CHANNEL.sub(" ", text)


def _is_word(term: str) -> bool:
    return MIN_TERM_CHARS <= len(term) <= MAX_TERM_CHARS and any(c.isalpha() for c in term)


# ---------------------------------------------------------------- the community's index
class Corpus:
    """The community's full-text index as the offline reflector weighs terms against it:
    opened once per run (N is counted once), asked once per target."""

    def __init__(self, db: sqlite_utils.Database, documents: int, stop_words: frozenset[str]):
        self.db = db
        self.documents = documents       # N; 0: an empty index, no terms
        self.stop_words = stop_words
        self._df: dict[str, int] = {}    # term → df, asked once per run

    @classmethod
    def open(cls, db: sqlite_utils.Database, config: Config) -> Corpus:
        """The index as migration 0010 makes it (every database zos opens has it)."""
        stop_words = BUILT_IN | fold(config.subjects.stop_words)
        db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{VOCAB} "
                   f"USING fts5vocab(main, {INDEX}, 'row')")
        documents = db.execute(f"SELECT count(*) FROM {INDEX}").fetchone()[0]
        return cls(db, documents, stop_words)

    def conversational(self, message_ids: list[str]) -> set[str]:
        """Those of `message_ids` that are people's words (not a join, a pin, a boost…)."""
        found: set[str] = set()
        types = sorted(TERM_TYPES)
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start:start + 500]
            found.update(r[0] for r in self.db.execute(
                f"SELECT id FROM messages WHERE id IN ({', '.join('?' for _ in chunk)}) "
                f"AND message_type IN ({', '.join('?' for _ in types)})", [*chunk, *types]))
        return found

    def _document_frequencies(self, terms: list[str]) -> dict[str, int]:
        """term → df. fts5vocab counts a term's documents by reading its whole doclist, so a
        common word costs in proportion to the index: each term is asked once per run."""
        missing = [t for t in terms if t not in self._df]
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            self._df.update(dict.fromkeys(chunk, 0))
            self._df.update(self.db.execute(
                f"SELECT term, doc FROM temp.{VOCAB} "
                f"WHERE term IN ({', '.join('?' for _ in chunk)})", chunk))
        return {t: self._df[t] for t in terms}

    def distinctive_terms(self, texts: list[str], exclude: frozenset[str] = frozenset(),
                          limit: int = MAX_TERMS) -> list[Term]:
        """The `limit` terms of `texts` (one per message) with the highest tf-idf, best first
        (ties: more messages, then alphabetical)."""
        if self.documents == 0 or not texts:
            return []
        counts = message_frequencies(texts, MIN_TERM_MESSAGES)
        candidates = sorted(((t, n) for t, n in counts.items()
                             if _is_word(t) and t not in self.stop_words and t not in exclude),
                            key=lambda c: (-c[1], c[0]))
        n = self.documents
        best_idf = math.log((1 + n) / 2) + 1   # (df is at least 1)
        terms: list[Term] = []
        # Most-used first, a batch at a time: once `limit` terms are found, a term used in
        # fewer messages than (the last one's score / the best idf) cannot pass them, so the
        # rest need no look-up. The result is the same as weighing every candidate.
        for start in range(0, len(candidates), DF_BATCH):
            batch = candidates[start:start + DF_BATCH]
            if len(terms) >= limit and batch[0][1] * best_idf < terms[limit - 1].score:
                break
            frequencies = self._document_frequencies([t for t, _ in batch])
            for term, messages in batch:
                df = min(frequencies[term], n)
                if df == 0:   # not in the index: nothing to weigh it against
                    continue
                idf = math.log((1 + n) / (1 + df)) + 1
                terms.append(Term(term, messages, df, messages * idf))
            terms.sort(key=lambda t: (-t.score, -t.messages, t.text))
        return terms[:limit]


# ---------------------------------------------------------------- questions
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")


def questions_in(texts: list[str], limit: int = MAX_QUESTIONS) -> list[tuple[int, str]]:
    """(index of the text, question) for the newest `limit` questions of `texts` (time order),
    each one line of at most `MAX_QUESTION_CHARS`; a question asked again counts once."""
    found: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, text in enumerate(texts):
        for sentence in _SENTENCE_BREAK.split(text or ""):
            sentence = flat(sentence, 10 * MAX_QUESTION_CHARS)
            if not sentence.endswith("?") or not any(c.isalpha() for c in sentence):
                continue
            if IMAGE_MARKUP.search(sentence):   # (an insight may not hold one)
                continue
            key = sentence.casefold()
            if key in seen:
                continue
            seen.add(key)
            found.append((i, flat(sentence, MAX_QUESTION_CHARS)))
    return found[-limit:] if limit else []
