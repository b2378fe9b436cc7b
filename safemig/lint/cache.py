"""Remember findings per file so a repeated run over unchanged files costs almost nothing.

The key covers everything a built-in rule reads to judge a file: its bytes and displayed
path, its role and version, its rollback script's path and bytes, the rollback scripts named
for its version (two are an error), the names of the other files in its directory
(file-naming looks at them), the rule set (each rule module's size and mtime) and the
policy. The earlier migrations of the directory, which some rules read (a column's type, a
CHECK validated before, a function's volatility: :mod:`safemig.lint.history`), are checked
precisely instead: the findings of a file whose rules read them are stored with a digest of
their names and contents, and answer only while it still matches. An edit of migration 5
thus re-lints those of 6, 7, ... that looked back, and the commit hook's one file costs no
reading of its hundreds of predecessors when its rules never looked at them. Adding
migration 9 re-lints the directory's files once (their listing changed). A house rule that
reads other files is not covered: ``--no-cache`` then. Entries live in bucket files under
``.safemig/lint-cache/`` in the project root, written atomically; a corrupt or unreadable
bucket is just a miss. The cache does not grow without bound: every edit of a file or of the
policy leaves entries that can never hit again, so an entry is dropped a month after it was
written, when its bucket is next rewritten (an unchanged file is then linted again once). There
are 16 buckets (by the key's first hex digit): a first run over thousands of files creates 16
files, not hundreds (creating a file is most of the cost of filling the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from safemig import __version__
from safemig.lint.finding import Finding, astuple
from safemig.statedir import make_dir

if TYPE_CHECKING:
    from safemig.lint.targets import Target

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

    def __init__(self, directory: Path, salt: str, rollbacks_dir: Path | None = None) -> None:
        self.directory = directory
        self.salt = salt
        self._rollbacks_dir = rollbacks_dir  # the configured rollbacks directory (config.rollbacks_dir)
        self._loaded: dict[str, dict] = {}  # bucket name -> its entries, as read this run
        self._contents: dict[str, bytes] = {}  # file (as str: hashing Paths cost more) -> digest of its bytes
        # history root -> its migrations' versions and paths, and the prefix digests computed so far
        self._chains: dict[Path, tuple[list[int], list[str], list[bytes]]] = {}

    @classmethod
    def for_run(cls, root: Path, rule_sources: dict[str, Path], policy, rollbacks_dir: Path | None = None) -> Cache:
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
        return cls(root / CACHE_DIR, salt, rollbacks_dir)

    def key(self, target, raw: bytes, display: str) -> str:
        """The key of ``target``'s findings: its bytes (``raw``) and everything else they depend on."""
        digest = hashlib.sha256()
        digest.update(
            f"{self.salt}\0{display}\0{target.role}\0{target.version}\0{target.description}\0{target.name_problem}\0{target.no_transaction}\0".encode()
        )
        content = self._contents[str(target.path)] = hashlib.sha256(raw).digest()  # for its successors' keys too
        digest.update(content)
        if target.rollback is not None:
            digest.update(f"\0rollback:{target.rollback}\0".encode())
            digest.update(self._content(str(target.rollback)))
        if target.role == "migration":
            from safemig.lint import targets

            digest.update(targets.sql_names_digest(target.path.parent).encode())
            if target.version is not None:
                for folder in (self._rollbacks_dir, target.path.parent / "rollbacks"):  # as rollback_ambiguity
                    if folder is None:
                        continue
                    names = [p.name for p in targets.rollback_index(folder).get(target.version, ())]
                    digest.update(f"\0rollbacks:{folder}:{'/'.join(names)}".encode())
        return digest.hexdigest()

    def _content(self, path: str) -> bytes:
        """A digest of ``path``'s bytes, read once per run."""
        found = self._contents.get(path)
        if found is None:
            try:
                with open(path, "rb") as fh:
                    found = hashlib.sha256(fh.read()).digest()
            except OSError:
                found = b"unreadable"
            self._contents[path] = found
        return found

    def _history(self, migration: Path, version: int) -> bytes:
        """A digest of the names and contents of the migrations before ``version`` in ``migration``'s
        directory: what :mod:`safemig.lint.history` may read for it.

        Kept per directory as a chain of prefix digests, extended as far as a key needs, so
        keying a directory of n migrations hashes each earlier one once, not n times. The
        engine keys files in path order, which is version order in a migrations directory:
        the earlier files' bytes were read for their own keys already.
        """
        from bisect import bisect_left

        from safemig.lint import targets

        root = targets.history_root(migration)
        chain = self._chains.get(root)
        if chain is None:
            files = targets.migration_files(root)
            chain = self._chains[root] = ([v for v, _ in files], [p for _, p in files], [b""])
        versions, paths, prefixes = chain
        needed = bisect_left(versions, version)
        while len(prefixes) <= needed:
            index = len(prefixes) - 1
            entry = f"{versions[index]}:{paths[index]}:".encode() + self._content(paths[index])
            prefixes.append(hashlib.sha256(prefixes[-1] + entry).digest())
        return prefixes[needed]

    def _bucket(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def _load(self, name: str) -> dict:
        try:
            data = json.loads(self._bucket(name).read_bytes())  # (orjson's import would cost a hook more than it saves)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str, target: Target | None = None) -> list[Finding] | None:
        """The cached findings of ``key``, or ``None`` (each bucket file is read once per run).

        An entry stored with a history digest (its rules read the earlier migrations) answers
        only while ``target``'s earlier migrations still have that digest.
        """
        name = key[:BUCKET_CHARS]
        bucket = self._loaded.get(name)
        if bucket is None:
            bucket = self._loaded[name] = self._load(name)
        entry = bucket.get(key)
        if not isinstance(entry, dict):
            return None
        history = entry.get("history")
        if history is not None:
            if target is None or target.version is None or history != self._history(target.path, target.version).hex():
                return None
        try:
            return [Finding(*row) for row in entry["findings"]]
        except (TypeError, KeyError):
            return None

    def put_many(self, entries: dict[str, tuple[list[Finding], Target | None]]) -> None:
        """Store findings by key, each with the target whose earlier migrations its rules read (else
        ``None``): best effort, a read-only checkout just does not cache.

        Entries live in at most 16 bucket files (by the key's first hex digit), each
        rewritten atomically once per run; concurrent runs can only lose entries, never
        corrupt them.
        """
        today = int(time.time() // 86400)
        by_bucket: dict[str, dict[str, dict]] = {}
        for key, (findings, reader) in entries.items():
            entry: dict = {"day": today, "findings": [astuple(f) for f in findings]}  # rows: half the JSON
            if reader is not None and reader.version is not None:
                entry["history"] = self._history(reader.path, reader.version).hex()
            by_bucket.setdefault(key[:BUCKET_CHARS], {})[key] = entry
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
