"""One example statement for every feature ``unsupported-syntax`` knows, with the objects it needs.

``test_unsupported_syntax_servers.py`` runs each example (after its setup, in a transaction
that is rolled back, unless it cannot run in one) on a real server of each major 14-18: the
rule, with that major as the target, must flag exactly the examples that server rejects.
A feature is a key of ``unsupported_syntax.FEATURES`` or ``"function:NAME"`` /
``"setting:NAME"`` / ``"role:NAME"`` for the names read from the servers' catalogs.
"""

from __future__ import annotations

from typing import NamedTuple

T = "CREATE TABLE t (id int PRIMARY KEY, a int, b text, j jsonb);"
SOURCE = "CREATE TABLE s (id int PRIMARY KEY, a int);"


class Case(NamedTuple):
    feature: str
    sql: str
    setup: str = ""
    icu: bool = False  # needs a server built with ICU (the PyPI builds of 16-18 are not): not run without
    autocommit: bool = False  # cannot run inside a transaction block (VACUUM, CREATE DATABASE, ...)
    teardown: str = ""  # for autocommit examples: what undoes them (run whatever happened)


CASES = [
    # --- 15
    Case("merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", T + SOURCE),
    Case("nulls-not-distinct", "CREATE UNIQUE INDEX t_a ON t (a) NULLS NOT DISTINCT", T),
    Case("nulls-not-distinct", "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE NULLS NOT DISTINCT (a)", T),
    Case(
        "fk-set-columns",
        "CREATE TABLE c (id int, p int, q int, FOREIGN KEY (p, q) REFERENCES pq ON DELETE SET NULL (q))",
        "CREATE TABLE pq (p int, q int, PRIMARY KEY (p, q));",
    ),
    Case("set-access-method", "ALTER TABLE t SET ACCESS METHOD heap", T),
    Case("unlogged-sequence", "CREATE UNLOGGED SEQUENCE seq_u"),
    Case("unlogged-sequence", "ALTER SEQUENCE seq_l SET UNLOGGED", "CREATE SEQUENCE seq_l;"),
    Case("grant-parameter", "GRANT SET ON PARAMETER work_mem TO app", "CREATE ROLE app;"),
    Case("security-invoker-view", "CREATE VIEW v WITH (security_invoker = true) AS SELECT 1 AS x"),
    Case("security-invoker-view", "ALTER VIEW v SET (security_invoker = true)", "CREATE VIEW v AS SELECT 1 AS x;"),
    Case("publication-schema", "CREATE PUBLICATION pub_s FOR TABLES IN SCHEMA public"),
    Case("publication-columns", "CREATE PUBLICATION pub_c FOR TABLE t (id, a)", T),
    Case("publication-columns", "CREATE PUBLICATION pub_w FOR TABLE t WHERE (a > 0)", T),
    Case("copy-header-match", "COPY t (id) FROM PROGRAM 'printf \"id\\n1\\n\"' WITH (FORMAT csv, HEADER MATCH)", T),
    Case("copy-header-text", "COPY t TO PROGRAM 'cat > /dev/null' WITH (HEADER)", T),
    Case("numeric-scale", "CREATE TABLE n (x numeric(5, -2))"),
    Case("numeric-scale", "SELECT 0.0012::numeric(2, 4)"),
    Case(
        "createdb-options",
        "CREATE DATABASE safemig_syntax_db STRATEGY file_copy",
        autocommit=True,
        teardown="DROP DATABASE IF EXISTS safemig_syntax_db",
    ),
    Case(
        "refresh-collation",
        "ALTER DATABASE safemig_syntax_db2 REFRESH COLLATION VERSION",
        "CREATE DATABASE safemig_syntax_db2",
        autocommit=True,
        teardown="DROP DATABASE IF EXISTS safemig_syntax_db2",
    ),
    Case("regexp-replace-start", "SELECT regexp_replace('aaa', 'a', 'b', 2)"),
    Case("function:regexp_like", "SELECT regexp_like('abc', 'b')"),
    Case("function:regexp_count", "SELECT regexp_count('abcb', 'b')"),
    Case("function:regexp_substr", "SELECT regexp_substr('abc', 'b')"),
    Case("function:regexp_instr", "SELECT regexp_instr('abc', 'b')"),
    Case("function:has_parameter_privilege", "SELECT has_parameter_privilege('work_mem', 'SET')"),
    Case("gone-function:pg_is_in_backup", "SELECT pg_is_in_backup()"),
    Case("gone-setting:stats_temp_directory", "SHOW stats_temp_directory"),
    Case("role:pg_checkpoint", "GRANT pg_checkpoint TO app", "CREATE ROLE app;"),
    Case("setting:recursive_worktable_factor", "SET recursive_worktable_factor = 10"),
    Case(
        "subscription-15",
        "CREATE SUBSCRIPTION sub15 CONNECTION 'dbname=none' PUBLICATION p "
        "WITH (connect = false, disable_on_error = true)",
    ),
    Case("relation:pg_ident_file_mappings", "SELECT count(*) FROM pg_ident_file_mappings"),
    # --- 16
    Case("sql-json-constructors", "SELECT json_object('a': 1), json_array(1, 2)"),
    Case("sql-json-constructors", "SELECT json_objectagg(b: a), json_arrayagg(a) FROM t", T),
    Case("is-json", "ALTER TABLE t ADD CONSTRAINT b_is_json CHECK (b IS JSON OBJECT)", T),
    Case("system-user", "SELECT system_user"),
    Case("numeric-literal", "SELECT 0x1F + 1"),  # 14 reads a lone SELECT 0x1F as SELECT 0 AS x1F
    Case("numeric-literal", "UPDATE t SET a = 1_000_000 WHERE id = 1", T),
    Case("subquery-alias", "SELECT * FROM (SELECT 1)"),
    Case("subquery-alias", "INSERT INTO t (id) SELECT x FROM (SELECT 1 AS x)", T),
    Case("xmlserialize-indent", "SELECT xmlserialize(DOCUMENT '<a><b/></a>' AS text INDENT)"),
    Case("column-storage", "CREATE TABLE st (doc text STORAGE EXTERNAL)"),
    Case("set-storage-default", "ALTER TABLE t ALTER COLUMN b SET STORAGE DEFAULT", T),
    Case("grant-role-options", "GRANT app TO app2 WITH INHERIT FALSE", "CREATE ROLE app; CREATE ROLE app2;"),
    Case("grant-role-options", "GRANT app TO app2 WITH ADMIN TRUE", "CREATE ROLE app; CREATE ROLE app2;"),
    Case("unnamed-statistics", "CREATE STATISTICS ON id, a FROM t", T),
    Case("reindex-current-db", "REINDEX SYSTEM", autocommit=True),
    Case(
        "vacuum-options",
        "VACUUM (SKIP_DATABASE_STATS) t_vac",
        "CREATE TABLE t_vac (id int);",
        autocommit=True,
        teardown="DROP TABLE IF EXISTS t_vac",
    ),
    Case(
        "copy-default",
        "COPY t (id, a) FROM PROGRAM 'printf \"1,x\\n\"' WITH (FORMAT csv, DEFAULT 'x')",
        "CREATE TABLE t (id int PRIMARY KEY, a int DEFAULT 7);",
    ),
    Case("explain-generic-plan", "EXPLAIN (GENERIC_PLAN) SELECT * FROM t WHERE id = $1", T),
    Case("createdb-icu-rules", "CREATE COLLATION c_rules (provider = icu, locale = 'und', rules = '&a < g')", icu=True),
    Case("collation-unicode", "SELECT 'a' < 'B' COLLATE \"unicode\"", icu=True),
    Case(
        "date-trunc-zone-immutable",
        "CREATE INDEX tz_day ON tz (date_trunc('day', ts, 'Europe/Paris'))",
        "CREATE TABLE tz (ts timestamptz);",
    ),
    Case(
        "date-trunc-zone-immutable",
        "CREATE TABLE tg (ts timestamptz, day timestamptz GENERATED ALWAYS AS (date_trunc('day', ts, 'UTC')) STORED)",
    ),
    Case(
        "subscription-16",
        "CREATE SUBSCRIPTION sub16p CONNECTION 'dbname=none' PUBLICATION p WITH (connect = off, streaming = parallel)",
    ),
    Case(
        "generate-series-timezone",
        "SELECT generate_series('2024-01-01'::timestamptz, '2024-01-02', '1 hour', 'Europe/Paris')",
    ),
    Case("function:any_value", "SELECT any_value(a) FROM t", T),
    Case("function:pg_input_is_valid", "SELECT pg_input_is_valid('42', 'integer')"),
    Case("function:pg_input_error_info", "SELECT * FROM pg_input_error_info('x', 'integer')"),
    Case("function:random_normal", "SELECT random_normal()"),
    Case("function:array_shuffle", "SELECT array_shuffle(ARRAY[1, 2, 3])"),
    Case("function:array_sample", "SELECT array_sample(ARRAY[1, 2, 3], 2)"),
    Case("function:date_add", "SELECT date_add(now(), '1 day'::interval)"),
    Case("function:date_subtract", "SELECT date_subtract(now(), '1 day'::interval)"),
    Case("function:erf", "SELECT erf(0.5)"),
    Case("function:jsonb_agg_strict", "SELECT jsonb_agg_strict(a) FROM t", T),
    Case("function:json_object_agg_unique", "SELECT json_object_agg_unique(b, a) FROM t", T),
    Case("gone-setting:force_parallel_mode", "SET force_parallel_mode = off"),
    Case("gone-setting:vacuum_defer_cleanup_age", "SHOW vacuum_defer_cleanup_age"),
    Case("role:pg_create_subscription", "GRANT pg_create_subscription TO app", "CREATE ROLE app;"),
    Case("setting:vacuum_buffer_usage_limit", "SET vacuum_buffer_usage_limit = '1MB'"),
    Case("setting:enable_presorted_aggregate", "SET LOCAL enable_presorted_aggregate = off"),
    Case(
        "subscription-16",
        "CREATE SUBSCRIPTION sub16 CONNECTION 'dbname=none' PUBLICATION p WITH (connect = false, origin = none)",
    ),
    Case("relation:pg_stat_io", "SELECT backend_type FROM pg_stat_io"),
    # --- 17
    Case("merge-returning", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.id", T + SOURCE),
    Case(
        "merge-returning",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING merge_action()",
        T + SOURCE,
    ),
    Case(
        "merge-not-matched-by-source",
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
        T + SOURCE,
    ),
    Case("json-table", "SELECT * FROM JSON_TABLE('[1, 2]'::jsonb, '$[*]' COLUMNS (x int PATH '$')) AS jt"),
    Case("sql-json-query", "SELECT JSON_VALUE(j, '$.a') FROM t", T),
    Case("sql-json-query", "SELECT id FROM t WHERE JSON_EXISTS(j, '$.a')", T),
    Case("sql-json-parse", "SELECT JSON('{\"a\": 1}'), JSON_SCALAR(1), JSON_SERIALIZE('[1]'::json)"),
    Case(
        "set-expression",
        "ALTER TABLE g ALTER COLUMN y SET EXPRESSION AS (x * 3)",
        "CREATE TABLE g (x int, y int GENERATED ALWAYS AS (x * 2) STORED);",
    ),
    Case("at-local", "SELECT now() AT LOCAL"),
    Case("copy-on-error", "COPY t (id) FROM PROGRAM 'printf \"1\\nx\\n\"' WITH (ON_ERROR ignore)", T),
    Case("copy-on-error", "COPY t (id, b) FROM PROGRAM 'printf \"1,\\n\"' WITH (FORMAT csv, FORCE_NULL *)", T),
    Case("explain-serialize-memory", "EXPLAIN (ANALYZE, SERIALIZE) SELECT 1"),
    Case("grant-maintain", "GRANT MAINTAIN ON t TO app", T + "CREATE ROLE app;"),
    Case("access-method-default", "ALTER TABLE t SET ACCESS METHOD DEFAULT", T),
    Case("statistics-default", "ALTER TABLE t ALTER COLUMN a SET STATISTICS DEFAULT", T),
    Case(
        "login-event-trigger",
        "CREATE EVENT TRIGGER on_login ON login EXECUTE FUNCTION noop()",
        "CREATE FUNCTION noop() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';",
    ),
    Case("builtin-collation-provider", "CREATE COLLATION c_builtin (provider = builtin, locale = 'C')"),
    Case("builtin-collation-provider", "CREATE TABLE cu (name text COLLATE pg_c_utf8)"),
    Case("random-range", "SELECT random(1, 6)"),
    Case("function:uuid_extract_timestamp", "SELECT uuid_extract_timestamp(gen_random_uuid())"),
    Case("function:uuid_extract_version", "SELECT uuid_extract_version(gen_random_uuid())"),
    Case("function:to_bin", "SELECT to_bin(5)"),
    Case("function:to_oct", "SELECT to_oct(8)"),
    Case("function:unicode_assigned", "SELECT unicode_assigned('a')"),
    Case("function:to_regtypemod", "SELECT to_regtypemod('varchar(10)')"),
    Case("function:pg_basetype", "SELECT pg_basetype('int4'::regtype)"),
    Case("function:xmltext", "SELECT xmltext('a < b')"),
    Case("gone-setting:old_snapshot_threshold", "SHOW old_snapshot_threshold"),
    Case("role:pg_maintain", "GRANT pg_maintain TO app", "CREATE ROLE app;"),
    Case("setting:transaction_timeout", "SET LOCAL transaction_timeout = '5min'"),
    Case("setting:transaction_timeout", "ALTER ROLE app SET transaction_timeout = '5min'", "CREATE ROLE app;"),
    Case(
        "setting:transaction_timeout",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET transaction_timeout = '1s' AS 'SELECT 1'",
    ),
    Case("cluster-options", "CLUSTER (VERBOSE)", autocommit=True),
    Case(
        "partitioned-exclusion",
        "CREATE TABLE pe (k int, r int4range, EXCLUDE USING gist (k WITH =, r WITH &&)) PARTITION BY LIST (k)",
        "CREATE EXTENSION btree_gist;",
    ),
    Case("partitioned-access-method", "CREATE TABLE pa (id int) PARTITION BY RANGE (id) USING heap"),
    Case(
        "subscription-17",
        "CREATE SUBSCRIPTION sub17 CONNECTION 'dbname=none' PUBLICATION p WITH (connect = false, failover = true)",
    ),
    Case("relation:pg_stat_checkpointer", "SELECT num_timed FROM pg_stat_checkpointer"),
    Case("relation:pg_wait_events", "SELECT count(*) FROM pg_catalog.pg_wait_events"),
    # --- 18
    Case("not-null-constraint", "ALTER TABLE t ADD CONSTRAINT t_a_not_null NOT NULL a", T),
    Case("not-null-constraint", "ALTER TABLE t ADD CONSTRAINT t_a_not_null NOT NULL a NOT VALID", T),
    Case("not-null-constraint", "CREATE TABLE nn (a int, CONSTRAINT nn_a NOT NULL a)"),
    Case("not-null-no-inherit", "CREATE TABLE ni (a int NOT NULL NO INHERIT)"),
    Case("not-enforced", "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0) NOT ENFORCED", T),
    Case(
        "not-enforced",
        "ALTER TABLE c ADD CONSTRAINT c_t FOREIGN KEY (t_id) REFERENCES t NOT ENFORCED",
        T + "CREATE TABLE c (t_id int);",
    ),
    Case(
        "alter-constraint-enforce-inherit",
        "ALTER TABLE nn2 ALTER CONSTRAINT nn2_a_not_null NO INHERIT",
        "CREATE TABLE nn2 (a int NOT NULL);",
    ),
    Case(
        "alter-constraint-enforce-inherit",
        "ALTER TABLE c ALTER CONSTRAINT c_t NOT ENFORCED",
        T + "CREATE TABLE c (t_id int CONSTRAINT c_t REFERENCES t);",
    ),
    Case(
        "without-overlaps",
        "CREATE TABLE booking (room int, during tstzrange, PRIMARY KEY (room, during WITHOUT OVERLAPS))",
        "CREATE EXTENSION btree_gist;",
    ),
    Case("virtual-generated", "ALTER TABLE t ADD COLUMN a2 int GENERATED ALWAYS AS (a * 2)", T),
    Case("virtual-generated", "CREATE TABLE vg (x int, y int GENERATED ALWAYS AS (x * 2) VIRTUAL)"),
    Case("returning-old-new", "UPDATE t SET a = a + 1 RETURNING old.a, new.a", T),
    Case("returning-old-new", "DELETE FROM t RETURNING WITH (OLD AS o) o.id", T),
    Case("vacuum-only", "ANALYZE ONLY t", T),
    Case(
        "copy-reject-limit", "COPY t (id) FROM PROGRAM 'printf \"1\\nx\\n\"' WITH (ON_ERROR ignore, REJECT_LIMIT 5)", T
    ),
    Case(
        "default-privileges-large-objects",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON LARGE OBJECTS TO app",
        "CREATE ROLE app;",
    ),
    Case(
        "foreign-table-like",
        "CREATE FOREIGN TABLE ft (LIKE t) SERVER fs",
        T + "CREATE FOREIGN DATA WRAPPER fdw; CREATE SERVER fs FOREIGN DATA WRAPPER fdw;",
    ),
    Case(
        "publish-generated-columns", "CREATE PUBLICATION pub_g FOR TABLE t WITH (publish_generated_columns = stored)", T
    ),
    Case("collation-unicode-fast", "SELECT 'a' COLLATE pg_unicode_fast"),
    Case("reloption-18", "ALTER TABLE t SET (autovacuum_vacuum_max_threshold = 100000)", T),
    Case("strip-nulls-option", "SELECT jsonb_strip_nulls('[1, null]'::jsonb, true)"),
    Case("function:uuidv7", "ALTER TABLE t ADD COLUMN public_id uuid DEFAULT uuidv7()", T),
    Case("function:uuidv4", "SELECT uuidv4()"),
    Case("function:casefold", "SELECT casefold('Straße')"),
    Case("function:array_sort", "SELECT array_sort(ARRAY[3, 1, 2])"),
    Case("function:array_reverse", "SELECT array_reverse(ARRAY[1, 2, 3])"),
    Case("function:crc32", "SELECT crc32('abc'::bytea)"),
    Case("function:crc32c", "SELECT crc32c('abc'::bytea)"),
    Case("function:gamma", "SELECT gamma(5)"),
    Case("function:lgamma", "SELECT lgamma(5)"),
    Case("function:has_largeobject_privilege", "SELECT has_largeobject_privilege(1, 'SELECT')"),
    Case("function:pg_get_acl", "SELECT pg_get_acl('pg_class'::regclass, 'pg_class'::regclass, 0)"),
    Case("role:pg_signal_autovacuum_worker", "GRANT pg_signal_autovacuum_worker TO app", "CREATE ROLE app;"),
    Case("gone-function:pg_timezone_abbrevs", "SELECT count(*) FROM pg_timezone_abbrevs()"),
    Case("relation:pg_aios", "SELECT count(*) FROM pg_aios"),
    Case("setting:vacuum_truncate", "SET vacuum_truncate = off"),
    Case("setting:log_lock_failures", "SET LOCAL log_lock_failures = on"),
]

# Statements every supported major (14+) runs: the rule must never flag them (no false positives).
OLD = [
    Case("", "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a IS NOT NULL) NOT VALID", T),
    Case("", "ALTER TABLE t ADD COLUMN a3 int GENERATED ALWAYS AS (a * 3) STORED", T),
    Case("", "CREATE TABLE o (id int CONSTRAINT o_id_nn NOT NULL, x int NOT NULL)"),
    Case("", "GRANT app TO app2 WITH ADMIN OPTION", "CREATE ROLE app; CREATE ROLE app2;"),
    Case("", "SELECT * FROM (SELECT 1) AS s"),
    Case("", "SELECT regexp_replace('aaa', 'a', 'b', 'g'), random(), generate_series(1, 3)"),
    Case("", "SELECT now() AT TIME ZONE 'UTC', current_user, session_user"),
    Case("", "COPY t TO PROGRAM 'cat > /dev/null' WITH (FORMAT csv, HEADER true, FORCE_QUOTE *)", T),
    Case(
        "",
        "VACUUM (ANALYZE, PROCESS_TOAST) t_vac",
        "CREATE TABLE t_vac (id int);",
        autocommit=True,
        teardown="DROP TABLE IF EXISTS t_vac",
    ),
    Case("", "ALTER TABLE t ALTER COLUMN a SET STATISTICS 200, ALTER COLUMN b SET STORAGE EXTERNAL", T),
    Case("", "SET LOCAL lock_timeout = '5s'"),
    Case("", "SELECT 'a_1_2' AS y, 0.5e3 AS z, 1.5::numeric(10, 2), 0 AS zero"),
    Case("", "SELECT jsonb_build_object('a', 1), j -> 'a', j ->> 'b', to_jsonb(1) FROM t", T),
    Case("", "CREATE UNIQUE INDEX t_b ON t (b) WHERE b IS NOT NULL", T),
    Case("", "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a RETURNING id", T),
    Case(
        "",
        "ALTER TABLE t ALTER CONSTRAINT t_p DEFERRABLE",
        T + "CREATE TABLE p (id int PRIMARY KEY); ALTER TABLE t ADD CONSTRAINT t_p FOREIGN KEY (a) REFERENCES p;",
    ),
    Case("", "CREATE FUNCTION uuidv7() RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()'"),
    Case("", "GRANT pg_read_all_data TO app", "CREATE ROLE app;"),
    Case("", "ANALYZE t", T),
    Case("", "CREATE TABLE pk (id int, r int4range) PARTITION BY RANGE (id)"),
    # 17's "identity columns on partitioned tables": 14-16 create this table too (measured); not a syntax feature
    Case("", "CREATE TABLE pi (id int GENERATED ALWAYS AS IDENTITY) PARTITION BY RANGE (id)"),
    Case("", "SELECT count(*) FROM pg_stat_activity, pg_catalog.pg_locks"),
    Case("", "CREATE SUBSCRIPTION sub14 CONNECTION 'dbname=none' PUBLICATION p WITH (connect = false, binary = true)"),
    Case("", "CLUSTER VERBOSE", autocommit=True),
    Case(  # the hint of date-trunc-zone-immutable
        "",
        "CREATE INDEX tz_day ON tz (date_trunc('day', ts AT TIME ZONE 'Europe/Paris'))",
        "CREATE TABLE tz (ts timestamptz);",
    ),
    Case("", "SELECT count(*) FROM pg_timezone_abbrevs"),  # the view stays; 18 dropped the function of that name
]
