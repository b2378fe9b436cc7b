"""The pipeline's pieces on their own: gate runner, deploy settings, deploy record."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from safemig.config import load_config
from safemig.deploy.gates import FAILED, PASSED, SKIPPED, WARNING, GateRunner, Reporter
from safemig.deploy.record import DeployRecord, read_records, write_record
from safemig.deploy.settings import deploy_settings, duration_seconds
from safemig.errors import ConfigError, DatabaseError, UsageError


class Recording(Reporter):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def gate_started(self, name, title):
        self.events.append(("start", name))

    def gate_finished(self, result):
        self.events.append(("end", result.name, result.verdict))

    def warning(self, text):
        self.events.append(("warn", text))


def test_gate_runner_times_each_gate_and_stops_at_the_first_failure():
    reporter = Recording()
    runner = GateRunner(reporter)
    ran = []
    with pytest.raises(DatabaseError) as info:
        with runner.gate("one", "One") as gate:
            gate.summary("fine")
            ran.append("one")
        with runner.gate("two", "Two") as gate:
            gate.warn("careful")
            ran.append("two")
        with runner.gate("three", "Three"):
            raise DatabaseError("prod does not answer", hint="check it")
        with runner.gate("four", "Four"):  # pragma: no cover - never reached
            ran.append("four")
    assert info.value.exit_code == 3  # the error leaves unchanged, with its own exit code
    assert ran == ["one", "two"]
    assert [r.verdict for r in runner.results] == [PASSED, WARNING, FAILED]
    assert runner.failed.name == "three" and runner.failed.error == "prod does not answer" and runner.failed.hint == "check it"
    assert all(r.duration_s >= 0 for r in runner.results)
    assert reporter.events == [
        ("start", "one"), ("end", "one", PASSED),
        ("start", "two"), ("warn", "careful"), ("end", "two", WARNING),
        ("start", "three"), ("end", "three", FAILED),
    ]
    runner.skip("four", "Four", "not run: three failed")
    assert runner.results[-1].verdict == SKIPPED


def _config(tmp_path, prod: str, extra: str = ""):
    (tmp_path / "safemig.toml").write_text(
        '[envs.staging]\ndatabase_url = "postgresql://h/s"\n'
        f'[envs.prod]\ndatabase_url = "postgresql://h/p"\n{prod}\n{extra}'
    )
    return load_config(cwd=tmp_path)


def test_settings_defaults_and_values(tmp_path):
    s = deploy_settings(_config(tmp_path, 'staging = "staging"'), "prod")
    assert (s.staging, s.lock_timeout, s.statement_timeout, s.lock_retries, s.retry_backoff_s) == ("staging", "5s", "15min", 3, 2.0)
    assert s.windows == []
    s = deploy_settings(_config(tmp_path, 'staging = "none"\nlock_timeout = "750ms"\nlock_retries = 0\nretry_backoff = 1\n'
                                          'maintenance_window = ["Sat 02:00-04:00 UTC", "Sun 02:00-04:00 UTC"]'), "prod")
    assert s.staging is None and s.lock_timeout == "750ms" and s.lock_retries == 0 and s.retry_backoff_s == 1.0
    assert len(s.windows) == 2
    settings = s.apply_settings
    assert (settings.lock_timeout, settings.lock_retries, settings.retry_backoff) == ("750ms", 0, 1.0)


@pytest.mark.parametrize(
    ("prod", "error", "message"),
    [
        ("", ConfigError, "names no staging env to rehearse its deploys on"),
        ('staging = "prod"', ConfigError, "envs.prod.staging in safemig.toml names the env itself"),
        ('staging = "qa"', UsageError, "unknown env 'qa'"),
        ('staging = "staging"\nlock_timeout = "soon"', ConfigError, "envs.prod.lock_timeout in safemig.toml = 'soon' is not a duration"),
        ('staging = "staging"\nlock_retries = -1', ConfigError, "envs.prod.lock_retries in safemig.toml must be a whole number"),
        ('staging = "staging"\nlock_retries = true', ConfigError, "lock_retries"),
        ('staging = "staging"\nretry_backoff = "fast"', ConfigError, "envs.prod.retry_backoff"),
        ('staging = "staging"\nmaintenance_window = "weekends"', ConfigError, "envs.prod.maintenance_window in safemig.toml: cannot read"),
    ],
)
def test_settings_refuse_bad_values_naming_the_key(tmp_path, prod, error, message):
    with pytest.raises(error) as info:
        deploy_settings(_config(tmp_path, prod), "prod")
    assert message in info.value.message
    assert info.value.hint


def test_durations_read_like_postgresql():
    assert duration_seconds("5s", "x") == 5 and duration_seconds("15min", "x") == 900
    assert duration_seconds("250", "x") == 0.25  # a bare number is milliseconds, as in PostgreSQL
    assert duration_seconds(2, "x", default_unit="s") == 2


def test_record_is_written_without_overwriting_and_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    started = datetime(2026, 11, 24, 8, 0, 0, 123000, tzinfo=timezone.utc)
    record = DeployRecord(env="prod", started_at=started, database="postgresql://app:hunter2pass@db/prod")
    record.status = "failed"
    record.failed_gate = "lint"
    record.error = "lint found 1 error(s)"
    first = write_record(record, tmp_path)
    second = write_record(record, tmp_path)
    assert first.name == "20261124T080000.123Z.json" and second.name == "20261124T080000.123Z-1.json"
    text = first.read_text()
    assert "hunter2pass" not in text and "****" in text
    data = json.loads(text)
    assert data["operator"]["ci_actor"] == "octocat"
    assert (data["env"], data["status"], data["failed_gate"]) == ("prod", "failed", "lint")
    assert len(read_records(tmp_path)) == 2
