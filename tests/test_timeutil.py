from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_cli.timeutil import normalize, parse_time, snowflake_time, time_to_snowflake, to_stored


@pytest.mark.parametrize("text,stored", [
    ("2024-03-01T08:00:00-04:00", "2024-03-01T12:00:00.000000+00:00"),
    ("2024-03-01T12:00:00.123+00:00", "2024-03-01T12:00:00.123000+00:00"),
    ("2024-03-01T12:00:00.1234567+00:00", "2024-03-01T12:00:00.123456+00:00"),
    ("2024-03-01T12:00:00Z", "2024-03-01T12:00:00.000000+00:00"),
    ("2024-03-01T13:30:00.5+01:30", "2024-03-01T12:00:00.500000+00:00"),
    ("2024-03-01T12:00:00", "2024-03-01T12:00:00.000000+00:00"),
])
def test_normalize(text, stored):
    assert normalize(text) == stored


@pytest.mark.parametrize("bad", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z"])
def test_bad_times(bad):
    with pytest.raises(ValueError):
        parse_time(bad)


def test_times_past_the_calendar_are_value_errors():
    # In range where they are written, out of range in UTC (datetime raises OverflowError).
    for text in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError, match="outside the years 1–9999 once in UTC"):
            normalize(text)


def test_snowflake_time():
    assert to_stored(snowflake_time("175928847299117063")) == "2016-04-30T11:18:25.796000+00:00"


@settings(max_examples=50, deadline=None)
@given(st.datetimes(min_value=datetime(2015, 2, 1), max_value=datetime(2090, 1, 1),
                    timezones=st.just(timezone.utc)))
def test_stored_form_sorts_like_time(dt):
    later = dt.replace(microsecond=(dt.microsecond + 1) % 1_000_000) if dt.microsecond < 999_999 else dt
    assert (to_stored(dt) <= to_stored(later)) == (dt <= later)
    assert snowflake_time(time_to_snowflake(dt)) <= dt
