"""The cyclic garbage collector paused while a backup or restore starts.

Loading psycopg and botocore's S3 model makes tens of thousands of long-lived objects, and the
collector walks them again and again meanwhile (~0.03-0.05 s of CPU, measured: 165 collections
before a restore's first byte), all of it before pg_dump starts or before the first byte reaches
pg_restore. Only the start-up: the stream's requests may make cycles, and a long backup or
restore must not pile them up, so the caller resumes it once the slow imports are behind it.
"""

from __future__ import annotations

import gc


class StartupGC:
    """``with StartupGC() as pause: ... pause.resume()``; resumed at the latest on leaving the block.

    A collector that was already off (the caller's choice) is left off.
    """

    def __init__(self) -> None:
        self._paused = False

    def __enter__(self) -> StartupGC:
        if gc.isenabled():
            gc.disable()
            self._paused = True
        return self

    def resume(self, *_: object) -> None:
        if self._paused:
            self._paused = False
            gc.enable()

    def __exit__(self, *exc: object) -> None:
        self.resume()
