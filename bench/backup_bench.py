"""Benchmark `safemig backup` (placeholder: data preparation only, the measurements follow)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safemig.local.postgres import SUPERUSER, LocalCluster, find_pg_bin  # noqa: E402

BENCH_DIR = Path(os.environ.get("SAFEMIG_BENCH_DIR", "/var/tmp/safemig-bench"))
PGBENCH_SCALE = 70
MD5_ROWS = 3_000_000  # about 330 MB of hex text, compresses only ~1.8:1


def cluster() -> LocalCluster:
    """The bench's PostgreSQL server, kept under BENCH_DIR between runs."""
    return LocalCluster(BENCH_DIR / "data", server_options={"shared_buffers": "256MB", "max_wal_size": "4GB"}).start()


def _exists(pg: LocalCluster, name: str) -> bool:
    return pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"


def prepare(pg: LocalCluster, x4: bool) -> None:
    """Create the bench databases once (minutes); later runs reuse them."""
    wanted = [("bench_pgbench", PGBENCH_SCALE), ("bench_md5", None)]
    if x4:
        wanted.append(("bench_pgbench_x4", PGBENCH_SCALE * 4))
    for name, scale in wanted:
        if _exists(pg, name) and pg.psql("SELECT 1 FROM pg_stat_user_tables LIMIT 1", dbname=name).strip() == "1":
            continue
        pg.drop_database(name)
        pg.create_database(name)
        started = time.monotonic()
        if scale is not None:
            subprocess.run(
                [find_pg_bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", SUPERUSER, name],
                check=True, capture_output=True,
            )
        else:
            pg.psql(
                "CREATE TABLE random_text AS SELECT i AS id, md5(i::text) AS a, md5((i * 7)::text) AS b, "
                f"md5(random()::text) AS c FROM generate_series(1, {MD5_ROWS}) AS i",
                dbname=name,
            )
        size = pg.psql(f"SELECT pg_size_pretty(pg_database_size('{name}'))").strip()
        print(f"prepared {name}: {size} in {time.monotonic() - started:.0f}s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--x4", action="store_true")
    args = parser.parse_args()
    prepare(cluster(), args.x4)
