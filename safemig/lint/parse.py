"""Turn one SQL file into statements that rules can read: PostgreSQL's own parse of each one.

* **pglast** (libpg_query, PostgreSQL's own grammar) validates every statement, so a
  statement PostgreSQL would reject is reported with its location instead of being
  half-understood, and gives its exact node type (``AlterTableStmt``, ``DoStmt``...) and
  tree. The built-in rules read that tree (through :mod:`safemig.lint.facts`).
* **sqlglot** (postgres dialect, the compiled build) is offered as ``stmt.ast`` to rules
  that prefer its expression API (house rules). It is parsed only when a rule asks and
  never re-emitted: findings quote the user's original text. No built-in rule asks: a
  second parse of every CREATE/ALTER TABLE was the largest cost of a lint run, and
  importing sqlglot alone takes most of a commit hook's budget (bench/README.md).

Both libraries are imported inside the functions that use them, so a run whose results
all come from the cache imports neither, and a run without such a house rule never
imports sqlglot.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from safemig.sql.split import Comment, Positions, Statement, block_comment_end, split_with_comments


@dataclass
class SqlStatement:
    """One statement of a file: its original text and position, PostgreSQL's parse (and sqlglot's AST on demand)."""

    raw: Statement
    node_type: str | None = None  # pglast node type, e.g. "AlterTableStmt"; None if it did not parse
    node: dict[str, Any] = field(default_factory=dict)  # the node's fields (libpg_query JSON)
    error: str | None = None  # why PostgreSQL rejects it
    error_line: int = 0
    error_column: int = 0
    memo: dict[str, Any] = field(default_factory=dict)  # facts computed once per statement (see facts.py)
    node_base: int = 0  # UTF-8 byte offset of ``text`` in what the parser saw (node locations count from there)

    @property
    def text(self) -> str:
        return self.raw.text

    @property
    def line(self) -> int:
        return self.raw.line

    @property
    def column(self) -> int:
        return self.raw.column

    @property
    def end_line(self) -> int:
        return self.raw.end_line

    @property
    def first_line(self) -> str:
        return self.raw.first_line

    def text_index(self, location: int) -> int:
        """The index in :attr:`text` of a parse-tree ``location`` (libpg_query counts UTF-8 bytes)."""
        offset = max(location - self.node_base, 0)
        if self.raw.text.isascii():
            return offset
        return len(self.raw.text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))

    @cached_property
    def ast(self) -> Any:
        """The sqlglot expression (``None`` when sqlglot cannot parse it; ``exp.Command`` when it gave up)."""
        if self.error is not None:
            return None
        return sqlglot_parse(self.raw.text)

    @property
    def is_command(self) -> bool:
        """True when sqlglot fell back to an opaque ``Command`` (or failed): use :attr:`node_type`."""
        from sqlglot import exp

        return self.ast is None or isinstance(self.ast, exp.Command)


def json_tree(text: str) -> Any:
    """pglast's JSON (a parse tree) as Python objects, with :func:`use_orjson`'s decoder once it is on."""
    return _LOADS[0](text)


def _orjson_loads(text: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. an integer beyond 64 bits (libpg_query writes large literals as strings)
        return json.loads(text)


_LOADS: list[Callable[[str], Any]] = [json.loads]


def use_orjson() -> None:
    """Decode the trees with orjson from now on: for a run over many files.

    Decoding the trees was the largest single cost of a cold lint run after the rules, and
    orjson takes about two thirds of ``json.loads``'s time for the same dicts and lists; but
    importing it (with the uuid and platform modules it loads) costs ~2.5 ms, more than it
    saves on the one or two files of a commit hook. The parallel runner turns it on before
    it forks its workers.
    """
    import orjson  # noqa: F401  (imported here, once, before a fork)

    _LOADS[0] = _orjson_loads


_SQLGLOT: dict[str, Any] = {}


def sqlglot_parse(text: str) -> Any:
    """sqlglot's postgres AST for one statement, or ``None`` if it raises (it is not the validator).

    One dialect, tokenizer and parser are reused for every statement: building them per
    call costs more than parsing a short statement.
    """
    if not _SQLGLOT:
        from sqlglot.dialects.dialect import Dialect
        from sqlglot.errors import SqlglotError

        logging.getLogger("sqlglot").setLevel(logging.CRITICAL)  # "falling back to Command" is not news
        dialect = Dialect.get_or_raise("postgres")
        _SQLGLOT.update(
            tokenizer=dialect.tokenizer(), parser=dialect.parser(), errors=(SqlglotError, RecursionError, ValueError)
        )
    tokenizer, parser = _SQLGLOT["tokenizer"], _SQLGLOT["parser"]
    try:
        trees = [t for t in parser.parse(tokenizer.tokenize(text), text) if t is not None]
    except _SQLGLOT["errors"]:
        return None
    return trees[0] if len(trees) == 1 else None


def _offset_to_line_col(text: str, offset: int, line: int, column: int) -> tuple[int, int]:
    """Line/column in the file of character ``offset`` inside a statement starting at line/column."""
    before = text[:offset]
    newlines = before.count("\n")
    if newlines == 0:
        return line, column + offset
    return line + newlines, offset - before.rfind("\n")


def validate(stmt: SqlStatement) -> None:
    """Ask PostgreSQL's parser about ``stmt``; record its node type, or the error and where."""
    from pglast import parser

    raw = stmt.raw
    if raw.unterminated:
        stmt.error = raw.unterminated
        stmt.error_line, stmt.error_column = raw.line, raw.column
        return
    if "\x00" in raw.text:  # libpg_query would stop reading at it; PostgreSQL rejects it
        stmt.error = "a NUL byte (0x00), which PostgreSQL rejects"
        stmt.error_line, stmt.error_column = _offset_to_line_col(raw.text, raw.text.index("\x00"), raw.line, raw.column)
        return
    try:
        tree = json_tree(parser.parse_sql_json(raw.text))
    except parser.ParseError as exc:
        message, location = (exc.args + (None, None))[:2]
        stmt.error = str(message)
        if isinstance(location, int) and 0 <= location <= len(raw.text):
            stmt.error_line, stmt.error_column = _offset_to_line_col(raw.text, location, raw.line, raw.column)
        else:  # "at end of input"
            stmt.error_line, stmt.error_column = _offset_to_line_col(raw.text, len(raw.text), raw.line, raw.column)
        return
    except RecursionError:  # absurdly nested input; PostgreSQL would refuse it too
        stmt.error = "statement is nested too deeply to parse"
        stmt.error_line, stmt.error_column = raw.line, raw.column
        return
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:  # only possible for text the splitter kept together, e.g. a lone comment
        stmt.error = "not a single SQL statement"
        stmt.error_line, stmt.error_column = raw.line, raw.column
        return
    ((node_type, node),) = stmts[0]["stmt"].items()
    stmt.node_type, stmt.node = node_type, node


@dataclass
class ParsedFile:
    """A file's statements (each validated) and its comments (where ignore directives live)."""

    text: str
    statements: list[SqlStatement]
    _comments: list[Comment] | None = None

    @property
    def comments(self) -> list[Comment]:
        """Every comment of the file, from the splitter (run on demand when the parser cut the file)."""
        if self._comments is None:
            self._comments = split_with_comments(self.text)[1]
        return self._comments


def _parse_whole_file(text: str) -> list[dict] | None:
    """PostgreSQL's statements of the whole file (libpg_query's JSON), or ``None`` if it rejects any.

    A NUL byte is refused here: libpg_query reads a C string and would silently stop at
    it, hiding every statement after it (PostgreSQL itself rejects the byte).
    """
    from pglast import parser

    if "\x00" in text:
        return None
    try:
        return json_tree(parser.parse_sql_json(text)).get("stmts") or []
    except (parser.ParseError, RecursionError, ValueError):
        return None


_BLANK = " \t\n\r\f\v"
_SPACE_AND_LINE_COMMENTS = re.compile(r"(?:[ \t\n\r\f\v]+|--[^\n\r]*)*")  # scan.l: a -- comment ends at \n or \r


def _skip_blanks(text: str, pos: int, end: int) -> int:
    """``pos`` moved past white space and comments (nested ``/* */`` too), not beyond ``end``."""
    while True:
        match = _SPACE_AND_LINE_COMMENTS.match(text, pos, end)  # matches the empty string at least
        pos = min(match.end() if match else pos, end)
        if not text.startswith("/*", pos, end):
            return pos
        close = block_comment_end(text, pos)
        if close < 0 or close > end:
            return end
        pos = close


def _last_token_end(text: str, start: int, end: int) -> int:
    """Where the last token of ``text[start:end]`` ends, when a comment may follow it (only a lexer can tell)."""
    lexed = split_with_comments(text[start:end])[0]
    return start + lexed[-1].end if lexed else end


class _ByteToChar:
    """libpg_query's UTF-8 byte offsets -> character offsets of a non-ASCII text, for increasing
    offsets in O(file size) overall."""

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")
        self.byte = self.char = 0

    def __call__(self, offset: int) -> int:
        if offset < self.byte:  # not increasing (never seen): start over
            self.byte = self.char = 0
        self.char += len(self.data[self.byte : offset].decode("utf-8", errors="ignore"))
        self.byte = offset
        return self.char


def _statements_from_parser(text: str, items: list[dict]) -> list[tuple[Statement, int]]:
    """The file's statements, cut where PostgreSQL's parser cut them.

    When PostgreSQL accepts the whole file, its statement boundaries are the truth (the
    splitter's psql heuristics can disagree, e.g. on a function named ``begin``), and
    reading them costs a fraction of a lexing pass, which was the largest cost of linting
    a valid file. Each statement is trimmed to its first and last token, as the splitter
    trims: only a statement whose last line holds a comment is lexed, to find where its
    last token ends. tests/lint/test_parse.py checks the result against the splitter.
    Each statement comes with the UTF-8 byte offset of its start (its ``node_base``).
    """
    positions = Positions(text)
    ascii_only = text.isascii()  # then byte offsets are character offsets
    to_char = None if ascii_only else _ByteToChar(text)
    out: list[tuple[Statement, int]] = []
    for item in items:
        location = item.get("stmt_location", 0)
        length = item.get("stmt_len", 0)
        terminated = length > 0  # 0: the statement runs to the end of the input, no ';'
        start_of_region, region_end = (
            (location, location + length) if to_char is None else (to_char(location), to_char(location + length))
        )
        if not terminated:
            region_end = len(text)
        start = _skip_blanks(text, start_of_region, region_end)
        end = start + len(text[start:region_end].rstrip(_BLANK))
        last_line = text[max(text.rfind("\n", start, end) + 1, start) : end]
        if "--" in last_line or "*/" in last_line:
            end = _last_token_end(text, start, end)
        line, column = positions.line_col(start)
        byte_start = start if ascii_only else location + len(text[start_of_region:start].encode("utf-8"))
        out.append(
            (
                Statement(
                    text=text[start:end],
                    start=start,
                    end=end,
                    line=line,
                    column=column,
                    end_line=positions.line(max(end - 1, start)),
                    terminated=terminated,
                ),
                byte_start,
            )
        )
    return out


def parse_sql(text: str) -> ParsedFile:
    """Split ``text`` into statements and validate each with PostgreSQL's parser.

    The common case, a file PostgreSQL accepts as a whole, costs one parser call and no
    lexing pass. Otherwise the splitter (psql's rules) cuts the file and each statement
    is validated on its own, so every error is found and located and the rest of the
    file is still reviewed.
    """
    items = _parse_whole_file(text)
    if items is not None:
        statements = []
        for (raw, node_base), item in zip(_statements_from_parser(text, items), items, strict=True):
            ((node_type, node),) = item["stmt"].items()
            statements.append(SqlStatement(raw, node_type=node_type, node=node, node_base=node_base))
        return ParsedFile(text=text, statements=statements)
    raw_statements, comments = split_with_comments(text)
    statements = [SqlStatement(raw) for raw in raw_statements]
    for stmt in statements:
        validate(stmt)
    return ParsedFile(text=text, statements=statements, _comments=comments)


_RECENT: dict[str, ParsedFile] = {}  # text -> its ParsedFile, the last few of this process (see parse_recent)
_RECENT_KEEP = 64


def parse_recent(text: str) -> ParsedFile:
    """``parse_sql(text)``, remembered for the next few files of this process.

    The same text is asked for again soon: a rollback script is parsed as its migration's
    rollback and again as a file of its own, usually by the same worker right after
    (Diesel's ``down.sql`` beside ``up.sql``: a quarter of a real corpus's parses), and
    the directory's history (:mod:`safemig.lint.history`) reads the migrations linted just
    before. Sharing one ParsedFile is safe: what is memoised per statement is a pure
    function of the statement.
    """
    found = _RECENT.get(text)
    if found is None:
        if len(_RECENT) >= _RECENT_KEEP:
            _RECENT.pop(next(iter(_RECENT)))
        found = _RECENT[text] = parse_sql(text)
    return found
