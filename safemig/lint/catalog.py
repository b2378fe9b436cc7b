"""What PostgreSQL's own catalog says, per major version: function volatility and binary-coercible casts.

The data files ``safemig/lint/data/pg<MAJOR>.json`` are generated from real servers by
``scripts/pg_catalog_data`` (``pg_proc.provolatile``, ``pg_cast.castmethod = 'b'``), never
typed by hand: a hand-kept list of "volatile functions" knew 15 names and called two
STABLE ones volatile. A major without its own file uses the nearest generated one
(:func:`data_major` says which), and the report of ``safemig rules`` says so.

Read lazily and once per process: only a statement with a DEFAULT or a type change asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
SUPPORTED_MAJORS = (14, 15, 16, 17, 18)
DEFAULT_PG_VERSION = 15  # documented in the README's lint section: Debian 12's PostgreSQL

VOLATILE, STABLE, IMMUTABLE = "v", "s", "i"


def generated_majors() -> list[int]:
    """The majors with a data file of their own."""
    return sorted(int(p.stem[2:]) for p in DATA_DIR.glob("pg*.json") if p.stem[2:].isdigit())


def data_major(major: int) -> int:
    """The major whose data answers for ``major``: itself if generated, else the nearest (lower first)."""
    majors = generated_majors()
    if not majors or major in majors:
        return major
    return min(majors, key=lambda m: (abs(m - major), m > major))


@lru_cache(maxsize=8)
def _load(major: int) -> dict:
    path = DATA_DIR / f"pg{data_major(major)}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:  # an installation without the data: every function is unknown (so volatile)
        return {"functions": {}, "binary_casts": []}


def preload(major: int) -> None:
    """Read ``major``'s data now: a parent about to fork its workers reads it once for all of them."""
    _load(major)


def volatility(name: str, major: int) -> str | None:
    """``"i"``, ``"s"`` or ``"v"`` for a built-in (or common extension) function name; ``None`` if unknown."""
    return _load(major)["functions"].get(name)


@lru_cache(maxsize=8)
def _casts(major: int) -> frozenset[tuple[str, str]]:
    return frozenset((s, t) for s, t in _load(major)["binary_casts"])


@dataclass(frozen=True)
class ColumnType:
    """A column type as written: its name as PostgreSQL's tree has it (``varchar``, ``int4``) and modifiers."""

    name: str
    modifiers: tuple[int, ...] = ()  # varchar(20) -> (20,); numeric(12, 2) -> (12, 2); () when none or not constant
    array: bool = False


# Types whose length/precision modifier can grow without a rewrite (PostgreSQL's *_support functions:
# varchar_support, numeric_support, varbit_support, timestamp_support / time_support).
_GROWABLE = {"varchar", "varbit", "timestamp", "timestamptz", "time", "timetz", "interval"}


def _modifier_widens(name: str, old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """True when going from modifier ``old`` to ``new`` of type ``name`` needs no rewrite."""
    if not new:  # varchar(20) -> varchar, numeric(12,2) -> numeric: unlimited accepts everything
        return name in _GROWABLE or name == "numeric"
    if not old:  # unlimited -> limited: every value must be checked
        return False
    if name == "numeric":
        old_scale = old[1] if len(old) > 1 else 0
        new_scale = new[1] if len(new) > 1 else 0
        return new_scale == old_scale and new[0] >= old[0]
    if name in _GROWABLE:
        return new[0] >= old[0]
    return old == new


def may_be_binary_target(new: ColumnType, major: int) -> bool:
    """False when no change *to* ``new`` can be binary coercible (so the old type need not be looked up)."""
    if new.name in _GROWABLE or new.name == "numeric" or new.name in ("bit", "varbit"):
        return True
    return any(target == new.name for _, target in _casts(major))


def binary_coercible(old: ColumnType, new: ColumnType, major: int) -> bool:
    """True when ``ALTER COLUMN ... TYPE new`` (without USING) on a column of type ``old`` rewrites nothing.

    PostgreSQL skips the rewrite (and keeps the indexes) when the conversion is binary
    coercible and any length coercion is a no-op: the same type with a wider modifier
    (``varchar(20)`` -> ``varchar(40)``, ``numeric(10,2)`` -> ``numeric(12,2)``), or a
    ``pg_cast`` entry with ``castmethod = 'b'`` (``varchar`` -> ``text``, ``cidr`` -> ``inet``)
    to a target without a modifier.
    """
    if old.array != new.array:
        return False
    if old.name == new.name:
        return old.modifiers == new.modifiers or _modifier_widens(old.name, old.modifiers, new.modifiers)
    if (old.name, new.name) not in _casts(major):
        return False
    if not new.modifiers:
        return True
    # a cast then a length coercion: a no-op only from the same family with a smaller or equal limit
    return (
        old.name in ("varchar", "bpchar")
        and new.name == "varchar"
        and bool(old.modifiers)
        and (new.modifiers[0] >= old.modifiers[0])
    )
