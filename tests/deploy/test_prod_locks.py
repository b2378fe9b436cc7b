"""Gate 5's lock safety end to end: a session on prod blocks the migration; the deploy names it.

The CLI runs as a subprocess against two real clusters and moto's S3 server (the
``project`` fixture). The blocker is a second psycopg connection named ``blocker-app``
holding ACCESS SHARE on ``items`` in an open transaction, as a report query or an idle
ORM session would.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from safemig.local.postgres import DEFAULT_PASSWORD
from safemig.window import DAY_NAMES


@contextmanager
def blocker(url):
    with psycopg.connect(url, application_name="blocker-app") as conn:
        conn.execute("SELECT count(*) FROM items")
        yield conn.info.backend_pid
        conn.rollback()


def test_a_blocking_session_on_prod_fails_the_deploy_cleanly_and_is_named(project):
    project.apply_directly(project.prod_url, [1])
    project.write_config(lock_timeout='"300ms"', lock_retries="2", retry_backoff='"0.1s"')
    with blocker(project.prod_url) as pid:
        result = project.deploy("--outside-window", "--reason", "test")
    assert result.exit_code == 1, result.output
    out, err = result.stdout, result.stderr
    # before the statement: the readers-queue warning with its figure, and the session already holding the table
    assert "every reader and writer of items queues behind it, for up to lock_timeout (300ms) per attempt, 3 attempt(s) at most" in out
    assert f"needs ACCESS EXCLUSIVE on items, which 1 session(s) hold a conflicting lock on" in out
    assert f"pid {pid} (blocker-app" in out
    # the error names it, with its state, transaction age and query
    assert "Production apply: FAILED" in out
    assert f"blocked by pid {pid} (blocker-app" in err and "idle in transaction, transaction open" in err
    assert "SELECT count(*) FROM items" in err and "55P03" in err
    assert DEFAULT_PASSWORD not in result.output
    # prod unchanged; the record keeps every attempt with its blockers
    assert project.versions(project.prod_url) == [1]
    assert "note" not in project.columns(project.prod_url, "items")
    record = project.records()[-1]
    assert record["failed_gate"] == "production" and f"pid {pid} (blocker-app" in record["error"]
    attempts = record["attempts"]
    assert [(a["version"], a["attempt"], a["outcome"]) for a in attempts] == [
        (2, 1, "lock_timeout"),
        (2, 2, "lock_timeout"),
        (2, 3, "lock_timeout"),
    ]
    for a in attempts:
        (b,) = a["blockers"]
        assert (b["pid"], b["application_name"], b["state"]) == (pid, "blocker-app", "idle in transaction")
        assert b["query"] == "SELECT count(*) FROM items" and b["transaction_age_s"] > 0
        assert a["duration_ms"] >= 300 and a["statement"] == 1


def test_a_deploy_records_its_successful_attempts(project):
    project.apply_directly(project.prod_url, [1])
    result = project.deploy("--outside-window", "--reason", "test")
    assert result.exit_code == 0, result.output
    record = project.records()[-1]
    assert [(a["version"], a["attempt"], a["outcome"], a["blockers"]) for a in record["attempts"]] == [
        (2, 1, "ok", []),
        (3, 1, "ok", []),
    ]


def _window_ending_soon() -> tuple[str, datetime]:
    """A UTC window open now that closes at the next minute boundary at least 25 s away."""
    now = datetime.now(UTC)
    if now.second > 35 or (now.hour == 23 and now.minute >= 58):
        time.sleep(60 - now.second + 0.5 + (120 if now.hour == 23 and now.minute >= 58 else 0))
        now = datetime.now(UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=2) if end.minute >= 2 or end.hour else end - timedelta(minutes=1)
    day = DAY_NAMES[start.weekday()]
    return f'"{day} {start:%H:%M}-{end:%H:%M} UTC"', end


@pytest.mark.slow
def test_retries_stop_before_the_window_closes(project):
    project.apply_directly(project.prod_url, [1])
    window, end = _window_ending_soon()
    project.write_config(
        maintenance_window=window, lock_timeout='"1s"', lock_retries="30", retry_backoff='"0.5s"'
    )
    with blocker(project.prod_url) as pid:
        result = project.deploy(timeout=180)
    assert result.exit_code == 1, result.output
    assert "would end after the deadline" in result.stderr and f"pid {pid} (blocker-app" in result.stderr
    attempts = project.records()[-1]["attempts"]
    assert 1 < len(attempts) < 31
    ends = [datetime.fromisoformat(a["started_at"]) + timedelta(milliseconds=a["duration_ms"]) for a in attempts]
    assert all(e <= end for e in ends)  # no attempt ran past the window
    next_backoff = 0.5 * 2 ** (len(attempts) - 1)
    assert ends[-1] + timedelta(seconds=next_backoff + 1) > end  # and the next could have
    assert all(a["blockers"][0]["application_name"] == "blocker-app" for a in attempts)
    assert project.versions(project.prod_url) == [1]


def test_the_window_deadline_follows_the_clock_the_window_was_judged_by():
    from safemig.deploy.observers import monotonic_deadline

    started = datetime.now(UTC) - timedelta(seconds=10)  # the deploy began 10 s ago
    fixed = datetime(2026, 1, 3, 2, 0, tzinfo=UTC)  # judged by a fixed clock at 02:00
    left = monotonic_deadline(fixed + timedelta(minutes=1), now=fixed, started_at=started) - time.monotonic()
    assert 49 < left < 51  # 60 s of window at the start, 10 s of them spent
    real = monotonic_deadline(datetime.now(UTC) + timedelta(seconds=30), now=None, started_at=started)
    assert 29 < real - time.monotonic() < 31
