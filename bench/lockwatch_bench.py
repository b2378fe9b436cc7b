"""Benchmark gate 5's lock safety: what LockWatch and ProductionObserver add per statement.

Run:  python3 bench/lockwatch_bench.py [--runs 7] [--statements 1000]

Applies one migration of ``--statements`` statements (alternating ``ALTER TABLE t ADD
COLUMN`` and ``UPDATE t``: the first asks for ACCESS EXCLUSIVE, so the observer reads
``pg_locks`` from the second connection before each of them; the second needs no look) with
the engine on a private cluster (port 21300-21399, loopback), three ways, alternating
within each run on fresh databases:

* ``plain``     the Migrator with no observer (the reference);
* ``watch``     plus a :class:`~safemig.migrations.blockers.LockWatch` armed around every statement;
* ``gate5``     plus the deploy's :class:`~safemig.deploy.observers.ProductionObserver`
                (lock prediction from the parse tree, the pre-statement ``pg_locks`` read).

Prints the medians, the per-statement overhead and the ratios against ``plain``, and writes
``bench/results/lockwatch_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from safemig.deploy.gates import GateContext, GateResult, Reporter  # noqa: E402
from safemig.deploy.observers import ProductionObserver  # noqa: E402
from safemig.local.postgres import LocalCluster  # noqa: E402
from safemig.migrations.blockers import LockWatch  # noqa: E402
from safemig.migrations.engine import ApplySettings, Migrator  # noqa: E402
from safemig.migrations.files import discover  # noqa: E402


def _migration(directory: Path, statements: int):
    lines = ["CREATE TABLE IF NOT EXISTS t (id int);", "INSERT INTO t SELECT generate_series(1, 100);"]
    for i in range(statements // 2):
        lines.append(f"ALTER TABLE t ADD COLUMN c{i} int;")
        lines.append(f"UPDATE t SET c{i} = id WHERE id = {i % 100};")
    (directory / "001_many.sql").write_text("\n".join(lines) + "\n")
    return discover(directory)


def _run(url: str, migrations, rollbacks: Path, kind: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        if kind == "plain":
            Migrator(conn, migrations, rollbacks_dir=rollbacks, settings=ApplySettings(lock_timeout="5s")).run()
        else:
            with LockWatch(url) as watch:
                observer = None
                if kind == "gate5":
                    gate = GateContext(GateResult("production", "Production apply"), Reporter())
                    pid = conn.info.backend_pid
                    observer = ProductionObserver(
                        Reporter(), "bench", gate, watch=watch, pid=pid, lock_timeout="5s", lock_retries=3
                    )
                Migrator(
                    conn, migrations, rollbacks_dir=rollbacks, settings=ApplySettings(lock_timeout="5s"),
                    observer=observer, lock_watch=watch,
                ).run()  # fmt: skip
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--statements", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="safemig-lockwatch-bench-"))
    (work / "m").mkdir()
    (work / "r").mkdir()
    migrations = _migration(work / "m", args.statements)
    cluster = LocalCluster(work / "data", port=21317)
    cluster.start()
    kinds = ("plain", "watch", "gate5")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for run in range(args.runs):
            for kind in kinds if run % 2 == 0 else tuple(reversed(kinds)):
                url = cluster.create_database(f"b_{kind}_{run}")
                times[kind].append(_run(url, migrations, work / "r", kind))
    finally:
        cluster.destroy()
    medians = {k: statistics.median(v) for k, v in times.items()}
    statements = args.statements + 2
    result = {
        "statements": statements,
        "runs": args.runs,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "ratio": {k: round(v / medians["plain"], 3) for k, v in medians.items()},
        "overhead_us_per_statement": {
            k: round((v - medians["plain"]) / statements * 1e6, 1) for k, v in medians.items() if k != "plain"
        },
    }
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "lockwatch_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
