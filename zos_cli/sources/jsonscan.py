"""Reading one big JSON document a piece at a time.

A DiscordChatExporter export is one JSON object whose `messages` array can hold millions of
messages (a 1M-message channel is ≈1.3 GB), so it is never decoded whole. `JsonScanner` reads
the file in chunks, finds the top-level keys, and hands out the exact bytes of each array
element, which the caller decodes with a typed msgspec decoder. Memory stays at about one
chunk plus one element.

Finding where an element ends:
- fast path: DiscordChatExporter writes indented JSON, and a raw newline can never occur
  inside a JSON string, so an element that starts on its own line at indent I ends at the
  first line that starts with I spaces and `}`. The candidate is confirmed by decoding it (a
  complete JSON value that starts at the element's `{` can only end at its matching `}`);
- slow path (compact JSON, odd indentation, or a candidate that does not decode): a scan of
  the structural characters that skips strings, exact for any valid JSON.

Every byte is hashed exactly once as it is first read, so the file's sha256 is known when the
scan reaches the end without a second read.
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
# No Discord message comes near this (4,000 characters of content, 10 embeds); anything larger
# is a broken or hostile file, refused before it can take the memory bound with it.
MAX_ELEMENT_BYTES = 4 << 20

_WS = re.compile(rb"[ \t\r\n]*")
_STRUCTURAL = re.compile(rb'[{}\[\]"]')
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SCALAR = re.compile(rb"(?:true|false|null|-?[0-9][0-9eE.+-]*)")
_BYTE_IN_MESSAGE = re.compile(r"\(byte (\d+)\)")


class JsonScanError(Exception):
    """Malformed input, with where it was found (`offset` in bytes from the file start)."""

    def __init__(self, what: str, offset: int):
        super().__init__(what)
        self.what = what
        self.offset = offset


def describe_byte(value: int | None) -> str:
    if value is None:
        return "the end of the file"
    char = chr(value)
    return repr(char) if 32 <= value < 127 else f"byte 0x{value:02x}"


class JsonScanner:
    """A chunked window over a binary file, with positions relative to the window.

    `self.buf[0]` is at file offset `self.base`. Positions handed between methods are window
    positions; `release(pos)` drops what lies before `pos` (between elements) and returns the
    shift to subtract from positions still held.
    """

    def __init__(self, handle: BinaryIO, *, chunk_bytes: int = CHUNK_BYTES,
                 max_element_bytes: int = MAX_ELEMENT_BYTES):
        self.handle = handle
        self.chunk_bytes = chunk_bytes
        self.max_element_bytes = max_element_bytes
        self.buf = bytearray()
        self.base = 0
        self.eof = False
        self.sha256 = hashlib.sha256()
        self.hashed_bytes = 0
        self._indent_needle: bytes | None = None

    # ------------------------------------------------------------------ the window
    def fill(self) -> bool:
        """Append the next chunk; False at the end of the file."""
        if self.eof:
            return False
        offset = self.base + len(self.buf)
        chunk = self.handle.read(self.chunk_bytes)
        if not chunk:
            self.eof = True
            return False
        end = offset + len(chunk)
        # Hash each byte once, in order, even after a seek back (a gap would give a wrong
        # digest, so a read that starts beyond what was hashed leaves the hash incomplete).
        if offset <= self.hashed_bytes < end:
            self.sha256.update(chunk[self.hashed_bytes - offset:])
            self.hashed_bytes = end
        self.buf += chunk
        return True

    def seek(self, offset: int) -> None:
        self.handle.seek(offset)
        self.buf = bytearray()
        self.base = offset
        self.eof = False

    def release(self, pos: int) -> int:
        """Forget the window before `pos` once it is large; returns how far positions moved."""
        if pos < self.chunk_bytes:
            return 0
        del self.buf[:pos]
        self.base += pos
        return pos

    def offset(self, pos: int) -> int:
        return self.base + pos

    def byte_at(self, pos: int) -> int | None:
        while pos >= len(self.buf):
            if not self.fill():
                return None
        return self.buf[pos]

    def skip_ws(self, pos: int) -> int:
        while True:
            pos = _WS.match(self.buf, pos).end()
            if pos < len(self.buf) or not self.fill():
                return pos

    def expect(self, pos: int, char: bytes, what: str) -> int:
        pos = self.skip_ws(pos)
        found = self.byte_at(pos)
        if found != char[0]:
            if found is None:
                raise JsonScanError(f"truncated JSON: the file ends where {what} was expected",
                                    self.offset(pos))
            raise JsonScanError(f"malformed JSON: expected {what}, found {describe_byte(found)}",
                                self.offset(pos))
        return pos + 1

    # ------------------------------------------------------------------ values
    def string_end(self, pos: int, what: str = "a string") -> int:
        """`pos` is at a `"`: the position after the closing quote."""
        while True:
            m = _STRING_BODY.match(self.buf, pos + 1)
            if m is not None:
                return m.end()
            if len(self.buf) - pos > self.max_element_bytes:
                raise JsonScanError(
                    f"{what} holds a string larger than {self.max_element_bytes // (1 << 20)} MiB "
                    "(enormous content, or the file is not an export)", self.offset(pos)
                )
            if not self.fill():
                raise JsonScanError(f"truncated JSON: the file ends inside {what}",
                                    self.offset(len(self.buf)))

    def value_end(self, pos: int, what: str) -> int:
        """The end of the JSON value starting at `pos` (exact for any valid JSON)."""
        first = self.byte_at(pos)
        if first is None:
            raise JsonScanError(f"truncated JSON: the file ends before {what}", self.offset(pos))
        if first == 0x22:  # "
            return self.string_end(pos, what)
        if first in (0x7B, 0x5B):  # { [
            return self._composite_end(pos, what)
        while True:
            m = _SCALAR.match(self.buf, pos)
            if m is not None and (m.end() < len(self.buf) or self.eof):
                return m.end()
            if m is None:
                raise JsonScanError(
                    f"malformed JSON: {describe_byte(first)} cannot start {what}", self.offset(pos)
                )
            self.fill()

    def _composite_end(self, pos: int, what: str) -> int:
        depth, i, limit = 0, pos, pos + self.max_element_bytes
        buf = self.buf
        while True:
            m = _STRUCTURAL.search(buf, i)
            if m is None or m.start() >= limit:
                if len(buf) - pos > self.max_element_bytes:
                    raise JsonScanError(
                        f"{what} is larger than {self.max_element_bytes // (1 << 20)} MiB "
                        "(enormous content, or the file is not an export)", self.offset(pos)
                    )
                i = len(buf)
                if not self.fill():
                    raise JsonScanError(f"truncated JSON: the file ends inside {what}",
                                        self.offset(len(buf)))
                buf = self.buf
                continue
            c = buf[m.start()]
            if c == 0x22:
                i = self.string_end(m.start(), what)
                buf = self.buf
                continue
            i = m.end()
            if c in (0x7B, 0x5B):
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return i

    def element_end(self, pos: int, what: str) -> tuple[int, bool]:
        """(end, certain) for the array element starting with `{` at `pos`: the fast line
        candidate (to be confirmed by decoding) or the exact structural end."""
        needle = self._indent_needle
        if needle is not None:
            start = pos
            while True:
                hit = self.buf.find(needle, start)
                if hit >= 0:
                    if hit - pos > self.max_element_bytes:
                        raise JsonScanError(
                            f"{what} is larger than {self.max_element_bytes // (1 << 20)} MiB "
                            "(enormous content, or the file is not an export)", self.offset(pos))
                    return hit + len(needle), False
                start = max(pos, len(self.buf) - len(needle))
                if len(self.buf) - pos > self.max_element_bytes or not self.fill():
                    break
        return self._composite_end(pos, what), True

    def run_end(self, pos: int, max_bytes: int) -> int | None:
        """For a run of array elements starting at `pos`: the last line candidate (as in
        `element_end`) among the bytes already read, at most `max_bytes` on and before the
        window's last byte (so the caller may overwrite the byte after it); None when the
        layout is not indented or no candidate is buffered. Confirmed by decoding."""
        needle = self._indent_needle
        if needle is None:
            return None
        hit = self.buf.rfind(needle, pos, min(len(self.buf) - 1, pos + max_bytes))
        return None if hit < 0 else hit + len(needle)

    def learn_indent(self, pos: int) -> None:
        """Called at the first element: remember its indentation when it starts a line."""
        line_start = self.buf.rfind(b"\n", 0, pos) + 1
        indent = bytes(self.buf[line_start:pos])
        if line_start > 0 and indent.strip(b" \t") == b"":
            self._indent_needle = b"\n" + indent + b"}"
        else:
            self._indent_needle = None


def decode_error_offset(exc: Exception, element_offset: int) -> int:
    """A msgspec DecodeError names `(byte N)` within the decoded slice: make it absolute."""
    m = _BYTE_IN_MESSAGE.search(str(exc))
    return element_offset + int(m.group(1)) if m else element_offset


def strip_byte_note(text: str) -> str:
    return _BYTE_IN_MESSAGE.sub("", text).rstrip(" -")
