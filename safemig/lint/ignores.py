"""Silencing that stays visible in review: ``-- safemig:ignore RULE[, RULE] -- reason``.

* ``-- safemig:ignore RULE -- reason`` on a line of a statement (e.g. after its ``;``)
  or on a line above it silences RULE for that statement;
* ``-- safemig:ignore-file RULE -- reason`` anywhere silences RULE for the whole file.

A reason is required, the rule ids must exist, and an ignore that silences nothing is
itself reported: the ``invalid-ignore`` and ``unused-ignore`` rules.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from safemig.sql.split import Comment

_DIRECTIVE = re.compile(r"^--\s*safemig:(?P<kind>ignore-file|ignore)\b(?P<rest>.*)$", re.IGNORECASE)


@dataclass
class Ignore:
    """One ignore directive, where it is, what it covers, and whether it silenced anything."""

    rules: tuple[str, ...]
    reason: str
    line: int
    column: int
    whole_file: bool
    statement_index: int | None  # the statement it covers (None: whole file, or nothing follows)
    text: str
    used: set[str]


def may_have_directives(text: str) -> bool:
    """False when ``text`` cannot hold a directive, so its comments need not be found at all."""
    return "safemig:" in text.lower()


def parse_ignores(comments: list[Comment], statement_lines: list[tuple[int, int]]) -> list[Ignore]:
    """Every ignore directive among ``comments``, attached to the statement it covers."""
    out = []
    spanning = statement_finder(statement_lines)
    firsts = [first for first, _ in statement_lines]
    for comment in comments:
        match = _DIRECTIVE.match(comment.text.strip())
        if not match:
            continue
        rest = match.group("rest")
        rules_part, sep, reason = rest.partition("--")
        rules = tuple(r for r in re.split(r"[\s,]+", rules_part.strip()) if r)
        whole_file = match.group("kind").lower() == "ignore-file"
        index = None
        if not whole_file:
            index = spanning(comment.line)  # the statement spanning its line, else the first one below it
            if index is None:
                below = bisect.bisect_right(firsts, comment.line)
                index = below if below < len(firsts) else None
        out.append(
            Ignore(
                rules,
                reason.strip() if sep else "",
                comment.line,
                comment.column,
                whole_file,
                index,
                comment.text.strip(),
                set(),
            )
        )
    return out


def statement_finder(statement_lines: list[tuple[int, int]]) -> Callable[[int], int | None]:
    """``find(line)``: the first statement whose lines include ``line`` (where a finding points), or ``None``.

    A bisection over the statements' last lines (they never decrease, statements being in
    order): a scan per finding made a 20,000-statement data migration with a finding on
    every statement take 30 s.
    """
    lasts = [last for _, last in statement_lines]

    def find(line: int) -> int | None:
        index = bisect.bisect_left(lasts, line)
        if index < len(statement_lines) and statement_lines[index][0] <= line:
            return index
        return None

    return find


def is_silenced(ignores: list[Ignore], rule_id: str, statement_index: int | None) -> bool:
    """True (and the ignore marked used) when an ignore covers ``rule_id`` here."""
    for ignore in ignores:
        if rule_id in ignore.rules and (ignore.whole_file or ignore.statement_index == statement_index):
            ignore.used.add(rule_id)
            return True
    return False
