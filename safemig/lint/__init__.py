"""The migration linter: ``lint_paths(paths, config) -> LintReport``.

Importing this package is cheap: sqlglot and pglast are loaded only when a file has to
be parsed (see :mod:`safemig.lint.parse`).
"""

from safemig.lint.engine import lint_paths, lint_text
from safemig.lint.finding import Finding, LintReport

__all__ = ["Finding", "LintReport", "lint_paths", "lint_text"]
