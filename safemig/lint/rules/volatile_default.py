"""ADD COLUMN with a volatile DEFAULT on an existing table.

Why:
    Since PostgreSQL 11 a constant or STABLE default (``now()``, ``'EUR'``) is stored once
    and the ADD COLUMN is instant. A VOLATILE default (``gen_random_uuid()``, ``random()``,
    ``clock_timestamp()``, ``nextval()``) must be computed per row: the whole table is
    rewritten under an ACCESS EXCLUSIVE lock.

Bad:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS public_id uuid DEFAULT gen_random_uuid();

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS public_id uuid;
    ALTER TABLE orders ALTER COLUMN public_id SET DEFAULT gen_random_uuid();
"""

from safemig.lint import facts

ID = "volatile-default"
SEVERITY = "error"
SUMMARY = "ADD COLUMN with a volatile DEFAULT rewrites the whole table"

VOLATILE = {"gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "uuidv4", "uuidv7",
            "random", "clock_timestamp", "timeofday", "nextval", "txid_current", "statement_timestamp", "setseed",
            "random_normal", "gen_random_bytes"}


def check(file):
    for stmt in file.valid_statements:
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AddColumn" or file.is_new_table(action.table, stmt):
                continue
            defaults = [c["Constraint"] for c in action.column_def.get("constraints") or []
                        if c.get("Constraint", {}).get("contype") == "CONSTR_DEFAULT"]
            called = {name for d in defaults for name in facts.function_calls(d.get("raw_expr"))}
            volatile = sorted(called & VOLATILE)
            if not volatile:
                continue
            table, column = facts.qualified(action.table), facts.quote_ident(action.column)
            coldef = facts.column_def_text(stmt, action.column_def)
            yield file.violation(
                stmt, f"DEFAULT {volatile[0]}() is volatile: adding {action.column} rewrites all of {action.table}",
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {coldef}; ALTER TABLE {table} ALTER COLUMN {column} "
                f"SET DEFAULT {volatile[0]}(...); then backfill existing rows in batches")
