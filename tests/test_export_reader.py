"""The streaming DiscordChatExporter reader: records, times, layouts, and exact errors."""

from __future__ import annotations

import hashlib
import random
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.exports import (
    Export,
    attachment,
    dm_export,
    emoji,
    message,
    reaction,
    role,
    snowflake,
    time_of,
    user,
)
from zos_cli.errors import InputDataError
from zos_cli.sources.export import ExportError, ExportFile

ALICE = user("101", "alice", nickname="Alice A.", roles=[role("9", "mods", 3, "#ff0000")])
BOB = user("102", "bob")
CAROL = user("103", "carol")
BLOB = emoji("blob", "555")


def read(path, **kwargs):
    export = ExportFile(path, **kwargs)
    header = export.open()
    try:
        return header, list(export.messages()), export
    finally:
        export.close()


def rich_export() -> Export:
    ex = Export(exported_at="2024-03-10T08:00:00.1234567-04:00")
    first = ex.add(message(snowflake(0), ALICE, "hi all :blob: and :blob: https://example.com/a.",
                           inline_emojis=[BLOB], pinned=True))
    ex.add(message(snowflake(1), BOB, "hello @Alice A.", reply_to=first, mentions=[ALICE],
                   reactions=[reaction(emoji("👍"), [ALICE, CAROL]), reaction(BLOB, [ALICE], 4)],
                   attachments=[attachment("77", "kiln.png", 2048)],
                   embeds=[{"title": "x", "url": "https://news.example.org/p?q=1"}],
                   edited=time_of(snowflake(2), -4, 7)))
    ex.add(message(snowflake(3), CAROL, "Kiln log", type="ThreadCreated",
                   reference={"type": "Default", "messageId": None, "channelId": "3001",
                              "guildId": "1001"}))
    return ex


def test_records_carry_every_field(tmp_path):
    header, msgs, _ = read(rich_export().write(tmp_path / "general.json"))
    channel = header.channel
    assert (channel.id, channel.type, channel.server_id, channel.server_name, channel.name) == (
        "2001", "text", "1001", "Test Guild", "general")
    assert header.exported_at == "2024-03-10T12:00:00.123456+00:00"
    first, second, third = msgs
    assert first.author.display_name == "Alice A." and first.author.roles[0].name == "mods"
    assert first.inline_custom_emoji_ids == ["555", "555"]  # two :blob: occurrences
    assert first.link_urls == ["https://example.com/a"]
    assert first.is_pinned and first.reactions == [] and first.observed_at == header.exported_at
    assert second.reply_to_id == first.id and second.message_type == "Reply"
    assert [u.id for u in second.mentions] == ["101"]
    assert second.edited_at == time_of(snowflake(2)).replace(".000+00:00", ".000000+00:00")
    assert [(r.emoji_name, r.emoji_id, r.count, [u.id for u in r.users]) for r in second.reactions] \
        == [("👍", "", 2, ["101", "103"]), ("blob", "555", 4, ["101"])]
    assert second.reactions[0].users[0].roles is None  # reactors come without roles
    assert [(a.id, a.file_name, a.size_bytes) for a in second.attachments] == [("77", "kiln.png",
                                                                                2048)]
    assert second.link_urls == ["https://news.example.org/p?q=1"]
    assert third.thread_id == "3001" and third.reply_to_id is None


@pytest.mark.parametrize("offset,digits", [(0, 0), (0, 3), (-4, 3), (5, 7), (-4, 0)])
def test_times_with_any_offset_and_precision(tmp_path, offset, digits):
    mid = snowflake(90)
    ex = Export(messages=[message(mid, ALICE, "x", timestamp=time_of(mid, offset, digits))])
    _, (msg,), _ = read(ex.write(tmp_path / "t.json"))
    assert msg.created_at == "2024-03-01T13:30:00.000000+00:00"


def test_a_time_past_the_calendar_in_utc_is_a_record_error(tmp_path):
    ex = Export(messages=[message(snowflake(0), ALICE, "x", timestamp="9999-12-31T23:59:59-14:00")])
    with pytest.raises(ExportError, match="`timestamp` '9999-12-31T23:59:59-14:00' is outside "
                                          "the years 1–9999 once in UTC, at message index 0"):
        read(ex.write(tmp_path / "t.json"))


def test_seven_fraction_digits_are_truncated_to_microseconds(tmp_path):
    ex = Export(messages=[message(snowflake(0), ALICE, "x",
                                  timestamp="2024-03-01T08:00:00.9876549-04:00")])
    _, (msg,), _ = read(ex.write(tmp_path / "t.json"))
    assert msg.created_at == "2024-03-01T12:00:00.987654+00:00"


def test_compact_odd_and_tiny_chunks_read_the_same(tmp_path):
    ex = rich_export()
    _, expected, _ = read(ex.write(tmp_path / "a.json"))
    compact = ex.write(tmp_path / "b.json", indent=None)
    odd = tmp_path / "c.json"
    odd.write_text(json.dumps(ex.doc(), indent="\t"), encoding="utf-8")
    for path, chunk in ((compact, None), (odd, None), (tmp_path / "a.json", 7), (compact, 5)):
        _, got, _ = read(path, chunk_bytes=chunk)
        assert got == expected


def test_header_after_the_messages_array(tmp_path):
    ex = rich_export()
    doc = ex.doc()
    reordered = {"messages": doc["messages"], "messageCount": 3, "guild": doc["guild"],
                 "channel": doc["channel"], "exportedAt": doc["exportedAt"]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(reordered, indent=2), encoding="utf-8")
    header, msgs, export = read(path)
    assert header.channel.id == "2001" and len(msgs) == 3
    assert export.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_old_exports_without_roles_or_nickname(tmp_path):
    old = {"id": "104", "name": "dave", "discriminator": "1234", "isBot": True}
    ex = Export(messages=[message(snowflake(0), old, "beep")], with_count=False)
    _, (msg,), _ = read(ex.write(tmp_path / "o.json"))
    assert msg.author.roles is None and msg.author.nickname is None
    assert msg.author.display_name == "dave" and msg.author.is_bot


def test_dm_and_thread_headers(tmp_path):
    dm = dm_export("4001", "alice", messages=[message(snowflake(0), ALICE, "hey")])
    header, _, _ = read(dm.write(tmp_path / "dm.json"))
    assert (header.channel.type, header.channel.server_id, header.channel.server_name) == (
        "dm", None, None)
    thread = Export(channel_id="3001", channel_type="GuildPublicThread", channel_name="Kiln",
                    parent_id="2002", parent_name="show-and-tell")
    header, _, _ = read(thread.write(tmp_path / "th.json"))
    assert (header.channel.type, header.channel.parent_id, header.channel.category_id) == (
        "public_thread", "2002", None)


def test_sha256_and_size(tmp_path):
    path = rich_export().write(tmp_path / "h.json")
    _, _, export = read(path)
    assert export.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert export.size == path.stat().st_size


# ---------------------------------------------------------------------- bad input
def _good() -> bytes:
    ex = Export(messages=[message(snowflake(0), ALICE, "hi"), message(snowflake(1), BOB, "yo")])
    return ex.dumps()


GOOD = _good()
M0 = GOOD.index(b"\n    {") + 5           # where message 0 starts
M1 = GOOD.index(b"\n    {", M0) + 5       # where message 1 starts
END = GOOD.rindex(b"}") + 1              # just after the export
MESSAGES = GOOD.index(b'"messages": ') + len('"messages": ')
HI = GOOD.index(b'"hi"')
CHANNEL = GOOD.index(b'"channel": ') + len('"channel": ')
EXPORTED_AT = GOOD.index(b'"2024-03-10T12:00:00.000+00:00"')
COUNT = GOOD.index(b'"messageCount"')   # after the messages array


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


BAD = {
    "truncated": (lambda g: g[:M0 + 200],
                  f"truncated JSON: the file ends inside message 0, at message index 0 "
                  f"(byte {M0 + 200})"),
    "not an export": (lambda g: b"[1, 2, 3]\n", "not a DiscordChatExporter channel export: "
                      "expected a JSON object, found '[', at byte 0"),
    "no messages": (lambda g: b'{"guild": {"id": "1"}, "channel": {"id": "2", "type": '
                    b'"GuildTextChat"}}', "not a DiscordChatExporter channel export: it has no "
                    "`messages` array, at byte 71"),
    "messages not a list": (lambda g: _replace(g, b'"messages": [', b'"messages": {"a": ['),
                            f"`messages` is not a list (found an object), at byte {MESSAGES}"),
    "messages null": (lambda g: _replace(g, b'"messages": [', b'"messages": null, "x": ['),
                      f"`messages` is not a list (found null), at byte {MESSAGES}"),
    "messages a number": (lambda g: _replace(g, b'"messages": [', b'"messages": 7, "x": ['),
                          f"`messages` is not a list (found a number), at byte {MESSAGES}"),
    "non-UTF-8": (lambda g: _replace(g, b'"hi"', b'"h\xffi"'),
                  "not UTF-8 text (byte 0xff): exports are UTF-8, at message index 0 "
                  f"(byte {HI + 2})"),
    "non-UTF-8, a truncated sequence": (lambda g: _replace(g, b'"hi"', b'"h\xe2\x82i"'),
                                        "not UTF-8 text (byte 0xe2): exports are UTF-8, at "
                                        f"message index 0 (byte {HI + 2})"),
    "non-UTF-8 outside a string": (lambda g: _replace(g, b'"isPinned": false',
                                                      b'"isPinned": \xfffalse'),
                                   "not UTF-8 text (byte 0xff): exports are UTF-8, at message "
                                   f"index 0 (byte {GOOD.index(b'false', M0)})"),
    "non-UTF-8 in the header": (lambda g: _replace(g, b'"general"', b'"gen\xc3ral"'),
                                "not UTF-8 text (byte 0xc3): exports are UTF-8, at byte "
                                f"{GOOD.index(b'general') + 3}"),
    "BOM": (lambda g: b"\xef\xbb\xbf" + g,
            "the file starts with a UTF-8 byte-order mark (BOM), which JSON does not allow: save "
            "it without the BOM (e.g. `tail -c +4 FILE > FIXED`), at byte 0"),
    "empty": (lambda g: b"", "empty file: not a DiscordChatExporter export, at byte 0"),
    "no id": (lambda g: _replace(g, b'"id": "%s"' % snowflake(1).encode(), b'"idx": "1"'),
              f"not a valid message: missing required field `id`, at message index 1 "
              f"(byte {M1})"),
    "id beyond 64 bits": (lambda g: _replace(g, snowflake(1).encode(), b"18446744073709551616"),
                          "message 18446744073709551616: `id` '18446744073709551616' is not a "
                          "Discord id (a string of digits, "
                          f"at most 2^64 - 1), at message index 1 (byte {M1})"),
    "no author": (lambda g: _replace(g, b'"author"', b'"writer"'),
                  "not a valid message: missing required field `author`, at message index 0 "
                  f"(byte {M0})"),
    "enormous content": (lambda g: _replace(g, b'"hi"', b'"' + b"x" * 150_000 + b'"'),
                         f"message {snowflake(0)}: content of 150,000 characters is enormous "
                         "(Discord allows 4,000; zos accepts up to 100,000), at message index 0 "
                         f"(byte {M0})"),
    "enormous message": (lambda g: _replace(g, b'"hi"', b'"' + b"x" * (5 << 20) + b'"'),
                         "message 0 holds a string larger than 4 MiB (enormous content, or the "
                         f"file is not an export), at message index 0 (byte {HI})"),
    "bad time": (lambda g: _replace(g, b'"timestamp": "2024', b'"timestamp": "yesterday'),
                 f"message {snowflake(0)}: `timestamp` is not an ISO-8601 time: "
                 f"'yesterday-03-01T12:00:00.000+00:00', at message index 0 (byte {M0})"),
    "nested too deeply": (lambda g: _replace(g, b'"components": []',
                                            b'"components": ' + b"[" * 5000 + b"]" * 5000),
                          "not a valid message: arrays or objects nested too deeply (no export "
                          f"nests more than a few levels), at message index 0 (byte {M0})"),
    "header nested too deeply": (lambda g: _replace(g, b'"iconUrl"', b'"x": ' + b"[" * 5000
                                                    + b"]" * 5000 + b', "iconUrl"'),
                                 "`guild` is not valid: arrays or objects nested too deeply (no "
                                 "export nests more than a few levels), at byte "
                                 f"{GOOD.index(b'{', 1)}"),
    "bad channel id": (lambda g: _replace(g, b'"id": "2001"', b'"id": "general"'),
                       "`channel.id` 'general' is not a Discord id (a string of digits, at most "
                       f"2^64 - 1), at byte {CHANNEL}"),
    "bad guild id": (lambda g: _replace(g, b'"id": "1001"', b'"id": "g1"'),
                     "`guild.id` 'g1' is not a Discord id (a string of digits, at most 2^64 - 1)"
                     f", at byte {GOOD.index(b'{', 1)}"),
    "bad exportedAt": (lambda g: _replace(g, b'"2024-03-10T12:00:00.000+00:00"', b'"soon"'),
                       "`exportedAt` is not an ISO-8601 time: 'soon', at byte "
                       f"{EXPORTED_AT}"),
    "no guild": (lambda g: _replace(g, b'"guild"', b'"server"'),
                 "channel type 'GuildTextChat' is a server's, but the export has no `guild` "
                 f"object, at byte {CHANNEL + 1}"),  # ("server" is a byte longer)
    "junk after": (lambda g: g + b"{}", f"unexpected data after the export ('{{'), at byte {END}"),
    "truncated after the array": (lambda g: g[:COUNT],
                                  f"truncated JSON: the file ends inside the top-level object, "
                                  f"at byte {COUNT}"),
    "truncated after the count": (lambda g: g[:END - 1].rstrip(),
                                  "truncated JSON: the file ends inside the top-level object, "
                                  f"at byte {len(GOOD[:END - 1].rstrip())}"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_located_exactly(tmp_path, case):
    make, expected = BAD[case]
    path = tmp_path / "bad.json"
    path.write_bytes(make(_good()))
    with pytest.raises(ExportError) as caught:
        read(path)
    assert caught.value.message == f"{path}: {expected}"
    assert isinstance(caught.value, InputDataError) and caught.value.exit_code == 65


# ---------------------------------------------------------------------- warnings
def test_a_count_that_disagrees_is_a_warning_and_every_message_is_read(tmp_path):
    path = tmp_path / "trimmed.json"
    path.write_bytes(_replace(GOOD, b'"messageCount": 2', b'"messageCount": 1234'))
    _, msgs, export = read(path)
    assert [m.id for m in msgs] == [snowflake(0), snowflake(1)]
    assert export.warnings == ["`messageCount` says 1,234 but the file holds 2 messages"]
    assert export.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_count_before_the_array_is_checked_the_same_way(tmp_path):
    doc = json.loads(GOOD)
    reordered = {"messageCount": 3, **{k: v for k, v in doc.items() if k != "messageCount"}}
    path = tmp_path / "reordered.json"
    path.write_text(json.dumps(reordered, indent=2))
    _, msgs, export = read(path)
    assert len(msgs) == 2
    assert export.warnings == ["`messageCount` says 3 but the file holds 2 messages"]


def test_a_repeated_id_is_skipped_with_a_warning_and_the_rest_is_read(tmp_path):
    ex = Export(messages=[message(snowflake(0), ALICE, "first"), message(snowflake(1), BOB, "b"),
                          message(snowflake(0), CAROL, "again"),
                          *(message(snowflake(i), BOB, f"after {i}") for i in (2, 3, 4))])
    for indent in (2, None):  # runs decoded together, and compact JSON read one by one
        path = tmp_path / f"repeated-{indent}.json"
        path.write_bytes(ex.dumps(indent))
        _, msgs, export = read(path)
        assert [(m.id, m.content) for m in msgs] == [
            (snowflake(0), "first"), (snowflake(1), "b"),
            *((snowflake(i), f"after {i}") for i in (2, 3, 4))]
        # Six elements, as messageCount says: the count agrees, the repeat is the one warning.
        assert export.warnings == [f"message id {snowflake(0)} repeated at message index 2: "
                                   "the later copy was skipped"]
        assert export.duplicates_skipped == 1 and export.messages_read == 6


def test_many_repeated_ids_are_counted_after_the_first_warnings(tmp_path):
    from zos_cli.sources.export import MAX_DUPLICATE_WARNINGS

    ones = [message(snowflake(i), ALICE, f"m{i}") for i in range(30)]
    path = Export(messages=ones + ones).write(tmp_path / "twice.json")  # pasted into itself
    _, msgs, export = read(path)
    assert [m.id for m in msgs] == [snowflake(i) for i in range(30)]
    assert len(export.warnings) == MAX_DUPLICATE_WARNINGS + 1
    assert export.warnings[0] == (f"message id {snowflake(0)} repeated at message index 30: "
                                  "the later copy was skipped")
    assert export.warnings[-1] == (f"{30 - MAX_DUPLICATE_WARNINGS} more repeated message ids: "
                                   "their later copies were skipped")


def test_a_second_read_warns_once(tmp_path):
    ex = Export(messages=[message(snowflake(0), ALICE, "a"), message(snowflake(0), BOB, "b")])
    ex.with_count = False
    export = ExportFile(ex.write(tmp_path / "twice-read.json"))
    export.open()
    for _ in range(2):  # a DM or a privacy-gated server's file is read twice
        assert [m.content for m in export.messages()] == ["a"]
        assert len(export.warnings) == 1
    export.close()


def test_the_messages_before_a_problem_are_read(tmp_path):
    ex = Export(messages=[message(snowflake(i), ALICE, f"m{i}") for i in range(5)])
    data = ex.dumps()
    path = tmp_path / "cut.json"
    path.write_bytes(data[: data.index(snowflake(3).encode()) + 5])
    export = ExportFile(path)
    export.open()
    got = []
    with pytest.raises(ExportError, match="truncated JSON"):
        for record in export.messages():
            got.append(record.id)
    assert got == [snowflake(i) for i in range(3)]


# ---------------------------------------------------------------------- property
users = st.sampled_from([ALICE, BOB, CAROL, {"id": "104", "name": "dave"}])
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def exports(draw):
    count = draw(st.integers(0, 8))
    minutes = sorted(draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count,
                                   unique=True)))
    msgs = []
    for m in minutes:
        reacts = draw(st.lists(st.builds(lambda e, us: reaction(e, us),
                                         st.sampled_from([emoji("👍"), BLOB]),
                                         st.lists(users, max_size=3, unique_by=lambda u: u["id"])),
                               max_size=2, unique_by=lambda r: r["emoji"]["name"]))
        msgs.append(message(snowflake(m), draw(users), draw(texts), reactions=reacts,
                            mentions=draw(st.lists(users, max_size=2))))
    return Export(messages=msgs, with_count=draw(st.booleans()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ex=exports(), indent=st.sampled_from([None, 0, 1, 2, 4]), data=st.data())
def test_generated_exports_read_back_or_fail_with_the_documented_error(tmp_path, ex, indent, data):
    raw = ex.dumps(indent)
    path = tmp_path / "gen.json"
    path.write_bytes(raw)
    _, msgs, _ = read(path, chunk_bytes=data.draw(st.sampled_from([None, 16, 1000])))
    assert [m.id for m in msgs] == [m["id"] for m in ex.messages]
    assert [m.content for m in msgs] == [m["content"] for m in ex.messages]
    # Damaged copies: cut, a byte changed, or junk inserted. Either read or a located error.
    where = data.draw(st.integers(0, max(0, len(raw) - 1)))
    damage = data.draw(st.sampled_from(["cut", "flip", "insert"]))
    if damage == "cut":
        bad = raw[:where]
    elif damage == "flip":
        bad = raw[:where] + bytes([data.draw(st.integers(0, 255))]) + raw[where + 1:]
    else:
        bad = raw[:where] + data.draw(st.binary(min_size=1, max_size=4)) + raw[where:]
    path.write_bytes(bad)
    try:
        read(path)
    except ExportError as exc:
        assert exc.message.startswith(f"{path}: ") and ", at " in exc.message


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_duplicate_ids_are_found_in_any_order(order, monkeypatch):
    from zos_cli.sources.export import _IdCheck

    monkeypatch.setattr(_IdCheck, "MERGE_ASIDE", 8)  # merged into the array many times
    ids = list(range(1000, 1300))
    if order == "reversed":
        ids.reverse()
    else:
        random.Random(5).shuffle(ids)
    check = _IdCheck()
    assert all(check.add(i) for i in ids)
    assert not any(check.add(i) for i in ids)
    assert sorted((*check.ids, *check.aside)) == sorted(ids)
