"""The line on which each key of a TOML document is written, for error messages.

``tomllib`` (the parser safemig uses) returns plain dicts without positions, and the TOML
libraries that keep them (tomlkit) are not otherwise needed and slower to import on the
commit-hook path. An error such as "unknown key lock_timout" is only useful with its line, so
this module scans the raw text once more, after ``tomllib`` has accepted it: it only needs to
tell keys and table headers apart from values (strings, multi-line strings, arrays and inline
tables are skipped as wholes), not to decode values. It never raises: on anything it does not
understand it stops and returns the lines found so far, and callers fall back to the line of
the enclosing table (or to no line).

Paths are tuples as they index the parsed data: ``("envs", "prod", "lock_timeout")``; an
array of tables adds its index (``("lint", "exceptions", 0, "reason")``).
"""

from __future__ import annotations

import tomllib

Path = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SPACE = " \t"


class _Stop(Exception):
    """The scanner met something it does not handle; keep what was found."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[Path, int] = {}
        self.aot_index: dict[Path, int] = {}  # array-of-tables path -> index of its current element

    # -- characters --------------------------------------------------------------------
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def advance(self, k: int = 1) -> None:
        for _ in range(k):
            if self.i < len(self.s) and self.s[self.i] == "\n":
                self.line += 1
            self.i += 1

    def skip_space(self) -> None:
        while self.peek() and self.peek() in _SPACE:
            self.advance()

    def skip_comment(self) -> None:
        if self.peek() == "#":
            while self.peek() and self.peek() != "\n":
                self.advance()

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments (inside arrays, and between statements)."""
        while self.peek():
            if self.peek() in " \t\r\n":
                self.advance()
            elif self.peek() == "#":
                self.skip_comment()
            else:
                return

    # -- keys --------------------------------------------------------------------------
    def key(self) -> list[str]:
        """A dotted key: bare, "basic" or 'literal' parts (quoted parts decoded by tomllib itself)."""
        parts: list[str] = []
        while True:
            self.skip_space()
            start = self.i
            if self.peek() == '"':
                self.advance()
                while self.peek() and self.peek() != '"':
                    self.advance(2 if self.peek() == "\\" else 1)
                self.advance()
                parts.append(next(iter(tomllib.loads(self.s[start : self.i] + " = 0"))))
            elif self.peek() == "'":
                self.advance()
                while self.peek() and self.peek() != "'":
                    self.advance()
                self.advance()
                parts.append(self.s[start + 1 : self.i - 1])
            else:
                while self.peek() and self.peek() in _BARE:
                    self.advance()
                if self.i == start:
                    raise _Stop
                parts.append(self.s[start : self.i])
            self.skip_space()
            if self.peek() != ".":
                return parts
            self.advance()

    # -- values ------------------------------------------------------------------------
    def string(self) -> None:
        quote = self.peek()
        if self.peek(1) == quote and self.peek(2) == quote:  # multi-line
            self.advance(3)
            while self.peek():
                if quote == '"' and self.peek() == "\\":
                    self.advance(2)
                elif self.peek() == quote and self.peek(1) == quote and self.peek(2) == quote:
                    while self.peek() == quote:  # up to two quotes may precede the closing three
                        self.advance()
                    return
                else:
                    self.advance()
            return
        self.advance()
        while self.peek() and self.peek() != quote and self.peek() != "\n":
            self.advance(2 if quote == '"' and self.peek() == "\\" else 1)
        self.advance()

    def value(self, path: list[str | int]) -> None:
        self.skip_space()
        c = self.peek()
        if c in "\"'":
            self.string()
        elif c == "[":
            self.advance()
            while True:
                self.skip_blank()
                if self.peek() in ("]", ""):
                    self.advance()
                    return
                if self.peek() == ",":
                    self.advance()
                    continue
                self.value([])  # keys inside arrays of inline tables: the array's line is reported
        elif c == "{":
            self.advance()
            while True:
                self.skip_space()
                if self.peek() in ("}", ""):
                    self.advance()
                    return
                if self.peek() == ",":
                    self.advance()
                    continue
                line = self.line
                parts = self.key()
                if path:
                    self.lines.setdefault((*path, *parts), line)
                self.skip_space()
                if self.peek() != "=":
                    raise _Stop
                self.advance()
                self.value([*path, *parts] if path else [])
        else:  # number, boolean, date-time: up to a delimiter
            while self.peek() and self.peek() not in ",]}#\n" and self.peek() not in _SPACE:
                self.advance()
                if self.peek() == " " and self.peek(1).isdigit():  # "1979-05-27 07:32:00"
                    self.advance()

    # -- document ----------------------------------------------------------------------
    def header(self) -> list[str | int]:
        array = self.peek(1) == "["
        self.advance(2 if array else 1)
        names = self.key()
        self.advance(2 if array else 1)
        real: list[str | int] = []
        for k, name in enumerate(names):
            real.append(name)
            here = tuple(real)
            if array and k == len(names) - 1:
                self.aot_index[here] = self.aot_index.get(here, -1) + 1
                real.append(self.aot_index[here])
            elif here in self.aot_index:
                real.append(self.aot_index[here])
        return real

    def document(self) -> dict[Path, int]:
        table: list[str | int] = []
        try:
            while True:
                self.skip_blank()
                if not self.peek():
                    break
                line = self.line
                if self.peek() == "[":
                    table = self.header()
                    self.lines.setdefault(tuple(table), line)
                else:
                    parts = self.key()
                    path = [*table, *parts]
                    self.lines.setdefault(tuple(path), line)
                    self.skip_space()
                    if self.peek() != "=":
                        raise _Stop
                    self.advance()
                    self.value(path)
                self.skip_space()
                self.skip_comment()
        except (_Stop, tomllib.TOMLDecodeError, IndexError, StopIteration):
            pass
        return self.lines


def key_lines(text: str) -> dict[Path, int]:
    """``{path: 1-based line}`` for every key and table header of ``text`` (valid TOML)."""
    return _Scanner(text).document()


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, else of its nearest enclosing key or table that has one."""
    for end in range(len(path), 0, -1):
        found = lines.get(tuple(path[:end]))
        if found is not None:
            return found
    return None


class KeyLines:
    """The lines of a document's keys, scanned on the first question: only error messages ask.

    ``prefix`` is the table the config lives in (``("tool", "safemig")`` in pyproject.toml);
    paths asked about are relative to it.
    """

    def __init__(self, text: str = "", prefix: Path = ()) -> None:
        self._text = text
        self._prefix = prefix
        self._lines: dict[Path, int] | None = None

    def line(self, path: Path) -> int | None:
        if self._lines is None:
            self._lines = key_lines(self._text) if self._text else {}
        return line_of(self._lines, (*self._prefix, *path))
