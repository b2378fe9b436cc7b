"""This repository's lint policy: which rules are on, at what severity, with which path exceptions.

It lives in ``rules/policy.toml`` at the repository root (next to the house rules), or
in the ``[lint]`` table of ``safemig.toml``; if both exist, ``[lint]`` wins key by key::

    [rules]                      # severities: "error", "warning" or "off"
    missing-lock-timeout = "error"
    json-column = "off"

    [[exceptions]]               # rules that do not apply to some paths (globs from the root)
    paths = ["docker/migrations/00[1-4]_*.sql"]
    rules = ["index-without-concurrently"]
    reason = "created before the tables held data"

``house_rules = "rules"`` (in either place) names the directory of house rules; without it,
``rules/*.py`` are house rules when ``rules/policy.toml`` exists. ``pg_version = 16`` names
the PostgreSQL major the migrations run on (default: the server's with ``--pending --env``,
else :data:`safemig.lint.catalog.DEFAULT_PG_VERSION`). ``rule_docs_url =
"https://wiki.example.com/migrations/{rule}"`` is where the team documents each rule: SARIF
output gives it, with ``{rule}`` filled in, as each rule's ``helpUri`` (safemig has no public
docs site, so there is no default).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safemig.config import LINT_KEYS, Config, _read_toml
from safemig.errors import ConfigError
from safemig.lint.finding import OFF, SEVERITIES

POLICY_FILE = Path("rules") / "policy.toml"
DEFAULT_HOUSE_RULES = "rules"


@dataclass(frozen=True)
class Exception_:
    paths: tuple[str, ...]
    rules: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Policy:
    """Severity overrides, path exceptions, where house rules live, and where it was all read from."""

    root: Path
    severities: dict[str, str] = field(default_factory=dict)
    exceptions: tuple[Exception_, ...] = ()
    house_dir: Path | None = None
    source: str = "(defaults)"
    pg_version: int | None = None  # [lint] pg_version, if set
    rule_docs_url: str | None = None  # [lint] rule_docs_url: an absolute URL template with {rule}; output only
    # Set per run by lint_paths, not read from a file: the lock_timeout safemig will set for the session of
    # the env that applies the migrations (`--env`, the deploy gate), which makes missing-lock-timeout moot.
    runner_lock_timeout: str | None = None

    @property
    def target_major(self) -> int:
        from safemig.lint.catalog import DEFAULT_PG_VERSION

        return self.pg_version or DEFAULT_PG_VERSION

    def excepted_rules(self, path: Path) -> set[str]:
        """The rules an exception turns off for ``path`` (resolved and matched once per file, not per rule)."""
        if not self.exceptions:
            return set()
        try:
            rel = path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            rel = path.as_posix()
        return {
            rule_id
            for exc in self.exceptions
            if any(fnmatch.fnmatch(rel, pattern) for pattern in exc.paths)
            for rule_id in exc.rules
        }

    def fingerprint(self) -> str:
        """A hash of everything that changes findings, for the cache key."""
        data = json.dumps(
            [
                self.severities,
                [vars(e) for e in self.exceptions],
                str(self.house_dir),
                self.target_major,
                self.runner_lock_timeout,
            ],
            sort_keys=True,
            default=list,
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def check_rule_ids(self, known: set[str]) -> None:
        """Refuse a policy naming a rule that does not exist (a typo would silently do nothing)."""
        for rule_id in [*self.severities, *(r for e in self.exceptions for r in e.rules)]:
            if rule_id not in known:
                from difflib import get_close_matches

                close = get_close_matches(rule_id, sorted(known), n=1)
                raise ConfigError(
                    f"{self.source}: unknown rule {rule_id!r}",
                    hint=f"did you mean {close[0]!r}?" if close else "run `safemig rules` for the ids",
                )


def _pg_version(data: dict[str, Any], source: str) -> int | None:
    from safemig.lint.catalog import SUPPORTED_MAJORS

    value = data.get("pg_version")
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value not in SUPPORTED_MAJORS:
        raise ConfigError(
            f"{source}: pg_version = {value!r} is not a supported PostgreSQL major "
            f"({', '.join(map(str, SUPPORTED_MAJORS))})",
            hint="e.g. pg_version = 16 (the major of the server the migrations run on)",
        )
    return value


def _rule_docs_url(data: dict[str, Any], source: str) -> str | None:
    """``rule_docs_url``: an absolute URL (SARIF's ``helpUri`` must be one) with a ``{rule}`` placeholder."""
    from urllib.parse import urlsplit

    value = data.get("rule_docs_url")
    if value is None:
        return None
    hint = 'e.g. rule_docs_url = "https://wiki.example.com/migrations/{rule}" (your own docs page per rule)'
    if not isinstance(value, str) or "{rule}" not in value:
        raise ConfigError(f"{source}: rule_docs_url = {value!r} has no {{rule}} placeholder", hint=hint)
    try:
        parts = urlsplit(value.replace("{rule}", "x"))
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or not (parts.netloc or parts.scheme == "file") or " " in value:
        raise ConfigError(f"{source}: rule_docs_url = {value!r} is not an absolute URL", hint=hint)
    if value.replace("{rule}", "").count("{") or value.replace("{rule}", "").count("}"):
        raise ConfigError(f"{source}: rule_docs_url = {value!r}: {{rule}} is the only placeholder", hint=hint)
    return value


def _parse(data: dict[str, Any], source: str) -> tuple[dict[str, str], list[Exception_], str | None]:
    unknown = set(data) - LINT_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown lint setting {sorted(unknown)[0]!r}",
            hint=f"known settings: {', '.join(sorted(LINT_KEYS))}",
        )
    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError(
            f'{source}: rules must be a table of rule-id = "error"|"warning"|"off"',
            hint='e.g. [rules] then json-column = "off"',
        )
    severities = {}
    for rule_id, value in rules.items():
        if value not in (*SEVERITIES, OFF):
            raise ConfigError(
                f"{source}: rules.{rule_id} = {value!r} is not error, warning or off",
                hint=f'e.g. {rule_id} = "warning"',
            )
        severities[rule_id] = value
    exceptions = []
    raw_exceptions = data.get("exceptions", [])
    if not isinstance(raw_exceptions, list):
        raise ConfigError(
            f"{source}: exceptions must be an array of tables ([[exceptions]])",
            hint="write [[exceptions]] then paths, rules and reason",
        )
    for index, item in enumerate(raw_exceptions, 1):
        where = f"{source}: exceptions #{index}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table", hint="write [[exceptions]] then paths, rules and reason")
        paths, rule_ids, reason = item.get("paths"), item.get("rules"), item.get("reason")
        if isinstance(paths, str):
            paths = [paths]
        if not paths or not all(isinstance(p, str) for p in paths):
            raise ConfigError(
                f"{where}: paths must be a list of globs", hint='e.g. paths = ["docker/migrations/001_*.sql"]'
            )
        if not rule_ids or not isinstance(rule_ids, list) or not all(isinstance(r, str) for r in rule_ids):
            raise ConfigError(f"{where}: rules must be a list of rule ids", hint='e.g. rules = ["json-column"]')
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where}: a reason is required", hint='e.g. reason = "table is empty in every env"')
        exceptions.append(Exception_(tuple(paths), tuple(rule_ids), reason))
    house = data.get("house_rules")
    if house is not None and not isinstance(house, str):
        raise ConfigError(f"{source}: house_rules must be a directory path", hint='e.g. house_rules = "rules"')
    return severities, exceptions, house


def load_policy(config: Config) -> Policy:
    """Merge ``rules/policy.toml`` and ``[lint]`` of the config into one :class:`Policy`."""
    root = config.root
    severities: dict[str, str] = {}
    exceptions: list[Exception_] = []
    house: str | None = None
    pg_version: int | None = None
    docs_url: str | None = None
    sources = []
    policy_path = root / POLICY_FILE
    if policy_path.is_file():
        data = _read_toml(policy_path)
        pg_version = _pg_version(data, str(POLICY_FILE)) or pg_version
        docs_url = _rule_docs_url(data, str(POLICY_FILE)) or docs_url
        s, e, h = _parse(data, str(POLICY_FILE))
        severities.update(s)
        exceptions.extend(e)
        house = h or house
        sources.append(str(POLICY_FILE))
    section = config.section("lint")
    if section:
        where = f"[lint] in {config.path.name if config.path else 'config'}"
        pg_version = _pg_version(section, where) or pg_version
        docs_url = _rule_docs_url(section, where) or docs_url
        s, e, h = _parse(section, where)
        severities.update(s)
        exceptions.extend(e)
        house = h or house
        sources.append(where)
    # House rules are code: they run only where the repository opted in (a policy file next
    # to them, or house_rules set), never because some unrelated rules/ directory exists.
    house_dir = None
    if house is not None:
        house_dir = (root / house).resolve()
        if not house_dir.is_dir():
            raise ConfigError(
                f"house_rules directory {house_dir} does not exist", hint="fix house_rules or create the directory"
            )
    elif policy_path.is_file():
        house_dir = (root / DEFAULT_HOUSE_RULES).resolve()
    return Policy(
        root=root.resolve(),
        severities=severities,
        exceptions=tuple(exceptions),
        house_dir=house_dir,
        source=" + ".join(sources) or "(defaults)",
        pg_version=pg_version,
        rule_docs_url=docs_url,
    )
