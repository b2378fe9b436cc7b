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
        for action in facts.added_constraints(stmt):  # also ADD COLUMN c bigint REFERENCES t (id)
            if action.constraint_type not in ("FOREIGN KEY", "CHECK"):
                continue
            if action.constraint.get("skip_validation") or file.is_new_table(action.table, stmt):
                continue
            table = facts.qualified(action.table)
            name = action.constraint.get("conname") or "_".join(
                [
                    facts.bare(action.table),
                    *([action.inline_column] if action.inline_column else []),
                    {"FOREIGN KEY": "fkey"}.get(action.constraint_type, "check")
                    if action.inline_column
                    else action.constraint_type.split()[0].lower(),
                ]
            )
            single = (
                len(facts.alter_actions(stmt)) == 1 and action.constraint.get("conname") and not action.inline_column
            )
            body = f"{action.constraint_type} (...)"
            if action.inline_column and action.constraint_type == "FOREIGN KEY":
                referenced = facts.qualified(facts.relation_name(action.constraint.get("pktable")))
                keys = ", ".join(facts.quote_ident(k) for k in facts._strings(action.constraint.get("pk_attrs")))
                body = f"FOREIGN KEY ({facts.quote_ident(action.inline_column)}) REFERENCES {referenced}" + (
                    f" ({keys})" if keys else ""
                )
            add = (
                f"{stmt.text} NOT VALID"
                if single
                else (f"ALTER TABLE {table} ADD CONSTRAINT {facts.quote_ident(name)} {body} NOT VALID")
            )
            if action.inline_column:  # NOT VALID cannot be written on a column: add the column, then the constraint
                add = f"add the column without it, then {add}"
            yield file.violation(
                stmt,
                f"{action.constraint_type} constraint {name} on {action.table} is validated while writes are blocked",
                f"{add}; then, in a later migration: ALTER TABLE {table} VALIDATE CONSTRAINT {facts.quote_ident(name)};",
            )
