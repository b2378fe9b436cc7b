"""Machine output: a JSON list of ``{path, line, column, rule, severity, message, hint}`` (1-based)."""

from __future__ import annotations

import json


def render(report, rules, color: bool = False) -> str:
    return json.dumps([f.to_json() for f in report.findings], indent=2, ensure_ascii=False) + "\n"
