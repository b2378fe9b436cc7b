"""Syntax, functions and settings the target PostgreSQL major (``[lint] pg_version``) cannot run.

safemig parses with PostgreSQL 18's grammar (the installed pglast), so whatever 15 to 18 added
parses; this rule reports what the target lacks:

* built-in functions, settings (SET, SHOW, ALTER ROLE/DATABASE/SYSTEM ... SET, a function's SET),
  predefined roles and system views the target does not have, read from the catalogs of real
  14-18 servers: ``uuidv7()`` before 18, ``SET transaction_timeout`` before 17, ``GRANT
  pg_maintain`` before 17, ``pg_stat_io`` before 16; and the ones a major removed, from that major
  on (``pg_start_backup()`` from 15, ``SET force_parallel_mode`` from 16);
* syntax, options and argument lists, by the major that added them:
{coverage}

A statement's own text and tree are all it sees: a function your schema or an extension defines
under a built-in's name (create it in an earlier migration and safemig knows), MERGE into a view
(17), identity columns or NOT VALID foreign keys of partitioned tables (17, 18), jsonpath methods
inside strings (17) and int-to-bytea casts (18) are beyond it; plpgsql and SQL function bodies are
not read (DO blocks and BEGIN ATOMIC bodies are). docs/unsupported-syntax.md has the whole list and
how each entry was measured on real servers.

Why:
    The migration parses on a developer's machine and in review, then fails on the
    production server (``syntax error at or near ...``, ``function uuidv7() does not exist``,
    ``unrecognized configuration parameter``), possibly after earlier statements of a
    no-transaction migration already ran.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null NOT NULL currency;

Good:
    ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_currency_not_null,
        ADD CONSTRAINT orders_currency_not_null CHECK (currency IS NOT NULL) NOT VALID;
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

ID = "unsupported-syntax"
SEVERITY = "error"
SUMMARY = "syntax, functions or settings newer than [lint] pg_version (e.g. ADD CONSTRAINT c NOT NULL col before 18)"

GRAMMAR = 18  # the PostgreSQL major whose grammar the installed pglast parses
_DATA = Path(__file__).resolve().parent.parent / "data" / "since.json"


class Feature(NamedTuple):
    major: int  # the first PostgreSQL major that runs it
    name: str  # as the message names it
    hint: str  # how to write it for an older server


# Each key is what a detector below yields; every key has an example statement in
# tests/lint/unsupported_syntax_cases.py that real servers of each major run or reject.
FEATURES: dict[str, Feature] = {
    # --- PostgreSQL 15
    "merge": Feature(15, "MERGE", "INSERT ... ON CONFLICT, or an UPDATE then an INSERT ... WHERE NOT EXISTS"),
    "nulls-not-distinct": Feature(
        15, "UNIQUE ... NULLS NOT DISTINCT", "a unique index on (coalesce(col, <sentinel>)) or a partial unique index"
    ),
    "fk-set-columns": Feature(
        15, "ON DELETE SET NULL / SET DEFAULT (columns)", "ON DELETE SET NULL for all columns, or a trigger"
    ),
    "set-access-method": Feature(
        15, "ALTER TABLE ... SET ACCESS METHOD", "create a new table USING the method and copy"
    ),
    "unlogged-sequence": Feature(
        15, "UNLOGGED sequences (CREATE UNLOGGED SEQUENCE, ALTER SEQUENCE ... SET [UN]LOGGED)", "a logged sequence"
    ),
    "grant-parameter": Feature(15, "GRANT ... ON PARAMETER", "ALTER ROLE ... SET, or a superuser"),
    "security-invoker-view": Feature(
        15, "views WITH (security_invoker)", "a security-definer view, or the checks in a function"
    ),
    "publication-schema": Feature(15, "publications FOR TABLES IN SCHEMA", "list the tables: FOR TABLE a, b"),
    "publication-columns": Feature(
        15, "publication column lists and row filters (FOR TABLE t (cols) WHERE ...)", "publish whole tables"
    ),
    "copy-header-match": Feature(15, "COPY ... HEADER MATCH", "HEADER true"),
    "copy-header-text": Feature(15, "COPY ... HEADER in text format", "FORMAT csv, or no HEADER"),
    "numeric-scale": Feature(
        15, "numeric(p, s) with a negative scale or a scale above the precision", "a scale between 0 and the precision"
    ),
    "createdb-options": Feature(
        15,
        "CREATE DATABASE ... STRATEGY / OID / LOCALE_PROVIDER / ICU_LOCALE / COLLATION_VERSION",
        "the options PostgreSQL 14 has (TEMPLATE, LOCALE, ...)",
    ),
    "refresh-collation": Feature(
        15, "ALTER DATABASE ... REFRESH COLLATION VERSION", "REINDEX, then update pg_database"
    ),
    "regexp-replace-start": Feature(
        15, "regexp_replace(source, pattern, replacement, start [, n])", "regexp_replace(substr(...), ...) or flags 'g'"
    ),
    # --- PostgreSQL 16
    "sql-json-constructors": Feature(
        16,
        "SQL/JSON constructors (JSON_OBJECT, JSON_ARRAY, JSON_OBJECTAGG, JSON_ARRAYAGG)",
        "json_build_object(), json_build_array(), json_object_agg(), json_agg()",
    ),
    "is-json": Feature(16, "IS JSON", "a function that tries the cast to json"),
    "system-user": Feature(16, "SYSTEM_USER", "session_user"),
    "numeric-literal": Feature(
        16, "non-decimal or underscored numeric literals (0x1F, 0o17, 0b101, 1_000)", "a plain decimal literal"
    ),
    "subquery-alias": Feature(
        16, "a subquery in FROM without an alias", "give the subquery an alias: (SELECT ...) AS s"
    ),
    "xmlserialize-indent": Feature(16, "XMLSERIALIZE(... INDENT)", "XMLSERIALIZE without INDENT"),
    "column-storage": Feature(
        16, "STORAGE in a column definition", "ALTER TABLE ... ALTER COLUMN ... SET STORAGE after"
    ),
    "set-storage-default": Feature(
        16, "ALTER COLUMN ... SET STORAGE DEFAULT", "the type's storage by name (PLAIN, MAIN, EXTERNAL, EXTENDED)"
    ),
    "grant-role-options": Feature(
        16,
        "GRANT role ... WITH INHERIT / SET / ADMIN TRUE|FALSE",
        "WITH ADMIN OPTION, and the grantee's INHERIT attribute",
    ),
    "unnamed-statistics": Feature(16, "CREATE STATISTICS without a name", "name the statistics object"),
    "reindex-current-db": Feature(16, "REINDEX DATABASE / SYSTEM without a name", "name the current database"),
    "vacuum-options": Feature(
        16,
        "VACUUM/ANALYZE (PROCESS_MAIN / SKIP_DATABASE_STATS / ONLY_DATABASE_STATS / BUFFER_USAGE_LIMIT)",
        "the options PostgreSQL 15 has",
    ),
    "copy-default": Feature(16, "COPY ... DEFAULT", "a column DEFAULT and leave the column out"),
    "explain-generic-plan": Feature(16, "EXPLAIN (GENERIC_PLAN)", "EXPLAIN with the parameters filled in"),
    "createdb-icu-rules": Feature(
        16, "ICU_RULES / rules (CREATE DATABASE, CREATE COLLATION)", "a collation without rules"
    ),
    "collation-unicode": Feature(
        16, 'the predefined collation "unicode"', "an ICU collation created with CREATE COLLATION"
    ),
    # --- PostgreSQL 17
    "merge-returning": Feature(17, "MERGE ... RETURNING (and merge_action())", "a separate SELECT after the MERGE"),
    "merge-not-matched-by-source": Feature(
        17, "MERGE ... WHEN NOT MATCHED BY SOURCE", "a separate DELETE/UPDATE of the rows the source lacks"
    ),
    "json-table": Feature(17, "JSON_TABLE", "jsonb_to_recordset() / jsonb_array_elements()"),
    "sql-json-query": Feature(
        17, "JSON_QUERY / JSON_VALUE / JSON_EXISTS", "the -> / ->> operators, jsonb_path_query()"
    ),
    "sql-json-parse": Feature(17, "JSON() / JSON_SCALAR() / JSON_SERIALIZE()", "casts to and from json"),
    "set-expression": Feature(17, "ALTER COLUMN ... SET EXPRESSION", "drop the generated column and add it again"),
    "at-local": Feature(17, "AT LOCAL", "AT TIME ZONE current_setting('TimeZone')"),
    "copy-on-error": Feature(
        17,
        "COPY ... ON_ERROR / LOG_VERBOSITY / FORCE_NULL * / FORCE_NOT_NULL *",
        "load into a staging table of text columns and convert in SQL",
    ),
    "explain-serialize-memory": Feature(17, "EXPLAIN (SERIALIZE / MEMORY)", "EXPLAIN without them"),
    "grant-maintain": Feature(17, "the MAINTAIN privilege", "grant ownership, or run the maintenance as the owner"),
    "access-method-default": Feature(17, "SET ACCESS METHOD DEFAULT", "name the method: SET ACCESS METHOD heap"),
    "statistics-default": Feature(17, "SET STATISTICS DEFAULT", "SET STATISTICS -1"),
    "login-event-trigger": Feature(17, "event triggers ON login", "no equivalent before PostgreSQL 17"),
    "builtin-collation-provider": Feature(
        17, "the builtin collation provider (and the pg_c_utf8 collation)", 'the "C" collation, or an ICU one'
    ),
    "cluster-options": Feature(17, "CLUSTER (options) without a table", "CLUSTER VERBOSE, or name the table"),
    "partitioned-exclusion": Feature(
        17, "an EXCLUDE constraint on a partitioned table", "the constraint on each partition"
    ),
    "partitioned-access-method": Feature(
        17, "USING (an access method) on a partitioned table", "USING on each partition"
    ),
    # --- PostgreSQL 18
    "not-null-constraint": Feature(
        18,
        "NOT NULL as a table constraint (CONSTRAINT c NOT NULL col)",
        "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c; ALTER COLUMN col SET NOT NULL",
    ),
    "not-null-no-inherit": Feature(18, "NOT NULL ... NO INHERIT on a column", "a CHECK (col IS NOT NULL) NO INHERIT"),
    "not-enforced": Feature(18, "NOT ENFORCED constraints", "leave the constraint out, or add it NOT VALID"),
    "alter-constraint-enforce-inherit": Feature(
        18, "ALTER CONSTRAINT ... [NOT] ENFORCED / [NO] INHERIT", "drop the constraint and add it again"
    ),
    "without-overlaps": Feature(
        18, "WITHOUT OVERLAPS / PERIOD (temporal keys)", "an EXCLUDE USING gist constraint (btree_gist) for the key"
    ),
    "virtual-generated": Feature(
        18,
        "a virtual generated column (GENERATED ALWAYS AS (...) without STORED)",
        "add STORED (a rewrite on an existing table), or a view",
    ),
    "returning-old-new": Feature(
        18, "RETURNING old / new (and RETURNING WITH (OLD AS ..., NEW AS ...))", "a data-modifying CTE, or a trigger"
    ),
    "vacuum-only": Feature(18, "VACUUM / ANALYZE ONLY", "name the partitions or children"),
    "copy-reject-limit": Feature(18, "COPY ... REJECT_LIMIT / LOG_VERBOSITY silent", "ON_ERROR ignore without them"),
    "default-privileges-large-objects": Feature(
        18, "ALTER DEFAULT PRIVILEGES ... ON LARGE OBJECTS", "GRANT on each large object"
    ),
    "foreign-table-like": Feature(18, "CREATE FOREIGN TABLE ... (LIKE ...)", "list the columns"),
    "publish-generated-columns": Feature(18, "publication option publish_generated_columns", "leave it out"),
    "collation-unicode-fast": Feature(18, "the predefined collation pg_unicode_fast", 'an ICU collation, or "C"'),
}

# Storage parameters (WITH (...) of CREATE TABLE / VIEW, ALTER ... SET (...)) by the major that added them.
_RELOPTIONS = {
    "security_invoker": "security-invoker-view",
    "autovacuum_vacuum_max_threshold": "reloption-18",
    "vacuum_max_eager_freeze_failure_rate": "reloption-18",
}
FEATURES["reloption-18"] = Feature(
    18,
    "the storage parameters autovacuum_vacuum_max_threshold / vacuum_max_eager_freeze_failure_rate",
    "leave them out",
)

# New argument lists of old functions (name, argument count) -> feature: the name alone says nothing.
OVERLOADS = {
    ("random", 2): "random-range",
    ("generate_series", 4): "generate-series-timezone",
    ("json_strip_nulls", 2): "strip-nulls-option",
    ("jsonb_strip_nulls", 2): "strip-nulls-option",
}
FEATURES["random-range"] = Feature(17, "random(min, max)", "min + floor(random() * (max - min + 1))")
FEATURES["date-trunc-zone-immutable"] = Feature(
    16, "date_trunc(unit, timestamptz, zone) in an index or a generated column (IMMUTABLE since 16)",
    "date_trunc(unit, ts AT TIME ZONE zone), immutable on every major (a timestamp without time zone)",
)  # fmt: skip
FEATURES["generate-series-timezone"] = Feature(
    16, "generate_series(start, stop, step, time zone)", "generate_series over timestamps AT TIME ZONE"
)
FEATURES["strip-nulls-option"] = Feature(
    18, "json[b]_strip_nulls(value, strip_in_arrays)", "json[b]_strip_nulls(value)"
)

# CREATE / ALTER SUBSCRIPTION ... WITH (option) by the major that added it.
_SUBSCRIPTION_OPTIONS = {"two_phase": "subscription-15", "disable_on_error": "subscription-15",
                         "origin": "subscription-16", "run_as_owner": "subscription-16",
                         "password_required": "subscription-16", "failover": "subscription-17"}  # fmt: skip
FEATURES["subscription-15"] = Feature(15, "subscription options two_phase / disable_on_error", "leave them out")
FEATURES["subscription-16"] = Feature(
    16, "subscription options origin / run_as_owner / password_required / streaming = parallel", "leave them out"
)
FEATURES["subscription-17"] = Feature(17, "the subscription option failover", "leave it out")


def _coverage() -> str:
    """The FEATURES names by major, for the docstring (``safemig explain unsupported-syntax``).

    Wrapped by hand: importing textwrap and filling cost 1.3 ms of every lint run's start.
    """
    by_major: dict[int, list[str]] = {}
    for feature in FEATURES.values():
        by_major.setdefault(feature.major, []).append(feature.name)
    lines = []
    for major, names in sorted(by_major.items()):
        line = f"  - {major}:"
        for name in names:
            if len(line) + len(name) > 94:
                lines.append(line)
                line = "   "
            line += f" {name};"
        lines.append(line[:-1] + ".")
    return "\n".join(lines)


__doc__ = (__doc__ or "").replace("{coverage}", _coverage())

_COPY_OPTIONS = {
    "default": "copy-default",
    "on_error": "copy-on-error",
    "log_verbosity": "copy-on-error",
    "reject_limit": "copy-reject-limit",
}
_VACUUM_OPTIONS = {"process_main", "skip_database_stats", "only_database_stats", "buffer_usage_limit"}
_EXPLAIN_OPTIONS = {
    "generic_plan": "explain-generic-plan",
    "serialize": "explain-serialize-memory",
    "memory": "explain-serialize-memory",
}
_CREATEDB_OPTIONS = {
    "strategy": "createdb-options",
    "oid": "createdb-options",
    "locale_provider": "createdb-options",
    "icu_locale": "createdb-options",
    "collation_version": "createdb-options",
    "icu_rules": "createdb-icu-rules",
    "builtin_locale": "builtin-collation-provider",
}
_COLLATIONS = {
    "unicode": "collation-unicode",
    "pg_c_utf8": "builtin-collation-provider",
    "pg_unicode_fast": "collation-unicode-fast",
}
_JSON_NODES = {
    "JsonIsPredicate": "is-json",
    "JsonObjectConstructor": "sql-json-constructors",
    "JsonArrayConstructor": "sql-json-constructors",
    "JsonArrayQueryConstructor": "sql-json-constructors",
    "JsonObjectAgg": "sql-json-constructors",
    "JsonArrayAgg": "sql-json-constructors",
    "JsonTable": "json-table",
    "JsonFuncExpr": "sql-json-query",
    "JsonParseExpr": "sql-json-parse",
    "JsonScalarExpr": "sql-json-parse",
    "JsonSerializeExpr": "sql-json-parse",
}
# Function names that are type names: bytea(x) is a cast on every major, though 18 added bytea() functions.
_NOT_NEW_FUNCTIONS = {"bytea"}

# What makes a statement's expressions worth walking: most statements have none of these, and a walk of
# the tree costs far more than a look at the text. The look is a few substring tests and one split at
# "(" (the word before each "(" names a function, a type with modifiers, or FROM/JOIN of a subquery);
# a regex alternation of the new function names cost ten times the rest of the rule.
_CALL_WORDS = frozenset(
    {"json", "json_object", "json_array", "json_objectagg", "json_arrayagg", "json_table", "json_query",
     "json_value", "json_exists", "json_scalar", "json_serialize", "merge_action", "xmlserialize", "numeric",
     "decimal", "from", "join", "lateral", "regexp_replace", *(name for name, _ in OVERLOADS)}
)  # fmt: skip
_SEPARATORS = bytes.maketrans(b"\n\t\r,;=+-*/<>|&!~%^:[]{}.'\"`", b" " * 27)
# Each starts with a literal, which re finds with a fast scan (a leading \b or class makes it try every
# position); the walk confirms what they find.
_SUBQUERY_WORDS = frozenset({b"from", b"join", b"lateral"})  # FROM ( / JOIN ( is a subquery only if
_SUBQUERY_STARTS = (b"select", b"values", b"with", b"table", b"(")  # one of these follows
_IS_JSON = re.compile(r"is\s+(?:not\s+)?json\b")
_AT_LOCAL = re.compile(r"at\s+local\b")
_UNDERSCORE_DIGIT = re.compile(r"_[0-9]")
_PREFIXED_DIGITS = re.compile(r"0[xob][0-9a-f]")
_LITERAL = re.compile(rb"0[xXoObB][0-9a-fA-F_]|[0-9]+_[0-9]")


@lru_cache(maxsize=1)
def since() -> dict[str, Any]:
    """``{"functions"|"settings"|"roles"|"relations"|"types": {name: first major}}`` from real servers
    (scripts/pg_syntax_data); read once, only when a statement needs it."""
    try:
        data = json.loads(_DATA.read_text(encoding="utf-8"))
    except OSError:  # an installation without the data: no names are known to be new
        return {
            "functions": {},
            "settings": {},
            "roles": {},
            "relations": {},
            "types": {},
            "removed": {"functions": {}, "settings": {}},
        }
    data["functions"] = {k: v for k, v in data["functions"].items() if k not in _NOT_NEW_FUNCTIONS}
    return data


@lru_cache(maxsize=8)
def _call_words(target: int) -> frozenset[bytes]:
    """The words before a "(" that make a statement worth walking, for ``target`` (bytes: see below)."""
    data = since()
    new = {n for n, m in data["functions"].items() if m > target}
    gone = {n for n, m in data["removed"]["functions"].items() if m <= target}
    return frozenset(w.encode() for w in _CALL_WORDS | new | gone)


@lru_cache(maxsize=8)
def _new_relations(target: int) -> tuple[str, ...]:
    return tuple(name for name, major in since()["relations"].items() if major > target)


def _worth_walking(text: str, target: int) -> bool:
    """True when the statement's lower-cased ``text`` may use a feature only its expressions show."""
    if "(" in text:
        # bytes: their translate is a table lookup, 3 times faster than str's over the corpus
        words = _call_words(target)
        pieces = text.encode().translate(_SEPARATORS).split(b"(")
        for index in range(len(pieces) - 1):
            last = pieces[index].rsplit(None, 1)
            if last and last[-1] in words:
                if last[-1] not in _SUBQUERY_WORDS or pieces[index + 1].lstrip().startswith(_SUBQUERY_STARTS):
                    return True
    return bool(
        ("json" in text and _IS_JSON.search(text))
        or "system_user" in text
        or ("local" in text and _AT_LOCAL.search(text))
        or ("collate" in text and ("unicode" in text or "pg_c_utf8" in text))
        or ("pg_" in text and any(name in text for name in _new_relations(target)))
        or _maybe_literal(text)
    )


def _maybe_literal(text: str) -> bool:
    """True when ``text`` may hold a 16 numeric literal (1_000, 0x1F); identifiers like v1_2 pass too."""
    for match in _UNDERSCORE_DIGIT.finditer(text):
        if match.start() and text[match.start() - 1].isdigit():
            return True
    return ("0x" in text or "0o" in text or "0b" in text) and bool(_PREFIXED_DIGITS.search(text))


# --- detectors: each yields feature keys (or ("function"|"setting"|"role", name)) for one node


def _word(arg: Any) -> str:
    """An option's bare-word value: ``parallel`` in (streaming = parallel) is a String or a TypeName."""
    arg = arg or {}
    if "TypeName" in arg:
        names = arg["TypeName"].get("names") or [{}]
        return names[-1].get("String", {}).get("sval", "")
    return arg.get("String", {}).get("sval", "")


def _options(items: list | None) -> Iterator[tuple[str, Any]]:
    for item in items or []:
        elem = item.get("DefElem")
        if elem:
            yield elem.get("defname", ""), elem.get("arg")


# Column constraints no newer major changed (DEFAULT, NULL, identity, deferrability): not looked into.
_PLAIN_CONSTRAINTS = frozenset(
    {"CONSTR_DEFAULT", "CONSTR_NULL", "CONSTR_IDENTITY", "CONSTR_ATTR_DEFERRABLE", "CONSTR_ATTR_NOT_DEFERRABLE",
     "CONSTR_ATTR_DEFERRED", "CONSTR_ATTR_IMMEDIATE"}
)  # fmt: skip


def _constraint(constraint: dict, table_level: bool) -> Iterator[str]:
    contype = constraint.get("contype")
    if contype == "CONSTR_NOTNULL":
        if table_level or not constraint.get("initially_valid", True):
            yield "not-null-constraint"
        elif constraint.get("is_no_inherit"):
            yield "not-null-no-inherit"
        return
    if contype == "CONSTR_GENERATED":
        if constraint.get("generated_kind") == "v":
            yield "virtual-generated"
        if _calls_date_trunc_zone(constraint.get("raw_expr")):
            yield "date-trunc-zone-immutable"
        return
    if contype in ("CONSTR_CHECK", "CONSTR_FOREIGN") and not constraint.get("is_enforced"):
        yield "not-enforced"
    if constraint.get("without_overlaps") or constraint.get("fk_with_period") or constraint.get("pk_with_period"):
        yield "without-overlaps"
    if constraint.get("nulls_not_distinct"):
        yield "nulls-not-distinct"
    if constraint.get("fk_del_set_cols"):
        yield "fk-set-columns"
    if constraint.get("options"):
        yield from _reloptions(constraint["options"])


def _type_name(type_name: dict | None) -> Iterator[str]:
    if not type_name or "typmods" not in type_name:
        return
    names = type_name.get("names") or []
    if names and names[-1].get("String", {}).get("sval") == "numeric":
        mods = [m.get("A_Const", {}).get("ival") for m in type_name["typmods"]]
        if len(mods) == 2 and all(isinstance(m, dict) for m in mods):
            precision, scale = (m.get("ival", 0) for m in mods)
            if scale < 0 or scale > precision:
                yield "numeric-scale"


def _collation(clause: dict | None) -> Iterator[str]:
    names = (clause or {}).get("collname") or []
    if len(names) == 1:
        feature = _COLLATIONS.get(names[0].get("String", {}).get("sval", ""))
        if feature:
            yield feature


def _column(coldef: dict) -> list[str]:
    """The features of one column definition; most have none, and this is the rule's most frequent call."""
    out: list[str] = []
    for item in coldef.get("constraints") or ():
        constraint = item.get("Constraint") or {}
        if constraint.get("contype") not in _PLAIN_CONSTRAINTS:
            out += _constraint(constraint, table_level=False)
    if "storage_name" in coldef:
        out.append("column-storage")
    type_name = coldef.get("typeName")
    if type_name and "typmods" in type_name:
        out += _type_name(type_name)
    if "collClause" in coldef:
        out += _collation(coldef["collClause"])
    return out


def _reloptions(items: list | None) -> Iterator[str]:
    for name, _ in _options(items):
        feature = _RELOPTIONS.get(name)
        if feature:
            yield feature


def _create_table(node: dict) -> Iterator[str]:
    partitioned = "partspec" in node
    for element in node.get("tableElts") or []:
        if "Constraint" in element:
            constraint = element["Constraint"]
            yield from _constraint(constraint, table_level=True)
            if partitioned and constraint.get("contype") == "CONSTR_EXCLUSION":
                yield "partitioned-exclusion"
        elif "ColumnDef" in element:
            yield from _column(element["ColumnDef"])
    if partitioned and node.get("accessMethod"):
        yield "partitioned-access-method"
    if node.get("options"):
        yield from _reloptions(node["options"])


def _create_foreign_table(node: dict) -> Iterator[str]:
    base = node.get("base") or {}
    if any("TableLikeClause" in e for e in base.get("tableElts") or []):
        yield "foreign-table-like"
    yield from _create_table(base)


def _alter_table(node: dict) -> Iterator[str]:
    sequence = node.get("objtype") == "OBJECT_SEQUENCE"
    for item in node.get("cmds") or []:
        cmd = item.get("AlterTableCmd") or {}
        subtype, definition = cmd.get("subtype"), cmd.get("def") or {}
        if subtype == "AT_AddConstraint":
            yield from _constraint(definition.get("Constraint", {}), table_level=True)
        elif subtype == "AT_AddColumn":
            yield from _column(definition.get("ColumnDef", {}))
        elif subtype == "AT_AlterColumnType":
            coldef = definition.get("ColumnDef", {})
            yield from _type_name(coldef.get("typeName"))
            yield from _collation(coldef.get("collClause"))
        elif subtype == "AT_SetExpression":
            yield "set-expression"
        elif subtype == "AT_SetAccessMethod":
            yield "set-access-method" if cmd.get("name") else "access-method-default"
        elif subtype == "AT_SetStatistics" and not definition:
            yield "statistics-default"
        elif subtype == "AT_SetStorage" and definition.get("String", {}).get("sval") == "default":
            yield "set-storage-default"
        elif subtype == "AT_AlterConstraint":
            alter = definition.get("ATAlterConstraint", {})
            if alter.get("alterEnforceability") or alter.get("alterInheritability"):
                yield "alter-constraint-enforce-inherit"
        elif subtype in ("AT_SetRelOptions", "AT_ResetRelOptions"):
            yield from _reloptions(definition.get("List", {}).get("items"))
        elif sequence and subtype in ("AT_SetLogged", "AT_SetUnLogged"):
            yield "unlogged-sequence"


def _merge(node: dict) -> Iterator[str]:
    yield "merge"
    if node.get("returningClause"):
        yield "merge-returning"
    for clause in node.get("mergeWhenClauses") or []:
        if clause.get("MergeWhenClause", {}).get("matchKind") == "MERGE_WHEN_NOT_MATCHED_BY_SOURCE":
            yield "merge-not-matched-by-source"
    yield from _returning(node)


def _returning(node: dict) -> Iterator[str]:
    """RETURNING old.* / new.* / WITH (OLD AS o): PostgreSQL 17 knows no relation "old" there."""
    clause = node.get("returningClause")
    if not clause:
        return
    if clause.get("options"):
        yield "returning-old-new"
        return
    relation = node.get("relation") or {}
    own = {relation.get("relname"), (relation.get("alias") or {}).get("aliasname")}
    for target in clause.get("exprs") or []:
        fields = target.get("ResTarget", {}).get("val", {}).get("ColumnRef", {}).get("fields") or []
        if len(fields) > 1 and fields[0].get("String", {}).get("sval") in ({"old", "new"} - own):
            yield "returning-old-new"
            return


def _grant(node: dict) -> Iterator[str]:
    if node.get("objtype") == "OBJECT_PARAMETER_ACL":
        yield "grant-parameter"
    if any(p.get("AccessPriv", {}).get("priv_name") == "maintain" for p in node.get("privileges") or []):
        yield "grant-maintain"


def _grant_role(node: dict, text: str, base: int) -> Iterator[Any]:
    for item in node.get("granted_roles") or []:
        name = item.get("AccessPriv", {}).get("priv_name", "")
        if name in since()["roles"]:
            yield ("role", name)
    raw = text.encode("utf-8")
    for item in node.get("opt") or []:
        elem = item.get("DefElem", {})
        if elem.get("defname") in ("inherit", "set"):
            yield "grant-role-options"
        elif elem.get("defname") == "admin":  # WITH ADMIN OPTION (old) and WITH ADMIN TRUE (16) make one tree
            after = raw[elem.get("location", 0) - base :].split(None, 2)
            # a DO body's statements are located in another text: judge only where the location finds ADMIN
            if len(after) > 1 and after[0].lower() == b"admin" and after[1].lower() != b"option":
                yield "grant-role-options"


def _setting(setstmt: dict | None) -> Iterator[Any]:
    name = (setstmt or {}).get("name", "")
    if name in since()["settings"]:
        yield ("setting", name)
    elif name in since()["removed"]["settings"]:
        yield ("gone-setting", name)


def _function_options(node: dict) -> Iterator[Any]:
    for name, arg in _options(node.get("options") or node.get("actions")):
        if name == "set" and isinstance(arg, dict):
            yield from _setting(arg.get("VariableSetStmt"))


def _copy(node: dict) -> Iterator[str]:
    options = dict(_options(node.get("options")))
    header = options.get("header")
    if header is not None or "header" in options:
        if (header or {}).get("String", {}).get("sval") == "match":
            yield "copy-header-match"
        fmt = (options.get("format") or {}).get("String", {}).get("sval", "text")
        if fmt == "text":
            yield "copy-header-text"
    for name, arg in options.items():
        if name in _COPY_OPTIONS:
            yield _COPY_OPTIONS[name]
        if name in ("force_null", "force_not_null") and isinstance(arg, dict) and "A_Star" in arg:
            yield "copy-on-error"
    if (options.get("log_verbosity") or {}).get("String", {}).get("sval") == "silent":
        yield "copy-reject-limit"


def _vacuum(node: dict) -> Iterator[str]:
    if any(name in _VACUUM_OPTIONS for name, _ in _options(node.get("options"))):
        yield "vacuum-options"
    for rel in node.get("rels") or []:
        if not rel.get("VacuumRelation", {}).get("relation", {}).get("inh"):
            yield "vacuum-only"


def _explain(node: dict) -> Iterator[str]:
    for name, _ in _options(node.get("options")):
        if name in _EXPLAIN_OPTIONS:
            yield _EXPLAIN_OPTIONS[name]


def _createdb(node: dict) -> Iterator[str]:
    for name, arg in _options(node.get("options")):
        if name in _CREATEDB_OPTIONS:
            yield _CREATEDB_OPTIONS[name]
        if name == "locale_provider" and _word(arg) == "builtin":
            yield "builtin-collation-provider"


def _define(node: dict) -> Iterator[str]:
    if node.get("kind") != "OBJECT_COLLATION":
        return
    for name, arg in _options(node.get("definition")):
        if name == "rules":
            yield "createdb-icu-rules"
        if name == "provider" and _word(arg) == "builtin":
            yield "builtin-collation-provider"


def _publication(node: dict) -> Iterator[str]:
    for item in node.get("pubobjects") or []:
        spec = item.get("PublicationObjSpec", {})
        if spec.get("pubobjtype", "").startswith("PUBLICATIONOBJ_TABLES_IN"):
            yield "publication-schema"
        table = spec.get("pubtable") or {}
        if table.get("columns") or table.get("whereClause"):
            yield "publication-columns"
    if any(name == "publish_generated_columns" for name, _ in _options(node.get("options"))):
        yield "publish-generated-columns"


# Statements without expressions (names, options and string literals only): their text is not searched.
_NO_EXPRESSIONS = frozenset(
    {
        "DropStmt",
        "RenameStmt",
        "CommentStmt",
        "CreateEnumStmt",
        "AlterEnumStmt",
        "GrantStmt",
        "GrantRoleStmt",
        "CreateExtensionStmt",
        "AlterExtensionStmt",
        "TransactionStmt",
        "AlterDefaultPrivilegesStmt",
        "AlterSeqStmt",
        "CreateSeqStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "CreateSchemaStmt",
        "AlterOwnerStmt",
        "CreateRoleStmt",
        "AlterRoleStmt",
        "DropRoleStmt",
        "ReindexStmt",
        "VacuumStmt",
        "LockStmt",
        "TruncateStmt",
        "ClusterStmt",
        "AlterObjectSchemaStmt",
        "AlterFunctionStmt",
        "AlterSystemStmt",
        "AlterRoleSetStmt",
        "AlterDatabaseSetStmt",
        "CreatedbStmt",
        "DropdbStmt",
        "CreatePublicationStmt",
        "AlterPublicationStmt",
        "CreateEventTrigStmt",
        "RefreshMatViewStmt",
        "DropOwnedStmt",
        "ReassignOwnedStmt",
        "NotifyStmt",
        "ListenStmt",
        "DiscardStmt",
        "CheckPointStmt",
        "AlterDatabaseRefreshCollStmt",
        "CreateStatsStmt",
        "CreateSubscriptionStmt",
        "AlterSubscriptionStmt",
        "AlterStatsStmt",
        "AlterTSConfigurationStmt",
    }
)

_Detector = Callable[[dict], Iterator[Any]]
_BY_KIND: dict[str, _Detector] = {
    "MergeStmt": _merge,
    "InsertStmt": _returning,
    "UpdateStmt": _returning,
    "DeleteStmt": _returning,
    "IndexStmt": lambda n: _index(n),
    "CreateStmt": _create_table,
    "CreateForeignTableStmt": _create_foreign_table,
    "AlterTableStmt": _alter_table,
    "CreateSeqStmt": lambda n: iter(
        ["unlogged-sequence"] if n.get("sequence", {}).get("relpersistence") == "u" else []
    ),
    "ViewStmt": lambda n: _reloptions(n.get("options")),
    "VariableSetStmt": _setting,
    "VariableShowStmt": _setting,
    "AlterSystemStmt": lambda n: _setting(n.get("setstmt")),
    "AlterRoleSetStmt": lambda n: _setting(n.get("setstmt")),
    "AlterDatabaseSetStmt": lambda n: _setting(n.get("setstmt")),
    "CreateFunctionStmt": _function_options,
    "AlterFunctionStmt": _function_options,
    "GrantStmt": _grant,
    "AlterDefaultPrivilegesStmt": lambda n: iter(
        ["default-privileges-large-objects"] if n.get("action", {}).get("objtype") == "OBJECT_LARGEOBJECT" else []
    ),
    "CopyStmt": _copy,
    "VacuumStmt": _vacuum,
    "ExplainStmt": _explain,
    "CreatedbStmt": _createdb,
    "DefineStmt": _define,
    "CreatePublicationStmt": _publication,
    "AlterPublicationStmt": _publication,
    "CreateEventTrigStmt": lambda n: iter(["login-event-trigger"] if n.get("eventname") == "login" else []),
    "CreateStatsStmt": lambda n: iter([] if n.get("defnames") else ["unnamed-statistics"]),
    "ReindexStmt": lambda n: iter(
        ["reindex-current-db"]
        if n.get("kind") in ("REINDEX_OBJECT_DATABASE", "REINDEX_OBJECT_SYSTEM") and not n.get("name")
        else []
    ),
    "AlterDatabaseRefreshCollStmt": lambda n: iter(["refresh-collation"]),
    "CreateSubscriptionStmt": lambda n: _subscription(n),
    "AlterSubscriptionStmt": lambda n: _subscription(n),
}


def _subscription(node: dict) -> Iterator[str]:
    for name, arg in _options(node.get("options")):
        if name in _SUBSCRIPTION_OPTIONS:
            yield _SUBSCRIPTION_OPTIONS[name]
        elif name == "streaming" and _word(arg) == "parallel":
            yield "subscription-16"


def _index(node: dict) -> Iterator[str]:
    if node.get("nulls_not_distinct"):
        yield "nulls-not-distinct"


def _calls_date_trunc_zone(node: Any) -> bool:
    """date_trunc(unit, timestamptz, zone), IMMUTABLE only since 16: an index or a stored column needs that."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            call = item.get("FuncCall")
            if call and len(call.get("args") or ()) == 3:
                names = call.get("funcname") or [{}]
                if names[-1].get("String", {}).get("sval") == "date_trunc":
                    return True
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return False


def _function(call: dict, target: int) -> Iterator[Any]:
    names = [n.get("String", {}).get("sval", "") for n in call.get("funcname") or []]
    if not names or (len(names) > 1 and names[0] != "pg_catalog"):
        return  # another schema's function: not a built-in
    name, nargs = names[-1], len(call.get("args") or [])
    if name == "timezone" and nargs == 1 and call.get("funcformat") == "COERCE_SQL_SYNTAX":
        yield "at-local"
    elif name == "system_user" and call.get("funcformat") == "COERCE_SQL_SYNTAX":
        yield "system-user"
    elif name == "regexp_replace" and nargs >= 4:
        fourth = call["args"][3].get("A_Const", {})
        if "ival" in fourth:  # regexp_replace(s, p, r, 'g') is the old flags form
            yield "regexp-replace-start"
    elif (name, nargs) in OVERLOADS:
        yield OVERLOADS[name, nargs]
    elif since()["functions"].get(name, 0) > target:
        yield ("function", name)
    elif name in since()["removed"]["functions"]:
        yield ("gone-function", name)


_WALKED = frozenset(
    {*_JSON_NODES, "FuncCall", "MergeSupportFunc", "RangeSubselect", "XmlSerialize", "CollateClause", "typeName",
     "TypeName", "A_Const", "RangeVar"}
)  # fmt: skip


def _expressions(node: Any, text: str, base: int, target: int) -> Iterator[Any]:
    """Features used in the expressions anywhere under ``node`` (one walk of the tree; one set lookup a key)."""
    raw = None
    stack = [node]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if type(item) is list:
            stack.extend(item)
            continue
        if type(item) is not dict:
            continue
        for key, value in item.items():
            kind = type(value)
            if kind is dict:
                push(value)
                if key not in _WALKED:
                    continue
            elif kind is list:
                push(value)
                continue
            else:
                continue
            if key in _JSON_NODES:
                yield _JSON_NODES[key]
            elif key == "FuncCall":
                yield from _function(value, target)
            elif key == "MergeSupportFunc":
                yield "merge-returning"
            elif key == "RangeSubselect":
                if not value.get("alias"):
                    yield "subquery-alias"
            elif key == "XmlSerialize":
                if value.get("indent"):
                    yield "xmlserialize-indent"
            elif key == "CollateClause":
                yield from _collation(value)
            elif key == "A_Const":
                if "ival" in value or "fval" in value:
                    raw = text.encode("utf-8") if raw is None else raw
                    start = value.get("location", -1) - base
                    if 0 <= start < len(raw) and _LITERAL.match(raw, start):
                        yield "numeric-literal"
            elif key == "RangeVar":
                if (
                    value.get("schemaname", "pg_catalog") == "pg_catalog"
                    and value.get("relname") in since()["relations"]
                ):
                    yield ("relation", value["relname"])
            else:  # typeName / TypeName
                yield from _type_name(value)


def features(stmt, target: int) -> list[Any]:
    """The features of one parsed statement that are newer than ``target``, each once, in order.

    A feature is a key of :data:`FEATURES`, or ``("function"|"setting"|"role", name)``.
    """
    node, kind, low = stmt.node, stmt.node_type, stmt.text.lower()
    found: list[Any] = []
    detector = _BY_KIND.get(kind)
    if kind == "GrantRoleStmt":
        found += _grant_role(node, stmt.text, stmt.node_base)
    elif kind == "IndexStmt" and "date_trunc" in low:  # the walk only for the few that name it
        found += _index(node)
        if _calls_date_trunc_zone(node.get("indexParams")) or _calls_date_trunc_zone(node.get("whereClause")):
            found.append("date-trunc-zone-immutable")
    elif kind == "ClusterStmt":  # CLUSTER VERBOSE (old) and CLUSTER (VERBOSE) (17) make one tree
        if node.get("params") and not node.get("relation") and "(" in stmt.text:
            found.append("cluster-options")
    elif detector is not None:
        found += detector(node)
    if kind == "CreateFunctionStmt":  # the body is a string (read by PostgreSQL when called), unless BEGIN ATOMIC
        if node.get("sql_body") and _worth_walking(low, target):
            found += _expressions(node["sql_body"], stmt.text, stmt.node_base, target)
    elif kind not in _NO_EXPRESSIONS and _worth_walking(low, target):
        found += _expressions(node, stmt.text, stmt.node_base, target)
    if not found:
        return found
    return [f for f in dict.fromkeys(found) if _applies(f, target)]


def _major(feature: Any) -> int:
    """The first major with ``feature``; for a removed name, the first major without it."""
    if isinstance(feature, tuple):
        kind, name = feature
        if kind.startswith("gone-"):
            return since()["removed"][kind[5:] + "s"][name]
        return since()[kind + "s"].get(name, 0)
    return FEATURES[feature].major


def _applies(feature: Any, target: int) -> bool:
    """True when ``target`` cannot run ``feature``: too new for it, or removed by then."""
    if isinstance(feature, tuple) and feature[0].startswith("gone-"):
        return target >= _major(feature)
    return _major(feature) > target


def _describe(feature: Any) -> tuple[int, str, str]:
    """``(major, what, hint)`` for a finding."""
    major = _major(feature)
    if not isinstance(feature, tuple):
        return major, FEATURES[feature].name, FEATURES[feature].hint
    kind, name = feature
    if kind.startswith("gone-"):
        what = f"{name}()" if kind == "gone-function" else f"the setting {name}"
        return major, what, _REPLACEMENTS.get(name, f"leave it out (see the PostgreSQL {major} release notes)")
    if kind == "function":
        hint = _FUNCTION_HINTS.get(name, "an expression of built-in functions it has")
        return (
            major,
            f"{name}()",
            (
                f"{hint}, or create {name}() in an earlier migration (if an extension or your schema defines it, "
                "silence this with that reason)"
            ),
        )
    if kind == "relation":
        return major, f"the system view {name}", "query what it has (the catalogs and statistics views of that major)"
    if kind == "setting":
        return major, f"the setting {name}", "leave it out (an unrecognized configuration parameter there)"
    return major, f"the predefined role {name}", "grant the privileges it stands for"


# What replaced the removed names (the release notes' "Migration" sections).
_REPLACEMENTS = {
    "pg_start_backup": "pg_backup_start() (non-exclusive backups only)",
    "pg_stop_backup": "pg_backup_stop()",
    "force_parallel_mode": "debug_parallel_query",
    "lc_collate": "SELECT datcollate FROM pg_database WHERE datname = current_database()",
    "lc_ctype": "SELECT datctype FROM pg_database WHERE datname = current_database()",
}


# How to write the most used new functions without them (the others get a generic hint).
_FUNCTION_HINTS = {
    "uuidv7": "gen_random_uuid() (a version-4 UUID)",
    "uuidv4": "gen_random_uuid()",
    "casefold": "lower()",
    "any_value": "min() or max()",
    "array_sort": "(SELECT array_agg(x ORDER BY x) FROM unnest(arr) AS x)",
    "array_reverse": "(SELECT array_agg(x ORDER BY i DESC) FROM unnest(arr) WITH ORDINALITY AS u(x, i))",
    "regexp_like": "the ~ operator",
    "regexp_count": "(SELECT count(*) FROM regexp_matches(s, pattern, 'g'))",
    "regexp_substr": "substring(s FROM pattern)",
    "pg_input_is_valid": "a PL/pgSQL function that tries the cast and catches the error",
    "random_normal": "a Box-Muller expression of random()",
    "date_add": "timestamptz + interval",
    "date_subtract": "timestamptz - interval",
    "to_bin": "a recursive expression, or ::bit(n)",
    "json_agg_strict": "json_agg(x) FILTER (WHERE x IS NOT NULL)",
    "jsonb_agg_strict": "jsonb_agg(x) FILTER (WHERE x IS NOT NULL)",
}


def _own_functions(file, stmt) -> set[str]:
    """Functions this file creates before ``stmt``: their names are theirs, whatever later majors added."""
    from safemig.lint import facts

    names = set()
    for earlier in file.valid_statements:
        if earlier is stmt:
            break
        name = facts.routine_name(earlier)
        if name:
            names.add(name)
    return names


def _defined_earlier(file, stmt, name: str) -> bool:
    from safemig.lint import facts, history

    if name in _own_functions(file, stmt):
        return True
    return any(facts.routine_name(s) == name for s in history.earlier_statements(file.path, file.version, name))


def check(file):
    target = file.pg_version
    for stmt in file.valid_statements:
        found = features(stmt, target)
        if stmt.node_type == "DoStmt":  # its body runs now, with the migration
            from safemig.lint import facts

            for inner in facts.do_block(stmt).statements:
                found += [f for f in features(inner, target) if f not in found]
        for feature in found:
            if isinstance(feature, tuple) and feature[0] == "function" and _defined_earlier(file, stmt, feature[1]):
                continue
            major, what, hint = _describe(feature)
            if isinstance(feature, tuple) and feature[0].startswith("gone-"):
                yield file.violation(
                    stmt,
                    f"{what} was removed in PostgreSQL {major}; the target ([lint] pg_version) is {target}, which "
                    "rejects this statement",
                    f"for PostgreSQL {target}: {hint}",
                )
                continue
            yield file.violation(
                stmt,
                f"{what} needs PostgreSQL {major}; the target ([lint] pg_version) is {target}, which rejects this "
                "statement",
                f"for PostgreSQL {target}: {hint}; or set [lint] pg_version = {major} if every server that runs the "
                f"migrations is {major} or newer",
            )
