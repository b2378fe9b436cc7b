"""The config is checked whole when read: unknown keys (with their line), values, one settings type per env."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safemig.config import BACKUP_KEYS, LINT_KEYS, EnvSettings, load_config
from safemig.deploy.settings import apply_settings, deploy_settings
from safemig.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parent.parent

BASE = """\
migrations_dir = "docker/migrations"

[envs.staging]
database_url = "postgresql://h/s"
staging = "none"

[envs.prod]
database_url = "${PROD_URL}"
staging = "staging"
"""


def _write(tmp_path: Path, text: str, name: str = "safemig.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str, name: str = "safemig.toml") -> ConfigError:
    _write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path)
    return info.value


# -- unknown keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "line", "key", "table", "suggestion"),
    [
        (
            'maintenance_windows = "Sat,Sun 02:00-04:00 Europe/Berlin"\n',
            10,
            "maintenance_windows",
            "in [envs.prod]",
            "maintenance_window",
        ),
        ('lock_timout = "5s"\n', 10, "lock_timout", "in [envs.prod]", "lock_timeout"),
        ('\n[backup]\nbucket = "b"\nbuckit = "c"\n', 13, "buckit", "in [backup]", "bucket"),
        ('\n[lint]\nhouse_rule = "rules"\n', 12, "house_rule", "in [lint]", "house_rules"),
        (
            '\n[[lint.exceptions]]\npaths = ["a"]\nrules = ["x"]\nreason = "r"\n[[lint.exceptions]]\npaths = ["b"]\n'
            'rules = ["y"]\nreasn = "r"\n',
            18,
            "reasn",
            "in [[lint.exceptions]] #2",
            "reason",
        ),
        ("\n[deploy]\nlock_wait = 3\n", 11, "deploy", "at the top level", None),
    ],
)
def test_an_unknown_key_names_file_line_key_and_the_closest_known_key(tmp_path, extra, line, key, table, suggestion):
    err = _error(tmp_path, BASE + extra)
    assert err.message.startswith(f"{tmp_path / 'safemig.toml'}:{line}: unknown key {key} {table}")
    if suggestion:
        assert err.message.endswith(f"did you mean {suggestion}?")
    assert err.hint.startswith("known keys")


@pytest.mark.parametrize(
    ("text", "line", "suggestion"),
    [
        ('migration_dir = "db"\n', 1, "migrations_dir"),
        ('rollback_dir = "rb"\n', 1, "rollbacks_dir"),
        ('envs.prod.database_url = "x"\nenvs.prod.staging = "none"\nenvs.prod.lock_timout = "1s"\n', 3, "lock_timeout"),
        ('[envs]\nprod = { database_url = "x", rollbacks_dir = "r" }\n', 2, None),
    ],
)
def test_unknown_keys_everywhere_even_dotted_or_inline(tmp_path, text, line, suggestion):
    err = _error(tmp_path, text)
    assert f"safemig.toml:{line}: unknown key" in err.message
    if suggestion:
        assert f"did you mean {suggestion}?" in err.message


def test_unknown_key_under_tool_safemig_in_pyproject_has_the_pyproject_line(tmp_path):
    err = _error(
        tmp_path,
        '[project]\nname = "x"\n\n[tool.safemig]\nmigrations_dir = "db"\nrollback_dir = "r"\n',
        "pyproject.toml",
    )
    assert err.message.startswith(f"{tmp_path / 'pyproject.toml'}:6: unknown key rollback_dir")


def test_a_table_where_a_table_belongs(tmp_path):
    err = _error(tmp_path, 'envs = "prod"\n')
    assert "safemig.toml:1: envs must be a table" in err.message
    err = _error(tmp_path, '[envs]\nprod = "postgresql://h/p"\n')
    assert "safemig.toml:2: envs.prod must be a table" in err.message


def test_the_declared_section_keys_are_the_ones_their_modules_read():
    from safemig.backup import settings as backup_settings
    from safemig.lint import policy

    assert backup_settings._KNOWN_KEYS is BACKUP_KEYS  # one list, the config's
    assert policy._parse({"rules": {}, "exceptions": [], "house_rules": "rules"}, "x")  # all accepted
    assert {"rules", "exceptions", "house_rules"} <= LINT_KEYS


def test_the_demo_config_passes_the_strict_check(tmp_path):
    from safemig.deploy.demo import CONFIG_TEMPLATE

    _write(tmp_path, CONFIG_TEMPLATE.format(migrations="m", rollbacks="r", bucket="b"))
    assert load_config(cwd=tmp_path).env("prod").lock_retries == 3


# -- unknown env -------------------------------------------------------------------------


def test_an_unknown_env_suggests_the_closest(tmp_path):
    _write(tmp_path, BASE)
    with pytest.raises(UsageError) as info:
        load_config(cwd=tmp_path).env("prd")
    assert info.value.message.endswith("did you mean prod?")
    assert "known envs: prod, staging" in info.value.hint


def test_staging_must_name_another_known_env(tmp_path):
    err = _error(tmp_path, BASE.replace('staging = "staging"', 'staging = "stagign"'))
    assert re.search(r"toml:9: envs.prod.staging = 'stagign' is not an env; did you mean staging\?$", err.message)
    err = _error(tmp_path, BASE.replace('staging = "staging"', 'staging = "prod"'))
    assert "safemig.toml:9: envs.prod.staging names the env itself" in err.message


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('lock_timeout = "30d"', "envs.prod.lock_timeout = '30d' is not a value PostgreSQL accepts for lock_timeout"),
        ('lock_timeout = "5 seconds"', "is not a time unit"),
        ('statement_timeout = "-1"', "outside the valid range"),
        ("lock_retries = 500", "envs.prod.lock_retries = 500 must be a whole number from 0 to 100"),
        ("lock_retries = true", "envs.prod.lock_retries = True must be a whole number"),
        ('retry_backoff = "fast"', "envs.prod.retry_backoff = 'fast' is not a duration"),
        ('ready_timeout = "2h"', "envs.prod.ready_timeout = '2h' is not a duration: 7200 s is outside the valid range"),
        ('maintenance_window = "weekends"', "envs.prod.maintenance_window: cannot read 'weekends'"),
    ],
)
def test_bad_values_fail_at_load_naming_file_line_and_key(tmp_path, line, message):
    err = _error(tmp_path, BASE + line + "\n")
    assert err.message.startswith(f"{tmp_path / 'safemig.toml'}:10: "), err.message
    assert message in err.message
    assert err.hint


def test_top_level_out_of_order_is_checked_at_load(tmp_path):
    err = _error(tmp_path, 'out_of_order = "alow"\n' + BASE)
    assert (
        "safemig.toml:1: out_of_order = 'alow' is not one of" in err.message and "did you mean 'allow'?" in err.message
    )


def test_a_database_url_must_be_a_string(tmp_path):
    err = _error(tmp_path, BASE + "[envs.qa]\ndatabase_url = 5\n")
    assert "safemig.toml:11: envs.qa.database_url must be a string" in err.message


def test_values_are_interpolated_at_load_except_the_database_url(tmp_path, monkeypatch):
    _write(tmp_path, BASE + 'lock_timeout = "${LOCK:-750ms}"\n')
    config = load_config(cwd=tmp_path)  # PROD_URL unset: fine until used
    prod = config.env("prod")
    assert str(prod.lock_timeout) == "750ms" and prod.lock_timeout.ms == 750
    assert prod.database_url is not None and prod.database_url.text == "${PROD_URL}"
    monkeypatch.setenv("LOCK", "30d")
    with pytest.raises(ConfigError, match="is not a value PostgreSQL accepts"):
        load_config(cwd=tmp_path)


# -- one settings type ---------------------------------------------------------------------


def test_defaults_and_values(tmp_path):
    _write(tmp_path, BASE)
    s = deploy_settings(load_config(cwd=tmp_path), "prod")
    assert (s.staging, str(s.lock_timeout), str(s.statement_timeout), s.lock_retries, s.retry_backoff.seconds) == (
        "staging",
        "5s",
        "15min",
        3,
        2.0,
    )
    assert s.maintenance_window == () and s.ready_timeout.seconds == 30
    _write(
        tmp_path,
        BASE.replace('staging = "staging"', 'staging = "none"') + 'lock_timeout = "750ms"\n'
        'lock_retries = 0\nretry_backoff = 1\nmaintenance_window = ["Sat 02:00-04:00 UTC", "Sun 02:00-04:00 UTC"]\n',
    )
    s = deploy_settings(load_config(cwd=tmp_path), "prod")
    assert s.staging is None and s.lock_retries == 0 and s.retry_backoff.seconds == 1.0
    assert len(s.maintenance_window) == 2
    engine = apply_settings(s)
    assert (engine.lock_timeout, engine.lock_retries, engine.retry_backoff) == ("750ms", 0, 1.0)


def test_deploy_needs_staging_declared(tmp_path):
    _write(tmp_path, BASE.replace('staging = "staging"\n', ""))
    with pytest.raises(ConfigError, match="names no staging env to rehearse its deploys on") as info:
        deploy_settings(load_config(cwd=tmp_path), "prod")
    assert "safemig.toml:7:" in info.value.message  # the [envs.prod] header


def test_migrate_and_deploy_read_an_env_the_same_way(tmp_path):
    """migrate run --env prod and deploy --env prod: same defaults, same limits, retry_backoff honoured."""
    from safemig.commands.migrate import _settings

    _write(tmp_path, BASE + 'retry_backoff = "500ms"\n')
    config = load_config(cwd=tmp_path)
    assert _settings(config, "prod", None, None, None) == apply_settings(deploy_settings(config, "prod"))
    migrate = _settings(config, "prod", "1s", None, 7)
    assert (migrate.lock_timeout, migrate.lock_retries, migrate.retry_backoff) == ("1s", 7, 0.5)
    with pytest.raises(ConfigError, match="--lock-retries = 500 must be a whole number from 0 to 100"):
        _settings(config, "prod", None, None, 500)
    with pytest.raises(ConfigError, match="--lock-timeout = '30d' is not a value PostgreSQL accepts"):
        _settings(config, None, "30d", None, None)
    no_env = _settings(config, None, None, None, None)
    assert (no_env.lock_timeout, no_env.statement_timeout, no_env.lock_retries) == (None, None, 0)


def test_every_env_key_is_one_declaration_with_a_doc_line():
    declared = EnvSettings.declarations()
    assert {"database_url", "staging", "maintenance_window", "lock_timeout", "lock_retries"} <= set(declared)
    for key, setting in declared.items():
        assert setting.doc and setting.parse.kind, key


def test_the_readme_table_of_env_keys_matches_the_declarations():
    from safemig.config import env_keys_markdown

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = env_keys_markdown()
    assert table in readme, f"put this table in the README's configuration section:\n{table}"


# -- through the CLI -----------------------------------------------------------------------


def test_a_config_mistake_exits_2_before_any_database_is_contacted(tmp_path, cli_process):
    _write(tmp_path, BASE + 'lock_timeout = "30d"\n')
    (tmp_path / "docker" / "migrations").mkdir(parents=True)
    # the URL points nowhere: reaching it would be exit 3, and it must not even be tried
    env = {"PROD_URL": "postgresql://u:secretpw@127.0.0.1:1/p"}
    for args in (["deploy", "--env", "prod"], ["migrate", "run", "--env", "prod"], ["runbook", "--env", "prod"]):
        result = cli_process(*args, cwd=tmp_path, env=env)
        assert result.exit_code == 2, (args, result.stderr)
        first = result.stderr.splitlines()[0]
        assert first.startswith("error: safemig.toml:10: envs.prod.lock_timeout = '30d'"), first
        assert "Traceback" not in result.stderr and "secretpw" not in result.stderr


def test_lint_checks_every_key_but_leaves_env_values_to_the_commands_that_use_an_env(tmp_path, cli_process):
    (tmp_path / "docker" / "migrations").mkdir(parents=True)
    (tmp_path / "docker" / "migrations" / "001_t.sql").write_text("SELECT 1;\n")
    _write(tmp_path, BASE + 'lock_timeout = "30d"\n')
    assert cli_process("lint", "docker/migrations/001_t.sql", cwd=tmp_path).exit_code == 0
    _write(tmp_path, BASE + 'lock_timout = "5s"\n')
    result = cli_process("lint", "docker/migrations/001_t.sql", cwd=tmp_path)
    assert result.exit_code == 2 and result.stderr.startswith("error: safemig.toml:10: unknown key lock_timout")


def test_an_unknown_env_on_the_command_line(tmp_path, cli):
    _write(tmp_path, BASE)
    result = cli("migrate", "info", "--env", "prd", cwd=tmp_path)
    assert result.exit_code == 2
    assert "unknown env 'prd'" in result.stderr and "did you mean prod?" in result.stderr


def test_key_lines_skip_values_that_look_like_keys():
    from safemig.tomllines import KeyLines

    text = (
        'notes = """\nlock_timout = 1\n"""\r\n'  # 1-3, CRLF after
        "when = 1979-05-27 07:32:00Z\n"  # 4: a date-time with a space
        "[envs.prod]\n"  # 5
        "maintenance_window = [\n  'Sat 02:00-04:00 UTC',  # x = 1\n]\n"  # 6-8
        'staging = "none" # comment\n'  # 9
    )
    lines = KeyLines(text)
    assert [lines.line(p) for p in [("notes",), ("when",), ("envs", "prod"), ("envs", "prod", "staging")]] == [
        1, 4, 5, 9]
    assert lines.line(("envs", "prod", "lock_timout")) == 5  # not written: its table's line
    assert KeyLines("[tool.safemig]\nx = 1\n", ("tool", "safemig")).line(("x",)) == 2
