"""ADD COLUMN ... NOT NULL without a DEFAULT on an existing table.

Why:
    Existing rows have no value for the new column, so PostgreSQL refuses the ALTER as
    soon as the table has a row: the migration works on an empty dev database and fails
    in production. (Tables created earlier in the same migration are empty and exempt.)

Bad:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS currency text NOT NULL;

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'EUR';
"""

from safemig.lint import facts

ID = "not-null-column-without-default"
SEVERITY = "error"
SUMMARY = "ADD COLUMN ... NOT NULL without DEFAULT fails on a table that has rows"
KINDS = {"AlterTableStmt"}  # the statements it judges (registry.py)

_PROVIDES_VALUE = {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}


def check(file):
    for stmt in file.statements_of(KINDS):
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AddColumn" or file.is_new_table(action.table, stmt):
                continue
            constraints = facts.column_constraints(action.column_def)
            if "CONSTR_NOTNULL" not in constraints and "CONSTR_PRIMARY" not in constraints:
                continue
            if any(_null_default(c.get("Constraint", {})) for c in action.column_def.get("constraints") or []):
                constraints = constraints - {"CONSTR_DEFAULT"}  # DEFAULT NULL gives no value
            if constraints & _PROVIDES_VALUE:
                continue
            type_names = facts.strings(action.column_def.get("typeName", {}).get("names"))
            if len(type_names) == 1 and type_names[0] in facts.SERIALS:
                continue  # nextval() fills every row (volatile-default reports the rewrite that costs)
            table, column = facts.qualified(action.table), facts.quote_ident(action.column)
            coldef = facts.column_def_text(stmt, action.column_def)
            yield file.violation(
                stmt,
                f"column {column} is added to {table} as NOT NULL without a DEFAULT: this fails if {table} has rows",
                f"give it a default: ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {coldef} NOT NULL DEFAULT <value>; "
                f"or add it nullable, backfill it in batches, then add CHECK ({column} IS NOT NULL) NOT VALID, "
                f"VALIDATE it and SET NOT NULL in later migrations",
            )


def _null_default(constraint: dict) -> bool:
    """``DEFAULT NULL`` (or ``DEFAULT NULL::type``)."""
    if constraint.get("contype") != "CONSTR_DEFAULT":
        return False
    expr = constraint.get("raw_expr") or {}
    while "TypeCast" in expr:
        expr = expr["TypeCast"].get("arg") or {}
    return bool(expr.get("A_Const", {}).get("isnull"))
