"""A ``safemig:ignore`` directive that silences nothing.

Why:
    A stale ignore hides the next real problem on that statement, and tells reviewers
    something was dangerous when it no longer is. Remove it.

Bad:
    -- safemig:ignore not-idempotent -- legacy
    CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY);

Good:
    CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY);
"""

from safemig.lint.finding import Violation

ID = "unused-ignore"
SEVERITY = "warning"
SILENCEABLE = False  # an ignore cannot silence the report about itself
SUMMARY = "an ignore directive that matches no finding"
RUNS_LAST = True  # judged after every other rule has reported


def check(file):
    for ignore in file.ignores:
        for rule_id in ignore.rules:
            if rule_id in file.known_rules and rule_id in file.enabled_rules and rule_id not in ignore.used:
                where = "in this file" if ignore.whole_file else "on this statement"
                yield Violation(
                    ignore.line,
                    ignore.column,
                    f"ignore of {rule_id} matches no finding {where}",
                    "remove the directive (or the rule id from it)",
                    ignore.text,
                )
