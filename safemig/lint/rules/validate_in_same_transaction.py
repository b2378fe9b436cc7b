"""VALIDATE CONSTRAINT in the same transaction as the ADD ... NOT VALID.

Why:
    NOT VALID exists to make the ADD instant; validating in the same transaction keeps
    the ADD's ACCESS EXCLUSIVE lock for the whole validation scan, which is exactly what
    NOT VALID was meant to avoid. Validate in a separate migration.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total > 0) NOT VALID;
    ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;

Good:
    ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_total_positive,
        ADD CONSTRAINT orders_total_positive CHECK (total > 0) NOT VALID;
"""

from safemig.lint import facts

ID = "validate-in-same-transaction"
SEVERITY = "warning"
SUMMARY = "VALIDATE CONSTRAINT in the same transaction as its ADD ... NOT VALID"
KINDS = {"AlterTableStmt"}  # the statements it judges (registry.py)


def check(file):
    if file.no_transaction:
        return
    added: dict[str, str] = {}
    for stmt in file.statements_of(KINDS):
        for action in facts.alter_actions(stmt):
            if action.subtype == "AT_AddConstraint" and action.constraint.get("skip_validation"):
                added[action.constraint.get("conname") or ""] = action.table
            elif action.subtype == "AT_ValidateConstraint" and action.name in added:
                yield file.violation(
                    stmt,
                    f"constraint {action.name} is validated in the transaction that added it NOT VALID",
                    f"move `ALTER TABLE {facts.qualified(action.table)} VALIDATE CONSTRAINT "
                    f"{facts.quote_ident(action.name)};` "
                    f"to the next migration",
                )
