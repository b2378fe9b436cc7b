"""Durations read exactly as PostgreSQL reads a time-valued setting (``"5s"``, ``"1.5min"``, ``"0"``).

A ``lock_timeout`` that the config accepts but the server refuses would be found at the
production apply, after the backup and the rehearsal; one the config refuses but the server
accepts would be a needless error. So the rules here are PostgreSQL's own, from
``parse_int``/``parse_real`` and ``convert_to_base_unit`` in ``src/backend/utils/misc/guc.c``
(unchanged from PostgreSQL 12 to 18), not a regular expression that is close to them:

* a number, then optional whitespace, then an optional unit (``us``, ``ms``, ``s``, ``min``,
  ``h``, ``d``; case-sensitive), then optional whitespace; nothing else;
* an integer setting (``lock_timeout``, ``statement_timeout``) reads the number with C's
  ``strtol(..., 0)`` first, so ``0x10`` is 16 and ``010`` is 8, and falls back to ``strtod`` at a
  ``.``, an ``e`` or an overflow (``1.5s``, ``1e3``); a real one reads it with ``strtod``;
* a fractional value is rounded to a whole multiple of the next smaller unit (``1.5d`` is 36 h,
  ``1.0001s`` is 1000 ms), and an integer setting is then rounded half-to-even to whole base
  units: ``"0.4ms"`` is 0, which for ``lock_timeout`` means *no timeout*, exactly as on the server;
* the result must lie in the setting's range (``lock_timeout``: 0 to 2147483647 ms).

Python has no ``strtol``/``strtod`` with C's syntax, so the two scanners below are written
out (C locale: ASCII digits and C's six whitespace characters). ``tests/test_durations.py``
checks them against a real server's ``set_config``. Pure module: ``safemig lint`` loads the
config, and with it this, on every commit.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

INT_MAX = 2**31 - 1
_LONG_MAX = 2**63 - 1  # C long on the 64-bit platforms PostgreSQL runs on
_C_SPACE = " \t\n\v\f\r"
_DEC = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"
# guc.c's time_unit_conversion_table: unit -> multiplier per base unit, largest first
# (the order matters: a fraction is rounded to the next entry's unit).
_UNITS_MS = (("d", 86_400_000.0), ("h", 3_600_000.0), ("min", 60_000.0), ("s", 1000.0), ("ms", 1.0), ("us", 0.001))
_UNITS_S = (("d", 86_400.0), ("h", 3_600.0), ("min", 60.0), ("s", 1.0), ("ms", 0.001), ("us", 0.000001))
_TABLES = {"ms": _UNITS_MS, "s": _UNITS_S}
UNITS_HINT = 'units: us, ms, s, min, h, d (e.g. "500ms", "5s", "15min")'


class DurationError(ValueError):
    """The text is not a duration PostgreSQL would accept; ``str()`` says why, in PostgreSQL's terms."""


class Duration(NamedTuple):
    """A checked duration: the text as written and its value as PostgreSQL computes it.

    Kept in milliseconds, the unit of the server's integer settings, so that ``lock_timeout``'s
    value is exact (``"1001"`` is 1001 ms, not 1000.9999...).
    """

    text: str
    ms: float

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0

    def __str__(self) -> str:
        return self.text


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i] in _C_SPACE:
        i += 1
    return i


def _run(s: str, i: int, alphabet: str) -> int:
    while i < len(s) and s[i] in alphabet:
        i += 1
    return i


def strtol(s: str) -> tuple[int, int, bool]:
    """C's ``strtol(s, &end, 0)``: (value, end index, overflowed); end 0 means no number."""
    i = _skip_space(s, 0)
    sign = 1
    if i < len(s) and s[i] in "+-":
        sign = -1 if s[i] == "-" else 1
        i += 1
    if s[i : i + 2] in ("0x", "0X") and i + 2 < len(s) and s[i + 2] in _HEX:
        start, base = i + 2, 16
        end = _run(s, start, _HEX)
    elif s[i : i + 1] == "0":
        start, base = i, 8
        end = _run(s, start, _OCT)
    else:
        start, base = i, 10
        end = _run(s, start, _DEC)
    if end == start:
        return 0, 0, False
    value = sign * int(s[start:end], base)
    return value, end, not -_LONG_MAX - 1 <= value <= _LONG_MAX


def strtod(s: str) -> tuple[float, int, bool]:
    """glibc's ``strtod(s, &end)``: (value, end index, out of range); end 0 means no number."""
    i = _skip_space(s, 0)
    begin = i
    if i < len(s) and s[i] in "+-":
        i += 1
    lower = s[i : i + 8].lower()
    if lower.startswith("infinity") or lower.startswith("inf"):
        end = i + (8 if lower.startswith("infinity") else 3)
        return float(s[begin:end].lower().replace("infinity", "inf")), end, False
    if lower.startswith("nan"):
        end = i + 3
        if end < len(s) and s[end] == "(":  # nan(n-char-sequence)
            close = _run(s, end + 1, _DEC + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
            if close < len(s) and s[close] == ")":
                end = close + 1
        return math.nan, end, False
    if s[i : i + 2] in ("0x", "0X"):
        j = _run(s, i + 2, _HEX)
        digits = j - (i + 2)
        if j < len(s) and s[j] == ".":
            k = _run(s, j + 1, _HEX)
            digits += k - (j + 1)
            j = k
        if not digits:  # "0x" without hex digits: the "0" alone is the number
            return 0.0, i + 1, False
        if j < len(s) and s[j] in "pP":
            k = j + 1 + (1 if s[j + 1 : j + 2] in ("+", "-") else 0)
            e = _run(s, k, _DEC)
            if e > k:
                j = e
        try:
            value = float.fromhex(s[begin:j])
        except OverflowError:
            return math.inf, j, True
        return value, j, _out_of_range(value, s[i + 2 : j].lower().split("p")[0])
    j = _run(s, i, _DEC)
    digits = j - i
    if j < len(s) and s[j] == ".":
        k = _run(s, j + 1, _DEC)
        digits += k - (j + 1)
        j = k
    if not digits:
        return 0.0, 0, False
    mantissa = s[i:j]
    if j < len(s) and s[j] in "eE":
        k = j + 1 + (1 if s[j + 1 : j + 2] in ("+", "-") else 0)
        e = _run(s, k, _DEC)
        if e > k:
            j = e
    value = float(s[begin:j])
    return value, j, _out_of_range(value, mantissa)


def _out_of_range(value: float, mantissa: str) -> bool:
    """glibc sets ERANGE on overflow to infinity and on underflow (a non-zero number below DBL_MIN)."""
    if math.isinf(value):
        return True
    return any(c not in "0." for c in mantissa) and abs(value) < sys.float_info.min


def _to_base_unit(value: float, unit_text: str, base: str) -> float | None:
    """guc.c's ``convert_to_base_unit``: the value in the base unit, or None for an unknown unit."""
    unit = unit_text.rstrip(_C_SPACE)
    table = _TABLES[base]
    for index, (name, multiplier) in enumerate(table):
        if unit == name:
            converted = value * multiplier
            if index + 1 < len(table):  # a fraction rounds to a whole multiple of the next smaller unit
                smaller = table[index + 1][1]
                converted = round(converted / smaller) * smaller
            return converted
    return None


def parse_guc_time(text: str, *, base: str = "ms", integer: bool = True) -> float:
    """The value (in ``base`` units) PostgreSQL gives a time setting set to ``text``, before its range check.

    ``integer=True`` reads it as ``parse_int`` does (``lock_timeout``), else as ``parse_real``.
    Raises :class:`DurationError` where PostgreSQL raises "invalid value for parameter".
    """
    if integer:
        whole, end, overflow = strtol(text)
        value = float(whole)
        # guc.c re-reads with strtod when strtol stopped at ".", "e" or "E" (also at the very
        # start: ".5s") or overflowed
        if (end < len(text) and text[end] in ".eE") or overflow:
            value, end, overflow = strtod(text)
    else:
        value, end, overflow = strtod(text)
    if not end or overflow or math.isnan(value):
        raise DurationError(f"{text!r} is not a number with an optional unit")
    rest = text[_skip_space(text, end) :]
    if rest:
        converted = _to_base_unit(value, rest, base)
        if converted is None:
            raise DurationError(f"{rest.strip()!r} is not a time unit ({UNITS_HINT})")
        value = converted
    if integer:
        if math.isinf(value):
            raise DurationError("value exceeds integer range")
        value = float(round(value))  # rint(): half to even, as round() does
        if not -INT_MAX - 1 <= value <= INT_MAX:
            raise DurationError("value exceeds integer range")
    return value


def parse_duration(
    value: object, *, base: str = "ms", integer: bool = True, minimum: float = 0, maximum: float = INT_MAX
) -> Duration:
    """A :class:`Duration` from a config value (a string, or a TOML number read in ``base`` units).

    ``minimum``/``maximum`` are in ``base`` units, as PostgreSQL states a setting's range.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DurationError('must be a string like "5s" (or a number)')
    text = value if isinstance(value, str) else repr(value)
    amount = parse_guc_time(text, base=base, integer=integer)
    if not minimum <= amount <= maximum:
        raise DurationError(f"{amount:g} {base} is outside the valid range ({minimum:g} .. {maximum:g} {base})")
    return Duration(text=text.strip(_C_SPACE), ms=amount if base == "ms" else amount * 1000.0)
