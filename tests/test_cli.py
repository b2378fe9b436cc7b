"""CLI conventions: exit codes in --help, SAFEMIG_DEBUG, completion, --quiet, colour, the demo extra, .safemig."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safemig import output
from safemig.errors import ConfigError
from safemig.statedir import GITIGNORE, make_dir

REPO = Path(__file__).resolve().parent.parent


def test_help_lists_every_exit_code_including_70(cli):
    result = cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for code in ("0 success", "1 a check said no", "2 usage", "3 an external system failed", "130 interrupted",
                 "70 an internal error"):
        assert code in text, code


def test_safemig_debug_prints_the_chained_traceback_redacted(tmp_path, cli_process):
    (tmp_path / "safemig.toml").write_text('[envs.prod]\ndatabase_url = "postgresql://app:hunter2pw@127.0.0.1:1/db"\n')
    (tmp_path / "docker" / "migrations").mkdir(parents=True)
    quiet = cli_process("migrate", "info", "--env", "prod", cwd=tmp_path)
    assert quiet.exit_code == 3 and "Traceback" not in quiet.stderr
    loud = cli_process("migrate", "info", "--env", "prod", cwd=tmp_path, env={"SAFEMIG_DEBUG": "1"})
    assert loud.exit_code == 3
    assert "Traceback (most recent call last)" in loud.stderr
    assert "psycopg.OperationalError" in loud.stderr  # the cause hidden by `raise ... from None`
    assert "safemig.errors.DatabaseError" in loud.stderr
    assert "hunter2pw" not in loud.stderr
    assert loud.stderr.rstrip().splitlines()[-2].startswith("error: ")  # the usual error line still ends it


def test_chained_traceback_shows_suppressed_context():
    from safemig.cli import chained_traceback

    try:
        try:
            {}["missing"]
        except KeyError:
            raise ConfigError("bad", hint="h") from None
    except ConfigError as exc:
        text = chained_traceback(exc)
    assert text.index("KeyError: 'missing'") < text.index("During handling") < text.index("ConfigError: bad")


def test_shell_completion(tmp_path):
    # Typer's own switch for naming the shell instead of detecting it from the parent processes
    env = {**os.environ, "HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run([sys.executable, "-m", "safemig.cli", "--show-completion", "bash"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "_SAFEMIG_COMPLETE" in shown.stdout, shown.stderr
    completing = subprocess.run(
        [sys.executable, "-m", "safemig.cli"], capture_output=True, text=True, timeout=60,
        env={**env, "_SAFEMIG_COMPLETE": "complete_bash", "COMP_WORDS": "safemig mig", "COMP_CWORD": "1"},
    )
    assert completing.stdout.split() == ["migrate"], completing.stdout + completing.stderr
    installed = subprocess.run([sys.executable, "-m", "safemig.cli", "--install-completion", "bash"], env=env,
                               capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert "safemig" in (tmp_path / ".bashrc").read_text()


def test_quiet_drops_progress_but_not_errors_or_json(cli, tmp_path, database_url):
    migrations = tmp_path / "docker" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "001_t.sql").write_text("CREATE TABLE t (id int);\n")
    loud = cli("migrate", "run", "--database-url", database_url, cwd=tmp_path)
    assert loud.exit_code == 0 and "1 migration(s) applied" in loud.stdout
    (migrations / "002_u.sql").write_text("CREATE TABLE u (id int);\n")
    quiet = cli("migrate", "run", "-q", "--database-url", database_url, cwd=tmp_path)
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    (migrations / "003_bad.sql").write_text("CREATE TABLE t (id int);\n")  # t exists: fails
    failed = cli("migrate", "run", "--quiet", "--database-url", database_url, cwd=tmp_path)
    assert failed.exit_code == 1 and failed.stdout == "" and failed.stderr.startswith("error: ")


@pytest.mark.parametrize(("variables", "enabled"), [({}, True), ({"NO_COLOR": "1"}, False),
                                                     ({"TERM": "dumb"}, False), ({"TERM": "xterm-256color"}, True)])
def test_colour_off_for_no_color_and_dumb_terminals(monkeypatch, variables, enabled):
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert output.color_enabled(Tty()) is enabled


def test_demo_without_the_demo_extra_exits_2_with_the_install_command(tmp_path):
    shadow = tmp_path / "shadow" / "moto"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'moto'\", name='moto')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    proc = subprocess.run([sys.executable, "-m", "safemig.cli", "demo", "--state-dir", str(tmp_path / "state")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'safemig[demo]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "state" / "prod").exists()  # nothing was started


def test_state_dir_gets_its_gitignore_once(tmp_path):
    made = make_dir(tmp_path / ".safemig" / "lint-cache")
    assert made.is_dir() and (tmp_path / ".safemig" / ".gitignore").read_text() == GITIGNORE
    (tmp_path / ".safemig" / ".gitignore").write_text("*\n!deploys/\n")  # a user's edit is kept
    make_dir(tmp_path / ".safemig" / "deploys")
    assert (tmp_path / ".safemig" / ".gitignore").read_text() == "*\n!deploys/\n"
    make_dir(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere" / ".gitignore").exists()


def test_lint_cache_leaves_git_status_clean(tmp_path, cli_process):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    migrations = tmp_path / "docker" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "001_t.sql").write_text("SELECT 1;\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "docker"], check=True)
    assert cli_process("lint", "docker/migrations/001_t.sql", cwd=tmp_path).exit_code == 0
    assert (tmp_path / ".safemig" / "lint-cache").is_dir()
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"], capture_output=True, text=True)
    assert ".safemig" not in status.stdout


def test_lint_fast_path_and_typer_surface_agree(tmp_path):
    """Every option the argparse fast path takes is a Typer `safemig lint` option meaning the same."""
    import typer

    from safemig.cli import build_app
    from safemig.commands.lint import _FAST_OPTIONS, fast_main

    command = typer.main.get_command(build_app()).commands["lint"]  # type: ignore[attr-defined]
    typer_options = {name for param in command.params if param.param_type_name == "option" for name in param.opts}
    assert _FAST_OPTIONS <= typer_options
    config = next(p for p in command.params if "--config" in p.opts)
    assert config.envvar == "SAFEMIG_CONFIG"  # the fast path reads the same variable
    for name in sorted(typer_options - _FAST_OPTIONS):  # anything else goes to Typer
        assert fast_main([name, "x"]) is None, name


def test_command_modules_names_every_top_level_command_and_its_module():
    """`safemig CMD` builds only COMMAND_MODULES[CMD]'s commands: the map must name each command
    the modules register, with the module that registers it."""
    import typer

    from safemig.cli import COMMAND_MODULES, build_app

    everything = set(typer.main.get_command(build_app()).commands)  # type: ignore[attr-defined]
    assert everything == set(COMMAND_MODULES)
    for module in set(COMMAND_MODULES.values()):
        registered = set(typer.main.get_command(build_app(module)).commands)  # type: ignore[attr-defined]
        assert registered == {name for name, owner in COMMAND_MODULES.items() if owner == module}, module


def test_lint_gives_the_same_answer_on_both_paths(tmp_path):
    migrations = tmp_path / "docker" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "001_idx.sql").write_text("CREATE INDEX i ON t (c);\n")
    args = ["lint", "--no-cache", "-f", "json", "docker/migrations/001_idx.sql"]
    fast = subprocess.run([sys.executable, "-m", "safemig.cli", *args], cwd=tmp_path, capture_output=True, text=True)
    code = ("import sys; from safemig.cli import build_app; "
            "sys.exit(build_app()(args=sys.argv[1:], prog_name='safemig', standalone_mode=False))")
    typer_path = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True)
    assert (fast.returncode, fast.stdout) == (typer_path.returncode, typer_path.stdout)
    assert fast.returncode == 1 and '"rule"' in fast.stdout
