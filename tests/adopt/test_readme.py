"""The README's "Use it in your project" stays short, true and runnable as written."""

from __future__ import annotations

import re
import shlex

import boto3

from tests.conftest import REPO_ROOT

from .conftest import ledger_versions

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def quick_start() -> str:
    return README[README.index("## Use it in your project") : README.index("## Working on safemig")]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_quick_start_is_at_most_40_lines_and_comes_first():
    assert (
        README.index("## Use it in your project") < README.index("## Working on safemig") < README.index("## Reference")
    )
    assert len(quick_start().rstrip().splitlines()) <= 40


def test_links_to_files_point_at_files_that_exist():
    for document in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (document.parent / target).exists(), f"{document.name}: {target}"


def test_quick_start_runs_as_written(sample_project, database_url, database_url_b, s3_env, cli_process):
    """The config exactly as printed; the commands as printed, with this suite's servers and S3
    filled into the `export` lines, and the bucket made with boto3 where the README says `aws s3 mb`."""
    (config,) = blocks(quick_start(), "toml")
    (sample_project / "safemig.toml").write_text(config)
    (script,) = blocks(quick_start(), "bash")[1:]
    lines = [line.split("  #")[0].strip() for line in script.strip().splitlines()]
    exported = {word.split("=", 1)[0] for line in lines if line.startswith("export ") for word in line.split()[1:]}
    assert {"DATABASE_URL", "STAGING_DATABASE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} <= exported
    env = {"DATABASE_URL": database_url, "STAGING_DATABASE_URL": database_url_b, **s3_env.env}

    commands = [line for line in lines if not line.startswith("export ")]
    bucket = re.fullmatch(r"aws s3 mb s3://([a-z0-9-]+)", commands[0])
    assert bucket and f'bucket = "{bucket.group(1)}"' in config
    boto3.client("s3", endpoint_url=s3_env.endpoint_url).create_bucket(Bucket=bucket.group(1))

    assert commands[1:] == ["safemig lint", "safemig deploy --env prod --dry-run", "safemig deploy --env prod"]
    for command in commands[1:]:
        result = cli_process(*shlex.split(command)[1:], cwd=sample_project, env=env)
        assert result.exit_code == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        if command.endswith("--dry-run"):
            assert ledger_versions(database_url) == []
    assert ledger_versions(database_url) == [1, 2, 3, 4]
    assert "deployed" in result.stdout
