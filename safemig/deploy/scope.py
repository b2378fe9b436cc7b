"""What the restore-mode rehearsal restores: the whole schema, and the data the pending migrations need.

Restoring every row of prod for each deploy would make the rehearsal as slow as a full
restore; restoring none would rehearse on an empty database (the failure that made a
``VALIDATE CONSTRAINT`` pass on staging and fail on prod). So the rehearsal restores the
schema of everything and the rows of the relations the pending migrations touch:

1. **Targets** come from PostgreSQL's own parse tree of each pending file (the linter's
   :mod:`safemig.lint.parse` and :mod:`safemig.lint.facts`, not a second parser): every
   relation named anywhere in a statement (``RangeVar`` nodes: ALTER TABLE, CREATE INDEX,
   UPDATE ... FROM, REFERENCES, ...), the objects of DROP statements, and the statements
   of DO blocks and of routines the file itself creates and calls.
2. **What those need**, from prod's catalog (reads, no locks): the tables they reference
   by foreign key (or the FK could not be restored), the tables that reference them (a
   DELETE or a new constraint must meet the child rows), their partitions and parents, the
   relations under a view and an index's table.

When the targets cannot be known (a DO block that runs ``EXECUTE`` of a computed string,
a call of a routine defined on the server, a statement that does not parse) the scope is
everything, and :attr:`Scope.everything_because` says why.

The selection is made on pg_restore's own table of contents (``pg_restore -l``, passed
back with ``-L``): :meth:`Scope.select` keeps every entry except the data of relations
outside the scope (``TABLE DATA``/``MATERIALIZED VIEW DATA``) and large objects' contents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from safemig.migrations.files import Migration

# TOC entry descriptions that carry rows (pg_restore -l's third field, after "ID; OID OID").
_DATA_ENTRIES = ("TABLE DATA", "MATERIALIZED VIEW DATA")
# Large objects are not a relation's data; their contents are left out unless everything is restored.
_LARGE_OBJECT_DATA = ("BLOBS", "BLOB DATA", "LARGE OBJECTS")


@dataclass(frozen=True)
class Targets:
    """Relation names the pending migrations mention (as written: maybe unqualified), or why none can be known."""

    names: frozenset[str]
    unknown: tuple[str, ...] = ()  # reasons: "002_x.sql line 3: EXECUTE format(...)"
    calls: frozenset[str] = frozenset()  # functions called that the files do not create (checked on prod)


@dataclass
class Scope:
    """The relations whose rows are restored (``schema.name``), or everything."""

    relations: set[str] = field(default_factory=set)
    everything_because: str | None = None  # None: only ``relations``; else why all data is restored
    targets: list[str] = field(default_factory=list)  # the resolved targets themselves (for the report)

    @property
    def everything(self) -> bool:
        return self.everything_because is not None

    def select(self, toc: list[str]) -> list[str]:
        """The ``pg_restore -L`` list: every TOC line except the data outside the scope."""
        if self.everything:
            return toc
        prefixes = [f"{schema} {name} " for schema, name in (_split(r) for r in self.relations)]
        kept = []
        for line in toc:
            entry = _entry(line)
            if entry is None:
                kept.append(line)
                continue
            if entry.startswith(_LARGE_OBJECT_DATA):
                continue
            data = next((d for d in _DATA_ENTRIES if entry.startswith(d + " ")), None)
            if data is None:
                kept.append(line)
            elif any(entry[len(data) + 1 :].startswith(prefix) for prefix in prefixes):
                kept.append(line)
        return kept

    def as_dict(self) -> dict[str, Any]:
        return {
            "data": "all" if self.everything else "touched",
            "reason": self.everything_because,
            "targets": self.targets,
            "relations": sorted(self.relations),
        }


def _split(qualified: str) -> tuple[str, str]:
    schema, _, name = qualified.partition(".")
    return schema, name


def _entry(line: str) -> str | None:
    """``"3345; 0 16390 TABLE DATA public items owner"`` -> ``"TABLE DATA public items owner"``; comments -> None."""
    if not line or line.startswith(";"):
        return None
    _, sep, rest = line.partition("; ")
    if not sep:
        return None
    parts = rest.split(" ", 2)
    return parts[2] if len(parts) == 3 else None


# -- 1. targets from the parse tree ------------------------------------------------------


def _range_vars(node: Any) -> Iterator[dict]:
    """Every ``RangeVar`` (a relation reference) under a parse-tree node."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "relname" in item and "relpersistence" in item:  # a RangeVar, in a list or as a field
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def migration_targets(migrations: Iterable[Migration]) -> Targets:
    """The relations the migrations' statements name, from PostgreSQL's parse tree."""
    from safemig.lint import facts
    from safemig.lint.parse import parse_sql

    names: set[str] = set()
    unknown: list[str] = []
    calls: set[str] = set()
    for migration in migrations:
        parsed = parse_sql(migration.sql)
        created_routines = {facts.routine_name(s): s for s in parsed.statements if s.node_type == "CreateFunctionStmt"}
        pending = list(parsed.statements)
        seen_routines: set[str] = set()
        while pending:
            stmt = pending.pop(0)
            where = f"{migration.name} line {stmt.line}"
            if stmt.node_type is None:
                unknown.append(f"{where}: a statement PostgreSQL's parser rejects")
                continue
            if stmt.node_type == "DoStmt":
                block = facts.do_block(stmt)
                unknown.extend(f"{where}: DO block with {why}" for why in block.opaque)
                pending.extend(block.statements)
                continue
            if stmt.node_type == "CreateFunctionStmt":
                continue  # its body runs only when called (below)
            if stmt.node_type == "ExecuteStmt":
                unknown.append(f"{where}: EXECUTE of a prepared statement")
                continue
            for rv in _range_vars(stmt.node):
                name = facts.relation_name(rv)
                if name:
                    names.add(name)
            for drop in facts.drops(stmt):
                for name in (drop.name, drop.table):
                    if name and drop.kind in (
                        "TABLE",
                        "INDEX",
                        "VIEW",
                        "MATERIALIZED VIEW",
                        "SEQUENCE",
                        "COLUMN",
                        "CONSTRAINT",
                        "FOREIGN TABLE",
                        "TRIGGER",
                        "POLICY",
                        "RULE",
                    ):
                        names.add(name)
            for called in facts.function_calls(stmt.node):
                if called in created_routines:
                    if called not in seen_routines:
                        seen_routines.add(called)
                        body = facts.routine_body(created_routines[called])
                        unknown.extend(f"{where}: {called}() runs {why}" for why in body.opaque)
                        pending.extend(body.statements)
                else:
                    calls.add(called)
    return Targets(frozenset(names), tuple(unknown), frozenset(calls))


# -- 2. what the targets need, from prod's catalog ----------------------------------------

_RESOLVE = """
SELECT t.name, c.oid::bigint, n.nspname, c.relname, c.relkind,
       (SELECT i.indrelid::bigint FROM pg_index i WHERE i.indexrelid = c.oid)
FROM unnest(%s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(t.name)
JOIN pg_namespace n ON n.oid = c.relnamespace
"""

_USER_FUNCTIONS = """
SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = ANY(%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""

# One round of "what these relations need": FK parents, partitions/children, parents, the
# relations under a view, and (for the targets themselves) the tables referencing them.
_NEEDS = """
SELECT confrelid::bigint FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%(rels)s)
UNION SELECT inhrelid::bigint FROM pg_inherits WHERE inhparent = ANY(%(rels)s)
UNION SELECT inhparent::bigint FROM pg_inherits WHERE inhrelid = ANY(%(rels)s)
UNION SELECT d.refobjid::bigint FROM pg_rewrite r
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
      WHERE r.ev_class = ANY(%(rels)s) AND d.refobjid <> r.ev_class
UNION SELECT conrelid::bigint FROM pg_constraint WHERE contype = 'f' AND confrelid = ANY(%(targets)s)
"""

_NAMES = """
SELECT n.nspname || '.' || c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%s)
"""


def resolve_scope(conn, targets: Targets, *, everything: bool = False, ledger: str = '"_sqlx_migrations"') -> Scope:
    """The data scope on prod (``conn``): the targets, resolved, and what they need (catalog reads only).

    The migrator's ledger (``ledger``, quoted as ``to_regclass`` reads it: sqlx.toml may name
    another) is always in it: the rehearsal applies on top of prod's ledger, as gate 5 will.
    """
    why = _why_everything(conn, targets, everything)
    resolved: list[str] = []
    start: set[int] = set()
    if not targets.unknown:
        for _name, oid, schema, relname, relkind, index_table in conn.execute(_RESOLVE, (sorted(targets.names),)):
            resolved.append(f"{schema}.{relname}")
            start.add(int(index_table) if relkind in ("i", "I") and index_table else int(oid))
    if why is not None:
        return Scope(everything_because=why, targets=sorted(set(resolved)))
    found = set(start)
    frontier = set(start)
    while frontier:
        more = {int(r[0]) for r in conn.execute(_NEEDS, {"rels": sorted(frontier), "targets": sorted(start)})}
        frontier = more - found
        found |= frontier
    found |= {int(r[1]) for r in conn.execute(_RESOLVE, ([ledger],))}
    names = {name for name, kind in conn.execute(_NAMES, (sorted(found),)) if kind in ("r", "p", "m", "f")}
    return Scope(relations=names, targets=sorted(set(resolved)))


def _why_everything(conn, targets: Targets, everything: bool) -> str | None:
    """Why every row must be restored, or None when the touched relations are enough."""
    if everything:
        return 'rehearsal_data = "all"'
    if targets.unknown:
        return "the targets of the pending migrations cannot be known: " + "; ".join(targets.unknown[:3])
    if targets.calls:
        user = sorted(r[0] for r in conn.execute(_USER_FUNCTIONS, (sorted(targets.calls),)))
        if user:
            return (
                "the pending migrations call "
                + ", ".join(f"{f}()" for f in user)
                + ", defined on the server: what it touches cannot be read from the files"
            )
    return None
