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

With ``--corpus DIR`` (or ``SAFEMIG_CORPUS``) it measures the real-migration corpus instead
(3,947 files from 20 projects, recipe in ../shared/corpus/): CPU time (user + sys of the
process and its workers) and wall time of squawk and of ``safemig lint`` cold and with a warm
cache, on the same ``*.sql`` files, interleaved; the one-file hook latency on one of its files;
and, with ``--baseline SRC`` (a directory holding an older ``safemig`` package, e.g. from
``git archive <commit> safemig``), the same latency for that version, so "no worse than
before" is measured in the same run.

Usage: python3 bench/lint_bench.py [--files 4000] [--runs 7] [--latency-runs 15] [--keep DIR]
       python3 bench/lint_bench.py --corpus DIR [--baseline SRC] [--runs 5]
squawk comes from PyPI: pip install squawk-cli (see bench/README.md); it is not a safemig dependency.
"""

from __future__ import annotations

import argparse
import os
import resource
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
SAFEMIG = Path(shutil.which("safemig", path=str(Path(sys.executable).parent)) or BIN / "safemig")  # the venv's
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


def timed_cpu(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole process, its workers included (they are waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def corpus_main(args) -> int:
    """The real corpus: CPU and wall time against squawk, and the one-file hook latency (see the docstring)."""
    corpus = args.corpus.resolve()
    files = sorted(str(p) for p in corpus.rglob("*.sql"))
    work = Path(tempfile.mkdtemp(prefix="safemig-lint-corpus-"))
    listing = work / "files.txt"
    listing.write_text("\n".join(files))
    cache = work / ".safemig"
    print(f"corpus: {corpus}, {len(files)} *.sql files, {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB; "
          f"cores: {os.cpu_count()}; squawk {subprocess.run([SQUAWK, '--version'], capture_output=True, text=True).stdout.strip()}")
    commands = {
        "squawk": [SQUAWK, *files],
        "safemig lint (cold, no cache)": [str(SAFEMIG), "lint", "--no-cache", "--format", "json", str(corpus)],
        "safemig lint (warm cache)": [str(SAFEMIG), "lint", "--format", "json", str(corpus)],
    }
    envs: dict[str, dict[str, str] | None] = dict.fromkeys(commands)
    if args.baseline:  # the older version on the same files, in the same run
        cli = "import sys; from safemig.cli import main; sys.exit(main())"
        base_env = {**ENV, "PYTHONPATH": str(args.baseline.resolve())}
        for name in ("cold, no cache", "warm cache"):
            flags = ["--no-cache"] if "no cache" in name else []
            commands[f"baseline ({name})"] = [sys.executable, "-c", cli, "lint", *flags, "--format", "json", str(corpus)]
            envs[f"baseline ({name})"] = base_env
    for name in ("safemig lint (warm cache)", "baseline (warm cache)"):  # fill the caches once
        if name in commands:
            subprocess.run(commands[name], cwd=work, env=envs[name] or ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            samples[name].append(timed_cpu(cmd, work, envs[name]))
    print(f"\nwhole corpus, median of {args.runs} (CPU = user + sys, workers included):")
    squawk_cpu = statistics.median(c for _, c in samples["squawk"])
    squawk_wall = statistics.median(w for w, _ in samples["squawk"])
    for name, values in samples.items():
        cpu, wall = statistics.median(c for _, c in values), statistics.median(w for w, _ in values)
        print(f"  {name:<32} CPU {cpu:6.2f} s ({cpu / squawk_cpu:5.2f}x squawk)   wall {wall:6.2f} s "
              f"({wall / squawk_wall:5.2f}x)")
    shutil.rmtree(cache, ignore_errors=True)

    py = sys.executable  # the venv's interpreter: the resolved one may not see safemig's dependencies
    for probe in ([py, "-c", "import safemig, pglast"], [py, "-c", "import safemig, pglast"]):
        subprocess.run(probe, check=True, cwd=work, env=ENV)  # a broken command would time as fast as a crash
    one = next(f for f in files if "lemmy" in f and f.endswith("up.sql"))
    print(f"\nlatency, one file ({Path(one).relative_to(corpus)}), median of {args.latency_runs}:")
    latency = {
        "python -c pass": ([py, "-c", "pass"], None),
        "fast path FILE (cold)": ([py, "-c", FAST_PATH, "--no-cache", one], None),
        "safemig lint FILE (cold)": ([str(SAFEMIG), "lint", "--no-cache", one], None),
        "safemig lint FILE (cached)": ([str(SAFEMIG), "lint", one], None),
        "squawk FILE": ([SQUAWK, one], None),
    }
    if args.baseline:
        base_env = {**ENV, "PYTHONPATH": str(args.baseline.resolve())}
        cli = "import sys; from safemig.cli import main; sys.exit(main())"
        subprocess.run([py, "-c", "import safemig, sys; assert safemig.__file__.startswith(sys.argv[1])",
                        str(args.baseline.resolve())], check=True, cwd=work, env=base_env)
        latency["baseline: fast path FILE (cold)"] = ([py, "-c", FAST_PATH, "--no-cache", one], base_env)
        latency["baseline: fast path FILE (cached)"] = ([py, "-c", FAST_PATH, one], base_env)
        latency["baseline: CLI FILE (cold)"] = ([py, "-c", cli, "lint", "--no-cache", one], base_env)
        latency["now: fast path FILE (cached)"] = ([py, "-c", FAST_PATH, one], None)
        latency["now: CLI FILE (cold)"] = ([py, "-c", cli, "lint", "--no-cache", one], None)
    for name, (cmd, env) in latency.items():  # each must really lint (exit 0 or 1), not crash
        code = subprocess.run(cmd, cwd=work, env=env, capture_output=True).returncode
        assert code in (0, 1), f"{name}: exit {code}"
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in latency}
    for _ in range(args.latency_runs):
        for name, (cmd, env) in latency.items():
            timings[name].append(timed_cpu(cmd, work, env))
    for name, values in timings.items():  # CPU is the steadier figure on a loaded machine
        wall, cpu = statistics.median(w for w, _ in values), statistics.median(c for _, c in values)
        print(f"  {name:<40} wall {wall * 1000:6.0f} ms   CPU {cpu * 1000:6.0f} ms")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="generate the corpus here and keep it")
    parser.add_argument("--corpus", type=Path, default=Path(os.environ["SAFEMIG_CORPUS"])
                        if os.environ.get("SAFEMIG_CORPUS") else None, help="measure this real corpus instead")
    parser.add_argument("--baseline", type=Path, help="a directory with an older safemig package, for latency")
    args = parser.parse_args()
    if not SQUAWK:
        print("squawk not found: pip install squawk-cli", file=sys.stderr)
        return 2
    if args.corpus is not None:
        return corpus_main(args)
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
