"""ADD UNIQUE or PRIMARY KEY constraint without USING INDEX on an existing table.

Why:
    The constraint builds its index while holding an ACCESS EXCLUSIVE lock: no reads or
    writes until the whole table is indexed. Build the unique index CONCURRENTLY first,
    then attach it with USING INDEX, which is instant.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE (number);

Good:
    ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE USING INDEX orders_number_idx;
"""

from safemig.lint import facts

ID = "unique-without-index"
SEVERITY = "error"
SUMMARY = "ADD UNIQUE / PRIMARY KEY without USING INDEX builds an index under an ACCESS EXCLUSIVE lock"


def _columns(constraint: dict) -> str:
    return ", ".join(facts._strings(constraint.get("keys"))) or "..."


def check(file):
    for stmt in file.valid_statements:
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AddConstraint" or action.constraint_type not in ("UNIQUE", "PRIMARY KEY"):
                continue
            if action.constraint.get("indexname") or file.is_new_table(action.table, stmt):
                continue
            table = facts.qualified(action.table)
            kind = action.constraint_type
            name = action.constraint.get("conname") or f"{facts.bare(action.table)}_{'pkey' if kind == 'PRIMARY KEY' else 'key'}"
            index = facts.quote_ident(f"{name}_idx")
            yield file.violation(
                stmt, f"ADD {kind} on {action.table} builds its index while blocking reads and writes",
                f"-- no-transaction migration: CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} "
                f"({_columns(action.constraint)}); then: ALTER TABLE {table} ADD CONSTRAINT {facts.quote_ident(name)} "
                f"{kind} USING INDEX {index};")
