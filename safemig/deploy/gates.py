"""The gate runner: run checklist steps in order, time each, stop at the first that says no.

A gate is a block of pipeline code run inside :meth:`GateRunner.gate`. The runner tells a
:class:`Reporter` when the gate starts and how it ended (verdict, duration, summary), and
keeps a :class:`GateResult` for the deploy record. A gate fails by raising a
:class:`SafemigError`; the runner records the failure and re-raises it unchanged, so the
exit code stays the error's own (1 a check said no, 2 config, 3 an external system).
Nothing after a failed gate runs because the exception leaves the pipeline.

The library never prints: a Reporter is how the pipeline speaks, and the command layer
supplies one that writes through :mod:`safemig.output`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from safemig.errors import SafemigError

PASSED = "passed"
FAILED = "failed"
WARNING = "passed with warnings"
SKIPPED = "skipped"


@dataclass
class GateResult:
    """How one gate ended: what the deploy record and the summary show."""

    name: str
    title: str
    verdict: str = PASSED
    duration_s: float = 0.0
    summary: str = ""
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "duration_s": round(self.duration_s, 3),
            "summary": self.summary,
            "warnings": self.warnings,
            "error": self.error,
            "hint": self.hint,
        }


class Reporter:
    """What the pipeline tells the person running it. Every method is a no-op here."""

    def gate_started(self, name: str, title: str) -> None: ...

    def gate_finished(self, result: GateResult) -> None: ...

    def gate_skipped(self, result: GateResult) -> None:
        """A gate that will not run because an earlier one failed."""

    def note(self, text: str) -> None:
        """A line of detail inside the running gate."""

    def warning(self, text: str) -> None:
        """Something the user should see that does not stop the deploy."""

    def statement(self, env: str, migration: Any, result: Any) -> None:
        """A statement of a migration finished (duration, rows): the verbose production log."""

    def backup_progress(self) -> bool:
        """Whether the backup may draw a progress bar (only on a terminal)."""
        return False


class GateContext:
    """Handed to a running gate: lets it set its one-line summary and add warnings."""

    def __init__(self, result: GateResult, reporter: Reporter) -> None:
        self._result = result
        self._reporter = reporter

    def summary(self, text: str) -> None:
        self._result.summary = text

    def note(self, text: str) -> None:
        self._result.details.append(text)
        self._reporter.note(text)

    def warn(self, text: str) -> None:
        self._result.warnings.append(text)
        self._reporter.warning(text)


class GateRunner:
    """Runs gates in order and remembers every result, including the one that failed."""

    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter or Reporter()
        self.results: list[GateResult] = []

    @property
    def failed(self) -> GateResult | None:
        return next((r for r in self.results if r.verdict == FAILED), None)

    @contextmanager
    def gate(self, name: str, title: str) -> Iterator[GateContext]:
        """Run the ``with`` block as gate ``name``; an exception fails the gate and propagates."""
        result = GateResult(name=name, title=title)
        self.results.append(result)
        self.reporter.gate_started(name, title)
        started = time.monotonic()
        try:
            yield GateContext(result, self.reporter)
        except SafemigError as exc:
            result.verdict = FAILED
            result.error = exc.message
            result.hint = exc.hint
            raise
        except BaseException as exc:  # a bug or Ctrl-C: still recorded as the failing gate
            result.verdict = FAILED
            result.error = (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else f"internal error: {type(exc).__name__}"
            )
            raise
        else:
            if result.warnings:
                result.verdict = WARNING
        finally:
            result.duration_s = time.monotonic() - started
            self.reporter.gate_finished(result)

    def skip(self, name: str, title: str, reason: str, *, announce: bool = False) -> None:
        """Record a gate that did not run (after a failure, or nothing to deploy); ``announce`` tells the reporter."""
        result = GateResult(name=name, title=title, verdict=SKIPPED, summary=reason)
        self.results.append(result)
        if announce:
            self.reporter.gate_skipped(result)
