"""Benchmark `safemig migrate run` against psql applying the same files.

Run:  python3 bench/migrate_bench.py [--runs 5] [--migrations 200]

Generates ``--migrations`` small migrations (a table with an identity key and
tenant_id, an index, a few rows: three statements each) into a temporary directory, and
for every run creates a fresh database on a private PostgreSQL cluster (started by this
script, deleted at the end) and times, as whole processes:

* ``psql -f plan.sql``: the reference, one psql session where ``plan.sql`` wraps each
  file in ``BEGIN; \\i file; COMMIT;``, as a team applying migrations by hand would;
* ``safemig migrate run``: the real command (Python start-up, discovery, checksums,
  the advisory lock, the ledger checks, each migration and its ``_sqlx_migrations`` row
  in one transaction).

Both connect over TCP with a password. The two commands alternate within each run so
that machine noise hits both alike; the script prints the medians and the ratio
safemig / psql (target: at most 1.3x). Results are also written to
``bench/results/migrate_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safemig.local.postgres import LocalCluster, find_pg_bin  # noqa: E402

TARGET_RATIO = 1.3


def generate(directory: Path, count: int) -> list[Path]:
    """``count`` small, realistic migrations in sqlx's layout (zero-padded versions)."""
    directory.mkdir(parents=True)
    width = max(3, len(str(count)))
    paths = []
    for i in range(1, count + 1):
        path = directory / f"{i:0{width}d}_create_table_{i}.sql"
        path.write_text(
            f"-- Migration: create table {i}\n"
            f"CREATE TABLE IF NOT EXISTS bench_{i} (\n"
            "    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            "    tenant_id UUID NOT NULL,\n"
            "    name TEXT NOT NULL DEFAULT '',\n"
            "    created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n"
            ");\n"
            f"CREATE INDEX IF NOT EXISTS idx_bench_{i}_tenant ON bench_{i} (tenant_id);\n"
            f"INSERT INTO bench_{i} (tenant_id, name) SELECT gen_random_uuid(), 'row ' || g FROM generate_series(1, 5) AS g;\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def psql_plan(paths: list[Path], plan: Path) -> None:
    """One psql script: each file in its own transaction, stop at the first error."""
    lines = []
    for path in paths:
        lines += ["BEGIN;", f"\\i {path}", "COMMIT;"]
    plan.write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{Path(args[0]).name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--migrations", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="safemig-migrate-bench-"))
    cluster = LocalCluster(work / "data")
    try:
        cluster.start()
        paths = generate(work / "migrations", args.migrations)
        plan = work / "plan.sql"
        psql_plan(paths, plan)
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # else edited modules are compiled again on every run
        env.pop("DATABASE_URL", None)
        psql = find_pg_bin("psql")
        times: dict[str, list[float]] = {"psql": [], "safemig": []}
        for run in range(args.runs):
            order = ["psql", "safemig"] if run % 2 == 0 else ["safemig", "psql"]
            for tool in order:
                name = f"bench_{tool}_{run}"
                url = cluster.create_database(name)
                if tool == "psql":
                    cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(plan)]
                else:
                    cmd = [sys.executable, "-m", "safemig.cli", "migrate", "run", "--database-url", url, "--source", str(work / "migrations")]
                times[tool].append(timed(cmd, env))
                tables = cluster.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench\\_%'", dbname=name).strip()
                if int(tables) != args.migrations:
                    raise SystemExit(f"{tool} created {tables} tables, expected {args.migrations}")
                cluster.drop_database(name)
        psql_median = statistics.median(times["psql"])
        safemig_median = statistics.median(times["safemig"])
        ratio = safemig_median / psql_median
        print(f"{args.migrations} migrations x 3 statements, {args.runs} runs each, fresh database per run")
        print(f"psql -f (BEGIN/COMMIT per file)  median {psql_median:.3f}s   runs {' '.join(f'{t:.3f}' for t in times['psql'])}")
        print(f"safemig migrate run              median {safemig_median:.3f}s   runs {' '.join(f'{t:.3f}' for t in times['safemig'])}")
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"ratio safemig / psql: {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
        results = REPO / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / "migrate_bench.json").write_text(
            json.dumps({"migrations": args.migrations, "runs": times, "psql_median": psql_median,
                        "safemig_median": safemig_median, "ratio": ratio}, indent=2) + "\n"
        )
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
