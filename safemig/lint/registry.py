"""Find rules: the built-in ones in ``safemig/lint/rules/`` and house rules in the repository's ``rules/``.

A rule is a module. Its interface (the same for built-in and house rules):

* ``ID``: the rule id in kebab-case, its only public name (the file is the id with ``_``);
* ``SEVERITY``: ``"error"`` or ``"warning"`` (the policy may override it);
* ``SUMMARY``: one line for ``safemig rules``;
* ``FILES``: ``"all"`` (default) or ``"migrations"`` (not applied to rollback scripts);
* optional ``RUNS_LAST`` / ``SILENCEABLE`` (for the rules about ignore directives);
* optional ``KINDS``: the statement node types (``{"AlterTableStmt"}``) the rule can report on,
  when it judges only the file's own statements of those types: the rule is not run on a
  file that has none, and ``file.statements_of(KINDS)`` hands it only those statements, in
  file order (most rules look for one or two kinds of statement, and running each over every
  statement of every file was most of a lint run's Python work);
* a docstring with ``Why:``, ``Bad:`` and ``Good:`` sections (``safemig explain``);
* ``check(file: LintFile) -> Iterable[Violation]``.

Rules are listed from the package directory, never from a hand-kept list, so a new
module is a new rule everywhere at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from safemig.errors import ConfigError
from safemig.lint.finding import SEVERITIES

BUILTIN_PACKAGE = "safemig.lint.rules"
_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_SECTION = re.compile(r"^(Why|Bad|Good):\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Rule:
    """A loaded rule module and what it declares."""

    id: str
    severity: str
    summary: str
    files: str
    module: ModuleType
    source: Path
    builtin: bool
    runs_last: bool = False  # judged after every other rule (unused-ignore)
    silenceable: bool = True  # False for the rules about ignore directives themselves
    kinds: frozenset[str] | None = None  # KINDS: run only on files with a statement of one of these types

    @property
    def doc(self) -> dict[str, str]:
        """The docstring's sections: ``{"intro", "Why", "Bad", "Good"}``."""
        return doc_sections(self.module.__doc__ or "")

    def check(self, lint_file):
        return self.module.check(lint_file)


def doc_sections(doc: str) -> dict[str, str]:
    """Split a rule docstring into its introduction and ``Why:`` / ``Bad:`` / ``Good:`` sections."""
    import textwrap

    doc = textwrap.dedent(doc)
    parts = _SECTION.split(doc)
    sections = {"intro": parts[0].strip()}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = textwrap.dedent(body).strip("\n").rstrip()
    return sections


def _as_rule(module: ModuleType, source: Path, builtin: bool) -> Rule:
    where = f"rule module {source}"
    rule_id = getattr(module, "ID", None)
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise ConfigError(f"{where}: ID must be a kebab-case string, got {rule_id!r}", hint='e.g. ID = "tenant-table"')
    if source.stem != rule_id.replace("-", "_"):
        raise ConfigError(
            f"{where}: file name must be the rule id with underscores ({rule_id.replace('-', '_')}.py)",
            hint="rename the file or the ID so they match",
        )
    severity = getattr(module, "SEVERITY", None)
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: SEVERITY must be one of {', '.join(SEVERITIES)}", hint='e.g. SEVERITY = "error"')
    if not callable(getattr(module, "check", None)):
        raise ConfigError(f"{where}: no check(file) function", hint="define check(file) yielding Violation objects")
    files = getattr(module, "FILES", "all")
    if files not in ("all", "migrations"):
        raise ConfigError(f"{where}: FILES must be 'all' or 'migrations'", hint='e.g. FILES = "migrations"')
    sections = doc_sections(module.__doc__ or "")
    missing = [s for s in ("Why", "Bad", "Good") if not sections.get(s)]
    if missing:
        raise ConfigError(
            f"{where}: docstring lacks {', '.join(m + ':' for m in missing)}",
            hint="document the rule with Why:, Bad: and Good: sections",
        )
    kinds = getattr(module, "KINDS", None)
    if kinds is not None and (isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds)):
        raise ConfigError(f"{where}: KINDS must be a set of node type names", hint='e.g. KINDS = {"AlterTableStmt"}')
    summary = getattr(module, "SUMMARY", "") or sections["intro"].splitlines()[0]
    return Rule(
        rule_id,
        severity,
        summary,
        files,
        module,
        source,
        builtin,
        runs_last=bool(getattr(module, "RUNS_LAST", False)),
        silenceable=bool(getattr(module, "SILENCEABLE", True)),
        kinds=frozenset(kinds) if kinds is not None else None,
    )


def builtin_rules() -> list[Rule]:
    """Every rule shipped with safemig, sorted by id."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    rules = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
        rules.append(_as_rule(module, Path(module.__file__ or info.name), builtin=True))
    return sorted(rules, key=lambda r: r.id)


def house_rules(directory: Path | None) -> list[Rule]:
    """The repository's own rules: every ``rules/*.py`` (not starting with ``_``), loaded as modules."""
    if directory is None or not directory.is_dir():
        return []
    rules = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"safemig_house_rules.{path.stem}"
        module = sys.modules.get(name)
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if module is None or getattr(module, "_safemig_stamp", None) != stamp:  # new or edited since loaded
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # a broken house rule is a config problem, named precisely
                raise ConfigError(
                    f"house rule {path} failed to load: {type(exc).__name__}: {exc}",
                    hint="fix the module or move it out of the rules directory",
                ) from None
            module._safemig_stamp = stamp  # type: ignore[attr-defined]  # our mark on a module we created
            sys.modules[name] = module
        rules.append(_as_rule(module, path, builtin=False))
    return rules


def rule_sources(house_dir: Path | None = None) -> dict[str, Path]:
    """``{rule id: module file}`` for built-in and house rules, from file names alone (nothing imported).

    Enough to key the cache and check the policy's rule ids, so a run answered entirely
    from the cache never imports a rule module.
    """
    builtin_dir = Path(__file__).parent / "rules"
    files = [p for p in sorted(builtin_dir.glob("*.py")) if not p.name.startswith("_")]
    if house_dir is not None and house_dir.is_dir():
        files += [p for p in sorted(house_dir.glob("*.py")) if not p.name.startswith("_")]
    return {p.stem.replace("_", "-"): p for p in files}


def all_rules(house_dir: Path | None = None) -> list[Rule]:
    """Built-in rules plus house rules; a house rule may not reuse a built-in id."""
    rules = builtin_rules()
    known = {r.id: r for r in rules}
    for rule in house_rules(house_dir):
        if rule.id in known:
            raise ConfigError(
                f"house rule {rule.source}: id {rule.id!r} is already a built-in rule",
                hint="give the house rule its own id",
            )
        known[rule.id] = rule
        rules.append(rule)
    return rules


def find_rule(rules: list[Rule], rule_id: str) -> Rule:
    """The rule called ``rule_id``; an unknown id is a usage error suggesting the closest ones."""
    from difflib import get_close_matches

    from safemig.errors import UsageError

    for rule in rules:
        if rule.id == rule_id:
            return rule
    close = get_close_matches(rule_id, [r.id for r in rules], n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run `safemig rules` to list the rule ids"
    raise UsageError(f"unknown rule {rule_id!r}", hint=hint)
