"""ALTER COLUMN ... TYPE on an existing table.

Why:
    Changing a column's type usually rewrites the whole table and its indexes under an
    ACCESS EXCLUSIVE lock, and breaks application code reading the old type. (A few
    changes are metadata-only, e.g. widening varchar(n) or varchar to text: silence
    those with a reason.)

Bad:
    ALTER TABLE orders ALTER COLUMN total TYPE numeric(14, 2);

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_v2 numeric(14, 2);
"""

from safemig.lint import facts

ID = "change-column-type"
SEVERITY = "error"
SUMMARY = "ALTER COLUMN TYPE rewrites the table under an ACCESS EXCLUSIVE lock"


def check(file):
    for stmt in file.valid_statements:
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AlterColumnType" or file.is_new_table(action.table, stmt):
                continue
            table, column = facts.qualified(action.table), facts.quote_ident(action.name)
            new = facts.quote_ident(f"{action.name}_new")
            yield file.violation(
                stmt,
                f"changing the type of {action.table}.{action.name} rewrites the table while blocking reads and writes",
                f"expand and contract: ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {new} <new type>; write both columns "
                f"from the application, backfill {new} in batches, switch reads, then drop {column} in a later migration",
            )
