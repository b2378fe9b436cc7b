"""Maintenance windows: parsing, open/closed, crossing midnight, daylight-saving changes, next opening."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safemig.errors import ConfigError
from safemig.window import evaluate, parse_window, parse_windows

UTC = timezone.utc
BERLIN_WEEKEND = "Sat,Sun 02:00-04:00 Europe/Berlin"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_open_inside_and_closed_outside_with_next_opening():
    windows = parse_windows(BERLIN_WEEKEND)
    # Saturday 2026-11-28 02:30 CET = 01:30 UTC
    inside = evaluate(windows, at("2026-11-28T01:30:00+00:00"))
    assert inside.open and "open" in inside.describe() and "until Sat 2026-11-28 04:00 CET" in inside.describe()
    # Tuesday: next is Saturday 02:00 CET = 01:00 UTC
    outside = evaluate(windows, at("2026-11-24T08:00:00+00:00"))
    assert not outside.open
    _, start, end = outside.next_open
    assert start == at("2026-11-28T01:00:00+00:00") and end == at("2026-11-28T03:00:00+00:00")
    assert outside.describe() == (
        "outside the maintenance window; next window (Sat,Sun 02:00-04:00 Europe/Berlin) opens "
        "Sat 2026-11-28 02:00 CET (2026-11-28 01:00 UTC) (3 days 17 h from now)"
    )
    # the end is exclusive, the start inclusive
    assert evaluate(windows, at("2026-11-28T01:00:00+00:00")).open
    assert not evaluate(windows, at("2026-11-28T03:00:00+00:00")).open
    # Saturday after the window: Sunday's opens next
    assert evaluate(windows, at("2026-11-28T05:00:00+00:00")).next_open[1] == at("2026-11-29T01:00:00+00:00")


def test_no_window_means_always_open():
    status = evaluate(parse_windows(None), at("2026-11-24T08:00:00+00:00"))
    assert status.open and not status.configured
    assert status.describe() == "no maintenance window configured (always open)"


def test_window_crossing_midnight_belongs_to_the_day_it_opens():
    windows = parse_windows("Fri 22:00-02:00 UTC")
    assert evaluate(windows, at("2026-11-27T23:00:00+00:00")).open  # Friday night
    assert evaluate(windows, at("2026-11-28T01:59:00+00:00")).open  # Saturday early morning
    assert not evaluate(windows, at("2026-11-28T02:00:00+00:00")).open
    assert not evaluate(windows, at("2026-11-29T01:00:00+00:00")).open  # Sunday early: no Saturday window


def test_spring_forward_shortens_the_window_and_fall_back_lengthens_it():
    window = parse_window("Sun 02:00-04:00 Europe/Berlin")
    # 2026-03-29: clocks jump 02:00 -> 03:00; the window opens at the jump and lasts one real hour
    start, end = window.occurrence(datetime(2026, 3, 29).date())
    assert (start, end) == (at("2026-03-29T01:00:00+00:00"), at("2026-03-29T02:00:00+00:00"))
    # 2026-10-25: 03:00 -> 02:00; 02:00-04:00 on the wall clock is three real hours
    start, end = window.occurrence(datetime(2026, 10, 25).date())
    assert (start, end) == (at("2026-10-25T00:00:00+00:00"), at("2026-10-25T03:00:00+00:00"))
    # a start inside the gap opens at the transition
    gap = parse_window("Sun 02:30-03:30 Europe/Berlin").occurrence(datetime(2026, 3, 29).date())
    assert gap == (at("2026-03-29T01:00:00+00:00"), at("2026-03-29T01:30:00+00:00"))


def test_several_windows_day_ranges_daily_and_24h():
    windows = parse_windows(["Mon-Fri 22:00-23:00 America/New_York", "Sun 12:00-24:00 UTC"])
    assert evaluate(windows, at("2026-11-25T03:30:00+00:00")).open  # Tue 22:30 EST
    assert evaluate(windows, at("2026-11-29T23:59:00+00:00")).open  # Sunday before midnight
    assert evaluate(windows, at("2026-11-28T03:30:00+00:00")).open  # Fri 22:30 EST is Sat 03:30 UTC
    assert not evaluate(windows, at("2026-11-29T03:30:00+00:00")).open  # Sat 22:30 EST: no Saturday window
    both = parse_windows("daily 03:00-04:00 UTC; Sat 10:00-11:00 UTC")
    assert len(both) == 2 and evaluate(both, at("2026-11-24T03:10:00+00:00")).open
    assert parse_window("Fri-Mon 01:00-02:00 UTC").days == frozenset({4, 5, 6, 0})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Sat 02:00-04:00", "cannot read"),
        ("Sat 02:00-04:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("Sunday,Funday 02:00-04:00 UTC", "unknown day 'funday'"),
        ("Sat 25:00-04:00 UTC", "'25:00' is not a time of day"),
        ("Sat 02:00-02:00 UTC", "is empty"),
    ],
)
def test_malformed_windows_are_config_errors_naming_the_setting(text, message):
    with pytest.raises(ConfigError) as info:
        parse_windows(text, "envs.prod.maintenance_window in safemig.toml")
    assert message in info.value.message
    assert info.value.message.startswith("envs.prod.maintenance_window in safemig.toml")
    assert "Europe/Berlin" in info.value.hint  # every hint shows a working example


def test_wrong_types_are_config_errors():
    with pytest.raises(ConfigError, match="string or an array of strings"):
        parse_windows(42)
    with pytest.raises(ConfigError, match="is empty"):
        parse_windows(" ; ")


@settings(max_examples=200, deadline=None)
@given(
    minutes=st.integers(min_value=0, max_value=60 * 24 * 400),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"]),
)
def test_closed_status_always_names_a_future_opening_that_is_open(minutes, zone):
    windows = parse_windows(f"Sat,Sun 02:00-04:00 {zone}")
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    status = evaluate(windows, now)
    if status.open:
        _, start, end = status.current
        assert start <= now < end
    else:
        _, start, end = status.next_open
        assert now < start < end
        assert evaluate(windows, start).open
        assert not evaluate(windows, max(now, start - timedelta(seconds=1))).open
