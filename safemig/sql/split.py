"""Split a SQL script into statements the way psql does, keeping every character's position.

Why not a library: sqlglot re-tokenises (and its generator rewrites SQL), and pglast's
scanner-based ``split`` silently drops text after a statement it cannot lex (measured:
``"SELECT 1; SELEC broken ;;"`` comes back as ``['SELECT 1']``), which is exactly what a
safety linter must never do. So this is a small lexer over PostgreSQL's lexical rules,
with psql's splitting heuristics (``psqlscan.l``):

* ``'...'`` strings (``''`` escapes), ``E'...'`` strings (backslash escapes too),
  ``"..."`` identifiers, ``$tag$ ... $tag$`` dollar quotes, ``--`` comments and nested
  ``/* */`` comments are opaque: a ``;`` or a ``DROP`` inside them is not a statement;
* a ``;`` inside parentheses does not end a statement;
* inside ``CREATE [OR REPLACE] FUNCTION|PROCEDURE``, ``BEGIN ... END`` (and ``CASE ...
  END`` within it) is tracked so a ``BEGIN ATOMIC`` body stays one statement.

Nothing is ever lost: input that ends inside a string, comment or dollar quote becomes the
last statement, flagged ``unterminated`` with where it started. Positions are character
offsets; lines and columns are 1-based.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# PostgreSQL identifiers: ASCII letters, '_' and every non-ASCII character start one;
# digits and '$' may follow. Written as negated ASCII classes: a class spanning the whole
# Unicode range costs ~7 ms to compile, which a commit hook pays on every run.
_IDENT_START = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"
_IDENT_CONT = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
_WHITESPACE = " \t\n\r\f\v"  # scan.l's {space}
# ASCII characters that start no other token (so runs of them are skipped in one match).
_OTHER = "".join(
    re.escape(ch)
    for ch in map(chr, range(128))
    if not (ch.isascii() and (ch.isalpha() or ch == "_")) and ch not in _WHITESPACE + "'\"$;()/-"
)

_TOKEN = re.compile(
    rf"""
     (?P<ws>[{_WHITESPACE}]+)
    |(?P<line_comment>--[^\n\r]*)  # scan.l: a -- comment ends at \n or \r
    |(?P<block_comment>/\*)
    |(?P<estring>[eE]'(?:[^'\\]|\\[\s\S]|'')*+')
    |(?P<estring_open>[eE]')
    |(?P<string>'(?:[^']|'')*+')
    |(?P<string_open>')
    |(?P<ident>"(?:[^"]|"")*+")
    |(?P<ident_open>")
    |(?P<dollar>\$(?:{_IDENT_START}(?:(?!\$){_IDENT_CONT})*)?\$)
    |(?P<word>{_IDENT_START}{_IDENT_CONT}*)
    |(?P<semi>;)
    |(?P<lparen>\()
    |(?P<rparen>\))
    |(?P<other>[{_OTHER}]+|[\s\S])
    """,
    re.VERBOSE,
)
# Once a statement cannot be a CREATE FUNCTION/PROCEDURE any more (decided by its first
# words), its words no longer matter: runs of ordinary text are skipped in one match. The
# run is made of whole words, digits, operators and white space, and stops at anything
# that starts another token: quotes, a dollar quote, an E'' string, comments, parentheses
# and ';'. This roughly halves the splitter's time on typical migrations.
_SKIP = re.compile(
    rf"""(?:
        (?![eE]'){_IDENT_START}{_IDENT_CONT}*   # a whole word ('$' and 'e' inside it included)
       |[{_OTHER}{_WHITESPACE}]                  # digits, operators, white space
       |-(?!-)
       |/(?!\*)
    )+""",
    re.VERBOSE,
)
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_FUNCTION_WORDS = {"create", "function", "procedure", "or", "replace"}


@dataclass(frozen=True)
class Statement:
    """One statement of a script, as written (never re-generated)."""

    text: str
    start: int
    end: int
    line: int
    column: int
    end_line: int
    unterminated: str | None = None
    terminated: bool = True  # ended by ';' (the last statement of a file may not be)

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()


@dataclass(frozen=True)
class Comment:
    """A ``--`` or ``/* */`` comment with its 1-based position (ignore directives live here)."""

    text: str
    start: int
    line: int
    column: int
    end_line: int


class Positions:
    """Offset -> (line, column) in O(log n)."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)


def block_comment_end(sql: str, start: int) -> int:
    """Offset just after the ``*/`` closing the (nested) comment opened at ``start``; -1 if none."""
    depth = 0
    for match in _COMMENT_EDGE.finditer(sql, start):
        depth += 1 if match.group() == "/*" else -1
        if depth == 0:
            return match.end()
    return -1


def split_with_comments(sql: str) -> tuple[list[Statement], list[Comment]]:
    """Statements and comments of ``sql``, in order of appearance."""
    positions = Positions(sql)
    statements: list[Statement] = []
    comments: list[Comment] = []

    stmt_start = -1  # offset of the statement's first token
    last_end = 0  # end of the statement's last significant token
    paren_depth = begin_depth = 0
    words: list[str] = []  # psql's identifiers[]: first letters of the leading words
    word_count = 0
    skim = False  # the statement cannot be a routine definition: skip ordinary text in runs
    unterminated: str | None = None

    def flush(terminated: bool) -> None:
        nonlocal stmt_start, paren_depth, begin_depth, word_count, unterminated, skim
        if stmt_start >= 0:
            line, column = positions.line_col(stmt_start)
            statements.append(
                Statement(
                    text=sql[stmt_start:last_end],
                    start=stmt_start,
                    end=last_end,
                    line=line,
                    column=column,
                    end_line=positions.line(max(last_end - 1, stmt_start)),
                    unterminated=unterminated,
                    terminated=terminated,
                )
            )
        stmt_start = -1
        paren_depth = begin_depth = word_count = 0
        words.clear()
        skim = False
        unterminated = None

    def describe(kind: str, at: int) -> str:
        line, column = positions.line_col(at)
        return f"unterminated {kind} starting at line {line}, column {column}"

    pos, length = 0, len(sql)
    while pos < length:
        if skim:
            run = _SKIP.match(sql, pos)
            if run is not None:
                end = run.end()
                significant = end
                while significant > pos and sql[significant - 1] in _WHITESPACE:
                    significant -= 1
                if significant > pos:
                    last_end = significant
                pos = end
                continue
        match = _TOKEN.match(sql, pos)
        assert match is not None  # the last alternative matches any character
        kind = match.lastgroup
        end = match.end()
        if kind == "ws":
            pos = end
            continue
        if kind == "line_comment" or kind == "block_comment":
            if kind == "block_comment":
                end = block_comment_end(sql, pos)
                if end < 0:  # PostgreSQL rejects this: keep it as (part of) a statement, flagged
                    end = length
                    unterminated = describe("block comment", pos)
                    if stmt_start < 0:
                        stmt_start = pos
                    last_end = end
            line, column = positions.line_col(pos)
            comments.append(Comment(sql[pos:end], pos, line, column, positions.line(max(end - 1, pos))))
            pos = end
            continue
        if kind == "semi" and paren_depth == 0 and begin_depth == 0:
            flush(terminated=True)
            pos = end
            continue
        if stmt_start < 0:
            stmt_start = pos
        if kind in ("estring_open", "string_open", "ident_open"):
            label = {"estring_open": "E'' string", "string_open": "string", "ident_open": "quoted identifier"}[kind]
            unterminated = describe(label, pos)
            end = length
        elif kind == "dollar":
            tag = match.group()
            close = sql.find(tag, end)
            if close < 0:
                unterminated = describe(f"dollar-quoted string {tag}", pos)
                end = length
            else:
                end = close + len(tag)
        elif kind == "lparen":
            paren_depth += 1
        elif kind == "rparen":
            paren_depth = max(paren_depth - 1, 0)
        elif kind == "word":
            lowered = match.group().lower()
            if word_count < 4:
                words.append(lowered[0] if lowered in _FUNCTION_WORDS else "")
            word_count += 1
            skim = _cannot_be_routine(words)
            if paren_depth == 0 and _in_routine_definition(words):
                if lowered == "begin":
                    begin_depth += 1
                elif lowered == "case":
                    if begin_depth >= 1:
                        begin_depth += 1
                elif lowered == "end" and begin_depth > 0:
                    begin_depth -= 1
        last_end = end
        pos = end
    flush(terminated=False)
    return statements, comments


def _in_routine_definition(words: list[str]) -> bool:
    """psql's test for ``CREATE [OR REPLACE] FUNCTION|PROCEDURE`` at the statement's start."""
    if not words or words[0] != "c" or len(words) < 2:
        return False
    if words[1] in ("f", "p"):
        return True
    return len(words) >= 4 and words[1] == "o" and words[2] == "r" and words[3] in ("f", "p")


def _cannot_be_routine(words: list[str]) -> bool:
    """True once the leading words rule out ``CREATE [OR REPLACE] FUNCTION|PROCEDURE``."""
    n = len(words)
    if words[0] != "c":
        return True
    if n >= 2 and words[1] not in ("f", "p", "o"):
        return True
    if n >= 3 and words[1] == "o" and words[2] != "r":
        return True
    return n >= 4 and words[1] == "o" and words[3] not in ("f", "p")


def split_statements(sql: str) -> list[Statement]:
    """The statements of ``sql`` in order (without the comments between them)."""
    return split_with_comments(sql)[0]
