"""GitHub Actions workflow commands: one ``::error``/``::warning`` annotation per finding."""

from __future__ import annotations


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(report, rules, color: bool = False) -> str:
    lines = []
    for f in report.findings:
        level = "error" if f.severity == "error" else "warning"
        title = _escape_property("safemig " + f.rule)
        props = f"file={_escape_property(f.path)},line={f.line},col={f.column},title={title}"
        lines.append(f"::{level} {props}::{_escape_data(f.message + chr(10) + 'Safe alternative: ' + f.hint)}")
    return "\n".join(lines) + ("\n" if lines else "")
