"""Parsers for config values: each turns a raw TOML value into a typed one, or says why not.

A parser is called as ``parse(value, setting)``, where ``setting`` names the value for the
message (``"safemig.toml:9: envs.prod.lock_timeout"``); it returns the typed value or raises
:class:`~safemig.errors.ConfigError` with a hint. ``kind`` describes the accepted values in
the README's table of keys. Pure module (no I/O, nothing heavy): the config is loaded on
every ``safemig lint``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from safemig.durations import INT_MAX, UNITS_HINT, Duration, DurationError, parse_duration
from safemig.errors import ConfigError

T = TypeVar("T")


class Parser(NamedTuple, Generic[T]):
    """A named parse function: ``kind`` is what the README says the key accepts.

    (NamedTuples here and for the other small value types: a frozen dataclass costs several
    generated functions at import, and the config is imported by every commit-hook run.)
    """

    kind: str
    func: Callable[[Any, str], T]

    def __call__(self, value: Any, setting: str) -> T:
        return self.func(value, setting)


def _key(setting: str) -> str:
    """``lock_timeout`` from ``"safemig.toml:9: envs.prod.lock_timeout"`` or ``"backup.x in safemig.toml"``."""
    return setting.split(": ")[-1].split(" in ")[0].rsplit(".", 1)[-1]


def pg_duration(guc: str) -> Parser[Duration]:
    """A value for PostgreSQL's integer millisecond setting ``guc``, accepted exactly as the server would."""
    return _duration(
        f"duration, as PostgreSQL reads {guc} (0 .. 2147483647ms; a bare number is ms)",
        f"is not a value PostgreSQL accepts for {guc}",
        '"5s", "500ms" or "15min" (0 disables it; at most 2147483647ms, about 24.8 days)',
        base="ms",
        integer=True,
        minimum=0,
        maximum=INT_MAX,
    )


def duration(*, maximum_s: float, minimum_s: float = 0.0) -> Parser[Duration]:
    """A duration safemig itself waits for: PostgreSQL's syntax for a real-valued setting in seconds."""
    return _duration(
        f"duration ({minimum_s:g}s .. {maximum_s:g}s; a bare number is seconds)",
        "is not a duration",
        f'"2s", "500ms" or "1min" ({minimum_s:g}s .. {maximum_s:g}s; a bare number is seconds)',
        base="s",
        integer=False,
        minimum=minimum_s,
        maximum=maximum_s,
    )


def _duration(kind: str, refusal: str, examples: str, **rules: Any) -> Parser[Duration]:
    def parse(value: Any, setting: str) -> Duration:
        try:
            return parse_duration(value, **rules)
        except DurationError as exc:
            raise ConfigError(
                f"{setting} = {value!r} {refusal}: {exc}", hint=f"write {_key(setting)} like {examples}; {UNITS_HINT}"
            ) from None

    return Parser(kind, parse)


def integer(low: int, high: int) -> Parser[int]:
    def parse(value: Any, setting: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                f"{setting} = {value!r} must be a whole number from {low} to {high}",
                hint=f"e.g. {_key(setting)} = {min(max(3, low), high)}",
            )
        return value

    return Parser(f"integer ({low} .. {high})", parse)


def number(low: float, high: float) -> Parser[float]:
    def parse(value: Any, setting: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(
                f"{setting} = {value!r} must be a number from {low:g} to {high:g}", hint=f"e.g. {_key(setting)} = 1.5"
            )
        return float(value)

    return Parser(f"number ({low:g} .. {high:g})", parse)


def boolean() -> Parser[bool]:
    def parse(value: Any, setting: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"{setting} = {value!r} must be true or false", hint=f"e.g. {_key(setting)} = true (no quotes)"
            )
        return value

    return Parser("true or false", parse)


def choice(*options: str) -> Parser[str]:
    def parse(value: Any, setting: str) -> str:
        if value not in options:
            from difflib import get_close_matches

            close = get_close_matches(str(value), options, n=1) if isinstance(value, str) else []
            raise ConfigError(
                f"{setting} = {value!r} is not one of {', '.join(map(repr, options))}"
                + (f"; did you mean {close[0]!r}?" if close else ""),
                hint=f'e.g. {_key(setting)} = "{options[0]}"',
            )
        return str(value)

    return Parser(" or ".join(f'`"{o}"`' for o in options), parse)


def text() -> Parser[str]:
    def parse(value: Any, setting: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"{setting} must be a non-empty string, not {value!r}", hint=f'e.g. {_key(setting)} = "..."'
            )
        return value

    return Parser("string", parse)
