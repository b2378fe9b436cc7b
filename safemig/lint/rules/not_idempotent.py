"""A statement that fails (or does something different) when the migration runs a second time.

Flags CREATE TABLE / INDEX / SCHEMA / SEQUENCE / EXTENSION / TABLE AS without IF NOT EXISTS,
SELECT ... INTO a new table,
CREATE FUNCTION / VIEW without OR REPLACE, CREATE TRIGGER without OR REPLACE (PostgreSQL 14+)
or a preceding DROP TRIGGER IF EXISTS, CREATE POLICY / TYPE / DOMAIN not guarded by an
existence check (a DO block that checks the catalog, or a preceding DROP ... IF EXISTS),
ADD COLUMN without IF NOT EXISTS, ADD CONSTRAINT not preceded by DROP CONSTRAINT IF EXISTS
(PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS), and DROP (also DROP COLUMN / CONSTRAINT /
ATTRIBUTE) without IF EXISTS. ``CREATE TEMP TABLE`` is left alone: it lives for one session.

Why:
    The team's migrations must be safe to re-run: a partially applied migration is
    re-run after a fix, and CI runs migrations against databases in unknown states.

Bad:
    CREATE TABLE invoices (id bigint PRIMARY KEY);
    CREATE INDEX idx_invoices_id ON invoices (id);

Good:
    CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY);
    CREATE INDEX IF NOT EXISTS idx_invoices_id ON invoices (id);
"""

import re

from safemig.lint import facts

ID = "not-idempotent"
SEVERITY = "error"
SUMMARY = "CREATE without IF NOT EXISTS / OR REPLACE / existence guard, DROP without IF EXISTS"

_IF_NOT_EXISTS = {
    "CreateStmt": "TABLE",
    "IndexStmt": "INDEX",
    "CreateSchemaStmt": "SCHEMA",
    "CreateSeqStmt": "SEQUENCE",
    "CreateExtensionStmt": "EXTENSION",
    "CreateTableAsStmt": "TABLE AS",
}
_TYPE_NODES = {"CompositeTypeStmt", "CreateEnumStmt", "CreateRangeStmt", "CreateDomainStmt"}
_DO_CREATES = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(TRIGGER|POLICY|TYPE|DOMAIN)\s+(\"[^\"]+\"|[\w.]+)", re.IGNORECASE
)
_CATALOG_GUARD = re.compile(
    r"(?:\bEXISTS\s*\(\s*SELECT\b[\s\S]*?\b(?:pg_\w+|information_schema)\b|\bto_regclass\s*\(|\bto_regtype\s*\("
    r"|\bEXCEPTION\s+WHEN\s+(?:duplicate_object|duplicate_table|others)\b)",
    re.IGNORECASE,
)


def _name_of(stmt) -> str:
    node = stmt.node
    if stmt.node_type == "CreateStmt":
        return facts.relation_name(node.get("relation"))
    if stmt.node_type == "IndexStmt":
        return node.get("idxname") or ""
    if stmt.node_type == "CreateSchemaStmt":
        return node.get("schemaname") or ""
    if stmt.node_type == "CreateSeqStmt":
        return facts.relation_name(node.get("sequence"))
    if stmt.node_type == "CreateExtensionStmt":
        return node.get("extname") or ""
    if stmt.node_type == "CreateTableAsStmt":
        return facts.relation_name(node.get("into", {}).get("rel"))
    return ""


def _dropped_before(dropped: set[tuple[str, str]], kind: str, name: str) -> bool:
    """True when an earlier ``DROP <kind> IF EXISTS <name>`` makes the CREATE re-runnable.

    ``dropped`` holds what the statements before this one dropped IF EXISTS, kept up to
    date by :func:`check` (a scan back per CREATE was quadratic in the file's length).
    """
    return (kind, facts.bare(name)) in dropped


def _type_name(stmt) -> str:
    node = stmt.node
    if stmt.node_type == "CompositeTypeStmt":
        return facts.relation_name(node.get("typevar"))
    names = node.get("typeName") or node.get("domainname") or []
    return ".".join(facts.strings(names))


def _folded(name: str) -> str:
    """A name read from SQL text as PostgreSQL's tree has it: ``"Mood"`` -> ``Mood``, ``Mood`` -> ``mood``."""
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _dollar_body(text: str) -> str:
    match = re.search(r"(\$\w*\$)([\s\S]*)\1", text)
    return match.group(2) if match else text


def check(file):
    dropped: set[tuple[str, str]] = set()  # (kind, name) dropped IF EXISTS by the statements so far
    previous = None
    for stmt in file.valid_statements:
        if previous is not None:
            dropped.update((d.kind, facts.bare(d.name)) for d in facts.drops(previous) if d.if_exists)
        previous = stmt
        node, kind = stmt.node, stmt.node_type
        if kind in _IF_NOT_EXISTS and not node.get("if_not_exists") and not facts.is_temporary(stmt):
            what, name = _IF_NOT_EXISTS[kind], _name_of(stmt)
            if kind == "IndexStmt" and not name:
                yield file.violation(
                    stmt,
                    "CREATE INDEX without a name cannot be made idempotent",
                    "name the index: CREATE INDEX IF NOT EXISTS idx_<table>_<columns> ON ...",
                )
                continue
            keyword = "CREATE TABLE" if what == "TABLE AS" else f"CREATE {what}"
            if kind == "IndexStmt":
                keyword = "CREATE UNIQUE INDEX" if node.get("unique") else "CREATE INDEX"
                if node.get("concurrent"):
                    keyword += " CONCURRENTLY"
            yield file.violation(
                stmt,
                f"{keyword} {name} fails when the migration is re-run",
                f"write {keyword} IF NOT EXISTS {facts.qualified(name)} ...",
            )
        elif kind == "SelectStmt" and facts.created_table(stmt):
            name = facts.created_table(stmt)
            yield file.violation(
                stmt,
                f"SELECT ... INTO {name} fails when the migration is re-run",
                f"write CREATE TABLE IF NOT EXISTS {facts.qualified(name)} AS SELECT ... "
                f"(the same query, without INTO)",
            )
        elif kind == "CreateFunctionStmt" and not node.get("replace"):
            name = ".".join(facts.strings(node.get("funcname")))
            routine = "PROCEDURE" if node.get("is_procedure") else "FUNCTION"
            yield file.violation(
                stmt,
                f"CREATE {routine} {name} fails when the migration is re-run",
                f"write CREATE OR REPLACE {routine} {facts.qualified(name)}(...)",
            )
        elif kind == "ViewStmt" and not node.get("replace"):
            name = facts.relation_name(node.get("view"))
            yield file.violation(
                stmt,
                f"CREATE VIEW {name} fails when the migration is re-run",
                f"write CREATE OR REPLACE VIEW {facts.qualified(name)} AS ...",
            )
        elif kind == "CreateTrigStmt" and not node.get("replace"):
            name, table = node.get("trigname", ""), facts.relation_name(node.get("relation"))
            if not _dropped_before(dropped, "TRIGGER", name):
                yield file.violation(
                    stmt,
                    f"CREATE TRIGGER {name} fails when the migration is re-run",
                    f"write CREATE OR REPLACE TRIGGER {facts.quote_ident(name)} ... (PostgreSQL 14+), "
                    f"or precede it with DROP TRIGGER IF EXISTS {facts.quote_ident(name)} ON {facts.qualified(table)};",
                )
        elif kind == "CreatePolicyStmt":
            name, table = node.get("policy_name", ""), facts.relation_name(node.get("table"))
            if not _dropped_before(dropped, "POLICY", name):
                yield file.violation(
                    stmt,
                    f"CREATE POLICY {name} on {table} is not guarded and fails when the migration is re-run",
                    "guard it: DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = "
                    f"'{facts.bare(table)}' "
                    f"AND policyname = '{name}') THEN CREATE POLICY {facts.quote_ident(name)} ON "
                    f"{facts.qualified(table)} ...; END IF; END $$;",
                )
        elif kind in _TYPE_NODES or (kind == "DefineStmt" and node.get("kind") == "OBJECT_TYPE"):
            name = _type_name(stmt) if kind != "DefineStmt" else ".".join(facts.strings(node.get("defnames")))
            what = "DOMAIN" if kind == "CreateDomainStmt" else "TYPE"
            if not _dropped_before(dropped, what, name):
                yield file.violation(
                    stmt,
                    f"CREATE {what} {name} is not guarded and fails when the migration is re-run",
                    f"guard it: DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = '{facts.bare(name)}') "
                    f"THEN CREATE {what} {facts.qualified(name)} ...; END IF; END $$;",
                )
        elif kind == "DoStmt":
            body = _dollar_body(stmt.text)
            dropped_first = {
                (d.kind, facts.bare(d.name))
                for s in facts.do_block(stmt).statements
                for d in facts.drops(s)
                if d.if_exists
            }  # DROP ... IF EXISTS then CREATE: re-runnable
            created = [
                (what, name)
                for what, name in _DO_CREATES.findall(body)
                if (what.upper(), _folded(facts.bare(name))) not in dropped_first
            ]
            if created and not _CATALOG_GUARD.search(body):
                what, name = created[0]
                yield file.violation(
                    stmt,
                    f"DO block creates {what.upper()} {name} without checking whether it exists",
                    "wrap the CREATE in IF NOT EXISTS (SELECT 1 FROM pg_catalog...) THEN ... END IF, "
                    "or catch EXCEPTION WHEN duplicate_object THEN NULL",
                )
        dropped_here: set[str] = set()  # ALTER TABLE t DROP CONSTRAINT IF EXISTS c, ADD CONSTRAINT c ...
        for action in facts.alter_actions(stmt):
            if action.subtype == "AT_DropConstraint" and action.missing_ok:
                dropped_here.add(action.name)
            if action.subtype == "AT_AddConstraint":
                name = action.constraint.get("conname") or ""
                if name and (name in dropped_here or _dropped_before(dropped, "CONSTRAINT", name)):
                    continue
                yield _add_constraint(file, stmt, action, name)
            if action.subtype == "AT_AddColumn" and not action.missing_ok:
                coldef = facts.column_def_text(stmt, action.column_def)
                yield file.violation(
                    stmt,
                    f"ADD COLUMN {action.column} fails when the migration is re-run",
                    f"write ALTER TABLE {facts.qualified(action.table)} ADD COLUMN IF NOT EXISTS {coldef} ...",
                )
        for d in facts.drops(stmt):
            if d.if_exists:
                continue
            if d.kind in ("COLUMN", "CONSTRAINT", "ATTRIBUTE"):
                yield file.violation(
                    stmt,
                    f"DROP {d.kind} {d.name} fails when the migration is re-run",
                    f"write ALTER {d.table_kind} {facts.qualified(d.table)} DROP {d.kind} IF EXISTS "
                    f"{facts.quote_ident(d.name)}",
                )
            else:
                on = f" ON {facts.qualified(d.table)}" if d.table else ""
                yield file.violation(
                    stmt,
                    f"DROP {d.kind} {d.name} fails when the migration is re-run",
                    f"write DROP {d.kind} IF EXISTS {facts.qualified(d.name)}{on}",
                )


def _add_constraint(file, stmt, action, name: str):
    table = facts.qualified(action.table)
    if not name:
        return file.violation(
            stmt,
            f"ADD {action.constraint_type} on {action.table} without a name adds a second copy of the constraint "
            f"when the migration is re-run",
            f"name it, and drop it first: ALTER TABLE {table} DROP CONSTRAINT IF EXISTS <name>, ADD CONSTRAINT "
            f"<name> {action.constraint_type} ...",
        )
    return file.violation(
        stmt,
        f'ADD CONSTRAINT {name} fails when the migration is re-run ("constraint ... already exists"; '
        f"PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS)",
        f"drop it first in the same statement: ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "
        f"{facts.quote_ident(name)}, ADD CONSTRAINT {facts.quote_ident(name)} ...; or guard it in a DO block "
        f"(IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{name}') THEN ... END IF)",
    )
