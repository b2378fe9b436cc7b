"""RENAME of a table or a column (``RENAME TO``, ``RENAME [COLUMN] a TO b``).

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
SUMMARY = "RENAME table/column breaks the running application (use expand and contract)"


def check(file):
    for stmt, inner in (
        (s, i) for s in file.valid_statements for i in file.executed(s)
    ):  # DO bodies, called functions too
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
                f"ALTER TABLE {facts.qualified(table)} ADD COLUMN IF NOT EXISTS {facts.quote_ident(new)} <type of {old}>; "
                f"write both columns from the application, backfill {facts.quote_ident(new)}, switch reads, then drop "
                f"{facts.quote_ident(old)} in a later migration",
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
