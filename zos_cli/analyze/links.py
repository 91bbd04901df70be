"""What a fetched page says: its title, meta description and main text, bounded, as plain data.

The text comes from the safe fetcher (`fetch.py`) already decoded; nothing here touches the
network. HTML is parsed by lxml and read by trafilatura (boilerplate removal, metadata); no
regular expression ever looks at markup. Both are imported inside the functions: trafilatura
takes a noticeable time to import, and zos commands that do not analyse must not pay for it.

Every field is bounded so a hostile or gigantic page cannot bloat a prompt or a row, and the
work is bounded too: only the first MAX_ELEMENTS elements / MAX_SCAN_CHARS characters of a page
are read (trafilatura's cost grows with the size of the tree, ~0.1 ms per element here).

What the page says is data, never instructions: an "ignore previous instructions" in a title is
returned as it is, and the prompt builder fences it like message text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # lxml comes with trafilatura; imported lazily like it
    from lxml.html import HtmlElement

MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 500
MAX_MAIN_TEXT_CHARS = 20_000
MAX_SUMMARY_CHARS = 300
# How much of a page is read. A page's own content sits early; beyond this is comments,
# endless lists and footers, and the time to read it (the first 5,000 elements cost well under
# a second, 40,000 cost many seconds on this kind of machine).
MAX_ELEMENTS = 5_000
MAX_SCAN_CHARS = 200_000  # text characters kept in the tree before extraction (10x main text)
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Elements that never carry readable text; removed before counting so they do not use the budget.
_NOT_TEXT_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "object", "embed",
                  "canvas")
_QUIET_LOGGERS = ("trafilatura", "htmldate", "courlan")  # the packages our calls reach
# Characters that are neither text nor layout (C0 controls but tab/newline/CR, DEL, C1 controls):
# they break lxml ("not XML compatible") and have no place in a prompt or a row.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newlines
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]]*(?=\s|$)")


@dataclass(frozen=True)
class PageText:
    """What a page says, bounded: title (<= 300 chars) and meta description (<= 500) or None;
    main text (<= ~20,000 chars, paragraphs on their own lines), "" when there is none."""

    title: str | None
    description: str | None
    main_text: str


def extract_page(text: str, content_type: str, url: str) -> PageText:
    """Title, meta description and main text of a page the fetcher read.

    `content_type` is the media type (parameters are ignored): text/html and
    application/xhtml+xml are read as HTML, anything else as plain text. `url` is for the
    caller's records only: it is never handed to trafilatura, so nothing can take it (or the
    page text) for something to download. Never raises for anything in the page.
    """
    del url  # deliberately unused, see above
    text = _CONTROL.sub("", _scrub_surrogates(text or ""))
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in HTML_TYPES:
        return _extract_html(text)
    return PageText(title=None, description=None,
                    main_text=bound(_normalize_block(text[:MAX_SCAN_CHARS * 5]),
                                    MAX_MAIN_TEXT_CHARS))


def offline_link_summary(page: PageText) -> str | None:
    """A summary without a model: the meta description, else the first sentences of the main
    text, at most ~300 chars (cut at a sentence end when one is near, else a word). None when the
    page says nothing useful. A description that only repeats the title is passed over."""
    if (page.description and _useful(page.description)
            and _fold(page.description) != _fold(page.title)):
        return bound(_normalize_line(page.description), MAX_SUMMARY_CHARS)
    # Start at the first line that holds a sentence: the lines above it are headings, bylines
    # and breadcrumbs, and the title is shown beside the summary anyway.
    lines = [line for line in page.main_text.split("\n") if line.strip()][:40]
    start = next((i for i, line in enumerate(lines) if _SENTENCE_END.search(line)), 0)
    prose = _normalize_line(" ".join(lines[start:]))
    return bound(prose, MAX_SUMMARY_CHARS) if _useful(prose) else None


def bound(text: str, limit: int) -> str:
    """`text` if it fits in `limit` chars; else cut at the last sentence end in the second half
    of the limit, or else at the last space there followed by "…", or else hard with "…"."""
    if len(text) <= limit:
        return text
    head = text[:limit + 1]  # one more, so a sentence ending exactly at the limit is seen
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if limit // 2 <= m.end() <= limit]
    if ends:
        return text[:ends[-1]].rstrip()
    space = head.rfind(" ", limit // 2, limit)
    newline = head.rfind("\n", limit // 2, limit)
    cut = max(space, newline)
    if cut > 0:
        return text[:cut].rstrip() + "…"
    return text[:limit - 1] + "…"


# -- HTML --------------------------------------------------------------------------------------


def _extract_html(text: str) -> PageText:
    trafilatura = _trafilatura()
    tree = _parse_bounded(text)
    if tree is None:
        return PageText(title=None, description=None, main_text="")
    # extract() works on a copy of the tree it is given; extract_metadata() reads ours after.
    options = dict(output_format="txt", include_comments=False, include_tables=False,
                   fast=True)  # no readability/justext second opinion: many times slower
    main = trafilatura.extract(tree, favor_precision=True, **options)
    if not main and _has_loose_body_text(tree):
        # Old-style pages (text straight in <body>, lines split by <br>) have no block that
        # precision mode trusts; the balanced mode reads them. Not tried otherwise: on a page
        # of menus and footers it returns the menu.
        main = trafilatura.extract(tree, **options)
    meta = trafilatura.extract_metadata(tree, extensive=False)
    return PageText(
        title=_bounded_line(meta.title, MAX_TITLE_CHARS),
        description=_bounded_line(meta.description, MAX_DESCRIPTION_CHARS),
        main_text=bound(_normalize_block(main or ""), MAX_MAIN_TEXT_CHARS),
    )


def _parse_bounded(text: str) -> HtmlElement | None:
    """The page as an lxml tree without scripts, styles and the like, cut after MAX_ELEMENTS
    elements or MAX_SCAN_CHARS characters of text; None when there is nothing to parse."""
    from lxml import etree
    from lxml.html import HTMLParser, document_fromstring

    if not text.strip():
        return None
    # Bytes with a fixed encoding: the text is already decoded, so a <meta charset> or an
    # <?xml encoding?> inside it must not make lxml decode it a second time. no_network is
    # lxml's default; said here because it matters.
    parser = HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True,
                        no_network=True, default_doctype=False)
    try:
        tree = document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):  # "Document is empty" and the like
        return None
    etree.strip_elements(tree, *_NOT_TEXT_TAGS, with_tail=False)
    _cut_after_budget(tree)
    return tree


def _cut_after_budget(tree: HtmlElement) -> None:
    """Drop everything after the element where the element or text budget runs out."""
    chars = 0
    last = None
    for count, element in enumerate(tree.iter()):
        chars += len(element.text or "") + len(element.tail or "")
        if count >= MAX_ELEMENTS or chars >= MAX_SCAN_CHARS:
            last = element
            break
    if last is None:
        return
    # Keep `last` (its text is counted; a single huge text node is bounded later) but not its
    # children, nor anything that follows it or any of its ancestors in document order.
    for child in list(last):
        last.remove(child)
    node = last
    while (parent := node.getparent()) is not None:
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node = parent
    if last.text and len(last.text) > MAX_SCAN_CHARS:
        last.text = last.text[:MAX_SCAN_CHARS]
    last.tail = None


def _has_loose_body_text(tree: HtmlElement) -> bool:
    body = tree.find("body")
    if body is None:
        return False
    return any(piece and piece.strip()
               for piece in (body.text, *(child.tail for child in body)))


@cache
def _trafilatura() -> ModuleType:
    """Import trafilatura on first use, and keep it and its helpers from logging: they warn
    about pages they discard, which is a normal outcome here, not news for the operator."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    import trafilatura

    return trafilatura


# -- text --------------------------------------------------------------------------------------


def _scrub_surrogates(text: str) -> str:
    """Lone surrogates (text decoded with surrogateescape) cannot be stored or encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _normalize_block(text: str) -> str:
    """Spaces and tabs collapsed, lines trimmed, runs of blank lines made one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _normalize_line(text: str) -> str:
    return " ".join(text.split())


def _bounded_line(text: str | None, limit: int) -> str | None:
    if not text:
        return None
    line = _normalize_line(_CONTROL.sub("", text))
    return bound(line, limit) if line else None


def _fold(text: str | None) -> str:
    return _normalize_line(text or "").casefold()


def _useful(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
