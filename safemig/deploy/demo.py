"""The one-command local demo: two private PostgreSQL clusters, a local S3, a real deploy.

``./scripts/demo`` (which installs what is missing first) runs ``safemig demo``: it starts
a *staging* and a *prod* cluster under ``.safemig/demo/`` (their data persists between
runs), moto's S3 server on 127.0.0.1 with a fresh bucket, writes
``.safemig/demo/safemig.toml`` pointing at them and at this checkout's
``docker/migrations`` and ``rollbacks``, and then runs ``safemig deploy --env prod``
as a child process, exactly as a user types it (the demo sits below the CLI layer and
does not import it). A second run finds prod up to date and
says there is nothing to deploy. Everything it started is stopped at the end unless
``--keep-running`` is given.

Nothing in the deploy pipeline knows about the demo: the demo only prepares
infrastructure and configuration, exactly as a user would.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from safemig.deploy.record import RECORDS_DIR, read_records
from safemig.errors import UsageError
from safemig.statedir import make_dir

DEMO_DB = "forgeerp"
DEMO_BUCKET = "safemig-demo-backups"

CONFIG_TEMPLATE = """\
# Written by `safemig demo` (rewritten on every run): two local clusters and a local S3.
# Database URLs come from the environment, as they should in real configs.
migrations_dir = "{migrations}"
rollbacks_dir = "{rollbacks}"

[envs.staging]
database_url = "${{DEMO_STAGING_DATABASE_URL}}"
staging = "none"

[envs.prod]
database_url = "${{DEMO_PROD_DATABASE_URL}}"
staging = "staging"
lock_timeout = "5s"
statement_timeout = "15min"
lock_retries = 3
# maintenance_window = "Sat,Sun 02:00-04:00 Europe/Berlin"

[backup]
bucket = "{bucket}"
prefix = "demo/"
"""


def _say(text: str = "", style: str | None = None) -> None:
    from safemig import output

    output.echo(text, style=style)


def _toml_path(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace('"', '\\"')


def _ensure_database(cluster, name: str) -> str:
    exists = cluster.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip()
    if not exists:
        cluster.create_database(name)
    return cluster.url(name)


def run_demo(*, state_dir: Path, keep_running: bool = False, reset: bool = False, project: Path | None = None) -> int:
    """Run the demo end to end; returns the deploy's exit code."""
    from safemig.local.postgres import LocalCluster
    from safemig.local.s3 import require_server, start_local_s3

    require_server()  # before any cluster starts: without the demo extra, say how to install it

    project = (project or Path.cwd()).resolve()
    migrations = project / "docker" / "migrations"
    rollbacks = project / "rollbacks"
    if not migrations.is_dir():
        raise UsageError(f"{migrations} does not exist", hint="run the demo from the safemig checkout (./scripts/demo)")
    state = state_dir if state_dir.is_absolute() else project / state_dir
    if reset and state.exists():
        for name in ("staging", "prod"):
            LocalCluster(state / name).destroy()
        shutil.rmtree(state, ignore_errors=True)
    make_dir(state)

    with ExitStack() as stack:
        started = time.monotonic()
        clusters = {}
        for name in ("staging", "prod"):
            cluster = LocalCluster(state / name)
            fresh = not cluster.initialised
            cluster.start()
            if not keep_running:
                stack.callback(cluster.stop)
            clusters[name] = cluster
            _say(
                f"demo: {name} PostgreSQL {'initialised and ' if fresh else ''}running on "
                f"127.0.0.1:{cluster.port} (data in {cluster.datadir})"
            )
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
        s3 = start_local_s3()
        stack.callback(s3.stop)
        _say(f"demo: local S3 (moto) on {s3.endpoint_url}, bucket {DEMO_BUCKET}")

        saved = {k: os.environ.get(k) for k in (*s3.env, "DEMO_PROD_DATABASE_URL", "DEMO_STAGING_DATABASE_URL")}
        stack.callback(_restore_environ, saved)
        os.environ.update(s3.env)
        os.environ["DEMO_PROD_DATABASE_URL"] = _ensure_database(clusters["prod"], DEMO_DB)
        os.environ["DEMO_STAGING_DATABASE_URL"] = _ensure_database(clusters["staging"], DEMO_DB)

        import boto3

        boto3.client("s3", endpoint_url=s3.endpoint_url).create_bucket(Bucket=DEMO_BUCKET)
        config_path = state / "safemig.toml"
        config_path.write_text(
            CONFIG_TEMPLATE.format(
                migrations=_toml_path(migrations), rollbacks=_toml_path(rollbacks), bucket=DEMO_BUCKET
            ),
            encoding="utf-8",
        )
        _say(f"demo: config {config_path} (ready in {time.monotonic() - started:.1f}s)")
        _say(f"demo: $ safemig deploy --env prod --config {config_path}", style="bold")
        _say()
        import subprocess
        import sys

        code = subprocess.call(
            [sys.executable, "-m", "safemig.cli", "deploy", "--env", "prod", "--config", str(config_path)],
            env=os.environ.copy(),
        )
        _say()
        records = read_records(state)
        if code == 0 and records and records[-1]["status"] == "deployed":
            _say("demo: run ./scripts/demo again: prod is up to date now, so it will say there is nothing to deploy.")
        _say(
            f"demo: deploy records are in {state / RECORDS_DIR}; `./scripts/demo --reset` starts from empty databases."
        )
        if keep_running:
            env_file = state / "demo.env"
            env_file.write_text(
                "".join(
                    f"export {k}='{os.environ[k]}'\n" for k in ("DEMO_PROD_DATABASE_URL", "DEMO_STAGING_DATABASE_URL")
                )
                + "".join(f"export {k}='{v}'\n" for k, v in s3.env.items()),
                encoding="utf-8",
            )
            env_file.chmod(0o600)
            _say(
                "demo: PostgreSQL keeps running (./scripts/demo without --keep-running stops it); `source "
                f"{env_file}` to use it, e.g."
            )
            _say(f"  safemig migrate info --config {config_path} --env prod")
            _say(
                "demo: the local S3 lives in this process; press Ctrl-C to stop it (export "
                f"AWS_ENDPOINT_URL={s3.endpoint_url})."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        else:
            _say("demo: stopping the servers (nothing is left running).")
        return code


def _restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
