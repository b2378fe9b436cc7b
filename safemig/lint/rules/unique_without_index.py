"""ADD UNIQUE or PRIMARY KEY constraint without USING INDEX on an existing table.

Why:
    The constraint builds its index while holding an ACCESS EXCLUSIVE lock: no reads or
    writes until the whole table is indexed. Build the unique index CONCURRENTLY first,
    then attach it with USING INDEX, which is instant.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE (number);

Good:
    ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_number_key,
        ADD CONSTRAINT orders_number_key UNIQUE USING INDEX orders_number_idx;
"""

from safemig.lint import facts

ID = "unique-without-index"
SEVERITY = "error"
SUMMARY = "ADD UNIQUE / PRIMARY KEY without USING INDEX builds an index under an ACCESS EXCLUSIVE lock"
KINDS = {"AlterTableStmt"}  # the statements it judges (registry.py)


def _columns(action) -> str:
    return ", ".join(facts.strings(action.constraint.get("keys"))) or facts.quote_ident(action.inline_column) or "..."


def check(file):
    for stmt in file.statements_of(KINDS):
        for action in facts.added_constraints(stmt):  # also ADD COLUMN c text UNIQUE
            if action.constraint_type not in ("UNIQUE", "PRIMARY KEY"):
                continue
            if action.constraint.get("indexname") or file.is_new_table(action.table, stmt):
                continue
            table = facts.qualified(action.table)
            kind = action.constraint_type
            suffix = "pkey" if kind == "PRIMARY KEY" else "key"
            inline = (
                [action.inline_column] if action.inline_column and kind == "UNIQUE" else []
            )  # PostgreSQL's own names
            name = action.constraint.get("conname") or "_".join([facts.bare(action.table), *inline, suffix])
            index = facts.quote_ident(f"{name}_idx")
            first = (
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {facts.column_def_text(stmt, _column_def(stmt, action))}"
                f"; then, in a "
                if action.inline_column
                else ""
            )
            yield file.violation(
                stmt,
                f"ADD {kind} on {action.table} builds its index while blocking reads and writes",
                f"{first}-- no-transaction migration: CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {index} ON "
                f"{table} "
                f"({_columns(action)}); then: ALTER TABLE {table} ADD CONSTRAINT {facts.quote_ident(name)} "
                f"{kind} USING INDEX {index};",
            )


def _column_def(stmt, action) -> dict:
    return next(
        (
            a.column_def
            for a in facts.alter_actions(stmt)
            if a.subtype == "AT_AddColumn" and a.column == action.inline_column
        ),
        {},
    )
