#!/usr/bin/env python3
"""Benchmark `safemig lint`: commit-hook latency and corpus throughput against squawk.

Whole-process timings only (what a developer or CI waits for), each figure the median
of several interleaved runs, with reference runs in the same script so the noise of a
shared machine shows up in both:

* latency: ``safemig lint one_file.sql`` (through the console script, through the
  Typer-free fast path, cold and with the result cache) against ``python -c pass``
  and ``python -c "import sqlglot"`` (the floor the issue names);
* throughput: a generated corpus of realistic migration files linted by ``safemig lint``
  (cold, no cache; then warm, from the cache) against ``squawk`` on the same files.

Usage: python3 bench/lint_bench.py [--files 4000] [--runs 7] [--latency-runs 15] [--keep DIR]
squawk comes from PyPI: pip install squawk-cli (see bench/README.md); it is not a safemig dependency.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = Path(sys.executable).resolve()  # the real interpreter, not a pyenv shim
BIN = PYTHON.parent
SAFEMIG = BIN / "safemig"
SQUAWK = shutil.which("squawk", path=str(BIN)) or shutil.which("squawk")
FAST_PATH = "import sys; from safemig.commands.lint import fast_main; sys.exit(fast_main(sys.argv[1:]))"

COLUMNS = ["name text NOT NULL", "description text", "amount numeric(12, 2) NOT NULL DEFAULT 0", "status text NOT NULL DEFAULT 'new'",
           "created_at timestamptz NOT NULL DEFAULT now()", "updated_at timestamptz", "payload jsonb", "quantity integer",
           "external_ref varchar(64)", "is_active boolean NOT NULL DEFAULT true", "owner_id uuid", "note text"]


def migration(rng: random.Random, n: int) -> str:
    """One migration of realistic shape: comments, a table or two, indexes, a function, alters, sometimes a danger."""
    table = f"{rng.choice(['orders', 'invoices', 'customers', 'stock', 'shipments', 'payments'])}_{n}"
    cols = ",\n    ".join(rng.sample(COLUMNS, rng.randint(4, 9)))
    parts = [f"-- Migration {n}: {table}\n-- Created by the benchmark generator.\n",
             f"CREATE TABLE IF NOT EXISTS {table} (\n    id uuid PRIMARY KEY,\n    tenant_id uuid NOT NULL,\n    {cols}\n);\n",
             f"CREATE INDEX IF NOT EXISTS idx_{table}_tenant ON {table} (tenant_id);\n",
             f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n",
             f"""DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = '{table}' AND policyname = '{table}_tenant') THEN
        CREATE POLICY {table}_tenant ON {table} USING (tenant_id = current_setting('app.tenant_id')::uuid);
    END IF;
END $$;
""",
             f"""CREATE OR REPLACE FUNCTION {table}_touch() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();  -- DROP TABLE here is not a statement
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
""",
             f"COMMENT ON TABLE {table} IS 'Generated table {n}; it''s fine';\n"]
    for _ in range(rng.randint(1, 4)):
        parts.append(f"ALTER TABLE {rng.choice(['orders', 'invoices', 'customers'])} ADD COLUMN IF NOT EXISTS c{n}_{rng.randint(0, 99)} text;\n")
    danger = rng.random()
    if danger < 0.1:
        parts.append(f"ALTER TABLE orders ALTER COLUMN c{n} SET NOT NULL;\n")
    elif danger < 0.2:
        parts.append(f"CREATE INDEX idx_orders_{n} ON orders (c{n});\n")
    elif danger < 0.25:
        parts.append(f"ALTER TABLE orders RENAME COLUMN c{n} TO d{n};\n")
    parts.append(f"INSERT INTO {table} (id, tenant_id, name) VALUES (gen_random_uuid(), gen_random_uuid(), 'seed {n}') ON CONFLICT DO NOTHING;\n")
    return "\n".join(parts)


def generate(directory: Path, count: int) -> list[Path]:
    rng = random.Random(20261124)
    (directory / "migrations").mkdir(parents=True)
    (directory / "safemig.toml").write_text('migrations_dir = "migrations"\n')
    files = []
    for n in range(1, count + 1):
        path = directory / "migrations" / f"{n:05d}_change_table_{n}.sql"
        path.write_text(migration(rng, n))
        files.append(path)
    return files


# With PYTHONDONTWRITEBYTECODE set, every module edited since its .pyc was written is compiled
# again on every run (measured: +25 ms on a cold `safemig lint FILE`): the children may write them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def seed_file(directory: Path) -> Path:
    """One large migration: 20,000 statements, mostly INSERTs with non-ASCII text and '--' inside
    strings, with findings all along (UPDATE without WHERE, DROP INDEX, unguarded CREATE POLICY).

    Guards against work that grows with the square of a file's size: a byte-offset
    conversion per statement (11.6 s instead of 1.5 s for the INSERTs alone), locating each
    finding's statement by a scan (30 s for 20,000 findings), rules looking back or ahead
    over every statement for each DROP or CREATE (6.6 s instead of 0.7 s).
    """
    def statement(i: int) -> str:
        if i % 10 == 1:
            return "UPDATE seed SET name = name;"
        if i % 10 == 2:
            return f"DROP INDEX IF EXISTS idx_seed_{i};"
        if i % 10 == 3:
            return f"CREATE POLICY seed_{i} ON seed USING (true);"
        return f"INSERT INTO seed (id, name) VALUES ({i}, 'n\u00e4me {i}; -- x') ON CONFLICT DO NOTHING;"

    rows = "\n".join(statement(i) for i in range(20000))
    path = directory / "seed" / "00001_seed_data.sql"
    path.parent.mkdir(exist_ok=True)
    path.write_text("CREATE TABLE IF NOT EXISTS seed (id bigint PRIMARY KEY, name text);\n" + rows + "\n", encoding="utf-8")
    return path


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def measure(commands: dict[str, list[str]], cwd: Path, runs: int, before=None) -> dict[str, float]:
    """Median seconds per command; runs are interleaved so machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            if before:
                before(name)
            samples[name].append(timed(cmd, cwd))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="generate the corpus here and keep it")
    args = parser.parse_args()
    if not SQUAWK:
        print("squawk not found: pip install squawk-cli", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="safemig-lint-bench-"))
    files = generate(work, args.files)
    sizes = [f.stat().st_size for f in files]
    print(f"corpus: {len(files)} files, median {statistics.median(sizes):.0f} bytes, "
          f"{sum(s.count(';') for s in (f.read_text() for f in files[:200])) / 200:.1f} statements/file; cores: {os.cpu_count()}")
    cache = work / ".safemig"

    def clear_cache(name: str) -> None:
        if "cold" in name or "squawk" in name:
            shutil.rmtree(cache, ignore_errors=True)

    one = str(files[0].relative_to(work))
    print(f"\nlatency, one file ({one}), median of {args.latency_runs}:")
    latency = measure({
        "python -c pass": [str(PYTHON), "-c", "pass"],
        "python -c 'import sqlglot'": [str(PYTHON), "-c", "import sqlglot"],
        "safemig lint FILE (cold)": [str(SAFEMIG), "lint", "--no-cache", one],
        "safemig lint FILE (cached)": [str(SAFEMIG), "lint", one],
        "fast path FILE (cold)": [str(PYTHON), "-c", FAST_PATH, "--no-cache", one],
        "fast path FILE (cached)": [str(PYTHON), "-c", FAST_PATH, one],
        "squawk FILE": [SQUAWK, one],
    }, work, args.latency_runs)
    floor = latency["python -c 'import sqlglot'"]
    for name, seconds in latency.items():
        print(f"  {name:<30} {seconds * 1000:7.0f} ms   {seconds / floor:5.2f}x the sqlglot-import floor")

    print(f"\nthroughput, {len(files)} files, median of {args.runs}:")
    throughput = measure({
        "squawk": [SQUAWK, "migrations/*.sql"],
        "safemig lint (cold, no cache)": [str(SAFEMIG), "lint", "--no-cache", "--format", "json", "migrations"],
        "safemig lint (cold, fills cache)": [str(SAFEMIG), "lint", "--format", "json", "migrations"],
        "safemig lint (warm cache)": [str(SAFEMIG), "lint", "--format", "json", "migrations"],
    }, work, args.runs, before=clear_cache)
    reference = throughput["squawk"]
    for name, seconds in throughput.items():
        print(f"  {name:<34} {seconds:7.2f} s   {seconds / reference:5.2f}x squawk")

    big = seed_file(work)
    print(f"\none large file ({big.stat().st_size / 1e6:.1f} MB, 20,000 statements, non-ASCII, 6,000 findings), "
          f"median of {args.runs}:")
    large = measure({
        "squawk": [SQUAWK, str(big.relative_to(work))],
        "safemig lint (cold)": [str(SAFEMIG), "lint", "--no-cache", "--format", "json", str(big.relative_to(work))],
    }, work, args.runs)
    for name, seconds in large.items():
        print(f"  {name:<34} {seconds:7.2f} s   {seconds / large['squawk']:5.2f}x squawk")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
