"""Remember findings per file so a repeated run over unchanged files costs almost nothing.

The key covers everything a file's findings depend on: its bytes and displayed path,
its role and version, its rollback script's bytes, the names of the other migrations in
its directory (file-naming looks at them), the rule set (each rule module's size and
mtime) and the policy. Entries are small JSON files under ``.safemig/lint-cache/`` in
the project root, written atomically; a corrupt or unreadable entry is just a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from safemig import __version__
from safemig.lint.finding import Finding

CACHE_DIR = Path(".safemig") / "lint-cache"


class Cache:
    """A directory of ``<key>.json`` files, one per (file, context) combination."""

    def __init__(self, directory: Path, salt: str) -> None:
        self.directory = directory
        self.salt = salt

    @classmethod
    def for_run(cls, root: Path, rule_sources: dict[str, Path], policy) -> "Cache":
        """A cache salted with the rule set (``{id: module file}``, by size and mtime) and the policy."""
        parts = [__version__, policy.fingerprint()]
        for rule_id, source in sorted(rule_sources.items()):
            try:
                st = source.stat()
                parts.append(f"{rule_id}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(rule_id)
        engine_dir = Path(__file__).parent  # the engine itself (parse, facts, ignores...) counts too
        for path in sorted(engine_dir.glob("*.py")):
            st = path.stat()
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
        salt = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return cls(root / CACHE_DIR, salt)

    def key(self, target, raw: bytes, display: str) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.salt}\0{display}\0{target.role}\0{target.version}\0{target.description}\0{target.name_problem}\0".encode())
        digest.update(raw)
        if target.rollback is not None:
            digest.update(f"\0rollback:{target.rollback}\0".encode())
            try:
                digest.update(target.rollback.read_bytes())
            except OSError:
                digest.update(b"unreadable")
        if target.role == "migration":
            from safemig.lint.targets import sql_names_in

            digest.update("\0".join(sql_names_in(target.path.parent)).encode())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[Finding] | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            return [Finding.from_json(item) for item in data]
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def put(self, key: str, findings: list[Finding]) -> None:
        """Store ``findings`` (best effort: a read-only checkout just does not cache)."""
        path = self._path(key)
        data = [dict(f.to_json(), statement=f.statement) for f in findings]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except OSError:
            pass
