"""A database's schema as comparable facts, and the difference between two of them.

Used twice by the rehearsal: before each pending migration and after its rollback (a
rollback that leaves a column, index, constraint, function, trigger, policy or type
behind, or misses one, is named), and on standing staging to compare staging's schema
with prod's for the objects a deploy touches.

Catalog queries rather than a normalised ``pg_dump --schema-only``: one round trip per
kind of object (no child process, no text munging), exact names and kinds for the
report, and ``pg_get_*def`` gives PostgreSQL's own canonical text of each definition, so
the same object prints the same on any server. Objects of extensions and of system
schemas are left out; a table's rows, sequences' values and statistics are not schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_USER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)


def _not_extension(catalog: str, oid: str) -> str:
    """A condition leaving out objects that belong to an extension (they are the extension's, not the schema's)."""
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass "
        f"AND e.objid = {oid} AND e.deptype = 'e')"
    )


_RELKINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "S": "sequence", "f": "foreign table"}

# (kind, query returning (name, relation, definition)); ``relation`` is the table the object belongs to.
_QUERIES: list[tuple[str, str]] = [
    (
        "schema",
        f"SELECT n.nspname, '', '' FROM pg_namespace n WHERE {_USER} AND n.nspname <> 'public' "
        "AND " + _not_extension("pg_namespace", "n.oid"),
    ),
    ("extension", "SELECT x.extname, '', x.extversion FROM pg_extension x WHERE x.extname <> 'plpgsql'"),
    (
        "relation",
        "SELECT n.nspname || '.' || c.relname, n.nspname || '.' || c.relname, c.relkind::text || "
        "CASE WHEN c.relrowsecurity THEN ' rls' ELSE '' END || CASE WHEN c.relforcerowsecurity THEN ' "
        "force' ELSE '' END "
        "|| CASE WHEN c.relkind IN ('v', 'm') THEN ' ' || pg_get_viewdef(c.oid) ELSE '' END "
        "|| coalesce(' partition ' || pg_get_expr(c.relpartbound, c.oid), '') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER} "
        "AND " + _not_extension("pg_class", "c.oid"),
    ),
    (
        "column",
        "SELECT n.nspname || '.' || c.relname || '.' || a.attname, n.nspname || '.' || c.relname, "
        "format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END "
        "|| coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') || coalesce(' COLLATE ' || co.collname, '') "
        "|| CASE a.attidentity WHEN '' THEN '' ELSE ' IDENTITY ' || a.attidentity::text END "
        "|| CASE a.attgenerated WHEN '' THEN '' ELSE ' GENERATED' END "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100 "
        f"WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER} "
        "AND " + _not_extension("pg_class", "c.oid"),
    ),
    (
        "index",
        "SELECT n.nspname || '.' || ic.relname, n.nspname || '.' || c.relname, "
        "pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid "
        f"JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE {_USER} "
        "AND " + _not_extension("pg_class", "c.oid"),
    ),
    (
        "constraint",
        "SELECT n.nspname || '.' || coalesce(c.relname, t.typname) || '.' || k.conname, "
        "n.nspname || '.' || coalesce(c.relname, t.typname), "
        "pg_get_constraintdef(k.oid) || CASE WHEN k.convalidated THEN '' ELSE ' NOT VALID' END "
        "FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace "
        "LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid "
        f"WHERE (k.conrelid <> 0 OR k.contypid <> 0) AND {_USER} "
        "AND " + _not_extension("pg_class", "coalesce(c.oid, 0)"),
    ),
    (
        "function",
        "SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', '', "
        "p.prokind::text || ' ' || coalesce(pg_get_function_result(p.oid), '') || ' ' || "
        "p.provolatile::text || ' ' || md5(p.prosrc) "
        f"FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER} "
        "AND " + _not_extension("pg_proc", "p.oid"),
    ),
    (
        "trigger",
        "SELECT n.nspname || '.' || c.relname || '.' || g.tgname, n.nspname || '.' || c.relname, "
        "pg_get_triggerdef(g.oid) || ' ' || g.tgenabled::text "
        "FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE NOT g.tgisinternal AND {_USER}",
    ),
    (
        "policy",
        "SELECT schemaname || '.' || tablename || '.' || policyname, schemaname || '.' || tablename, "
        "permissive || ' ' || cmd || ' ' || array_to_string(roles, ',') || coalesce(' USING ' || qual, '') "
        "|| coalesce(' WITH CHECK ' || with_check, '') FROM pg_policies",
    ),
    (
        "type",
        "SELECT n.nspname || '.' || t.typname, '', t.typtype::text || ' ' || CASE t.typtype "
        "WHEN 'e' THEN (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE "
        "e.enumtypid = t.oid) "
        "WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod) || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END "
        "WHEN 'c' THEN (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' "
        "ORDER BY a.attnum) "
        "  FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) "
        "ELSE '' END "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "LEFT JOIN pg_class c ON c.oid = t.typrelid "
        f"WHERE t.typtype IN ('e', 'd', 'c', 'r', 'm') AND (c.relkind IS NULL OR c.relkind = 'c') AND {_USER} "
        "AND " + _not_extension("pg_type", "t.oid"),
    ),
]


@dataclass(frozen=True)
class SchemaObject:
    kind: str  # column, index, constraint, function, trigger, policy, type, table, view, ...
    name: str  # schema-qualified: public.items.note
    relation: str  # the table it belongs to ("" for functions, types, schemas, extensions)
    definition: str


DEFAULT_LEDGER = "_sqlx_migrations"

Snapshot = dict[tuple[str, str], SchemaObject]


def snapshot(conn, ledger: str = DEFAULT_LEDGER) -> Snapshot:
    """Every user object of ``conn``'s database (catalog reads; no locks beyond AccessShare on catalogs).

    The migrator's ledger table (``ledger``: its name, sqlx.toml's ``table-name``) is
    bookkeeping, created on the first apply, not schema: it is left out.
    """
    suffix = "." + ledger
    out: Snapshot = {}
    for kind, query in _QUERIES:
        for name, relation, definition in conn.execute(query):
            if (relation or name).endswith(suffix):
                continue
            if kind == "relation":
                relkind = definition.split(" ", 1)[0]
                real_kind = _RELKINDS.get(relkind, "relation")
                obj = SchemaObject(real_kind, name, relation, definition)
            else:
                obj = SchemaObject(kind, name, relation or "", definition or "")
            out[(obj.kind, obj.name)] = obj
    return out


@dataclass(frozen=True)
class Difference:
    """One object that differs: ``left behind`` (only in ``after``), ``missing`` (only in ``before``), ``changed``."""

    kind: str
    name: str
    change: str
    before: str | None = None
    after: str | None = None

    def describe(self) -> str:
        text = f"{self.kind} {self.name} {self.change}"
        if self.change == "changed":
            text += f" (was: {_clip(self.before)}; now: {_clip(self.after)})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "object": self.name,
            "change": self.change,
            "before": self.before,
            "after": self.after,
        }


def _clip(text: str | None, width: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def diff(before: Snapshot, after: Snapshot, *, left: str = "left behind", gone: str = "missing") -> list[Difference]:
    """What differs between two snapshots, in a stable order (kind, then name).

    An object inside a relation that is itself extra or missing (the columns of a table the
    rollback left behind) is not listed again: the table says it.
    """
    extra_rel = {o.name for k, o in after.items() if k not in before and o.relation == o.name}
    gone_rel = {o.name for k, o in before.items() if k not in after and o.relation == o.name}
    out: list[Difference] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None and b is not None:
            if b.relation in extra_rel and b.relation != b.name:
                continue
            out.append(Difference(b.kind, b.name, left, after=b.definition))
        elif b is None and a is not None:
            if a.relation in gone_rel and a.relation != a.name:
                continue
            out.append(Difference(a.kind, a.name, gone, before=a.definition))
        elif a is not None and b is not None and a.definition != b.definition:
            out.append(Difference(a.kind, a.name, "changed", before=a.definition, after=b.definition))
    return out


def restricted(snap: Snapshot, relations: set[str], names: set[str]) -> Snapshot:
    """The part of a snapshot about ``relations`` (objects on them) and objects named in ``names``."""
    return {k: o for k, o in snap.items() if o.relation in relations or o.name in names}
