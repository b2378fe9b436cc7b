"""A migration file name that breaks ordering or says nothing.

Checks that the name is ``<VERSION>_<description>.sql`` with an integer version, that
short versions are zero-padded (``005``, not ``5``) to the same width as the other
migrations of the directory (so lexicographic and numeric order agree), that no other
migration has the same version, and that the description says what the migration does.

Why:
    sqlx orders by the integer version, people and tools by the file name: ``10_x.sql``
    sorts before ``9_y.sql``. Two files with one version make sqlx fail, and a name like
    ``005_update.sql`` tells a reviewer nothing.

Bad:
    -- file: migrations/5_update.sql
    SELECT 1;

Good:
    -- file: migrations/005_add_order_notes.sql
    SELECT 1;
"""

import re
from collections import Counter

ID = "file-naming"
SEVERITY = "error"
SUMMARY = "migration file names: <VERSION>_<description>.sql, zero-padded, consistent width, unique, descriptive"
FILES = "migrations"

GENERIC = {
    "",
    "migration",
    "migrations",
    "update",
    "updates",
    "change",
    "changes",
    "fix",
    "fixes",
    "misc",
    "temp",
    "tmp",
    "test",
    "new",
    "stuff",
    "wip",
    "untitled",
    "schema",
    "sql",
    "script",
    "patch",
}
_PREFIX = re.compile(r"^(\d+)_")


def _prefix(name: str) -> str | None:
    match = _PREFIX.match(name)
    return match.group(1) if match else None


_LAST: list = [None, None]  # (names tuple, facts) of the directory seen last


def _directory_facts(names: tuple[str, ...]) -> tuple[Counter, dict[int, list[str]]]:
    """Prefix widths and names per version of one directory, computed once for all its files.

    The engine hands every file of a directory the same tuple, so identity is the key
    (hashing a 4,000-name tuple per file would cost more than the check itself).
    """
    if _LAST[0] is names:
        return _LAST[1]
    widths: Counter = Counter()
    by_version: dict[int, list[str]] = {}
    for n in names:
        prefix = _prefix(n)
        if prefix and not n.endswith(".down.sql"):
            widths[len(prefix)] += 1
            by_version.setdefault(int(prefix), []).append(n)
    _LAST[:] = [names, (widths, by_version)]
    return widths, by_version


def check(file):
    name = file.path.name
    if file.name_problem:
        yield file.at_file(file.name_problem, "name it like 005_add_order_notes.sql")
        return
    if file.version is None:
        return
    if name in ("up.sql",):  # Diesel layout: the directory carries the version
        return
    prefix = _prefix(name) or ""
    all_widths, by_version = _directory_facts(file.siblings)
    own = len(prefix) if name in by_version.get(file.version, ()) else None  # compare with the other files
    widths = {w: n - (w == own) for w, n in all_widths.items() if n - (w == own) > 0}
    width = max(widths, key=widths.__getitem__) if widths else max(len(prefix), 3)  # ties: first seen, as most_common
    if len(prefix) < 8 and len(prefix) < 3:
        yield file.at_file(
            f"version {prefix} is not zero-padded: {name} sorts after 10_... in file listings",
            f"rename it to {file.version:0{max(width, 3)}d}_{name[len(prefix) + 1 :]}",
        )
    elif widths and len(prefix) != width:
        yield file.at_file(
            f"version {prefix} is {len(prefix)} digits wide; the other migrations use {width}",
            f"rename it to {file.version:0{width}d}_{name[len(prefix) + 1 :]}",
        )
    same = [n for n in by_version.get(file.version, []) if n != name]
    if same:
        yield file.at_file(
            f"version {file.version} is also used by {', '.join(same)}",
            "give this migration the next free version number; versions must be unique",
        )
    words = [w for w in re.split(r"[\s_\-]+", file.description.lower()) if w]
    if not words or " ".join(words) in GENERIC or all(w.isdigit() for w in words):
        yield file.at_file(
            f"description {file.description!r} does not say what the migration does",
            f"rename it like {file.version:0{max(width, len(prefix))}d}_add_order_notes.sql (verb + object)",
        )
