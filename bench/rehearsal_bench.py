"""Benchmark the restore-mode rehearsal: what rehearsing on prod's own data costs.

Run:  python3 bench/rehearsal_bench.py [--runs 3] [--rows 500000] [--other-rows 500000]

Starts two private PostgreSQL clusters (prod, and the staging server the rehearsal
restores on; ports 21200-21299) and moto's S3 server. prod holds ``orders`` (``--rows``
rows, the table the pending migrations touch), ``customers`` (its FK parent) and
``audit_log`` (``--other-rows`` rows nothing touches). Two pending migrations: an added
column with a CHECK constraint added NOT VALID and validated (a full scan of ``orders``),
and an index built CONCURRENTLY. Each run, on a fresh copy of prod, times:

1. **the rehearsal gate** (gate 4 of ``safemig deploy --env prod``, from the deploy record):
   scratch database created on the staging server, the backup streamed from S3 into
   pg_restore (schema + the rows of ``orders`` and ``customers``, chosen on the archive's
   TOC), SHA-256 checked, then apply, rollback with schema diff, re-apply, second run, drop;
   **against** the reference: ``createdb`` + ``pg_restore -L`` of the same selected TOC
   entries from a local file + ``dropdb`` (no S3, no rehearsal). Goal: ≤ 1.3x.
2. **the whole deploy** (``safemig deploy --env prod``, a process) **against**
   ``safemig migrate run --env prod`` of the same pending set on another fresh copy.

Results: printed (medians) and ``bench/results/rehearsal_bench.json``.
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

from safemig.local.postgres import LocalCluster  # noqa: E402

MIGRATIONS = {
    "001_orders_note.sql": (
        "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n"
        "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_total_positive;\n"
        "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\n"
        "-- safemig:ignore validate-in-same-transaction -- the bench wants a full scan of orders\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;\n"
    ),
    "002_orders_index.sql": (
        "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_customer ON orders (customer_id);\n"
    ),
}
ROLLBACKS = {
    "001_rollback_orders_note.sql": (
        "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_total_positive;\nALTER TABLE orders DROP "
        "COLUMN IF EXISTS note;\n"
    ),
    "002_rollback_orders_index.sql": "-- no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS idx_orders_customer;\n",
}

CONFIG = """\
[envs.staging]
database_url = "${STAGING_URL}"
staging = "none"

[envs.prod]
database_url = "${PROD_URL}"
staging = "staging"
rehearsal = "restore"

[backup]
bucket = "rehearsal-bench"
prefix = "bench/"
"""

SEED = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id),
                     total numeric NOT NULL,
                     placed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), payload text);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 1000) g;
INSERT INTO orders (id, customer_id, total) SELECT g, 1 + g % 1000, g % 500 FROM generate_series(1, {rows}) g;
INSERT INTO audit_log (id, payload) SELECT g, md5(g::text) FROM generate_series(1, {other}) g;
ANALYZE;
"""


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(args[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=500_000, help="rows of orders, the touched table")
    parser.add_argument("--other-rows", type=int, default=500_000, help="rows of audit_log, which nothing touches")
    parser.add_argument("--port", type=int, default=21210, help="prod's port; staging's is the next one")
    args = parser.parse_args()

    import logging

    import boto3
    import psycopg

    from safemig.backup.pgdump import child_env, conninfo_without_password
    from safemig.deploy.scope import migration_targets, resolve_scope
    from safemig.local.s3 import start_local_s3
    from safemig.migrations.files import discover

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    base = Path(tempfile.mkdtemp(prefix="safemig-rehearsal-bench-"))
    project = base / "project"
    (project / "docker" / "migrations").mkdir(parents=True)
    (project / "rollbacks").mkdir()
    for name, sql in MIGRATIONS.items():
        (project / "docker" / "migrations" / name).write_text(sql)
    for name, sql in ROLLBACKS.items():
        (project / "rollbacks" / name).write_text(sql)
    (project / "safemig.toml").write_text(CONFIG)
    prod, staging = LocalCluster(base / "prod", port=args.port), LocalCluster(base / "staging", port=args.port + 1)
    s3 = start_local_s3()
    results: dict[str, list[float]] = {"rehearsal_gate": [], "pg_restore_local": [], "deploy": [], "migrate": []}
    restore_part: list[float] = []
    phases: list[dict[str, float]] = []
    try:
        prod.start()
        staging.start()
        boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=s3.env["AWS_SECRET_ACCESS_KEY"],
            region_name=s3.env["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket="rehearsal-bench")
        seed_url = prod.create_database("seed")
        with psycopg.connect(seed_url, autocommit=True) as conn:
            conn.execute(SEED.format(rows=args.rows, other=args.other_rows))
            scope = resolve_scope(conn, migration_targets(discover(project / "docker" / "migrations")))
        print(f"scope: {sorted(scope.relations)}", flush=True)
        # the reference's input: the same archive format on local disk, and the same TOC selection
        dump = base / "prod.dump"
        conninfo, password = conninfo_without_password(seed_url)
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), f"--dbname={conninfo}"], check=True, env=child_env(password))
        toc = subprocess.run(
            ["pg_restore", "-l", str(dump)], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        listing = base / "selected.list"
        listing.write_text("".join(line + "\n" for line in scope.select(toc)))
        staging_admin = staging.url("postgres")
        cmd = [sys.executable, "-m", "safemig.cli"]
        for run in range(1, args.runs + 1):
            # reference: createdb + pg_restore of the selected entries from the local file + dropdb
            target = f"ref_{run}"
            target_info, target_pw = conninfo_without_password(staging.url(target))
            start = time.perf_counter()
            with psycopg.connect(staging_admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{target}" TEMPLATE template0')
            subprocess.run(
                [
                    "pg_restore",
                    "--exit-on-error",
                    "--single-transaction",
                    "--no-owner",
                    "--no-privileges",
                    f"--use-list={listing}",
                    f"--dbname={target_info}",
                    str(dump),
                ],
                check=True,
                env=child_env(target_pw),
            )
            with psycopg.connect(staging_admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{target}" WITH (FORCE)')
            results["pg_restore_local"].append(time.perf_counter() - start)

            for kind in ("deploy", "migrate") if run % 2 else ("migrate", "deploy"):
                name = f"{kind}_{run}"
                with psycopg.connect(prod.url("postgres"), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE seed')
                env = {**os.environ, **s3.env, "PROD_URL": prod.url(name), "STAGING_URL": staging.url("postgres")}
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                argv = cmd + (["deploy", "--env", "prod"] if kind == "deploy" else ["migrate", "run", "--env", "prod", "--yes"])
                results[kind].append(timed(argv, project, env))
                prod.drop_database(name)
            record = json.loads(sorted((project / ".safemig" / "deploys").glob("*.json"))[-1].read_text())
            gate = next(g for g in record["gates"] if g["name"] == "staging")
            results["rehearsal_gate"].append(gate["duration_s"])
            restore_part.append(record["rehearsal"]["ran_on"]["restore_s"])
            print(
                f"  restore mode {record['rehearsal']['ran_on'].get('restore_mode')}, prepare"
                f" {record['rehearsal']['ran_on'].get('restore_prepare_s')} s",
                flush=True,
            )
            phases.append(record["rehearsal"]["phases_s"])
            print(
                f"run {run}: rehearsal gate {results['rehearsal_gate'][-1]:.3f}s (restore {restore_part[-1]:.3f}s)"
                f"  pg_restore local {results['pg_restore_local'][-1]:.3f}s"
                f"  deploy {results['deploy'][-1]:.3f}s  migrate run {results['migrate'][-1]:.3f}s",
                flush=True,
            )
    finally:
        s3.stop()
        prod.destroy()
        staging.destroy()
        shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\norders {args.rows} rows (touched), audit_log {args.other_rows} rows (not), {args.runs} runs (medians)")
    print(f"  pg_restore -L, local file (reference) : {med['pg_restore_local']:.3f} s")
    print(
        f"  rehearsal gate (restore from S3 + rehearsal) : {med['rehearsal_gate']:.3f} s"
        f"   ({med['rehearsal_gate'] / med['pg_restore_local']:.2f}x; restore part "
        f"{statistics.median(restore_part):.3f} s)"
    )
    for phase in phases[0] if phases else {}:
        print(f"      {phase:<20} {statistics.median(p.get(phase, 0.0) for p in phases):.3f} s")
    print(f"  safemig migrate run (reference)       : {med['migrate']:.3f} s")
    print(f"  safemig deploy (all gates)            : {med['deploy']:.3f} s   ({med['deploy'] / med['migrate']:.2f}x)")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "rehearsal_bench.json").write_text(
        json.dumps(
            {
                "rows": args.rows,
                "other_rows": args.other_rows,
                "runs": args.runs,
                **{f"{k}_s": v for k, v in results.items()},
                "restore_part_s": restore_part,
                "rehearsal_phases_s": phases,
                "rehearsal_ratio": med["rehearsal_gate"] / med["pg_restore_local"],
                "deploy_ratio": med["deploy"] / med["migrate"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
