"""Streaming reader of DiscordChatExporter JSON exports (one file per channel).

`ExportFile(path).open()` reads the header (guild, channel, exportedAt: `export_header`);
`.messages()` then yields one `MessageRecord` at a time, decoded with msgspec from the exact
bytes of the elements of the `messages` array (see `jsonscan`), a run of consecutive messages
per call, so memory does not grow with the file.
Every problem is an `ExportError` (exit 65) that says what is wrong and where:
`<file>: <what>, at message index N (byte B)` or `<file>: <what>, at byte B`.
Two quirks of real exports are not problems but `warnings` (docs/ingest.md#warnings): a
message id repeated in the file (the later copy is skipped, the rest read on) and a
`messageCount` that disagrees with the messages (files filtered or trimmed by a script keep
the old count).
"""

from __future__ import annotations

import heapq
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from zos_cli.errors import InputDataError
from zos_cli.records import MessageRecord
from zos_cli.sources import export_schema as schema
from zos_cli.sources.export_header import (
    TOO_DEEP,
    ExportHeader,
    read_header,
    read_members,
    utf8_problem,
)
from zos_cli.sources.jsonscan import (
    JsonScanError,
    JsonScanner,
    decode_error_offset,
    describe_byte,
    strip_byte_note,
)

# Messages are decoded a run at a time, one msgspec call for up to this many bytes of
# consecutive messages: one call per message made finding and decoding them cost more than
# the decoding itself. A decoded run takes about 1.2 times its bytes, and a merge holds one
# run per open file, so a run is also at most an eighth of the read chunk (which shrinks as
# more files are merged): together at most ≈ 1/6 of the merge's read-ahead.
RUN_BYTES = 128 << 10

# msgspec decodes nested arrays and objects recursively, up to Python's recursion limit:
# deeper (`[[[[…` a thousand levels) is a RecursionError, reported as bad input.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError,
                  RecursionError)

# Repeated ids each get a warning of their own up to this many per file; beyond, one line
# counts the rest (a file pasted twice into itself would otherwise print a warning per message).
MAX_DUPLICATE_WARNINGS = 20


class ExportError(InputDataError):
    """A malformed export: `file`, what is wrong (`what`) and where (`offset`, `index`)."""

    def __init__(self, file: str, what: str, offset: int | None = None, index: int | None = None):
        where = []
        if index is not None:
            where.append(f"message index {index}")
        if offset is not None:
            where.append(f"byte {offset}" if index is None else f"(byte {offset})")
        self.file, self.what, self.offset, self.index = file, what, offset, index
        self.detail = f"{what}, at {' '.join(where)}" if where else what
        super().__init__(f"{file}: {self.detail}")


class _IdCheck:
    """Duplicate ids within one file, in about 8 bytes per message: exports are chronological,
    so ids arrive ascending and are appended to a sorted array. An id out of order goes to a
    small set aside, merged into the array when it grows past MERGE_ASIDE: a file in any order
    costs O(n log n), never an insertion into the middle of the array per message."""

    MERGE_ASIDE = 1 << 16

    def __init__(self):
        self.ids = array("Q")
        self.aside: set[int] = set()

    def add(self, snowflake: int) -> bool:
        ids = self.ids
        if not ids or snowflake > ids[-1]:
            if snowflake in self.aside:
                return False
            ids.append(snowflake)
            return True
        if snowflake in self.aside:
            return False
        at = bisect_left(ids, snowflake)
        if at < len(ids) and ids[at] == snowflake:
            return False
        self.aside.add(snowflake)
        if len(self.aside) >= self.MERGE_ASIDE:
            self.ids = array("Q", heapq.merge(ids, sorted(self.aside)))
            self.aside.clear()
        return True


class ExportFile:
    """One export file (or a spooled copy of stdin, shown as `label`)."""

    def __init__(self, path: str | Path, label: str | None = None, *,
                 handle: BinaryIO | None = None, chunk_bytes: int | None = None):
        self.path = Path(path)
        self.label = label or str(path)
        self._handle = handle
        self._owns_handle = handle is None
        self._chunk_bytes = chunk_bytes
        self.header: ExportHeader | None = None
        self.scanner: JsonScanner | None = None
        self.size: int | None = None
        self.messages_read = 0
        self._warnings: list[str] = []
        self.duplicates_skipped = 0

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> ExportHeader:
        try:
            if self._handle is None:
                self._handle = open(self.path, "rb")
        except OSError as exc:
            raise ExportError(self.label, f"cannot be read ({exc.strerror})") from None
        self.size = os.fstat(self._handle.fileno()).st_size
        kwargs = {"chunk_bytes": self._chunk_bytes} if self._chunk_bytes else {}
        self.scanner = JsonScanner(self._handle, **kwargs)
        try:
            self.header = read_header(self.scanner, self.size)
        except JsonScanError as exc:
            raise ExportError(self.label, exc.what, exc.offset) from None
        return self.header

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def release_handle(self) -> None:
        """Close the file between the header and the messages (many files wait to be merged);
        `messages()` reopens it and the hash carries on where it was."""
        if self._handle is not None and self._owns_handle:
            self.close()
            self.scanner.handle = None

    def set_chunk_bytes(self, chunk_bytes: int) -> None:
        self.scanner.chunk_bytes = chunk_bytes

    def _reopen(self) -> None:
        if self._handle is None:
            try:
                self._handle = open(self.path, "rb")
            except OSError as exc:
                raise ExportError(self.label, f"cannot be read ({exc.strerror})") from None
            self.scanner.handle = self._handle

    def __enter__(self) -> ExportFile:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def sha256(self) -> str | None:
        """The file's sha256 once every byte was read, else None."""
        s = self.scanner
        if s is None or self.size is None or s.hashed_bytes < self.size:
            return None
        return s.sha256.hexdigest()

    @property
    def warnings(self) -> list[str]:
        """What the last read of `messages()` found odd but read on (so far, when it stopped
        early): repeated ids and a disagreeing `messageCount`."""
        more = self.duplicates_skipped - MAX_DUPLICATE_WARNINGS
        if more > 0:
            return [*self._warnings, f"{more:,} more repeated message ids: their later copies "
                    "were skipped"]
        return list(self._warnings)

    # ------------------------------------------------------------------ messages
    def messages(self) -> Iterator[MessageRecord]:
        """Every message, in file order, each id once (a later copy of an id is skipped
        with a warning). Raises ExportError at the first problem (the messages yielded
        before it are good)."""
        if self.header is None:
            self.open()
        self._reopen()
        s = self.scanner
        builder = schema.RecordBuilder(self.header.channel.id, self.header.exported_at)
        ids = _IdCheck()
        s.seek(self.header.messages_offset)
        index = 0
        self.messages_read = 0
        self._warnings = []  # (a file read twice, DMs and gated servers, warns once)
        self.duplicates_skipped = 0
        one_at_a_time_until = 0  # file offset: after a run that did not decode, up to its end
        try:
            pos = s.skip_ws(s.expect(0, b"[", "'['"))
            if s.byte_at(pos) == 0x5D:
                pos += 1
            else:
                s.learn_indent(pos)
                while True:
                    pos = s.skip_ws(pos)
                    found = s.byte_at(pos)
                    if found != 0x7B:
                        raise self._element_problem(found, pos, index)
                    run = None
                    if s.offset(pos) >= one_at_a_time_until:
                        run, run_end = self._decode_run(pos)
                        if run is None and run_end is not None:
                            one_at_a_time_until = s.offset(run_end)
                    if run is not None:
                        first_index = index
                        for x in run:
                            record = self._record(x, builder, ids, pos, index - first_index,
                                                  first_index)
                            index += 1
                            self.messages_read = index
                            if record is not None:
                                yield record
                        pos = run_end
                    else:
                        record, pos = self._one_message(pos, index, builder, ids)
                        index += 1
                        self.messages_read = index
                        if record is not None:
                            yield record
                    pos -= s.release(pos)
                    pos = s.skip_ws(pos)
                    found = s.byte_at(pos)
                    if found == 0x2C:
                        pos += 1
                        continue
                    if found == 0x5D:
                        pos += 1
                        break
                    if found is None:
                        raise ExportError(self.label, "truncated JSON: the file ends after "
                                          f"message index {index - 1}, inside the `messages` "
                                          "array", s.offset(pos))
                    raise ExportError(
                        self.label, "malformed JSON: expected ',' or ']' after a message, found "
                        f"{describe_byte(found)}", s.offset(pos), index - 1)
        except JsonScanError as exc:
            raise ExportError(self.label, exc.what, exc.offset, index) from None
        try:
            self._read_trailer(pos, index)
        except JsonScanError as exc:
            raise ExportError(self.label, exc.what, exc.offset) from None

    def _element_problem(self, found: int | None, pos: int, index: int) -> ExportError:
        s = self.scanner
        if found is None:
            return ExportError(self.label, "truncated JSON: the file ends inside the `messages` "
                               "array", s.offset(pos), index)
        return ExportError(self.label, f"message is not a JSON object (found "
                           f"{describe_byte(found)})", s.offset(pos), index)

    def _decode_run(self, pos: int) -> tuple[list[schema.XMessage] | None, int | None]:
        """The messages from `pos` to the last one buffered (see RUN_BYTES), decoded in
        one call, and where they end; (None, end) when they do not decode (they are then read
        one at a time, which finds and locates any problem), (None, None) when there is no
        such run (compact JSON, or the next message is not fully buffered)."""
        s = self.scanner
        end = s.run_end(pos, min(RUN_BYTES, s.chunk_bytes // 8))
        if end is None or pos == 0:
            return None, None
        raw = s.buf[pos - 1:end + 1]
        raw[0], raw[-1] = 0x5B, 0x5D  # the bytes around the run become the brackets of a list
        try:
            return schema.message_list_decoder.decode(raw), end
        except _DECODE_ERRORS:
            return None, end

    def _one_message(self, pos: int, index: int, builder, ids: _IdCheck):
        s = self.scanner
        end, certain = s.element_end(pos, f"message {index}")
        try:
            x = schema.message_decoder.decode(s.buf[pos:end])
        except _DECODE_ERRORS:
            if certain:
                raise self._message_decode_problem(pos, end, index) from None
            end = s._composite_end(pos, f"message {index}")
            try:
                x = schema.message_decoder.decode(s.buf[pos:end])
            except _DECODE_ERRORS:
                raise self._message_decode_problem(pos, end, index) from None
        return self._record(x, builder, ids, pos, 0, index), end

    def _record(self, x: schema.XMessage, builder, ids: _IdCheck, run_pos: int, in_run: int,
                run_index: int) -> MessageRecord | None:
        """The record of message `x`, number `in_run` of the run of messages that starts at
        `run_pos` with message index `run_index` (where a problem is reported); None for a
        later copy of an id already read (skipped with a warning)."""
        try:
            record = builder.message(x)
        except schema.RecordError as exc:
            raise self._run_problem(f"message {x.id}: {exc}", run_pos, in_run, run_index) \
                from None
        if not ids.add(int(record.id)):
            self._skip_repeated(record.id, run_index + in_run)
            return None
        return record

    def _skip_repeated(self, message_id: str, index: int) -> None:
        # The first copy was stored already (and may be in a transaction that committed):
        # keeping it and reading on loses nothing, where stopping lost every later message.
        self.duplicates_skipped += 1
        if self.duplicates_skipped <= MAX_DUPLICATE_WARNINGS:
            self._warnings.append(f"message id {message_id} repeated at message index {index}: "
                                  "the later copy was skipped")

    def _run_problem(self, what: str, run_pos: int, in_run: int, run_index: int) -> ExportError:
        """A problem with message number `in_run` of a run that decoded (so is valid JSON),
        located by stepping over the messages before it."""
        s = self.scanner
        pos = run_pos
        for _ in range(in_run):
            pos = s.skip_ws(s.expect(s._composite_end(pos, "a message"), b",", "','"))
        return ExportError(self.label, what, s.offset(pos), run_index + in_run)

    def _message_decode_problem(self, pos: int, end: int, index: int) -> ExportError:
        s = self.scanner
        raw = bytes(s.buf[pos:end])
        problem = utf8_problem(raw, s.offset(pos))  # bad UTF-8 first, in zos's words
        if problem is not None:
            what, offset = problem
            return ExportError(self.label, what, offset, index)
        try:
            schema.message_decoder.decode(raw)
        except UnicodeDecodeError:
            return ExportError(self.label, "not UTF-8 text", s.offset(pos), index)
        except msgspec.ValidationError as exc:
            text = strip_byte_note(str(exc)).replace("Object missing required field",
                                                     "missing required field")
            return ExportError(self.label, f"not a valid message: {text}", s.offset(pos), index)
        except msgspec.DecodeError as exc:
            return ExportError(self.label, f"malformed JSON: {strip_byte_note(str(exc))}",
                               decode_error_offset(exc, s.offset(pos)), index)
        except RecursionError:
            return ExportError(self.label, f"not a valid message: {TOO_DEEP}", s.offset(pos),
                               index)
        return ExportError(self.label, "message could not be decoded", s.offset(pos), index)

    def _read_trailer(self, pos: int, count: int) -> None:
        """After the array: the remaining members (messageCount), `}`, then nothing."""
        s = self.scanner
        pos = s.skip_ws(pos)
        found = s.byte_at(pos)
        trailer: dict[str, object] = {}
        if found == 0x2C:
            pos, _ = read_members(s, pos + 1, trailer, stop_at_messages=False)
        elif found == 0x7D:
            pos += 1
        elif found is None:
            raise JsonScanError("truncated JSON: the file ends after the `messages` array",
                                s.offset(pos))
        else:
            raise JsonScanError(f"malformed JSON: expected ',' or '}}', found "
                                f"{describe_byte(found)}", s.offset(pos))
        pos = s.skip_ws(pos)
        extra = s.byte_at(pos)
        if extra is not None:
            raise JsonScanError(f"unexpected data after the export ({describe_byte(extra)})",
                                s.offset(pos))
        declared = trailer.get("messageCount", self.header.message_count)
        if declared is not None and declared != count:
            # A file filtered or trimmed by a script keeps its old count: every message it
            # holds was read (a truncated file never gets here: it has no closing `}`).
            self._warnings.append(f"`messageCount` says {declared:,} but the file holds "
                                  f"{count:,} messages")
