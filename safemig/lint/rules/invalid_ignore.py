"""A ``safemig:ignore`` directive without a reason, or naming a rule that does not exist.

Why:
    Silencing must be visible and justified in review: the reason is what the reviewer
    reads. A misspelt rule id would silently silence nothing.

Bad:
    DROP TABLE IF EXISTS legacy_orders; -- safemig:ignore drop-without-rollback

Good:
    -- file: migrations/005_drop_legacy_orders.sql
    DROP TABLE IF EXISTS legacy_orders; -- safemig:ignore drop-without-rollback -- emptied and archived in 2023
"""

from safemig.lint.finding import Violation

ID = "invalid-ignore"
SEVERITY = "error"
SILENCEABLE = False  # an ignore cannot silence the report about itself
SUMMARY = "an ignore directive without a reason or with an unknown rule id"


def check(file):
    for ignore in file.ignores:
        unknown = [r for r in ignore.rules if r not in file.known_rules]
        if not ignore.rules:
            yield Violation(
                ignore.line,
                ignore.column,
                "ignore directive names no rule",
                "write -- safemig:ignore RULE-ID -- reason (see `safemig rules`)",
                ignore.text,
            )
        elif unknown:
            from difflib import get_close_matches

            close = get_close_matches(unknown[0], sorted(file.known_rules), n=1)
            yield Violation(
                ignore.line,
                ignore.column,
                f"ignore directive names unknown rule {unknown[0]!r}",
                f"did you mean {close[0]}?" if close else "see `safemig rules` for the ids",
                ignore.text,
            )
        if ignore.rules and not ignore.reason:
            yield Violation(
                ignore.line,
                ignore.column,
                "ignore directive has no reason",
                f"say why it is safe: {ignore.text} -- <reason>",
                ignore.text,
            )
