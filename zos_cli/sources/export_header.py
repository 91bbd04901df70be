"""The header of a DiscordChatExporter export: the members around the `messages` array
(guild, channel, exportedAt, messageCount), read with `JsonScanner` without holding the array.
Problems are `JsonScanError`s, which `export.ExportFile` turns into `ExportError`s.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from zos_cli import records
from zos_cli.records import ChannelRecord
from zos_cli.sources import export_schema as schema
from zos_cli.sources.jsonscan import (
    JsonScanError,
    JsonScanner,
    decode_error_offset,
    describe_byte,
    strip_byte_note,
)

DM_GUILD_ID = "0"
TOO_DEEP = "arrays or objects nested too deeply (no export nests more than a few levels)"


@dataclass
class ExportHeader:
    channel: ChannelRecord
    exported_at: str | None        # stored form; None when the export does not say
    message_count: int | None      # `messageCount` when the file has it (after the array)
    messages_offset: int           # file offset of the `[` of the messages array


def read_header(s: JsonScanner, size: int) -> ExportHeader:
    """The header of an export; its messages are then read from `messages_offset`."""
    if size == 0:
        raise JsonScanError("empty file: not a DiscordChatExporter export", 0)
    first = s.byte_at(0)
    if first == 0xEF and bytes(s.buf[:3]) == b"\xef\xbb\xbf":
        raise JsonScanError(
            "the file starts with a UTF-8 byte-order mark (BOM), which JSON does not allow: "
            "save it without the BOM (e.g. `tail -c +4 FILE > FIXED`)", 0
        )
    fields: dict[str, object] = {}
    offsets: dict[str, int] = {}  # where each header value starts (to locate its problems)
    pos = s.skip_ws(0)
    found = s.byte_at(pos)
    if found != 0x7B:
        what = "nothing but whitespace" if found is None else describe_byte(found)
        raise JsonScanError(
            f"not a DiscordChatExporter channel export: expected a JSON object, found {what}",
            s.offset(pos),
        )
    pos, messages_offset = read_members(s, pos + 1, fields, stop_at_messages=True,
                                        offsets=offsets)
    if messages_offset is None:
        raise JsonScanError(
            "not a DiscordChatExporter channel export: it has no `messages` array",
            s.offset(pos),
        )
    if "channel" not in fields:
        # Unusual key order: the header is after the array. Skip the array, read the rest,
        # and come back (stdin is spooled to a file, so every source can seek).
        pos = _skip_array(s, pos)
        if pos is not None:
            read_members(s, pos, fields, stop_at_messages=False, offsets=offsets)
        if "channel" not in fields:
            raise JsonScanError(
                "not a DiscordChatExporter channel export: it has no `channel` object", 0
            )
    return _header_from(fields, messages_offset, offsets)

def read_members(s: JsonScanner, pos: int, fields: dict, *, stop_at_messages: bool,
                 offsets: dict | None = None):
    """Read `"key": value` members until `messages` (returned with its `[` offset) or `}`;
    `offsets` gets the file offset of each value read."""
    pos = s.skip_ws(pos)
    if s.byte_at(pos) == 0x7D and not fields:
        return pos + 1, None
    while True:
        pos = s.skip_ws(pos)
        if s.byte_at(pos) != 0x22:
            found = s.byte_at(pos)
            if found is None:
                raise JsonScanError("truncated JSON: the file ends inside the top-level object",
                                    s.offset(pos))
            raise JsonScanError(f"malformed JSON: expected a key, found {describe_byte(found)}",
                                s.offset(pos))
        end = s.string_end(pos, "a key")
        key = _decode(s, schema.str_decoder, pos, end, "a key")
        pos = s.skip_ws(s.expect(end, b":", "':'"))
        if key == "messages":
            if s.byte_at(pos) != 0x5B:
                found = s.byte_at(pos)
                s.byte_at(pos + 4)  # (buffered, to tell null, true and false)
                literal = bytes(s.buf[pos:pos + 5]).rstrip(b" \t\r\n,}")
                kind = {0x7B: "an object", 0x22: "a string", None: "the end of the file"}.get(
                    found) or (literal.decode() if literal in (b"null", b"true", b"false")
                               else "a number" if found in b"-0123456789"
                               else describe_byte(found))
                raise JsonScanError(f"`messages` is not a list (found {kind})", s.offset(pos))
            if stop_at_messages:
                return pos, s.offset(pos)
            raise JsonScanError("two `messages` arrays in one export", s.offset(pos))
        end = s.value_end(pos, f"`{key}`")
        decoder = _HEADER_DECODERS.get(key)
        if decoder is not None:
            fields[key] = _decode(s, decoder, pos, end, f"`{key}`")
            if offsets is not None:
                offsets[key] = s.offset(pos)
        pos = s.skip_ws(end)
        found = s.byte_at(pos)
        if found == 0x2C:
            pos += 1
            continue
        if found == 0x7D:
            return pos + 1, None
        if found is None:
            raise JsonScanError("truncated JSON: the file ends inside the top-level object",
                                s.offset(pos))
        raise JsonScanError(f"malformed JSON: expected ',' or '}}', found {describe_byte(found)}",
                            s.offset(pos))

def _decode(s: JsonScanner, decoder, start: int, end: int, what: str):
    raw = s.buf[start:end]
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _decode_problem(exc, raw, s.offset(start), what) from None


def _decode_problem(exc: Exception, raw, offset: int, what: str) -> JsonScanError:
    """What is wrong with the span `raw` at file offset `offset` that did not decode: bad
    UTF-8 first, in zos's words, whatever the decoder said."""
    problem = utf8_problem(raw, offset)
    if problem is not None:
        return JsonScanError(*problem)
    if isinstance(exc, msgspec.ValidationError):  # (a DecodeError too: asked first)
        return JsonScanError(f"{what} is not valid: {strip_byte_note(str(exc))}", offset)
    if isinstance(exc, msgspec.DecodeError):
        return JsonScanError(f"malformed JSON in {what}: {strip_byte_note(str(exc))}",
                             decode_error_offset(exc, offset))
    if isinstance(exc, RecursionError):
        return JsonScanError(f"{what} is not valid: {TOO_DEEP}", offset)
    return JsonScanError("not UTF-8 text", offset)


def _skip_array(s: JsonScanner, pos: int) -> int | None:
    """Step over the messages array element by element (never holding it whole); the
    position of the next member, or None when the array was the last one."""
    pos = s.skip_ws(s.expect(pos, b"[", "'['"))
    if s.byte_at(pos) != 0x5D:
        index = 0
        while True:
            pos = s.value_end(s.skip_ws(pos), f"message {index}")
            pos -= s.release(pos)
            pos = s.skip_ws(pos)
            found = s.byte_at(pos)
            if found == 0x5D:
                break
            if found != 0x2C:
                raise JsonScanError("malformed JSON: expected ',' or ']' after a message, "
                                    f"found {describe_byte(found)}", s.offset(pos))
            pos, index = pos + 1, index + 1
    pos = s.skip_ws(pos + 1)
    return pos + 1 if s.byte_at(pos) == 0x2C else None

def _header_from(fields: dict, messages_offset: int, offsets: dict[str, int]) -> ExportHeader:
    guild: schema.XGuild | None = fields.get("guild")
    channel: schema.XChannel = fields["channel"]
    try:
        schema.check_snowflake(channel.id, "channel.id")
    except schema.RecordError as exc:
        raise JsonScanError(str(exc), offsets["channel"]) from None
    exported_at = fields.get("exportedAt")
    if exported_at is not None:
        try:
            exported_at = schema.stored_time(exported_at, "exportedAt")
        except schema.RecordError as exc:
            raise JsonScanError(str(exc), offsets["exportedAt"]) from None
    guild_id = guild.id if guild else DM_GUILD_ID
    ctype = records.CHANNEL_TYPES_BY_EXPORT_NAME.get(channel.type, "unknown")
    is_dm = ctype in records.DM_TYPES
    if guild is None and not is_dm:
        raise JsonScanError(f"channel type {channel.type!r} is a server's, but the export has "
                            "no `guild` object", offsets["channel"])
    if is_dm != (guild_id == DM_GUILD_ID):
        raise JsonScanError(
            f"channel type {channel.type!r} does not match guild id {guild_id!r} "
            "(DMs are exported with guild id \"0\")", offsets["channel"]
        )
    if not is_dm:
        try:
            schema.check_snowflake(guild_id, "guild.id")
        except schema.RecordError as exc:
            raise JsonScanError(str(exc), offsets["guild"]) from None
    thread = ctype in records.THREAD_TYPES
    record = ChannelRecord(
        id=channel.id,
        type=ctype,
        server_id=None if is_dm else guild_id,
        server_name=None if is_dm or guild is None else guild.name,
        server_icon_url=None if is_dm or guild is None else guild.iconUrl,
        name=channel.name,
        parent_id=channel.categoryId if thread else None,
        category_id=None if thread else channel.categoryId,
        category_name=None if thread else channel.category,
        topic=channel.topic,
    )
    return ExportHeader(record, exported_at, fields.get("messageCount"), messages_offset)


_HEADER_DECODERS = {
    "guild": schema.guild_decoder,
    "channel": schema.channel_decoder,
    "exportedAt": schema.str_decoder,
    "messageCount": schema.int_decoder,
}


def utf8_problem(raw: bytes | bytearray | memoryview, offset: int) -> tuple[str, int] | None:
    """Where the span `raw` (starting at file offset `offset`) stops being UTF-8, as zos's
    message naming the first bad byte and the offset of that byte in the file; None when
    the span is UTF-8. Asked only after a decode failed, and asked first: how a decoder words
    a bad byte is its own affair and changes between releases (msgspec once raised
    UnicodeDecodeError; newer ones say "Invalid UTF-8 encoded string" and locate the
    string, not the byte)."""
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        return f"not UTF-8 text (byte 0x{bad:02x}): exports are UTF-8", offset + exc.start
    return None
