"""A Rich progress line (bytes so far, rate) for long transfers, on a terminal only.

Obtained through :func:`safemig.output.console` like every other terminal write; when
disabled (CI, pipes, the library called from deploy) it costs one no-op call per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def transfer_progress(description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(nbytes)``; shows a transient bar on stderr when ``enabled``."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import (
        FileSizeColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from safemig import output

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        FileSizeColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=output.console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n: bar.advance(task, n)
