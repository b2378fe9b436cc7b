"""Protected envs: migrate run/revert/mark-applied and restore into the env's own database ask first.

An env naming a staging, or saying ``protected = true``, is protected; the commands that
change it directly honour its maintenance window, ask for its name on a terminal and need
``--yes`` without one. Real PostgreSQL throughout; moto's S3 server for the backup a revert
takes first.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pytest

from safemig.config import load_config
from safemig.errors import CheckFailed, UsageError
from safemig.protect import Override, guard, is_protected, same_database
from safemig.window import DAY_NAMES
from tests.migrations.conftest import scalar

CONFIG = """\
migrations_dir = "docker/migrations"

[envs.staging]
database_url = "${PROD_URL}"

[envs.prod]
database_url = "${PROD_URL}"
staging = "staging"

[envs.vault]
database_url = "${PROD_URL}"
staging = "none"
protected = true

[envs.dev]
database_url = "${PROD_URL}"
staging = "none"
"""


def closed_window() -> str:
    """A window that is certainly closed now: an hour on a day three days away."""
    day = DAY_NAMES[(datetime.now(UTC).weekday() + 3) % 7]
    return f"{day} 02:00-03:00 UTC"


@pytest.fixture
def guarded(project, database_url, monkeypatch):
    project.write("001_create_a.sql", "CREATE TABLE a (x int);\n")
    project.write("002_create_b.sql", "CREATE TABLE b (x int);\n")
    project.rollback("002_rollback_b.sql", "DROP TABLE b;\n")
    (project.root / "safemig.toml").write_text(CONFIG)
    monkeypatch.setenv("PROD_URL", database_url)
    return project


def applied(url: str) -> int:
    """Rows in the ledger (0 when there is none yet)."""
    if scalar(url, "SELECT to_regclass('_sqlx_migrations') IS NULL"):
        return 0
    return scalar(url, "SELECT count(*) FROM _sqlx_migrations WHERE success")


def answer(monkeypatch, typed: str) -> list[str]:
    """Pretend stdin is a terminal on which ``typed`` is entered; returns the prompts shown."""
    import safemig.protect

    shown: list[str] = []

    def ask(text: str) -> str:
        shown.append(text)
        return typed

    monkeypatch.setattr(safemig.protect, "terminal_ask", lambda: ask)
    return shown


# -- which envs are protected --------------------------------------------------------------


def test_an_env_naming_a_staging_or_saying_protected_is_protected(tmp_path, monkeypatch):
    (tmp_path / "safemig.toml").write_text(CONFIG)
    envs = load_config(cwd=tmp_path).envs
    assert is_protected(envs["prod"]) and is_protected(envs["vault"])
    assert not is_protected(envs["dev"]) and not is_protected(envs["staging"])
    (tmp_path / "safemig.toml").write_text(CONFIG.replace('staging = "staging"\n', 'staging = "staging"\nprotected = false\n'))
    assert is_protected(load_config(cwd=tmp_path).env("prod"))  # an env deployed with a rehearsal stays protected
    assert guard(envs["dev"], "apply pending migrations to", yes=False, override=Override(), ask=None) == []


def test_guard_without_a_terminal_needs_yes_and_a_wrong_name_refuses(tmp_path):
    (tmp_path / "safemig.toml").write_text(CONFIG)
    prod = load_config(cwd=tmp_path).env("prod")
    with pytest.raises(UsageError) as info:
        guard(prod, "revert migrations on", yes=False, override=Override(), ask=None)
    assert "no terminal" in info.value.message and "--yes" in (info.value.hint or "")
    with pytest.raises(CheckFailed, match="confirmation 'prdo' is not 'prod'"):
        guard(prod, "revert migrations on", yes=False, override=Override(), ask=lambda _: "prdo")
    prompts: list[str] = []
    assert guard(prod, "revert migrations on", yes=False, override=Override(), ask=lambda t: prompts.append(t) or "prod") == []
    assert "safemig deploy --env prod` is the gated path" in prompts[0] and "Type the env's name (prod)" in prompts[0]
    notes = guard(prod, "revert migrations on", yes=True, override=Override(), ask=None)
    assert "gated path" in notes[0]


def test_guard_judges_the_window_as_deploy_does(tmp_path):
    (tmp_path / "safemig.toml").write_text(CONFIG + 'maintenance_window = "Sat 02:00-04:00 Europe/Berlin"\n')
    dev = load_config(cwd=tmp_path).env("dev")  # the window is dev's (the last table); dev is not protected
    saturday_night = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)  # 03:30 in Berlin
    monday = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert guard(dev, "apply pending migrations to", yes=True, override=Override(), ask=None, now=monday) == []
    text = CONFIG.replace('protected = true\n', 'protected = true\nmaintenance_window = "Sat 02:00-04:00 Europe/Berlin"\n')
    (tmp_path / "safemig.toml").write_text(text)
    vault = load_config(cwd=tmp_path).env("vault")
    with pytest.raises(CheckFailed, match="outside the maintenance window; next window"):
        guard(vault, "apply pending migrations to", yes=True, override=Override(), ask=None, now=monday)
    notes = guard(vault, "apply pending migrations to", yes=True, override=Override(True, "incident 7"), ask=None, now=monday)
    assert "going ahead (--outside-window): incident 7" in notes[1]
    assert "maintenance window open" in guard(vault, "x", yes=True, override=Override(), ask=None, now=saturday_night)[1]
    with pytest.raises(UsageError, match="--outside-window needs --reason"):
        guard(vault, "x", yes=True, override=Override(True, " "), ask=None)


# -- through the CLI -----------------------------------------------------------------------


def test_without_a_terminal_a_protected_env_is_refused_and_nothing_changes(guarded, database_url, cli_process):
    for env in ("prod", "vault"):
        for command in (["run"], ["revert"], ["mark-applied", "1", "--reason", "by hand"]):
            result = cli_process("migrate", *command, "--env", env, cwd=guarded.root)
            assert result.exit_code == 2, (env, command, result.output)
            assert f"error: {env} is a protected env and there is no terminal to confirm on" in result.stderr
            assert "hint: pass --yes" in result.stderr and "Traceback" not in result.stderr
    group = cli_process("migrate", "--env", "prod", "run", cwd=guarded.root)  # --env before the subcommand
    assert group.exit_code == 2 and "no terminal to confirm on" in group.stderr
    assert applied(database_url) == 0 and scalar(database_url, "SELECT to_regclass('a') IS NULL")
    done = cli_process("migrate", "run", "--env", "prod", "--yes", cwd=guarded.root)
    assert done.exit_code == 0, done.output
    assert "safemig deploy --env prod` is the gated path" in done.stderr and applied(database_url) == 2


def test_unprotected_envs_and_database_url_are_unaffected(guarded, database_url, cli):
    assert cli("migrate", "run", "--env", "dev", "--target-version", "1", cwd=guarded.root).exit_code == 0
    result = cli("migrate", "run", "--database-url", database_url, cwd=guarded.root)
    assert result.exit_code == 0 and "gated path" not in result.output
    assert cli("migrate", "revert", "--env", "staging", cwd=guarded.root).exit_code == 0
    assert applied(database_url) == 1
    dry = cli("migrate", "run", "--env", "prod", "--dry-run", cwd=guarded.root)  # changes nothing: not held up
    assert dry.exit_code == 0 and "Dry run: 1 migration(s)" in dry.stdout


def test_on_a_terminal_the_env_name_must_be_typed(guarded, database_url, cli, monkeypatch):
    shown = answer(monkeypatch, "prd")
    wrong = cli("migrate", "run", "--env", "prod", cwd=guarded.root)
    assert wrong.exit_code == 1 and "confirmation 'prd' is not 'prod'" in wrong.stderr
    assert "Type the env's name (prod) to apply 2 pending migrations (versions 1-2) to it" in shown[0]
    assert applied(database_url) == 0
    answer(monkeypatch, "vault")
    assert cli("migrate", "mark-applied", "1", "--reason", "made by hand", "--env", "vault", cwd=guarded.root).exit_code == 0
    assert applied(database_url) == 1 and scalar(database_url, "SELECT to_regclass('a') IS NULL")


def test_with_nothing_pending_a_protected_run_neither_asks_nor_judges_the_window(guarded, database_url, cli, monkeypatch):
    assert cli("migrate", "run", "--env", "prod", "--yes", "--target-version", "1", cwd=guarded.root).exit_code == 0
    text = CONFIG.replace('staging = "staging"\n', f'staging = "staging"\nmaintenance_window = "{closed_window()}"\n')
    (guarded.root / "safemig.toml").write_text(text)
    shown = answer(monkeypatch, "prod")
    one = cli("migrate", "run", "--env", "prod", "--outside-window", "--reason", "r", cwd=guarded.root)
    assert one.exit_code == 0 and "Type the env's name (prod) to apply 1 pending migration (version 2) to it" in shown[0]
    shown.clear()
    for extra in ([], ["--yes"]):  # a closed window and nothing to change: no refusal, no prompt
        again = cli("migrate", "run", "--env", "prod", *extra, cwd=guarded.root)
        assert again.exit_code == 0 and "Nothing to apply: the database is at version 2." in again.stdout, again.output
        assert "outside the maintenance window" not in again.output
    assert shown == [] and applied(database_url) == 2


def test_the_real_prompt_reads_the_terminal(guarded, database_url, cli, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("prod\n"))
    result = cli("migrate", "run", "--env", "prod", cwd=guarded.root)
    assert result.exit_code == 0, result.output
    assert "Type the env's name (prod)" in result.stderr and applied(database_url) == 2


def test_outside_the_window_refused_unless_overridden_with_a_reason(guarded, database_url, cli):
    text = CONFIG.replace('staging = "staging"\n', f'staging = "staging"\nmaintenance_window = "{closed_window()}"\n')
    (guarded.root / "safemig.toml").write_text(text)
    unasked = cli("migrate", "run", "--env", "prod", cwd=guarded.root)  # no terminal: how it was run comes first
    assert unasked.exit_code == 2 and "hint: pass --yes" in unasked.stderr
    refused = cli("migrate", "run", "--env", "prod", "--yes", cwd=guarded.root)
    assert refused.exit_code == 1 and "outside the maintenance window" in refused.stderr
    assert "--outside-window --reason TEXT" in refused.stderr and applied(database_url) == 0
    no_reason = cli("migrate", "run", "--env", "prod", "--yes", "--outside-window", cwd=guarded.root)
    assert no_reason.exit_code == 2 and "--outside-window needs --reason TEXT" in no_reason.stderr
    stray = cli("migrate", "run", "--env", "prod", "--yes", "--reason", "x", cwd=guarded.root)
    assert stray.exit_code == 2 and "--reason only goes with --outside-window" in stray.stderr
    done = cli("migrate", "run", "--env", "prod", "--yes", "--outside-window", "--reason", "incident 42", cwd=guarded.root)
    assert done.exit_code == 0 and "going ahead (--outside-window): incident 42" in done.stderr
    assert applied(database_url) == 2
    # mark-applied's --reason is its note, and the override's reason with --outside-window
    refused = cli("migrate", "mark-applied", "1", "--reason", "r", "--env", "prod", "--yes", cwd=guarded.root)
    assert refused.exit_code == 1 and "outside the maintenance window" in refused.stderr


def _with_bucket(guarded, s3_env) -> str:
    import boto3

    bucket = "protect-" + uuid.uuid4().hex[:8]
    boto3.client("s3").create_bucket(Bucket=bucket)
    (guarded.root / "safemig.toml").write_text(CONFIG + f'\n[backup]\nbucket = "{bucket}"\nprefix = "p/"\n')
    return bucket


def _objects(bucket: str) -> list[str]:
    import boto3

    found = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in found if o["Key"].endswith(".dump")]


def test_a_revert_on_a_protected_env_takes_a_verified_backup_first(guarded, database_url, cli, s3_env):
    bucket = _with_bucket(guarded, s3_env)
    assert cli("migrate", "run", "--env", "prod", "--yes", cwd=guarded.root).exit_code == 0
    result = cli("migrate", "revert", "--env", "prod", "--yes", cwd=guarded.root)
    assert result.exit_code == 0, result.output
    keys = _objects(bucket)
    assert len(keys) == 1 and keys[0].startswith("p/prod/"), keys
    assert f"backup before the revert: s3://{bucket}/{keys[0]}" in result.stdout and "verified" in result.stdout
    assert applied(database_url) == 1 and scalar(database_url, "SELECT to_regclass('b') IS NULL")
    skipped = cli("migrate", "revert", "--env", "prod", "--yes", "--no-backup", cwd=guarded.root)
    assert skipped.exit_code == 0 and len(_objects(bucket)) == 1
    unprotected = cli("migrate", "revert", "--env", "dev", cwd=guarded.root)
    assert unprotected.exit_code == 0 and len(_objects(bucket)) == 1


def test_a_revert_whose_backup_fails_reverts_nothing(guarded, database_url, cli, s3_env):
    (guarded.root / "safemig.toml").write_text(CONFIG + '\n[backup]\nbucket = "no-such-bucket-protect"\n')
    assert cli("migrate", "run", "--env", "prod", "--yes", cwd=guarded.root).exit_code == 0
    result = cli("migrate", "revert", "--env", "prod", "--yes", cwd=guarded.root)
    assert result.exit_code == 3 and "backup before the revert failed" in result.stderr, result.output
    assert "--no-backup" in result.stderr and applied(database_url) == 2


def test_restore_into_the_envs_own_database_is_protected_elsewhere_not(guarded, database_url, database_url_b, cli, s3_env):
    _with_bucket(guarded, s3_env)
    assert cli("migrate", "run", "--env", "prod", "--yes", cwd=guarded.root).exit_code == 0
    assert cli("backup", "--env", "prod", cwd=guarded.root).exit_code == 0
    own = cli("restore", "--env", "prod", "--from", "latest", "--clean", "--confirm-clean", cwd=guarded.root)
    assert own.exit_code == 2 and "no terminal to confirm on: refusing to restore a backup into it" in own.stderr
    # the env's own database named by another spelling of its URL is still its own database
    spelled = database_url.replace("127.0.0.1", "localhost")
    assert same_database(spelled, database_url) and not same_database(database_url_b, database_url)
    aliased = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", spelled, cwd=guarded.root)
    assert aliased.exit_code == 2 and "no terminal to confirm on: refusing to restore a backup into it" in aliased.stderr
    elsewhere = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b, cwd=guarded.root)
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "gated path" not in elsewhere.output
    assert scalar(database_url_b, "SELECT count(*) FROM _sqlx_migrations") == 2
    done = cli("restore", "--env", "prod", "--from", "latest", "--clean", "--confirm-clean", "--yes", cwd=guarded.root)
    assert done.exit_code == 0, done.output
    assert "gated path" in done.stderr and applied(database_url) == 2
