"""The progress line: shown (bytes and rate) on a terminal, absent otherwise."""

from __future__ import annotations

import io
from contextlib import redirect_stderr

from safemig import output
from safemig.backup.progress import transfer_progress


def render(enabled: bool, monkeypatch) -> str:
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal, as far as Rich is concerned
    monkeypatch.delenv("NO_COLOR", raising=False)
    err = io.StringIO()
    with redirect_stderr(err):
        output.reset()
        with transfer_progress("pg_dump db -> s3://bucket", enabled) as advance:
            for _ in range(5):
                advance(1024 * 1024)
    output.reset()
    return err.getvalue()


def test_progress_shows_bytes_on_a_terminal(monkeypatch):
    shown = render(True, monkeypatch)
    assert "pg_dump db -> s3://bucket" in shown and "5.2 MB" in shown and "B/s" in shown


def test_no_progress_when_disabled(monkeypatch):
    assert render(False, monkeypatch) == ""
