"""Turn one SQL file into statements that rules can read: PostgreSQL's verdict plus sqlglot's AST.

Two parsers, each for what it is good at:

* **pglast** (libpg_query, PostgreSQL's own grammar) validates every statement, so a
  statement PostgreSQL would reject is reported with its location instead of being
  half-understood, and names its exact node type (``AlterTableStmt``, ``DoStmt``...),
  which is how statements sqlglot leaves as ``exp.Command`` are classified.
* **sqlglot** (postgres dialect, the compiled build) is the rule AST. It is parsed lazily,
  only when a rule asks, and never re-emitted: findings quote the user's original text.

Both libraries are imported inside the functions that use them, so a run whose results
all come from the cache imports neither.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from safemig.sql.split import Comment, Statement, split_with_comments


@dataclass
class SqlStatement:
    """One statement of a file: its original text and position, PostgreSQL's parse, sqlglot's AST."""

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


_SQLGLOT: dict[str, Any] = {}


def sqlglot_parse(text: str) -> Any:
    """sqlglot's postgres AST for one statement, or ``None`` if it raises (it is not the validator).

    One dialect and one parser are reused for every statement: building them per call
    costs more than parsing a short statement.
    """
    if not _SQLGLOT:
        from sqlglot.dialects.dialect import Dialect
        from sqlglot.errors import SqlglotError

        logging.getLogger("sqlglot").setLevel(logging.CRITICAL)  # "falling back to Command" is not news
        dialect = Dialect.get_or_raise("postgres")
        _SQLGLOT.update(dialect=dialect, parser=dialect.parser(), errors=(SqlglotError, RecursionError, ValueError))
    dialect, parser = _SQLGLOT["dialect"], _SQLGLOT["parser"]
    try:
        trees = [t for t in parser.parse(dialect.tokenize(text), text) if t is not None]
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
    try:
        tree = json.loads(parser.parse_sql_json(raw.text))
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
    comments: list[Comment]


def _validate_whole_file(text: str, statements: list[SqlStatement]) -> bool:
    """One parser call for the whole file (the common, valid case); False means "validate one by one".

    Each of PostgreSQL's statements must cover the matching statement of the splitter
    (offsets in UTF-8 bytes, as libpg_query reports them), else nothing is assigned.
    """
    from pglast import parser

    if any(s.raw.unterminated for s in statements):
        return False
    try:
        tree = json.loads(parser.parse_sql_json(text))
    except (parser.ParseError, RecursionError, ValueError):
        return False
    items = tree.get("stmts") or []
    if len(items) != len(statements):
        return False
    ascii_only = text.isascii()
    for stmt, item in zip(statements, items):
        start = stmt.raw.start if ascii_only else len(text[: stmt.raw.start].encode("utf-8"))
        location = item.get("stmt_location", 0)
        length = item.get("stmt_len")
        if start < location or (length is not None and start >= location + length):
            return False
    for stmt, item in zip(statements, items):
        ((stmt.node_type, stmt.node),) = item["stmt"].items()
        stmt.node_base = stmt.raw.start if ascii_only else len(text[: stmt.raw.start].encode("utf-8"))
    return True


def parse_sql(text: str) -> ParsedFile:
    """Split ``text`` into statements and validate them with PostgreSQL's parser."""
    raw_statements, comments = split_with_comments(text)
    statements = [SqlStatement(raw) for raw in raw_statements]
    if not _validate_whole_file(text, statements):
        for stmt in statements:
            validate(stmt)
    return ParsedFile(text=text, statements=statements, comments=comments)
