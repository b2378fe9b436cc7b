"""The pipeline's pieces on their own: gate runner, deploy record (env settings: tests/test_config.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from safemig.deploy.gates import FAILED, PASSED, SKIPPED, WARNING, GateRunner, Reporter
from safemig.deploy.record import DeployRecord, read_records, write_record
from safemig.errors import DatabaseError


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
