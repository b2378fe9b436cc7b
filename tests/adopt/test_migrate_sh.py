"""scripts/migrate.sh, the guide's helper, run as a subprocess in a copy of a user repository."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

from .conftest import VENV_BIN, ledger_versions, path_with_venv, run

SCRIPT = REPO_ROOT / "scripts" / "migrate.sh"
PASSWORD_MARK = "safemig"  # LocalCluster's password


@pytest.fixture
def project(sample_project: Path) -> Path:
    (sample_project / "scripts").mkdir()
    shutil.copy2(SCRIPT, sample_project / "scripts" / "migrate.sh")
    return sample_project


def write_env(project: Path, database_url: str) -> None:
    """A .env in the forms docker compose accepts: export prefix, quotes, comments, CRLF."""
    (project / ".env").write_text(
        "# local settings\r\n"
        "\n"
        f'export DATABASE_URL="{database_url}"\r\n'
        "SAFEMIG_TEST_PLAIN=plain value   # an inline comment\n"
        "SAFEMIG_TEST_QUOTED='a # not a comment'\n"
    )


def migrate_sh(project: Path, *args: str, env: dict[str, str] | None = None, path_first: Path | None = None):
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    clean["PATH"] = path_with_venv(path_first)
    clean.update(env or {})
    return run([str(project / "scripts" / "migrate.sh"), *args], env=clean, cwd=project / "docker")


def test_run_and_info_use_the_database_url_from_dotenv(project, database_url):
    write_env(project, database_url)
    result = migrate_sh(project, "run")
    assert result.returncode == 0, result.stderr
    assert ledger_versions(database_url) == [1, 2, 3, 4]
    info = migrate_sh(project, "info")
    assert info.returncode == 0, info.stderr
    assert info.stdout.count("applied") >= 4
    everything = result.stdout + result.stderr + info.stdout + info.stderr
    assert f":{PASSWORD_MARK}@" not in everything and "plain value" not in everything


def test_the_environment_wins_over_dotenv(project, database_url, database_url_b):
    # The guide's `DATABASE_URL=$STAGING_DB ./scripts/migrate.sh run`.
    write_env(project, database_url)
    result = migrate_sh(project, "run", env={"DATABASE_URL": database_url_b})
    assert result.returncode == 0, result.stderr
    assert ledger_versions(database_url_b) == [1, 2, 3, 4]
    assert ledger_versions(database_url) == []


def test_dotenv_values_reach_safemig_as_written(project, database_url, tmp_path):
    # A stand-in safemig on PATH that reports the variables it was given.
    write_env(project, database_url)
    probe = tmp_path / "bin"
    probe.mkdir()
    (probe / "safemig").write_text(
        '#!/bin/sh\nprintf "%s|%s|%s\\n" "$SAFEMIG_TEST_PLAIN" "$SAFEMIG_TEST_QUOTED" "$*"\n'
    )
    (probe / "safemig").chmod(0o755)
    result = migrate_sh(project, "lint", "--format", "json", path_first=probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "plain value|a # not a comment|lint --format json\n"


def test_revert_lint_and_deploy_pass_their_options_through(project, database_url, database_url_b, cli_process):
    write_env(project, database_url)
    assert migrate_sh(project, "run").returncode == 0
    revert = migrate_sh(project, "revert")
    assert revert.returncode == 0, revert.stderr
    assert ledger_versions(database_url) == [1, 2, 3]

    lint = migrate_sh(project, "lint", "--format", "json")
    direct = cli_process("lint", "--format", "json", cwd=project)
    assert (lint.returncode, lint.stdout) == (direct.exit_code, direct.stdout)

    (project / "safemig.toml").write_text(
        '[envs.staging]\ndatabase_url = "${STAGING_DATABASE_URL}"\n\n'
        '[envs.prod]\ndatabase_url = "${DATABASE_URL}"\nstaging = "staging"\n\n'
        '[backup]\nbucket = "never-used-by-a-dry-run"\n'
    )
    deploy = migrate_sh(project, "deploy", "--env", "prod", "--dry-run", env={"STAGING_DATABASE_URL": database_url_b})
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "Plan for prod (dry run: nothing was changed)" in deploy.stdout
    assert ledger_versions(database_url) == [1, 2, 3], "a dry run changes nothing"
    assert f":{PASSWORD_MARK}@" not in deploy.stdout + deploy.stderr


def test_the_project_venv_wins_over_path(project, database_url, tmp_path):
    write_env(project, database_url)
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "safemig").write_text("#!/bin/sh\necho 'the safemig on PATH ran' >&2\nexit 99\n")
    (decoy / "safemig").chmod(0o755)

    without_venv = migrate_sh(project, "info", path_first=decoy)
    assert without_venv.returncode == 99 and "the safemig on PATH ran" in without_venv.stderr

    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "safemig").symlink_to(VENV_BIN / "safemig")
    with_venv = migrate_sh(project, "info", path_first=decoy)
    assert with_venv.returncode == 0, with_venv.stderr
    assert "pending" in with_venv.stdout


def test_no_safemig_at_all_says_how_to_install(project):
    result = run([str(project / "scripts" / "migrate.sh"), "info"], env={"PATH": "/usr/bin:/bin"}, cwd=project)
    assert result.returncode == 2
    assert "safemig is not installed" in result.stderr and "hint:" in result.stderr


@pytest.mark.parametrize("args", [[], ["migrate"], ["--version"]])
def test_usage_mistakes_exit_2(project, args):
    result = migrate_sh(project, *args)
    assert result.returncode == 2
    assert "run" in result.stderr and "info" in result.stderr


def test_help_lists_the_commands(project):
    result = migrate_sh(project, "--help")
    assert result.returncode == 0
    for command in ("run", "info", "revert", "lint", "deploy"):
        assert f"migrate.sh {command}" in result.stdout


def test_a_bad_dotenv_line_is_named_without_its_content(project):
    (project / ".env").write_text("GOOD=1\nthis line has the password hunter2 in it\n")
    result = migrate_sh(project, "info")
    assert result.returncode == 2
    assert "migrate.sh: .env:2: not a KEY=VALUE line" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
