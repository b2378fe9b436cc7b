"""An archive's table of contents (``pg_restore -l``): read it, filter it, reorder it for ``--clean``.

The TOC sits at the start of a custom-format archive, so ``pg_restore -l`` reads it from
the first bytes of the stream and exits; the rest of the object is not downloaded.
Lines look like ``3214; 2606 16395 CONSTRAINT public m_2024 m_2024_pkey postgres``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# "<dumpId>; <catalog oid> <object oid> <DESC> <schema> <name...> <owner>"; DESC may be several words.
_LINE = re.compile(r"^(?P<id>\d+);\s+\d+\s+\d+\s+(?P<rest>.*)$")
_DESCS = sorted(
    (
        "TABLE DATA",
        "TABLE ATTACH",
        "INDEX ATTACH",
        "FK CONSTRAINT",
        "CHECK CONSTRAINT",
        "CONSTRAINT",
        "INDEX",
        "TABLE",
        "SEQUENCE SET",
        "SEQUENCE OWNED BY",
        "SEQUENCE",
        "MATERIALIZED VIEW DATA",
        "MATERIALIZED VIEW",
        "VIEW",
        "BLOB",
        "BLOBS",
        "BLOB METADATA",
        "LARGE OBJECT",
        "TRIGGER",
        "RULE",
        "POLICY",
        "ROW SECURITY",
    ),
    key=len,
    reverse=True,
)
# Entries whose restore takes a lock (or a shared-memory slot) held until commit: relations,
# large objects. The sum is what one transaction would need of max_locks_per_transaction.
_LOCKING = {
    "TABLE": 2,  # the table and its TOAST table
    "INDEX": 1,
    "CONSTRAINT": 2,  # the constraint's index and the table again (ALTER TABLE)
    "FK CONSTRAINT": 2,
    "SEQUENCE": 1,
    "VIEW": 1,
    "MATERIALIZED VIEW": 2,
    "BLOB": 1,
    "LARGE OBJECT": 1,
    "TABLE ATTACH": 2,
    "INDEX ATTACH": 2,
    "TRIGGER": 1,
    "POLICY": 1,
}

Select = Callable[[list[str]], list[str]]


def entries(listing: str) -> list[str]:
    """The TOC lines of ``pg_restore -l`` output (comments and blank lines dropped)."""
    return [line for line in listing.splitlines() if line.strip() and not line.startswith(";")]


def desc(line: str) -> str:
    """The entry's type (``TABLE DATA``, ``CONSTRAINT``, ...), or "" if the line is not a TOC entry."""
    match = _LINE.match(line)
    if not match:
        return ""
    rest = match["rest"]
    for name in _DESCS:
        if rest.startswith(name + " "):
            return name
    return rest.split(" ", 1)[0]


def _schema_and_name(line: str, kind: str) -> tuple[str, str] | None:
    """(schema, object name) of an INDEX / CONSTRAINT / INDEX ATTACH entry (names without spaces)."""
    match = _LINE.match(line)
    if not match:
        return None
    words = match["rest"][len(kind) + 1 :].split(" ")[:-1]  # the last word is the owner
    if len(words) < 2:
        return None
    return words[0], words[-1]


def apply_select(toc: list[str], select: Select | None) -> list[str]:
    """The lines ``select`` keeps, in the archive's order (a stream cannot be read out of order).

    A returned line that is not one of the archive's is a programming error of the caller.
    """
    if select is None:
        return list(toc)
    chosen = select(list(toc))
    wanted = set(chosen)
    unknown = [line for line in chosen if line not in set(toc)]
    if unknown:
        raise ValueError(f"select returned a line that is not in the archive's TOC: {unknown[0]!r}")
    return [line for line in toc if line in wanted]


def order_for_clean(toc: list[str]) -> list[str]:
    """Move partitions' indexes and constraints before their parents' for ``--clean``.

    pg_restore drops in the reverse of the restore order, and PostgreSQL refuses to drop a
    partition's primary key or index while it is attached to the parent's ("cannot drop
    inherited constraint"). Dropped first, the parent's takes the partitions' with it; the
    partitions' ``DROP ... IF EXISTS`` then find nothing. Creation is unaffected: the
    ``INDEX ATTACH`` entries still come after both.
    """
    attached = {key for line in toc if desc(line) == "INDEX ATTACH" and (key := _schema_and_name(line, "INDEX ATTACH"))}
    if not attached:
        return list(toc)

    def is_child(line: str) -> bool:
        kind = desc(line)
        return kind in ("CONSTRAINT", "INDEX") and _schema_and_name(line, kind) in attached

    children = [line for line in toc if is_child(line)]
    others = [line for line in toc if not is_child(line)]
    first = next((i for i, line in enumerate(others) if desc(line) in ("CONSTRAINT", "INDEX")), len(others))
    return others[:first] + children + others[first:]


def lock_slots(toc: Iterable[str]) -> int:
    """A generous estimate of the lock-table slots a single-transaction restore of ``toc`` needs."""
    return sum(_LOCKING.get(desc(line), 0) for line in toc)


# What pg_restore -j runs side by side: the data of different tables, then the index and
# constraint builds (and materialized view refreshes) once their tables are loaded.
_DATA_WORK = {"TABLE DATA", "BLOBS", "BLOB", "LARGE OBJECT"}
_POST_WORK = {"INDEX", "CONSTRAINT", "FK CONSTRAINT", "MATERIALIZED VIEW DATA"}


def parallel_work(toc: Iterable[str]) -> bool:
    """Whether ``pg_restore -j N`` could run two pieces of heavy work at once for ``toc``.

    Not with a single data entry and at most one index or constraint (one big table, say): the
    jobs would wait for each other, and a stream that overlaps the download with the restore
    beats a local copy downloaded first. The TOC of a streamed archive has no data sizes, so
    two entries of any size count.
    """
    kinds = [desc(line) for line in toc]
    return sum(k in _DATA_WORK for k in kinds) >= 2 or sum(k in _POST_WORK for k in kinds) >= 2
