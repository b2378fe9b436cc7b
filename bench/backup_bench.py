"""Benchmark `safemig backup`: is pg_dump the limit, and is memory bounded?

Run:  python3 bench/backup_bench.py [--runs 3] [--x4] [--skip-levels]

What it measures, as whole-process wall times (median of --runs), in one script so the
ratios compare runs on the same machine at the same moment:

* ``pg_dump -Fc -Z L > /dev/null``      the reference: pg_dump's own speed;
* ``safemig backup --env bench``        the real command (dump, upload, read-back verification),
                                        also split into dump+upload and verification, with the
                                        peak RSS of the safemig process (VmHWM from /proc);
* ``pg_dump -Fc -Z L | aws s3 cp - s3://..``  the shell one-liner teams use today;
* ``multipart`` / ``transfer_manager``  the streaming upload alone (no verification) with
                                        safemig's multipart code vs boto3's ``upload_fileobj``
                                        (its input raising at EOF unless pg_dump exited 0);
* ``multipart_checked``                 the same plus the in-stream ``pg_restore -f /dev/null``
                                        archive check safemig runs (its cost, isolated);

Beside each wall time, the CPU time (user+sys) of the variant's whole process tree (pg_dump,
aws or safemig, and safemig's pg_restore/pg_dumpall children) and of the S3 server (moto, in
this process's threads): on a shared machine wall times are noisy, CPU seconds much less so.
``--also-tree DIR`` runs safemig, the deploy path and the restore a second time from another checkout
(``PYTHONPATH=DIR``, e.g. ``git worktree add /tmp/base main``), interleaved: an A/B of two
versions in the same run.

on two databases: ``bench_pgbench`` (``pgbench -i -s 70``, 1 GB, compresses ~36:1) and
``bench_md5`` (3M rows of md5 hex text, ~390 MB, compresses ~1.8:1), plus a pg_dump
compression-level sweep and, with ``--x4``, the peak memory at 4x the size
(``bench_pgbench_x4``, ``pgbench -s 280``).

The databases live in a PostgreSQL cluster under ``/var/tmp/safemig-bench`` (override with
SAFEMIG_BENCH_DIR), built on the first run (about a minute, more with --x4) and reused
afterwards; delete the directory to rebuild. S3 is moto's HTTP server, run by this script
in its own thread, so its memory is not counted in safemig's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# --also-tree: the deploy-path child runs this script with the other checkout's safemig
sys.path.insert(0, os.environ.get("SAFEMIG_BENCH_TREE") or str(REPO))

from safemig.local.postgres import SUPERUSER, LocalCluster, find_pg_bin  # noqa: E402

BENCH_DIR = Path(os.environ.get("SAFEMIG_BENCH_DIR", "/var/tmp/safemig-bench"))
PGBENCH_SCALE = 70
MD5_ROWS = 3_000_000
BUCKET = "bench-backups"
PART_MB = 8
CONCURRENCY = 4
BENCH_PG_PORT = int(os.environ.get("SAFEMIG_BENCH_PG_PORT", "21510"))  # loopback only
BENCH_S3_PORT = int(os.environ.get("SAFEMIG_BENCH_S3_PORT", "21511"))


def cluster() -> LocalCluster:
    """The bench's PostgreSQL server, kept under BENCH_DIR between runs."""
    return LocalCluster(
        BENCH_DIR / "data", port=BENCH_PG_PORT, server_options={"shared_buffers": "256MB", "max_wal_size": "4GB"}
    ).start()


def _exists(pg: LocalCluster, name: str) -> bool:
    return pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"


def prepare(pg: LocalCluster, x4: bool) -> None:
    """Create the bench databases once; later runs reuse them."""
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
                [
                    find_pg_bin("pgbench"),
                    "-i",
                    "-q",
                    "-s",
                    str(scale),
                    "-h",
                    str(pg.socket_dir),
                    "-p",
                    str(pg.port),
                    "-U",
                    SUPERUSER,
                    name,
                ],
                check=True,
                capture_output=True,
            )
        else:
            pg.psql(
                "CREATE TABLE random_text AS SELECT i AS id, md5(i::text) AS a, md5((i * 7)::text) AS b, "
                f"md5(random()::text) AS c FROM generate_series(1, {MD5_ROWS}) AS i",
                dbname=name,
            )
        pg.psql("VACUUM ANALYZE", dbname=name)
        print(f"prepared {name}: {db_size(pg, name)} in {time.monotonic() - started:.0f}s", flush=True)


def db_size(pg: LocalCluster, name: str) -> str:
    return pg.psql(f"SELECT pg_size_pretty(pg_database_size('{name}'))").strip()


# -- measuring -------------------------------------------------------------------------


def run_timed(
    args: list[str] | str, *, env: dict[str, str], cwd: Path | None = None, shell: bool = False
) -> tuple[float, int, str]:
    """Wall time, peak RSS in KiB (VmHWM of the process itself, not its children) and stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        shell=shell,
        executable="/bin/bash" if shell else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    reader.join()
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {args}\n{err[-2000:]}")
    return elapsed, peak, out[0] if out else ""


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values)


def child_upload(mode: str, conninfo: str, compression: str, key: str) -> None:
    """``--child``: stream pg_dump into S3 with one uploader, no verification (for the comparison)."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    from safemig.backup.pgdump import ChildProcess, child_env, enlarge_pipe
    from safemig.backup.upload import stream_to_s3

    pg_dump = find_pg_bin("pg_dump")
    dump = ChildProcess([pg_dump, "-Fc", f"-Z{compression}", f"--dbname={conninfo}"], env=child_env(None), stdout=-1)
    enlarge_pipe(dump.stdout.fileno())
    client = boto3.client("s3")

    def finish() -> None:
        problem = dump.failure("dumping")
        if problem:
            raise RuntimeError(problem)

    if mode in ("multipart", "multipart_checked"):
        on_chunk = None
        if mode == "multipart_checked":  # what safemig adds while streaming: pg_restore reading every block
            from safemig.backup.pgdump import pick_binary
            from safemig.backup.verify import ArchiveCheck

            check = ArchiveCheck(pick_binary("pg_restore", 0, purpose="check"))
            on_chunk = check.feed
            dump_done = finish

            def finish() -> None:
                dump_done()
                check.conclude("bench")

        stream_to_s3(
            client,
            dump.stdout,
            bucket=BUCKET,
            key=key,
            part_size=PART_MB << 20,
            concurrency=CONCURRENCY,
            extra_args={},
            finish=finish,
            on_chunk=on_chunk,
        )
        return

    class CheckedReader:
        """pg_dump's stdout whose end raises unless pg_dump exited 0 (so the manager aborts)."""

        def read(self, n: int = -1) -> bytes:
            data = dump.stdout.read(n) if n and n > 0 else dump.stdout.readall()
            if not data:
                finish()
            return data

    client.upload_fileobj(
        CheckedReader(),
        BUCKET,
        key,
        Config=TransferConfig(multipart_chunksize=PART_MB << 20, max_concurrency=CONCURRENCY),
    )


AWS_CLI = os.environ.get("AWS_CLI", "/tmp/awsvenv/bin/aws")


def child_deploy_path(key_label: str) -> None:
    """``--child deploy``: ``run_backup(archive_read=False)`` in its own process, as deploy's gate calls it
    (the rehearsal's restore is that backup's full read)."""
    from safemig.backup import run_backup
    from safemig.config import load_config, resolve_database_url

    config = load_config(Path.cwd() / "safemig.toml")
    result = run_backup(
        config, "bench", database_url=resolve_database_url(config, env="bench"), label=key_label, archive_read=False
    )
    print(json.dumps(result.as_dict()))


def bench_database(
    pg: LocalCluster,
    name: str,
    s3env: dict[str, str],
    runs: int,
    compression: str,
    variants: bool,
    also_tree: Path | None = None,
) -> dict:
    """All backup variants on one database, ``runs`` times each, interleaved; returns the medians."""
    import boto3

    url = pg.url(name)
    conninfo = f"host=127.0.0.1 port={pg.port} user={SUPERUSER} dbname={name}"
    env = {**os.environ, **s3env, "PGPASSWORD": pg.password, "CI": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else edited modules are compiled again on every run
    project = Path(tempfile.mkdtemp(prefix="safemig-bench-"))
    (project / "safemig.toml").write_text(
        f'[envs.bench]\ndatabase_url = "{url}"\n\n[backup]\nbucket = "{BUCKET}"\nprefix = "bench/"\n'
        f"compression = {compression}\npart_size_mb = {PART_MB}\nconcurrency = {CONCURRENCY}\n"
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=s3env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=s3env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3env["AWS_SECRET_ACCESS_KEY"],
    )

    def clean() -> None:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=obj["Key"])

    pg_dump = find_pg_bin("pg_dump")
    names = ["pg_dump", "aws_cp", "safemig", "safemig_dump_upload", "safemig_verify", "deploy_path"]
    if also_tree:
        names += ["safemig@other", "deploy_path@other"]
    if variants:
        names += ["multipart", "multipart_checked", "transfer_manager"]
    times: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {}  # user+sys of the variant's process tree
    server_cpu: dict[str, list[float]] = {}  # user+sys of this process meanwhile: moto's S3 server
    peaks: list[int] = []
    size = 0

    def measured(variant: str, args: list[str] | str, **kwargs) -> tuple[float, int, str]:
        tree, here = cpu_seconds(resource.RUSAGE_CHILDREN), cpu_seconds(resource.RUSAGE_SELF)
        t, peak, out = run_timed(args, **kwargs)
        cpu.setdefault(variant, []).append(cpu_seconds(resource.RUSAGE_CHILDREN) - tree)
        server_cpu.setdefault(variant, []).append(cpu_seconds(resource.RUSAGE_SELF) - here)
        times[variant].append(t)
        return t, peak, out

    def safemig_backup(variant: str, run_env: dict[str, str]) -> None:
        nonlocal size
        _, peak, out = measured(
            variant,
            [sys.executable, "-m", "safemig.cli", "backup", "--env", "bench", "--json"],
            env=run_env,
            cwd=project,
        )
        result = json.loads(out)
        size = result["size"]
        if variant == "safemig":
            times["safemig_dump_upload"].append(result["dump_s"])
            times["safemig_verify"].append(result["verify_s"])
            peaks.append(peak)
        clean()

    def deploy_path(variant: str, run_env: dict[str, str], i: int) -> None:
        measured(
            variant, [sys.executable, __file__, "--child", "deploy", "", "", f"deploy {i}"], env=run_env, cwd=project
        )
        clean()

    other_env = {**env, "PYTHONPATH": str(also_tree), "SAFEMIG_BENCH_TREE": str(also_tree)} if also_tree else env
    for i in range(runs):
        measured("pg_dump", f"{pg_dump} -Fc -Z{compression} --dbname='{conninfo}' > /dev/null", env=env, shell=True)
        measured(
            "aws_cp",
            f"set -o pipefail; {pg_dump} -Fc -Z{compression} --dbname='{conninfo}' | {AWS_CLI} s3 cp - s3://{BUCKET}/cp/{i}.dump",
            env=env,
            shell=True,
        )
        clean()
        # the two versions alternate which goes first, so neither always follows the other's load
        order = [("", env), ("@other", other_env)] if also_tree else [("", env)]
        for suffix, run_env in order if i % 2 == 0 else order[::-1]:
            safemig_backup("safemig" + suffix, run_env)
        for suffix, run_env in order[::-1] if i % 2 == 0 else order:
            deploy_path("deploy_path" + suffix, run_env, i)
        for mode in ("multipart", "multipart_checked", "transfer_manager") if variants else ():
            measured(
                mode, [sys.executable, __file__, "--child", mode, conninfo, compression, f"{mode}/{i}.dump"], env=env
            )
            clean()
        print(
            f"  {name} run {i + 1}/{runs}: "
            + ", ".join(
                f"{k} {v[-1]:.1f}s" + (f" ({cpu[k][-1]:.2f}+{server_cpu[k][-1]:.2f} cpu-s)" if k in cpu else "")
                for k, v in times.items()
            ),
            flush=True,
        )
    med = {k: median(v) for k, v in times.items()}
    med_cpu = {k: median(v) for k, v in cpu.items()}
    med_server = {k: median(v) for k, v in server_cpu.items()}
    ratios = {
        "safemig / aws s3 cp": med["safemig"] / med["aws_cp"],
        "deploy path / aws s3 cp": med["deploy_path"] / med["aws_cp"],
        "safemig / pg_dump": med["safemig"] / med["pg_dump"],
        "aws s3 cp / pg_dump": med["aws_cp"] / med["pg_dump"],
    }
    if also_tree:
        ratios["other safemig / aws s3 cp"] = med["safemig@other"] / med["aws_cp"]
        ratios["other deploy path / aws s3 cp"] = med["deploy_path@other"] / med["aws_cp"]
    for mode in ("multipart", "multipart_checked", "transfer_manager") if variants else ():
        ratios[f"{mode} / pg_dump"] = med[mode] / med["pg_dump"]
    return {
        "database": name,
        "db_size": db_size(pg, name),
        "dump_bytes": size,
        "compression": compression,
        "runs": runs,
        "median_s": med,
        "median_cpu_s": med_cpu,
        "median_s3_server_cpu_s": med_server,
        "peak_rss_mb": max(peaks) / 1024,
        "ratios": ratios,
    }


def child_restore_forced(mode: str, uri: str, target_url: str, jobs: str) -> None:
    """``--child restore-forced``: ``safemig restore --json`` with the mode forced (``stream`` or
    ``spool``) instead of chosen from the TOC: how the other choice would have done."""
    import safemig.backup.restore as restore_module
    from safemig.cli import main as cli_main

    restore_module._mode = lambda *_args, **_kwargs: mode  # type: ignore[assignment]
    sys.argv = ["safemig", "restore", "--env", "bench", "--from", uri, "--target-database-url", target_url]
    sys.argv += ["--jobs", jobs, "--json"]
    cli_main()


def bench_restore(
    pg: LocalCluster,
    name: str,
    s3env: dict[str, str],
    runs: int,
    compression: str,
    jobs: int,
    other: bool = False,
    also_tree: Path | None = None,
) -> dict:
    """``safemig restore --jobs N`` from S3 (whichever mode it chooses: streamed in one transaction,
    or a verified local copy then pg_restore -j N) against ``pg_restore -j N`` from a local file
    already on disk, into fresh databases, interleaved; wall time, CPU of each process tree, and
    safemig's phase timeline (--json). ``also_tree``: the same ``safemig restore`` from another
    checkout too (``safemig_restore@other``), interleaved with the others: an A/B."""
    import boto3

    url = pg.url(name)
    env = {**os.environ, **s3env, "PGPASSWORD": pg.password, "CI": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    project = Path(tempfile.mkdtemp(prefix="safemig-bench-"))
    (project / "safemig.toml").write_text(
        f'[envs.bench]\ndatabase_url = "{url}"\n\n[backup]\nbucket = "{BUCKET}"\nprefix = "restore/"\n'
        f"compression = {compression}\n"
    )
    _, _, out = run_timed(
        [sys.executable, "-m", "safemig.cli", "backup", "--env", "bench", "--json"], env=env, cwd=project
    )
    backup = json.loads(out)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=s3env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3env["AWS_SECRET_ACCESS_KEY"],
    )
    local = project / "local.dump"
    s3.download_file(BUCKET, backup["key"], str(local))
    pg_restore = find_pg_bin("pg_restore")
    times: dict[str, list[float]] = {
        "pg_restore": [],
        "safemig_restore": [],
        "safemig_prepare": [],
        "safemig_download": [],
        "pg_restore_cpu": [],  # user+sys of the whole process tree (pg_restore and its workers)
        "safemig_restore_cpu": [],  # the same for safemig (its own, pg_restore's, the TOC read's)
    }
    modes: list[str] = []
    timelines: list[dict[str, float]] = []
    other_timelines: list[dict[str, float]] = []
    if other:
        times.update({"safemig_other": [], "safemig_other_cpu": []})
    other_tree_env = {**env, "PYTHONPATH": str(also_tree)} if also_tree else env
    if also_tree:
        times.update({"safemig_restore@other": [], "safemig_restore@other_cpu": []})
    variants = ("pg_restore", "safemig_restore") + (("safemig_other",) if other else ())
    variants += ("safemig_restore@other",) if also_tree else ()
    for i in range(runs):
        for variant in variants:
            target = f"{name}_restored"
            pg.drop_database(target)
            pg.create_database(target)
            conninfo = f"host=127.0.0.1 port={pg.port} user={SUPERUSER} dbname={target}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            if variant == "pg_restore":
                t, _, _ = run_timed(
                    [pg_restore, f"-j{jobs}", "--exit-on-error", f"--dbname={conninfo}", str(local)], env=env
                )
            elif variant == "safemig_other":  # the mode safemig did not choose, forced
                forced = "spool" if modes[-1] == "stream" else "stream"
                t, _, out = run_timed(
                    [sys.executable, __file__, "--child", "restore-forced", forced, backup["uri"], pg.url(target)]
                    + ["--restore-jobs", str(jobs)],
                    env=env,
                    cwd=project,
                )
                other_mode = json.loads(out)["mode"]
            else:  # safemig_restore, and the same from the other checkout
                t, _, out = run_timed(
                    [
                        sys.executable,
                        "-m",
                        "safemig.cli",
                        "restore",
                        "--env",
                        "bench",
                        "--from",
                        backup["uri"],
                        "--target-database-url",
                        pg.url(target),
                        "--jobs",
                        str(jobs),
                        "--json",
                    ],
                    env=other_tree_env if variant == "safemig_restore@other" else env,
                    cwd=project,
                )
                restored = json.loads(out)
                if variant == "safemig_restore@other":
                    other_timelines.append(restored.get("timeline", {}))
                else:
                    times["safemig_prepare"].append(restored["prepare_s"])
                    times["safemig_download"].append(restored["download_s"])
                    modes.append(restored["mode"])
                    timelines.append(restored.get("timeline", {}))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            times[f"{variant}_cpu"].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            times[variant].append(t)
        print(
            f"  {name} restore run {i + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()),
            flush=True,
        )
    pg.drop_database(f"{name}_restored")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="restore/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    med = {k: median(v) for k, v in times.items()}
    return {
        "database": name,
        "dump_bytes": backup["size"],
        "jobs": jobs,
        "runs": runs,
        "median_s": med,
        "ratio": med["safemig_restore"] / med["pg_restore"],
        "mode": modes[-1] if modes else "",
        "other_mode": other_mode if other else "",
        "timeline": timelines[len(timelines) // 2] if timelines else {},  # of the middle run: phase -> s
        "timeline@other": other_timelines[len(other_timelines) // 2] if other_timelines else {},
        "ratio@other": med["safemig_restore@other"] / med["pg_restore"] if also_tree else None,
    }


def compression_sweep(pg: LocalCluster, name: str, levels: list[str]) -> list[dict]:
    """pg_dump to a counter at each level: wall time and bytes (the trade-off the default is based on)."""
    conninfo = f"host=127.0.0.1 port={pg.port} user={SUPERUSER} dbname={name}"
    env = {**os.environ, "PGPASSWORD": pg.password}
    rows = []
    for level in levels:
        t, _, out = run_timed(
            f"{find_pg_bin('pg_dump')} -Fc -Z{level} --dbname='{conninfo}' | wc -c", env=env, shell=True
        )
        rows.append(
            {
                "database": name,
                "level": level,
                "seconds": t,
                "bytes": int(out.strip()),
                "MB/s out": int(out.strip()) / t / 1e6,
            }
        )
        print(f"  {name} -Z{level}: {t:.1f}s, {int(out.strip()) / 1e6:.0f} MB", flush=True)
    return rows


def peak_only(pg: LocalCluster, name: str, s3env: dict[str, str], compression: str) -> dict:
    env = {**os.environ, **s3env, "PGPASSWORD": pg.password, "CI": "1"}
    project = Path(tempfile.mkdtemp(prefix="safemig-bench-"))
    (project / "safemig.toml").write_text(
        f'[envs.bench]\ndatabase_url = "{pg.url(name)}"\n\n[backup]\nbucket = "{BUCKET}"\nprefix = "bench/"\n'
        f"compression = {compression}\n"
    )
    t, peak, out = run_timed(
        [sys.executable, "-m", "safemig.cli", "backup", "--env", "bench", "--json"], env=env, cwd=project
    )
    result = json.loads(out)
    return {
        "database": name,
        "db_size": db_size(pg, name),
        "dump_bytes": result["size"],
        "seconds": t,
        "peak_rss_mb": peak / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compression", default="1", help="pg_dump -Z level for the comparison (safemig's default: 1)")
    parser.add_argument("--x4", action="store_true", help="also measure peak memory on a 4 GB database")
    parser.add_argument("--skip-levels", action="store_true", help="skip the compression-level sweep")
    parser.add_argument("--only", help="bench only this database")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--upload-variants", action="store_true", help="also time the bare upload variants")
    parser.add_argument("--skip-backup", action="store_true", help="only the restore comparison")
    parser.add_argument("--skip-restore", action="store_true", help="skip the restore comparison")
    parser.add_argument("--restore-jobs", type=int, default=2)
    parser.add_argument(
        "--restore-other-mode", action="store_true", help="also time the restore mode safemig did not choose, forced"
    )
    parser.add_argument(
        "--also-tree", type=Path, help="also time safemig from this checkout (PYTHONPATH), interleaved: an A/B"
    )
    parser.add_argument("--child", nargs=4, metavar=("MODE", "CONNINFO", "LEVEL", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "deploy":
            child_deploy_path(args.child[3])
        elif args.child[0] == "restore-forced":
            child_restore_forced(args.child[1], args.child[2], args.child[3], str(args.restore_jobs))
        else:
            child_upload(*args.child)
        return

    pg = cluster()
    try:
        run(pg, args)
    finally:
        pg.stop()  # the data stays under BENCH_DIR for the next run


def run(pg: LocalCluster, args: argparse.Namespace) -> None:
    prepare(pg, args.x4)
    if args.prepare_only:
        return
    import logging

    from safemig.local.s3 import start_local_s3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    s3 = start_local_s3(BENCH_S3_PORT)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=s3.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3.env["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=BUCKET)
    report: dict = {"databases": [], "restores": [], "levels": [], "x4": None}
    try:
        for name in ("bench_pgbench", "bench_md5"):
            if args.only and name != args.only:
                continue
            if not args.skip_backup:
                print(f"{name} ({db_size(pg, name)}), -Z{args.compression}, {args.runs} runs", flush=True)
                report["databases"].append(
                    bench_database(pg, name, s3.env, args.runs, args.compression, args.upload_variants, args.also_tree)
                )
            if not args.skip_restore:
                print(f"{name}: restore, -j{args.restore_jobs}, {args.runs} runs", flush=True)
                report["restores"].append(
                    bench_restore(
                        pg,
                        name,
                        s3.env,
                        args.runs,
                        args.compression,
                        args.restore_jobs,
                        args.restore_other_mode,
                        args.also_tree,
                    )
                )
        if not args.skip_levels:
            for name in ("bench_pgbench", "bench_md5"):
                if not args.only or name == args.only:
                    report["levels"] += compression_sweep(pg, name, ["0", "1", "3", "6"])
        if args.x4:
            report["x4"] = peak_only(pg, "bench_pgbench_x4", s3.env, args.compression)
    finally:
        s3.stop()
    print(json.dumps(report, indent=2))
    print("\nsummary")
    for db in report["databases"]:
        print(
            f"  {db['database']} ({db['db_size']}, dump {db['dump_bytes'] / 1e6:.0f} MB at -Z{db['compression']},"
            f" median of {db['runs']}):"
        )
        for key, value in db["median_s"].items():
            spent = db["median_cpu_s"].get(key)
            server = db["median_s3_server_cpu_s"].get(key)
            cpu_text = f"   cpu {spent:5.2f}s (+ S3 server {server:4.2f}s)" if spent is not None else ""
            print(f"    {key:<22} {value:7.2f}s{cpu_text}")
        for key, value in db["ratios"].items():
            print(f"    {key:<32} {value:.3f}x")
        print(f"    peak RSS of safemig          {db['peak_rss_mb']:.0f} MB")
    for r in report["restores"]:
        print(
            f"  {r['database']} restore (dump {r['dump_bytes'] / 1e6:.0f} MB, -j{r['jobs']}, median of {r['runs']}):"
            f" pg_restore from a local file {r['median_s']['pg_restore']:.2f}s, safemig restore from S3"
            f" {r['median_s']['safemig_restore']:.2f}s"
            f" (of which finding/checking/TOC {r['median_s']['safemig_prepare']:.2f}s,"
            f" verified download {r['median_s']['safemig_download']:.2f}s), {r['ratio']:.3f}x;"
            f" mode {r['mode']}, CPU (process trees) pg_restore {r['median_s']['pg_restore_cpu']:.2f}s,"
            f" safemig {r['median_s']['safemig_restore_cpu']:.2f}s"
        )
        if r["other_mode"]:
            print(
                f"    forced {r['other_mode']}: {r['median_s']['safemig_other']:.2f}s"
                f" ({r['median_s']['safemig_other'] / r['median_s']['pg_restore']:.3f}x),"
                f" CPU {r['median_s']['safemig_other_cpu']:.2f}s"
            )
        print(
            "    timeline of the middle run (s since restore_backup was called): "
            + ", ".join(f"{phase} {at:.2f}" for phase, at in r["timeline"].items())
        )
        if r["ratio@other"] is not None:
            print(
                f"    the other checkout (--also-tree): {r['median_s']['safemig_restore@other']:.2f}s"
                f" ({r['ratio@other']:.3f}x), CPU {r['median_s']['safemig_restore@other_cpu']:.2f}s; timeline "
                + ", ".join(f"{phase} {at:.2f}" for phase, at in r["timeline@other"].items())
            )
    if report["x4"]:
        x4 = report["x4"]
        print(f"  {x4['database']} ({x4['db_size']}): {x4['seconds']:.1f}s, peak RSS {x4['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
