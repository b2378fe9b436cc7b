"""ADD FOREIGN KEY or CHECK constraint without NOT VALID on an existing table.

Why:
    Adding a validated constraint scans the whole table while holding a lock that blocks
    writes (a foreign key also locks the referenced table). Add it NOT VALID (instant,
    enforced for new rows), then VALIDATE CONSTRAINT in a later migration, which only
    takes a SHARE UPDATE EXCLUSIVE lock.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);

Good:
    ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
"""

from safemig.lint import facts

ID = "constraint-without-not-valid"
SEVERITY = "error"
SUMMARY = "ADD FOREIGN KEY / CHECK without NOT VALID scans the table under a write-blocking lock"


def check(file):
    for stmt in file.valid_statements:
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AddConstraint" or action.constraint_type not in ("FOREIGN KEY", "CHECK"):
                continue
            if action.constraint.get("skip_validation") or file.is_new_table(action.table, stmt):
                continue
            table = facts.qualified(action.table)
            name = action.constraint.get("conname") or f"{facts.bare(action.table)}_{action.constraint_type.split()[0].lower()}"
            single = len(facts.alter_actions(stmt)) == 1 and action.constraint.get("conname")
            add = f"{stmt.text} NOT VALID" if single else (
                f"ALTER TABLE {table} ADD CONSTRAINT {facts.quote_ident(name)} {action.constraint_type} (...) NOT VALID")
            yield file.violation(
                stmt, f"{action.constraint_type} constraint {name} on {action.table} is validated while writes are blocked",
                f"{add}; then, in a later migration: ALTER TABLE {table} VALIDATE CONSTRAINT {facts.quote_ident(name)};")
