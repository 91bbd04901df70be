"""The export reader's fast paths give exactly what the general ones give."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.exports import Export, emoji, message, reaction, role, snowflake, user
from zos_cli.sources import export_schema as schema
from zos_cli.sources.export import ExportError, ExportFile
from zos_cli.sources.export_schema import RecordError, stored_time


def _general(text: str) -> str:
    return schema._stored_time_of_any(text, "timestamp")


@st.composite
def export_times(draw):
    """Times as exports write them, near the calendar's ends and month and year edges too."""
    day = draw(st.one_of(
        st.dates(),
        st.sampled_from([datetime(1, 1, 1).date(), datetime(9999, 12, 31).date(),
                         datetime(2024, 2, 29).date(), datetime(2023, 12, 31).date()]),
    ))
    clock = draw(st.times())
    text = f"{day.isoformat()}T{clock.strftime('%H:%M:%S')}"
    digits = draw(st.sampled_from([0, 1, 3, 6, 7, 8]))
    if digits:
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits,
                                            max_size=digits)))
    offset = draw(st.one_of(st.just(""), st.just("Z"), st.builds(
        lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"),
        st.integers(0, 25), st.sampled_from([0, 0, 0, 30, 45]))))
    return text + offset


@settings(max_examples=600, deadline=None)
@given(texts=st.lists(export_times(), min_size=1, max_size=6))
def test_common_times_convert_as_datetime_does(texts):
    schema._utc_hours.clear()
    for text in texts * 2:  # the second time round, from the per-date table
        try:
            expected = _general(text)
        except (RecordError, OverflowError) as exc:
            with pytest.raises(type(exc)) as caught:
                stored_time(text, "timestamp")
            assert str(caught.value) == str(exc)
        else:
            assert stored_time(text, "timestamp") == expected, text


def test_every_local_hour_of_a_date_in_any_whole_hour_offset():
    for offset_hours in range(-23, 24):
        offset = f"{'-' if offset_hours < 0 else '+'}{abs(offset_hours):02d}:00"
        tz = timezone(timedelta(hours=offset_hours))
        for day in ("2023-12-31", "2024-01-01", "2024-02-28", "2024-02-29", "2024-03-01"):
            schema._utc_hours.clear()
            for hour in (*range(24), *range(24)):
                text = f"{day}T{hour:02d}:07:09.1234567{offset}"
                local = datetime.fromisoformat(f"{day}T{hour:02d}:07:09.123456").replace(tzinfo=tz)
                expected = local.astimezone(timezone.utc).isoformat(timespec="microseconds")
                assert stored_time(text, "timestamp") == expected


@pytest.mark.parametrize("text", ["2024-02-30T10:00:00.000+00:00", "2024-03-06T09:12:44+24:00",
                                  "2024-13-01T00:00:00Z", "0000-01-01T00:00:00Z"])
def test_invalid_dates_and_offsets_are_refused_every_time(text):
    schema._utc_hours.clear()
    for _ in range(2):
        with pytest.raises(RecordError, match="`timestamp` is not an ISO-8601 time"):
            stored_time(text, "timestamp")


# ---------------------------------------------------------------------- runs of messages
ALICE = user("101", "alice", nickname="Alice A.", roles=[role("9", "mods", 3, "#ff0000")])
BOB = user("102", "bob")


def _read(path, **kwargs):
    export = ExportFile(path, **kwargs)
    export.open()
    got = []
    try:
        for record in export.messages():
            got.append(record)
    except ExportError as exc:
        return got, exc.message
    finally:
        export.close()
    return got, None


def _many(count: int = 60) -> Export:
    msgs = []
    for i in range(count):
        author, other = (ALICE, BOB) if i % 2 else (BOB, ALICE)
        msgs.append(message(snowflake(i), author, f"m{i} https://example.com/{i}",
                            mentions=[other], reactions=[reaction(emoji("👍"), [other, author])]))
    return Export(messages=msgs)


def test_runs_read_what_one_message_at_a_time_reads(tmp_path):
    path = _many().write(tmp_path / "many.json")
    by_runs, problem = _read(path)
    one_at_a_time, _ = _read(path, chunk_bytes=64)  # runs never fit: one message per decode
    assert problem is None and len(by_runs) == 60 and by_runs == one_at_a_time
    first = by_runs[1]
    assert first.author.roles[0].name == "mods"  # the author carries roles ...
    assert [u.roles for u in first.reactions[0].users] == [None, None]  # ... reactors do not
    assert by_runs[3].author is first.author  # one record per distinct user shape


def test_a_repeat_inside_a_run_is_skipped_as_one_at_a_time_skips_it(tmp_path):
    data = _many().dumps()
    target = snowflake(37).encode()
    at = data.index(target)
    path = tmp_path / "repeat.json"
    path.write_bytes(data[:at] + snowflake(36).encode() + data[at + len(target):])
    by_runs, problem = _read(path)
    one_at_a_time, expected = _read(path, chunk_bytes=64)
    assert problem is expected is None
    assert [m.id for m in by_runs] == [m.id for m in one_at_a_time] == [
        snowflake(i) for i in range(60) if i != 37]
    for chunk_bytes in (None, 64):
        export = ExportFile(path, chunk_bytes=chunk_bytes)
        export.open()
        list(export.messages())
        assert export.warnings == [f"message id {snowflake(36)} repeated at message index 37: "
                                   "the later copy was skipped"]
        export.close()


@pytest.mark.parametrize("damage", ["bad time", "not UTF-8", "no author"])
def test_a_problem_inside_a_run_is_located_as_one_at_a_time_locates_it(tmp_path, damage):
    data = _many().dumps()
    target = snowflake(37).encode()
    at = data.index(target)
    if damage == "bad time":
        time_at = data.index(b'"timestamp": "', at) + len(b'"timestamp": "')
        data = data[:time_at] + b"yesterday" + data[time_at + 4:]
    elif damage == "not UTF-8":
        text_at = data.index(b'"m37', at) + 2
        data = data[:text_at] + b"\xff" + data[text_at:]
    else:
        author_at = data.index(b'"author"', at)
        data = data[:author_at] + b'"writer"' + data[author_at + len(b'"author"'):]
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    by_runs, problem = _read(path)
    one_at_a_time, expected = _read(path, chunk_bytes=64)
    assert expected is not None and ", at message index 37 (byte " in expected
    assert problem == expected
    assert [m.id for m in by_runs] == [m.id for m in one_at_a_time] == [snowflake(i)
                                                                          for i in range(37)]


def test_a_user_in_many_shapes_gets_the_record_of_each_shape(tmp_path):
    names = [f"nick {i % 11}" for i in range(40)]  # more shapes than one id keeps
    ex = Export(messages=[message(snowflake(i), user("105", "erin", nickname=name), "x")
                          for i, name in enumerate(names)])
    records, problem = _read(ex.write(tmp_path / "renamed.json"))
    assert problem is None
    assert [m.author.nickname for m in records] == names
    assert {m.author.id for m in records} == {"105"}


def test_links_are_found_whatever_the_case_of_their_scheme():
    text = "see Http://Example.com/a, HTTPS://b.example/x. and http://c.example/?q=1"
    assert schema.link_urls(text, ()) == [
        "Http://Example.com/a", "HTTPS://b.example/x", "http://c.example/?q=1"]
    assert schema.link_urls("no link here: ftp, http and :// alone", ()) == []
