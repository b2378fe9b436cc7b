"""Remember findings per file so a repeated run over unchanged files costs almost nothing.

The key covers everything a file's findings depend on: its bytes and displayed path,
its role and version, its rollback script's bytes, the names of the other migrations in
its directory (file-naming looks at them), the rule set (each rule module's size and
mtime) and the policy. Entries live in bucket files under ``.safemig/lint-cache/`` in the project root,
written atomically; a corrupt or unreadable bucket is just a miss. The cache does not grow
without bound: every edit of a file or of the policy leaves entries that can never hit again,
so an entry is dropped a month after it was written, when its bucket is next rewritten (an
unchanged file is then linted again once). There are 16 buckets (by the key's first hex
digit): a first run over thousands of files creates 16 files, not hundreds (creating a file
is most of the cost of filling the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from safemig import __version__
from safemig.lint.finding import Finding, astuple
from safemig.statedir import make_dir

CACHE_DIR = Path(".safemig") / "lint-cache"
BUCKET_CHARS = 1  # hex digits of the key that name its bucket file
MAX_AGE_DAYS = 30  # an entry older than this is dropped when its bucket is rewritten


def _code_files() -> list[Path]:
    """Files whose change changes findings: the lint engine, the splitter, sqlx naming, and the parsers' packages."""
    import importlib.util

    here = Path(__file__).parent
    files = sorted(here.glob("*.py")) + [here.parent / "sql" / "split.py", here.parent / "migrations" / "files.py"]
    files += sorted((here / "data").glob("*.json"))  # PostgreSQL's catalog facts (safemig.lint.catalog)
    for package in ("sqlglot", "pglast"):  # located without importing them
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            files.append(Path(spec.origin))
    return files


class Cache:
    """A directory of JSON buckets mapping a key (file + context) to that file's findings."""

    def __init__(self, directory: Path, salt: str) -> None:
        self.directory = directory
        self.salt = salt
        self._loaded: dict[str, dict] = {}  # bucket name -> its entries, as read this run

    @classmethod
    def for_run(cls, root: Path, rule_sources: dict[str, Path], policy) -> Cache:
        """A cache salted with the rule set (``{id: module file}``, by size and mtime) and the policy."""
        parts = [__version__, policy.fingerprint()]
        for rule_id, source in sorted(rule_sources.items()):
            try:
                st = source.stat()
                parts.append(f"{rule_id}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(rule_id)
        for path in _code_files():  # the engine, the splitter and the parsers count too
            try:
                st = path.stat()
                parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(str(path))
        salt = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return cls(root / CACHE_DIR, salt)

    def key(self, target, raw: bytes, display: str) -> str:
        digest = hashlib.sha256()
        digest.update(
            f"{self.salt}\0{display}\0{target.role}\0{target.version}\0{target.description}\0{target.name_problem}\0{target.no_transaction}\0".encode()
        )
        digest.update(raw)
        if target.rollback is not None:
            digest.update(f"\0rollback:{target.rollback}\0".encode())
            try:
                digest.update(target.rollback.read_bytes())
            except OSError:
                digest.update(b"unreadable")
        if target.role == "migration":
            from safemig.lint.targets import sql_names_digest

            digest.update(sql_names_digest(target.path.parent).encode())
        return digest.hexdigest()

    def _bucket(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def _load(self, name: str) -> dict:
        try:
            data = json.loads(self._bucket(name).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> list[Finding] | None:
        """The cached findings of ``key``, or ``None`` (each bucket file is read once per run)."""
        name = key[:BUCKET_CHARS]
        bucket = self._loaded.get(name)
        if bucket is None:
            bucket = self._loaded[name] = self._load(name)
        entry = bucket.get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return [Finding(*row) for row in entry["findings"]]
        except (TypeError, KeyError):
            return None

    def put_many(self, entries: dict[str, list[Finding]]) -> None:
        """Store findings by key (best effort: a read-only checkout just does not cache).

        Entries live in at most 16 bucket files (by the key's first hex digit), each
        rewritten atomically once per run; concurrent runs can only lose entries, never
        corrupt them.
        """
        today = int(time.time() // 86400)
        by_bucket: dict[str, dict[str, dict]] = {}
        for key, findings in entries.items():
            by_bucket.setdefault(key[:BUCKET_CHARS], {})[key] = {
                "day": today,
                "findings": [astuple(f) for f in findings],
            }  # rows, not objects: half the JSON to write
        try:
            make_dir(self.directory)
            for name, new in by_bucket.items():
                bucket = self._load(name)  # as it is now: entries another run wrote meanwhile are kept
                bucket = {
                    key: entry
                    for key, entry in bucket.items()  # forget entries a month old (or of an older format)
                    if isinstance(entry, dict)
                    and isinstance(entry.get("day"), int)
                    and today - entry["day"] <= MAX_AGE_DAYS
                }
                bucket.update(new)
                fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(json.dumps(bucket))  # one C-encoded string: json.dump writes piecewise in Python
                os.replace(tmp, self._bucket(name))
        except OSError:
            pass
