"""Benchmark what the deploy pipeline's safety costs: `safemig deploy` vs `safemig migrate run`.

Run:  python3 bench/deploy_bench.py [--runs 5] [--migrations 20] [--rows 20000]

Generates ``--migrations`` small migrations, each with a rollback script, and a seed
table of ``--rows`` rows (so the backup has something to dump), starts two private
PostgreSQL clusters (prod, staging) and moto's S3 server, and for every run creates
fresh databases and times, as whole processes:

* ``safemig migrate run --env prod``: the reference, the bare apply of the same files;
* ``safemig deploy --env prod``: all six gates (preflight, lint, verified backup to S3,
  staging rehearsal: apply + rollback + re-apply + second run, production apply, record).

The two alternate within each run so machine noise hits both alike. The script prints the
medians, the ratio deploy / migrate, and the median time of each gate taken from the deploy
records; results go to ``bench/results/deploy_bench.json``. There is no target ratio: the
deploy does about four times the database work of a plain apply plus a backup, by design;
the figure says what that costs.
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


def generate(root: Path, count: int) -> None:
    """``count`` lint-clean migrations with rollback scripts, in sqlx's layout."""
    migrations, rollbacks = root / "docker" / "migrations", root / "rollbacks"
    migrations.mkdir(parents=True)
    rollbacks.mkdir()
    for i in range(1, count + 1):
        (migrations / f"{i:03d}_create_table_{i}.sql").write_text(
            f"-- Migration: create table {i}\n"
            f"CREATE TABLE IF NOT EXISTS bench_{i} (\n"
            "    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            "    tenant_id UUID NOT NULL,\n"
            "    name TEXT NOT NULL DEFAULT ''\n"
            ");\n"
            f"CREATE INDEX IF NOT EXISTS idx_bench_{i}_tenant ON bench_{i} (tenant_id);\n",
            encoding="utf-8",
        )
        (rollbacks / f"{i:03d}_rollback_table_{i}.sql").write_text(f"DROP TABLE IF EXISTS bench_{i};\n", encoding="utf-8")


CONFIG = """\
[envs.staging]
database_url = "${STAGING_URL}"
staging = "none"

[envs.prod]
database_url = "${PROD_URL}"
staging = "staging"

[backup]
bucket = "deploy-bench"
prefix = "bench/"
"""


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[2:])} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20000, help="rows in a seed table on prod (the backup dumps them)")
    args = parser.parse_args()

    import logging

    import boto3

    from safemig.local.s3 import start_local_s3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise

    base = Path(tempfile.mkdtemp(prefix="safemig-deploy-bench-"))
    project = base / "project"
    generate(project, args.migrations)
    (project / "safemig.toml").write_text(CONFIG, encoding="utf-8")
    prod, staging = LocalCluster(base / "prod"), LocalCluster(base / "staging")
    s3 = start_local_s3()
    results: dict[str, list[float]] = {"migrate": [], "deploy": []}
    gates: dict[str, list[float]] = {}
    try:
        prod.start()
        staging.start()
        boto3.client("s3", endpoint_url=s3.endpoint_url, **{
            "aws_access_key_id": s3.env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": s3.env["AWS_SECRET_ACCESS_KEY"],
            "region_name": s3.env["AWS_DEFAULT_REGION"],
        }).create_bucket(Bucket="deploy-bench")
        cmd = [sys.executable, "-m", "safemig.cli"]
        for run in range(1, args.runs + 1):
            for kind in ("migrate", "deploy") if run % 2 else ("deploy", "migrate"):
                name = f"{kind}_{run}"
                prod_url = prod.create_database(name)
                prod.psql(
                    f"CREATE TABLE seed AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, {args.rows}) g",
                    dbname=name,
                )
                env = {**os.environ, **s3.env, "PROD_URL": prod_url, "STAGING_URL": staging.create_database(name)}
                env.pop("PYTHONDONTWRITEBYTECODE", None)  # else edited modules are compiled again on every run
                argv = cmd + (["migrate", "run", "--env", "prod"] if kind == "migrate" else ["deploy", "--env", "prod"])
                results[kind].append(timed(argv, project, env))
                prod.drop_database(name)
                staging.drop_database(name)
            print(f"run {run}: migrate {results['migrate'][-1]:.3f}s  deploy {results['deploy'][-1]:.3f}s", flush=True)
        for record in sorted((project / ".safemig" / "deploys").glob("*.json")):
            for gate in json.loads(record.read_text())["gates"]:
                gates.setdefault(gate["name"], []).append(gate["duration_s"])
    finally:
        s3.stop()
        prod.destroy()
        staging.destroy()
        shutil.rmtree(base, ignore_errors=True)

    migrate, deploy = statistics.median(results["migrate"]), statistics.median(results["deploy"])
    print(f"\n{args.migrations} migrations, {args.rows} seed rows, {args.runs} runs (medians)")
    print(f"  safemig migrate run : {migrate:.3f} s")
    print(f"  safemig deploy      : {deploy:.3f} s   ({deploy / migrate:.2f}x)")
    for name, values in gates.items():
        print(f"    {name:<11} {statistics.median(values):.3f} s")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "deploy_bench.json").write_text(json.dumps({
        "migrations": args.migrations, "rows": args.rows, "runs": args.runs,
        "migrate_s": results["migrate"], "deploy_s": results["deploy"],
        "gates_median_s": {k: statistics.median(v) for k, v in gates.items()},
        "ratio": deploy / migrate,
    }, indent=2))


if __name__ == "__main__":
    main()
