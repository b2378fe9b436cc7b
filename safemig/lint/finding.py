"""What a lint run produces: findings (located, ruled, with a safe alternative) and the report.

A rule yields :class:`Violation` (where and what); the engine turns it into a
:class:`Finding` by adding the file, the rule id and the severity the policy gives it.
Lines and columns are 1-based everywhere, in every output format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"
OFF = "off"
SEVERITIES = (ERROR, WARNING)

JSON_KEYS = ("path", "line", "column", "rule", "severity", "message", "hint")


@dataclass(frozen=True)
class Violation:
    """One problem a rule found: where (1-based line/column), what, and the safe way instead."""

    line: int
    column: int
    message: str
    hint: str
    statement: str = ""


@dataclass(frozen=True)
class Finding:
    """A violation placed in a file, under a rule id, at the severity the policy decided."""

    path: str
    line: int
    column: int
    rule: str
    severity: str
    message: str
    hint: str
    statement: str = ""

    @property
    def hint_line(self) -> str:
        """The fix as one line, as every report shows it (``safemig lint``, the deploy's lint gate)."""
        return f"safe alternative: {self.hint}"

    def to_json(self) -> dict:
        """The public JSON shape: ``{path, line, column, rule, severity, message, hint}`` (JSON_KEYS, in order)."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }

    @property
    def sort_key(self) -> tuple:
        return (self.path, self.line, self.column, self.rule)


def astuple(finding: Finding) -> tuple:
    """A finding's fields in order (``Finding(*row)`` rebuilds it): the lint cache stores rows.

    ``dataclasses.astuple`` deep-copies every field; these are all strings and ints.
    """
    return (
        finding.path,
        finding.line,
        finding.column,
        finding.rule,
        finding.severity,
        finding.message,
        finding.hint,
        finding.statement,
    )


@dataclass
class LintReport:
    """Every finding of a run, sorted by file and position, plus the files that were linted."""

    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the run did not check, and why

    @property
    def has_errors(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]
