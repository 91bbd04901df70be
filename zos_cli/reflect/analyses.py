"""What a message shared — its attachments and links, as `zos analyze` read them — in the form
reflection shows it.

A message line in a prompt carries one marker per analysed item, after the message text:
`[image: "…"]` (an image's description), `[link: "title — summary"]`, `[file: "name, type"]`.
Everything inside the quotes came from outside (a model's description of someone's photo, a
web page's title, a file name): it is quoted as a JSON string on one line, exactly like the
message text, so it can neither end the data block nor pass for an instruction. An item not
analysed yet (pending, skipped, failed, or a link that could not be fetched) keeps the plain
`attachment` / `link` marker the line always had.

The analyses are read with the messages themselves (`SHARED_COLUMNS`, two correlated
subqueries in the same SELECT): the line's token estimate includes them before the budget
decides, and there is no query per message. Rows belong to one message, so a message only
ever shows its own analyses (a DM's description never appears on a public message).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from zos_cli.records import IMAGE_SUFFIXES, IMAGE_TYPES


MAX_DESCRIPTION_CHARS = 300   # an image's description in a line
MAX_TITLE_CHARS = 120
MAX_SUMMARY_CHARS = 300
MAX_FILE_CHARS = 120
MAX_SHOWN = 4                 # analysed items per line; the rest are counted

# Appended to the SELECT of `material.newest_messages` (`m` is the message): its analysis rows
# as JSON arrays, oldest row first, only for messages that have attachments or links.
SHARED_COLUMNS = (
    "CASE WHEN m.has_media THEN (SELECT json_group_array(json_array(a.status, a.content_type, "
    "a.file_name, a.description, a.width)) FROM (SELECT * FROM media_analysis "
    "WHERE message_id = m.id ORDER BY id) a) END, "
    "CASE WHEN m.has_links THEN (SELECT json_group_array(json_array(l.status, l.domain, "
    "l.title, l.summary, l.description)) FROM (SELECT * FROM link_analysis "
    "WHERE message_id = m.id ORDER BY id) l) END"
)


@dataclass(frozen=True)
class Media:
    status: str
    content_type: str | None
    file_name: str | None
    description: str
    width: int | None

    @property
    def is_image(self) -> bool:
        """An image by its type, its measured size, or (exports carry no MIME type) its name."""
        if self.content_type:
            return self.content_type.lower() in IMAGE_TYPES
        if self.width:
            return True
        return (self.file_name or "").lower().endswith(IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Link:
    status: str
    domain: str
    title: str | None
    summary: str | None
    description: str | None   # the page's meta description


def parse_media(raw: str | None) -> tuple[Media, ...]:
    return tuple(Media(s, t, f, d or "", w) for s, t, f, d, w in json.loads(raw or "[]"))


def parse_links(raw: str | None) -> tuple[Link, ...]:
    return tuple(Link(*row) for row in json.loads(raw or "[]"))


# ---------------------------------------------------------------- quoting
_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def flat(text: str | None, limit: int) -> str:
    """One line, no control characters, whitespace collapsed, at most `limit` characters."""
    if not text:
        return ""
    one_line = " ".join(_LINE_BREAKS_AND_CONTROLS.sub(" ", text).split())
    return one_line if len(one_line) <= limit else one_line[:limit - 1].rstrip() + "…"


def quoted(text: str) -> str:
    """`text` as a JSON string on one line. json.dumps escapes quotes, backslashes and control
    characters; the Unicode line and paragraph separators (and NEL) it leaves as they are, and
    some readers break lines at them, so they are escaped too."""
    return (json.dumps(text, ensure_ascii=False)
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
            .replace("\u0085", "\\u0085"))


# ---------------------------------------------------------------- what a line shows
def image_text(item: Media) -> str | None:
    """What an image marker says, or None when the item shows no image marker."""
    if item.status != "ok" or not item.is_image:
        return None
    return flat(item.description, MAX_DESCRIPTION_CHARS) or None


def file_text(item: Media) -> str:
    name = flat(item.file_name, MAX_FILE_CHARS) or "unnamed file"
    kind = flat(item.content_type, 60) or _suffix_of(item.file_name) or "unknown type"
    return f"{name}, {kind}"


def link_text(item: Link) -> str | None:
    """`title — summary` for a fetched link; the domain stands in for a missing title, and the
    meta description for a missing summary. None for a link not read."""
    if item.status != "ok":
        return None
    head = flat(item.title, MAX_TITLE_CHARS) or flat(item.domain, MAX_TITLE_CHARS) or "a page"
    tail = flat(item.summary or item.description, MAX_SUMMARY_CHARS)
    return f"{head} — {tail}" if tail else head


def _suffix_of(name: str | None) -> str:
    if not name or "." not in name:
        return ""
    return flat(name.rsplit(".", 1)[1].lower(), 12) + " file"


@dataclass(frozen=True)
class LineParts:
    markers: list[str]      # `image: "…"`, `link: "…"`, `file: "…"`, each its own bracket
    plain: list[str]        # `attachment`, `link`: what is not analysed (today's markers)


def line_parts(message: dict, *, show_analyses: bool = True) -> LineParts:
    """The markers of one message line. `show_analyses` False (a person outside the
    privacy gate wrote it) gives only the plain markers, whatever was analysed."""
    media = parse_media(message.get("media")) if message.get("has_media") else ()
    links = parse_links(message.get("links")) if message.get("has_links") else ()
    markers: list[str] = []
    media_left = links_left = False
    for item in media:
        text = None
        if show_analyses and item.status == "ok":
            text = image_text(item)
            text = f"image: {quoted(text)}" if text else f"file: {quoted(file_text(item))}"
        if text is None:
            media_left = True
        else:
            markers.append(text)
    for item in links:
        text = link_text(item) if show_analyses else None
        if text is None:
            links_left = True
        else:
            markers.append(f"link: {quoted(text)}")
    if len(markers) > MAX_SHOWN:
        markers = [*markers[:MAX_SHOWN], f"{len(markers) - MAX_SHOWN} more shared"]
    plain = []
    # (A message flagged with media or links whose rows are missing keeps its plain marker.)
    if message.get("has_media") and (media_left or not media):
        plain.append("attachment")
    if message.get("has_links") and (links_left or not links):
        plain.append("link")
    return LineParts(markers, plain)
