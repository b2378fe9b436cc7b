#!/usr/bin/env python3
"""Benchmark what reading the config costs the commit hook: `safemig lint FILE` with and without a safemig.toml.

Whole-process timings, interleaved, medians and minimums of several runs:

* reference: ``safemig lint FILE`` in a project without any config (the defaults);
* ``safemig lint FILE`` in the same project with a realistic ``safemig.toml`` (two envs with
  windows and timeouts, ``[backup]``, ``[lint]`` with an exception): the strict key check and the
  line lookup run, the env values are left to the commands that use an env;
* with ``--baseline DIR`` (a checkout of an older safemig, e.g. ``git archive main safemig | tar -x -C DIR``),
  the same two runs of that tree (through PYTHONPATH), to compare before and after a change.

Usage: python3 bench/config_bench.py [--runs 21] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = Path(sys.executable)

CONFIG = """\
migrations_dir = "docker/migrations"
rollbacks_dir = "rollbacks"

[envs.staging]
database_url = "${STAGING_DATABASE_URL}"
staging = "none"

[envs.prod]
database_url = "${DATABASE_URL}"
staging = "staging"
maintenance_window = ["Sat,Sun 02:00-04:00 Europe/Berlin", "Wed 22:00-23:00 Europe/Berlin"]
lock_timeout = "5s"
statement_timeout = "15min"
lock_retries = 3
retry_backoff = "2s"

[backup]
bucket = "acme-db-backups"
prefix = "app/"
compression = "zstd:3"

[lint]
house_rules = "rules"

[[lint.exceptions]]
paths = ["docker/migrations/001_*.sql"]
rules = ["index-without-concurrently"]
reason = "created before the tables held data"
"""


def run(cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [str(PYTHON), "-m", "safemig.cli", "lint", "--no-cache", "docker/migrations/001_t.sql"],
        cwd=cwd, env=env, capture_output=True, text=True,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"safemig lint failed in {cwd}: {proc.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--baseline", type=Path, help="an older safemig tree (its parent of safemig/)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    with tempfile.TemporaryDirectory() as tmp:
        bare, configured = Path(tmp) / "bare", Path(tmp) / "configured"
        for project in (bare, configured):
            (project / "docker" / "migrations").mkdir(parents=True)
            (project / "rules").mkdir()
            (project / "docker" / "migrations" / "001_t.sql").write_text("CREATE TABLE t (id int PRIMARY KEY);\n")
        (configured / "safemig.toml").write_text(CONFIG)
        trees = {"this tree": env}
        if args.baseline:
            trees["baseline"] = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        cases = [(tree, name, project) for tree in trees for name, project in (("no config", bare),
                                                                                 ("safemig.toml", configured))]
        for tree, _, project in cases:  # warm-up: byte-code written, files in the page cache
            run(project, trees[tree])
        times: dict[tuple[str, str], list[float]] = {(tree, name): [] for tree, name, _ in cases}
        for _ in range(args.runs):
            for tree, name, project in cases:
                times[(tree, name)].append(run(project, trees[tree]))
    for tree in trees:
        ref = statistics.median(times[(tree, "no config")])
        for name in ("no config", "safemig.toml"):
            t = times[(tree, name)]
            print(f"{tree:>10}  {name:<13} median {statistics.median(t) * 1000:6.1f} ms  "
                  f"min {min(t) * 1000:6.1f} ms  ratio {statistics.median(t) / ref:.3f}x")


if __name__ == "__main__":
    main()
