"""`safemig lint` / `rules` / `explain` end to end: exit codes, formats, colour, imports, real PostgreSQL for --pending."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.lint.conftest import REPO_ROOT

DANGEROUS = "ALTER TABLE orders RENAME total TO amount;\n"


def test_exit_codes_0_1_2(cli, project):
    project.write("migrations/005_add_note.sql", "SET lock_timeout = '5s';\nALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n")
    ok = cli("lint", cwd=project.root)
    assert (ok.exit_code, ok.stdout.strip()) == (0, "no problems in 1 file(s)")
    project.write("migrations/006_rename_total.sql", DANGEROUS)
    bad = cli("lint", cwd=project.root)
    assert bad.exit_code == 1
    assert "migrations/006_rename_total.sql:1:1: error [rename]" in bad.stdout
    assert "    | ALTER TABLE orders RENAME total TO amount" in bad.stdout
    assert "-- safemig:ignore rename -- <why this is safe>" in bad.stdout
    assert cli("lint", "--format", "yaml", cwd=project.root).exit_code == 2
    missing = cli("lint", "nowhere.sql", cwd=project.root)
    assert missing.exit_code == 2 and "nowhere.sql: no such file or directory" in missing.stderr
    assert "Traceback" not in missing.output


def test_warnings_alone_exit_0(cli, project):
    project.write("migrations/005_create_docs.sql", "CREATE TABLE IF NOT EXISTS docs (body json);\n")
    result = cli("lint", cwd=project.root)
    assert result.exit_code == 0 and "warning [json-column]" in result.stdout


def test_json_github_and_sarif_formats(cli, project):
    project.write("migrations/006_rename_total.sql", DANGEROUS)
    data = json.loads(cli("lint", "--format", "json", cwd=project.root).stdout)
    assert [(d["path"], d["line"], d["column"], d["rule"], d["severity"]) for d in data] == [
        ("migrations/006_rename_total.sql", 1, 1, "missing-lock-timeout", "warning"),
        ("migrations/006_rename_total.sql", 1, 1, "rename", "error")]
    github = cli("lint", "--format", "github", cwd=project.root).stdout.splitlines()
    assert github[1].startswith("::error file=migrations/006_rename_total.sql,line=1,col=1,title=safemig rename::renaming column")
    sarif = json.loads(cli("lint", "-f", "sarif", cwd=project.root).stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["missing-lock-timeout", "rename"]
    result = run["results"][1]
    assert result["ruleId"] == "rename" and result["level"] == "error"
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 1, "startColumn": 1}


def test_no_colour_codes_when_not_a_tty_or_no_color(cli_process, project):
    project.write("migrations/006_rename_total.sql", DANGEROUS)
    piped = cli_process("lint", cwd=project.root, env={"NO_COLOR": ""})
    assert piped.exit_code == 1 and "\x1b[" not in piped.stdout
    forced = cli_process("lint", cwd=project.root, env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert "\x1b[" in forced.stdout
    no_color = cli_process("lint", cwd=project.root, env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert "\x1b[" not in no_color.stdout


def test_rules_and_explain(cli, project):
    listed = cli("rules", cwd=project.root)
    assert listed.exit_code == 0
    assert any(line.split()[:2] == ["drop-without-rollback", "error"] for line in listed.stdout.splitlines())
    explained = cli("explain", "set-not-null", cwd=project.root)
    assert explained.exit_code == 0
    for section in ("Why:", "Bad:", "Good:", "ALTER COLUMN currency SET NOT NULL"):
        assert section in explained.stdout
    unknown = cli("explain", "set-not-nul", cwd=project.root)
    assert unknown.exit_code == 2 and "did you mean set-not-null" in unknown.stderr


def test_repository_sample_migrations_lint_clean(cli):
    result = cli("lint", "--no-cache", cwd=REPO_ROOT)
    assert result.exit_code == 0, result.stdout
    assert " error " not in result.stdout and "0 error(s)" in result.stdout or "no problems" in result.stdout


def test_lint_imports_neither_boto3_nor_psycopg_nor_sqlglot_nor_isal(project):
    project.write("migrations/006_rename_total.sql", DANGEROUS)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "safemig.cli", "lint", "--no-cache"],
                          cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "pglast" in imported and "safemig.lint.runner" in imported  # the measurement works
    assert not {m for m in imported if m.split(".")[0] in ("boto3", "botocore", "psycopg", "psycopg_binary")}
    # isal (and the backup's archive reader that imports it) only for a backup or its verification
    assert not {m for m in imported if m.split(".")[0] == "isal" or m == "safemig.backup.archive"}
    # the built-in rules read PostgreSQL's tree; sqlglot is loaded only for a rule that asks for stmt.ast
    assert not {m for m in imported if m.split(".")[0] == "sqlglot"}
    # orjson (and the uuid and platform modules it loads) only for runs over many files
    assert not {m for m in imported if m.split(".")[0] in ("orjson", "uuid")}


def test_fast_path_handles_hook_forms_without_typer(project):
    project.write("migrations/006_rename_total.sql", DANGEROUS)
    code = ("import sys; from safemig.commands.lint import fast_main; "
            "rc = fast_main(['--no-cache', '-f', 'json', 'migrations/006_rename_total.sql']); "
            "print(rc, [m for m in ('typer', 'pydantic', 'rich', 'boto3', 'psycopg', 'isal') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-1] == "1 []", proc.stdout + proc.stderr
    assert '"rule": "rename"' in proc.stdout


def test_fast_path_defers_everything_else_to_typer():
    from safemig.commands.lint import fast_main

    for argv in (["--help"], ["--pending", "--env", "prod"], ["--formt", "json"], ["-x"]):
        assert fast_main(argv) is None, argv


def test_pending_lints_only_unapplied_migrations(cli, project, database_url):
    import psycopg

    project.write("migrations/001_rename_total.sql", DANGEROUS)
    project.write("migrations/002_rename_tax.sql", DANGEROUS.replace("total", "tax"))
    project.write("safemig.toml", 'migrations_dir = "migrations"\n[envs.prod]\ndatabase_url = "${TEST_DB_URL}"\n')
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, "
                     "installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, "
                     "checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)")
        from safemig.migrations.files import checksum_of

        raw = (project.root / "migrations/001_rename_total.sql").read_bytes()
        conn.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
                     "VALUES (1, 'rename total', true, %s, 1)", (checksum_of(raw),))
    import os

    os.environ["TEST_DB_URL"] = database_url
    try:
        result = cli("lint", "--pending", "--env", "prod", "--format", "json", cwd=project.root)
    finally:
        del os.environ["TEST_DB_URL"]
    assert result.exit_code == 1, result.output
    assert {d["path"] for d in json.loads(result.stdout)} == {"migrations/002_rename_tax.sql"}
    assert cli("lint", "--pending", cwd=project.root).exit_code == 2


def test_pre_commit_hook_definition():
    import yaml

    (hook,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "safemig-lint" and hook["language"] == "python"
    assert hook["entry"] == "safemig lint --hook"
    assert hook["types"] == ["sql"]  # identify tags 001_a.SQL as sql too
    assert "files" not in hook  # the configured directories decide, not a pattern here


def test_json_lines_are_what_json_dumps_writes():
    from safemig.lint.finding import Finding
    from safemig.lint.render.json_format import finding_line

    odd = 'q"uote \\ back\nnew\ttab \x01 ctl \u00e9 \u2028 \ud83d emoji \U0001f600 </script>'
    for finding in (Finding("migrations/005 a\"b.sql", 12, 3, "rule-id", "error", odd, odd[::-1]),
                    Finding("", 1, 1, "", "warning", "", "")):
        assert finding_line(finding) == json.dumps(finding.to_json(), ensure_ascii=False)
