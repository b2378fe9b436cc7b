"""Human output, grouped by file: ``path:line:col``, the statement, the problem, the safe alternative, how to
silence it."""

from __future__ import annotations

from itertools import groupby

_COLORS = {"error": "\x1b[1;31m", "warning": "\x1b[33m", "dim": "\x1b[2m", "bold": "\x1b[1m", "reset": "\x1b[0m"}


def _statement_excerpt(statement: str, limit: int = 6) -> list[str]:
    lines = statement.splitlines() or [""]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines)"]
    return lines


def render(report, rules, color: bool = False) -> str:
    def paint(text: str, style: str) -> str:
        return f"{_COLORS[style]}{text}{_COLORS['reset']}" if color else text

    out: list[str] = []
    for path, group in groupby(report.findings, key=lambda f: f.path):
        out.append(paint(path, "bold"))
        for f in group:
            out.append(f"{path}:{f.line}:{f.column}: {paint(f.severity, f.severity)} [{f.rule}] {f.message}")
            if f.statement:
                for line in _statement_excerpt(f.statement):
                    out.append(paint(f"    | {line}", "dim"))
            out.append(f"    {f.hint_line}")
            directive = "ignore" if f.statement else "ignore-file"  # file-level findings: silence in the file
            out.append(
                paint(f"    to silence (with a reason): -- safemig:{directive} {f.rule} -- <why this is safe>", "dim")
            )
        out.append("")
    errors, warnings = len(report.errors), len(report.warnings)
    files = len(report.files)
    if report.findings:
        out.append(f"{errors} error(s), {warnings} warning(s) in {files} file(s)")
    else:
        out.append(f"no problems in {files} file(s)")
    return "\n".join(out) + "\n"
