"""CPU of safemig's archive reader against ``pg_restore -f /dev/null`` on the same archive files.

    pg_dump -Fc -Z1 --dbname=... > /var/tmp/x.dump
    python bench/archive_read_bench.py [--runs 3] /var/tmp/x.dump [...]

For each file: ``walk()`` over its bytes in 1 MiB chunks (this process's CPU), the same through
:class:`ArchiveReader`'s thread (fed memoryviews, as the backup feeds it), and ``pg_restore -f
/dev/null FILE`` (its CPU as a child), interleaved, medians of ``--runs``. CPU, not wall: the
machine is shared.

Does the reader slow the upload? The upload's own thread hashes every chunk (SHA-256 of the
stream, MD5 of each part, both releasing the GIL on big buffers) and feeds the reader; "hashing
alone" times that loop's wall clock without the reader, "hashing + reader" with it (until the
last chunk is handed over, not until the reader ends): the difference is what the reader's
Python work, holding the GIL, costs the feeding thread.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

from safemig.backup.archive import ArchiveReader, walk

CHUNK = 1 << 20


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for path in args.files:
        data = path.read_bytes()
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        view = memoryview(data)
        got: dict[str, list[float]] = {"walk": [], "thread": [], "pg_restore": [], "hash": [], "hash_read": []}
        inflated = 0
        for _ in range(args.runs):
            started = time.process_time()
            inflated = walk(chunks).inflated_bytes
            got["walk"].append(time.process_time() - started)
            started = time.process_time()
            reader = ArchiveReader()
            for i in range(0, len(data), CHUNK):
                reader.feed(view[i : i + CHUNK])
            reader.conclude()
            got["thread"].append(time.process_time() - started)
            for key, reader_on in (("hash", False), ("hash_read", True)):
                # a queue that holds the whole file: the loop never waits for the reader, only for the GIL
                reader = ArchiveReader(max_queued=len(data) // CHUNK + 2) if reader_on else None
                started = time.perf_counter()
                sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
                for i in range(0, len(data), CHUNK):
                    sha.update(view[i : i + CHUNK])
                    md5.update(view[i : i + CHUNK])
                    if reader is not None:
                        reader.feed(view[i : i + CHUNK])
                got[key].append(time.perf_counter() - started)
                if reader is not None:
                    reader.conclude()
            before = _children_cpu()
            subprocess.run(["pg_restore", "-f", os.devnull, str(path)], check=True)
            got["pg_restore"].append(_children_cpu() - before)
        med = {k: statistics.median(v) for k, v in got.items()}
        print(
            f"{path.name}: {len(data) / 1e6:.1f} MB, {inflated / 1e6:.1f} MB inflated; CPU s, median of {args.runs}:"
            f" reader {med['walk']:.3f} (in a thread {med['thread']:.3f}), pg_restore -f /dev/null"
            f" {med['pg_restore']:.3f}, ratio {med['walk'] / med['pg_restore']:.2f};"
            f" wall of the feeding thread's hashing alone {med['hash']:.3f} s, with the reader beside it"
            f" {med['hash_read']:.3f} s"
        )


if __name__ == "__main__":
    main()
