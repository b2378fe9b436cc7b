"""The one-command demo: real clusters and moto, a real deploy, then nothing to deploy; nothing left running."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from safemig.local.postgres import LocalCluster
from tests.conftest import REPO_ROOT


@pytest.fixture
def state_dir():
    """Outside pytest's basetemp: pytest resets /tmp/pytest-of-<user> to 0700 when any session
    starts, which would lock the postgres server user out between the two demo runs."""
    base = Path(tempfile.mkdtemp(prefix="safemig-demo-test-"))
    yield base / "demo"
    for name in ("staging", "prod"):
        LocalCluster(base / "demo" / name).stop("immediate")
    shutil.rmtree(base, ignore_errors=True)


def test_demo_deploys_the_sample_schema_then_has_nothing_to_deploy(state_dir, cli_process):
    state = state_dir
    first = cli_process("demo", "--state-dir", str(state), cwd=REPO_ROOT, timeout=240)
    assert first.exit_code == 0, first.output
    assert "$ safemig deploy --env prod" in first.stdout
    for title in ("Preflight", "Lint", "Backup", "Staging rehearsal", "Production apply", "Report"):
        assert f"{title}: passed" in first.stdout
    assert "backup:  s3://safemig-demo-backups/demo/prod/" in first.stdout
    assert "Deploy to prod: deployed" in first.stdout
    assert "local-secret-pw" not in first.output

    second = cli_process("demo", "--state-dir", str(state), cwd=REPO_ROOT, timeout=240)
    assert second.exit_code == 0, second.output
    assert "nothing to deploy: prod has all" in second.stdout

    for name in ("staging", "prod"):
        assert not LocalCluster(state / name).running(), f"demo left {name} running"
    records = sorted((state / ".safemig" / "deploys").glob("*.json"))
    statuses = [json.loads(p.read_text())["status"] for p in records]
    assert statuses == ["deployed", "nothing to deploy"]
