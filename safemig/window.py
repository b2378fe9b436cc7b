"""Maintenance windows: ``"Sat,Sun 02:00-04:00 Europe/Berlin"``, evaluated in wall-clock time.

The guide says to migrate during low-traffic periods and to announce them; an env's
``maintenance_window`` makes that a gate. A window names days, a wall-clock span and an
IANA time zone, so "02:00 in Berlin" stays 02:00 in Berlin across daylight-saving
changes (a window spanning the spring-forward gap is an hour shorter that night, one
spanning the autumn fall-back an hour longer: what a person reading the clock expects).

Grammar (case-insensitive)::

    window := days " " HH:MM "-" HH:MM " " Zone/Name
    days   := "daily" | day ("," day)*         day := Mon..Sun | Mon-Fri (a range)

An end at or before the start crosses midnight (``Fri 22:00-02:00`` runs into Saturday);
the day named is the day the window opens. ``24:00`` is accepted as an end. Several
windows may be given (a TOML array, or one string separated by ``;``); the gate is open
when any is. No window configured means always open.

Pure module (zoneinfo only): the runbook and ``--dry-run`` use it without a database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safemig.errors import ConfigError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {name.lower(): i for i, name in enumerate(DAY_NAMES)}
_DAY_INDEX.update(
    {full: i for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
)
_WINDOW = re.compile(r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s+(?P<zone>\S+)\s*$")
_EXAMPLE = 'maintenance_window = "Sat,Sun 02:00-04:00 Europe/Berlin"'


@dataclass(frozen=True)
class Window:
    """One recurring window: the weekdays it opens on (0 = Monday), its wall-clock span, its zone."""

    text: str
    days: frozenset[int]
    start: time
    end: time  # time.max stands for 24:00
    zone: ZoneInfo

    @property
    def length(self) -> timedelta:
        """Wall-clock length (crossing midnight when the end is not after the start)."""
        start = timedelta(hours=self.start.hour, minutes=self.start.minute)
        end = timedelta(days=1) if self.end == time.max else timedelta(hours=self.end.hour, minutes=self.end.minute)
        if end <= start:
            end += timedelta(days=1)
        return end - start

    def occurrence(self, day: date) -> tuple[datetime, datetime] | None:
        """The window opening on local ``day`` as an aware (start, end) pair, or None if it does not open then.

        Wall-clock times are converted with zoneinfo's rules: a start inside a spring-forward
        gap opens at the transition; a span across a fall-back covers the repeated hour.
        """
        if day.weekday() not in self.days:
            return None
        start_local = datetime.combine(day, self.start, tzinfo=self.zone)
        end_wall = datetime.combine(day, time(self.start.hour, self.start.minute)) + self.length
        end_local = end_wall.replace(tzinfo=self.zone)
        start_utc = _to_utc(start_local)
        end_utc = _to_utc(end_local.replace(fold=1))
        return start_utc, max(end_utc, start_utc)


def _to_utc(local: datetime) -> datetime:
    """The instant the wall clock shows ``local``; ``fold`` picks the occurrence of a repeated time.

    A time that does not exist (skipped by a spring-forward change) maps to the transition:
    the first instant at which the clock shows a time at or after it.
    """
    as_utc = local.astimezone(UTC)
    if as_utc.astimezone(local.tzinfo).replace(tzinfo=None, fold=0) == local.replace(tzinfo=None, fold=0):
        return as_utc
    naive = local.replace(tzinfo=None, fold=0)
    lo = local.replace(fold=1).astimezone(UTC)  # before the jump: clock shows less
    hi = local.replace(fold=0).astimezone(UTC)  # after the jump: clock shows more
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(local.tzinfo).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)  # transitions fall on whole seconds, so this stays >= it


def _parse_days(text: str, setting: str) -> frozenset[int]:
    lowered = text.lower()
    if lowered in ("daily", "*", "mon-sun"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in lowered.split(","):
        first, dash, last = part.partition("-")
        try:
            lo = _DAY_INDEX[first.strip()]
            hi = _DAY_INDEX[last.strip()] if dash else lo
        except KeyError:
            raise ConfigError(
                f"{setting}: unknown day {part!r} in {text!r}",
                hint=f"use Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges like Mon-Fri, or daily; e.g. {_EXAMPLE}",
            ) from None
        span = (hi - lo) % 7
        days.update((lo + i) % 7 for i in range(span + 1))
    return frozenset(days)


def _parse_time(text: str, setting: str, *, is_end: bool) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if is_end and (hours, minutes) == (24, 0):
        return time.max
    if hours > 23 or minutes > 59:
        raise ConfigError(
            f"{setting}: {text!r} is not a time of day",
            hint=f"use HH:MM between 00:00 and 23:59 (24:00 as an end); e.g. {_EXAMPLE}",
        )
    return time(hours, minutes)


def parse_window(text: str, setting: str = "maintenance_window") -> Window:
    """Parse one window; a malformed one is a :class:`ConfigError` naming ``setting``."""
    match = _WINDOW.match(text)
    if not match:
        raise ConfigError(
            f"{setting}: cannot read {text!r} as DAYS HH:MM-HH:MM ZONE",
            hint=f"e.g. {_EXAMPLE} (IANA time zone; several windows as an array)",
        )
    try:
        zone = ZoneInfo(match["zone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{setting}: unknown time zone {match['zone']!r}",
            hint="use an IANA name such as Europe/Berlin, America/New_York or UTC",
        ) from None
    start = _parse_time(match["start"], setting, is_end=False)
    end = _parse_time(match["end"], setting, is_end=True)
    if start == end:
        raise ConfigError(
            f"{setting}: window {text!r} is empty (start equals end)",
            hint=f"give an end time different from the start; e.g. {_EXAMPLE}",
        )
    return Window(text=text.strip(), days=_parse_days(match["days"], setting), start=start, end=end, zone=zone)


def parse_windows(value: object, setting: str = "maintenance_window") -> list[Window]:
    """Windows from a config value: a string (``;`` separates several), a list of strings, or None."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [part for part in value.split(";") if part.strip()]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        raise ConfigError(f"{setting} must be a string or an array of strings", hint=f"e.g. {_EXAMPLE}")
    if not items:
        raise ConfigError(f"{setting} is empty", hint=f"remove it (always open) or write e.g. {_EXAMPLE}")
    return [parse_window(item, setting) for item in items]


@dataclass(frozen=True)
class WindowStatus:
    """Whether a set of windows is open at ``now``, and if not, when the next one opens."""

    configured: bool
    open: bool
    now: datetime
    current: tuple[Window, datetime, datetime] | None = None  # open: which window, until when
    next_open: tuple[Window, datetime, datetime] | None = None  # closed: the next occurrence

    def describe(self) -> str:
        """One line for the terminal, the deploy record and the runbook."""
        if not self.configured:
            return "no maintenance window configured (always open)"
        if self.open and self.current:
            window, _, end = self.current
            return f"maintenance window open ({window.text}) until {format_local(end, window.zone)}"
        if self.next_open:
            window, start, _ = self.next_open
            return (
                f"outside the maintenance window; next window ({window.text}) opens "
                f"{format_local(start, window.zone)} ({format_delta(start - self.now)} from now)"
            )
        return "outside the maintenance window; no window opens in the next 8 days"  # pragma: no cover


def format_local(moment: datetime, zone: ZoneInfo) -> str:
    """``Sat 2026-11-28 02:00 CET (01:00 UTC)``: the window's own zone first, UTC for everyone else."""
    local = moment.astimezone(zone)
    utc = moment.astimezone(UTC)
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({utc:%Y-%m-%d %H:%M} UTC)"


def format_delta(delta: timedelta) -> str:
    """``2 days 3 h 5 min``: rounded down to minutes."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} h")
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts)


def evaluate(windows: Sequence[Window], now: datetime | None = None) -> WindowStatus:
    """Is any window open at ``now`` (aware; default: the current time)? If not, which opens next."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not windows:
        return WindowStatus(configured=False, open=True, now=now)
    upcoming: list[tuple[datetime, Window, datetime]] = []
    for window in windows:
        local_today = now.astimezone(window.zone).date()
        # Yesterday's window may still be open (crossing midnight); look 8 days ahead for the next.
        for offset in range(-2, 9):
            occurrence = window.occurrence(local_today + timedelta(days=offset))
            if occurrence is None:
                continue
            start, end = occurrence
            if start <= now < end:
                return WindowStatus(configured=True, open=True, now=now, current=(window, start, end))
            if start > now:
                upcoming.append((start, window, end))
    upcoming.sort(key=lambda item: item[0])
    first = upcoming[0] if upcoming else None
    return WindowStatus(
        configured=True,
        open=False,
        now=now,
        next_open=(first[1], first[0], first[2]) if first else None,
    )
