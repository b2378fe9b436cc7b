"""Lint report formats: ``text`` (people), ``json`` (scripts), ``github`` (workflow annotations), ``sarif``
(code scanning).

Each module has ``render(report, rules) -> str``; the command layer prints the string
through :mod:`safemig.output`. Lines and columns are 1-based in every format.
"""

from __future__ import annotations

import importlib

FORMATS = ("text", "json", "github", "sarif")


def render(report, rules, fmt: str, color: bool = False, rule_docs_url: str | None = None) -> str:
    """The report in format ``fmt`` (one of :data:`FORMATS`); ``rule_docs_url`` ([lint]): SARIF's ``helpUri``."""
    module = importlib.import_module(f"safemig.lint.render.{fmt}_format")
    if fmt == "sarif":
        return module.render(report, rules, color=color, rule_docs_url=rule_docs_url)
    return module.render(report, rules, color=color)
