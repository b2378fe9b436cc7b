#!/usr/bin/env python3
"""Check that a change to the linter left its findings on a corpus byte-identical.

Runs ``safemig lint --no-cache --format json DIR`` with this checkout and with an older
``safemig`` package (``--baseline SRC``, a directory from ``git archive <commit> safemig``),
both from an empty working directory (no ``safemig.toml``, no house rules, no cache), and
compares the two outputs byte for byte. A speed change must pass this before its figures
count (bench/README.md).

Usage: python3 bench/lint_same.py --baseline /tmp/lint-base [--corpus DIR]   (or SAFEMIG_CORPUS)
Exit 0: identical; 1: they differ (the first differing lines are printed); 2: usage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CLI = "import sys; from safemig.cli import main; sys.exit(main())"


def run(corpus: Path, cwd: Path, pythonpath: Path | None) -> bytes:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
        check = "import safemig, sys; assert safemig.__file__.startswith(sys.argv[1]), safemig.__file__"
        subprocess.run([sys.executable, "-c", check, str(pythonpath)], cwd=cwd, env=env, check=True)
    done = subprocess.run(
        [sys.executable, "-c", CLI, "lint", "--no-cache", "--format", "json", str(corpus)],
        cwd=cwd, env=env, capture_output=True, check=False,
    )
    if done.returncode not in (0, 1):
        sys.exit(f"lint exited {done.returncode}: {done.stderr.decode(errors='replace')[-400:]}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a directory holding an older safemig package")
    parser.add_argument("--corpus", type=Path, default=Path(os.environ["SAFEMIG_CORPUS"])
                        if os.environ.get("SAFEMIG_CORPUS") else None)
    args = parser.parse_args()
    if args.corpus is None or not args.corpus.is_dir():
        print("no corpus: pass --corpus DIR or set SAFEMIG_CORPUS", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="safemig-lint-same-") as work:
        before = run(args.corpus.resolve(), Path(work), args.baseline.resolve())
        after = run(args.corpus.resolve(), Path(work), None)
    if before == after:
        print(f"identical: {len(before.splitlines())} lines, {len(before)} bytes")
        return 0
    old, new = before.splitlines(), after.splitlines()
    shown = 0
    for index, (a, b) in enumerate(zip(old, new)):
        if a != b and shown < 5:
            print(f"line {index + 1}:")
            print(f"  before: {a[:300].decode(errors='replace')}")
            print(f"  after:  {b[:300].decode(errors='replace')}")
            shown += 1
    print(f"DIFFERENT: {len(old)} lines before, {len(new)} after")
    return 1


if __name__ == "__main__":
    sys.exit(main())
