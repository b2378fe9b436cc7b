"""RENAME of a table, column, schema, type, domain, enum value, function or sequence.

``ALTER TABLE t RENAME [COLUMN] a TO b``, ``ALTER TABLE/VIEW t RENAME TO u``, ``ALTER SCHEMA
s RENAME TO``, ``ALTER TYPE/DOMAIN t RENAME TO``, ``ALTER TYPE e RENAME VALUE 'a' TO 'b'``,
``ALTER FUNCTION/PROCEDURE f(...) RENAME TO``, ``ALTER SEQUENCE s RENAME TO``. (Renaming an
index, a constraint or a trigger breaks no query and is not reported.)

Why:
    The running application still uses the old name: between the migration and the new
    deploy every query naming it fails. Rename with expand and contract instead: add the
    new name, write both, backfill, switch reads, drop the old one later.

Bad:
    ALTER TABLE orders RENAME total TO amount;

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS amount numeric(12, 2);
"""

from safemig.lint import facts

ID = "rename"
SEVERITY = "error"
SUMMARY = "RENAME of a table, column, schema, type, enum value, function or sequence breaks the running application"


_OTHER = {
    "OBJECT_SCHEMA": "schema",
    "OBJECT_TYPE": "type",
    "OBJECT_DOMAIN": "domain",
    "OBJECT_FUNCTION": "function",
    "OBJECT_PROCEDURE": "procedure",
    "OBJECT_ROUTINE": "routine",
    "OBJECT_SEQUENCE": "sequence",
}
_LATER = "then drop {old} in a later migration, once nothing uses it"
_OTHER_HINTS = {
    "OBJECT_SCHEMA": "CREATE SCHEMA IF NOT EXISTS {new}; move or re-create the objects there, switch the "
    "application (search_path or qualified names), " + _LATER,
    "OBJECT_TYPE": "create the new type beside the old one, migrate the columns to it with expand and contract, "
    + _LATER,
    "OBJECT_DOMAIN": "create the new domain beside the old one, migrate the columns to it with expand and contract, "
    + _LATER,
    "OBJECT_FUNCTION": "CREATE OR REPLACE FUNCTION {new}(...) with the same body, switch callers to it, " + _LATER,
    "OBJECT_PROCEDURE": "CREATE OR REPLACE PROCEDURE {new}(...) with the same body, switch callers to it, " + _LATER,
    "OBJECT_ROUTINE": "create the routine under its new name with the same body, switch callers to it, " + _LATER,
    "OBJECT_SEQUENCE": "keep the name (a sequence's name matters only to code calling nextval('{old}')), or "
    "create the new sequence, switch the DEFAULTs and callers to it, " + _LATER,
}


def check(file):
    for stmt, inner in (
        (s, i) for s in file.valid_statements for i in file.executed(s)
    ):  # DO bodies, called functions too
        if inner.node_type == "AlterEnumStmt" and inner.node.get("oldVal") is not None:
            enum = ".".join(facts.strings(inner.node.get("typeName")))
            old, new = inner.node.get("oldVal"), inner.node.get("newVal")
            yield file.violation(
                stmt,
                f"renaming value '{old}' of enum {enum} to '{new}' breaks the running application, which still "
                f"writes and compares '{old}'",
                f"ALTER TYPE {facts.qualified(enum)} ADD VALUE IF NOT EXISTS '{new}'; move the application and "
                f"the rows to '{new}', and stop using '{old}' (an enum value cannot be dropped)",
            )
            continue
        if inner.node_type != "RenameStmt":
            continue
        node = inner.node
        rename_type = node.get("renameType")
        table = facts.relation_name(node.get("relation"))
        if file.is_new_table(table, stmt):
            continue
        new = node.get("newname", "")
        if rename_type == "OBJECT_COLUMN":
            old = node.get("subname", "")
            yield file.violation(
                stmt,
                f"renaming column {table}.{old} to {new} breaks queries of the running application",
                f"ALTER TABLE {facts.qualified(table)} ADD COLUMN IF NOT EXISTS {facts.quote_ident(new)} <type of "
                f"{old}>; "
                f"write both columns from the application, backfill {facts.quote_ident(new)}, switch reads, then drop "
                f"{facts.quote_ident(old)} in a later migration",
            )
        elif rename_type in _OTHER:
            what = _OTHER[rename_type]
            if rename_type == "OBJECT_SCHEMA":
                old = node.get("subname", "")
            elif rename_type == "OBJECT_SEQUENCE":
                old = table
            else:
                old = facts.object_name(node.get("object") or {})
            yield file.violation(
                stmt,
                f"renaming {what} {old} to {new} breaks every query and function of the running application "
                f"that names {old}",
                _OTHER_HINTS[rename_type].format(old=facts.qualified(old), new=facts.quote_ident(new)),
            )
        elif rename_type in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW"):
            yield file.violation(
                stmt,
                f"renaming table {table} to {new} breaks queries of the running application",
                f"CREATE TABLE IF NOT EXISTS {facts.quote_ident(new)} (LIKE {facts.qualified(table)} INCLUDING ALL); "
                f"write to both, backfill, switch reads, then drop {facts.qualified(table)} later (or, for a short "
                f"transition, rename and leave a view: CREATE VIEW {facts.qualified(table)} AS SELECT * FROM "
                f"{facts.quote_ident(new)})",
            )
