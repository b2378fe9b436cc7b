#!/usr/bin/env python3
"""Every statement of a corpus through a real server's grammar, against ``unsupported-syntax``.

Each parsed statement goes into a DO body that returns first (``DO $q$ BEGIN RETURN; <stmt>; END
$q$``): plpgsql runs the raw parser on every statement when it compiles the block, so the server's
grammar judges it and nothing executes, whatever tables the statement names. A statement the
grammar rejects (SQLSTATE 42601) that the rule does not flag for the server's major is a miss; one
the rule flags that the grammar accepts is either an analysis-level feature (an unknown function,
setting or storage parameter: tests/lint/test_unsupported_syntax_servers.py measures those) or a
false positive, and is listed.

Usage: bench/syntax_vs_server.py [--port 22470] [--corpus /work/corpus] BINDIR
   e.g. bench/syntax_vs_server.py "$(scripts/pg-majors 15 | cut -d' ' -f2)"
Run it with the project's venv (safemig.local.postgres, psycopg).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Statements plpgsql reads as its own (BEGIN, FETCH, ...) or that a DO body cannot hold.
SKIP = {"TransactionStmt", "ExecuteStmt", "FetchStmt", "ClosePortalStmt", "DeclareCursorStmt", "DoStmt", "CopyStmt",
        "VariableShowStmt", "PrepareStmt", "DeallocateStmt", "CallStmt", "ReturnStmt", "PLAssignStmt"}  # fmt: skip


def main() -> int:
    import psycopg

    from safemig.lint.parse import parse_sql
    from safemig.lint.rules import unsupported_syntax as rule
    from safemig.local.postgres import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=22470)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("SAFEMIG_CORPUS", "/work/corpus")))
    parser.add_argument("bindir", type=Path)
    args = parser.parse_args()
    os.environ["PATH"] = f"{args.bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    files = sorted(p for p in args.corpus.rglob("*") if p.is_file() and p.name.endswith((".sql", ".sql.postgres")))
    counts: collections.Counter[str] = collections.Counter()
    misses, extra = [], []
    with tempfile.TemporaryDirectory(prefix="safemig-syntax-") as tmp:
        cluster = LocalCluster(Path(tmp) / "data", port=args.port)
        cluster.start()
        try:
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
                for path in files:
                    try:
                        text = path.read_text(encoding="utf-8")
                    except UnicodeDecodeError:
                        continue
                    for stmt in parse_sql(text).statements:
                        if stmt.error or stmt.node_type in SKIP:
                            continue
                        counts["statements"] += 1
                        flagged = rule.features(stmt, major)
                        body = stmt.text.rstrip().rstrip(";")
                        try:
                            conn.execute(f"DO $safemig_q$ BEGIN RETURN; {body}; END $safemig_q$")
                            rejected = False
                        except psycopg.Error as exc:
                            rejected = exc.sqlstate == "42601"
                            counts["other compile errors"] += not rejected
                        where = f"{path.relative_to(args.corpus)}:{stmt.line}"
                        if rejected and flagged:
                            counts["rejected and flagged"] += 1
                        elif rejected:
                            misses.append(where)
                        elif flagged:
                            extra.append(f"{where} {flagged}")
        finally:
            cluster.destroy()
    print(f"PostgreSQL {major}, {len(files)} files: {dict(counts)}")
    print(f"{len(misses)} rejected by the grammar and not flagged:", *misses[:50], sep="\n  ")
    print(f"{len(extra)} flagged, accepted by the grammar:", *extra[:50], sep="\n  ")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
