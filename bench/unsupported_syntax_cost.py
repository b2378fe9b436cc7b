#!/usr/bin/env python3
"""What ``unsupported-syntax`` costs a whole cold ``safemig lint`` of a corpus: CPU with the rule on and off.

One process, one worker (the same work ``safemig lint --no-cache`` does per file), the two runs
interleaved ``--rounds`` times; prints each run's CPU time and the minimum of each side. The
difference of the minimums is the rule's cost, parsing and the other rules included on both sides.

Usage: bench/unsupported_syntax_cost.py [--rounds 4] [--corpus /work/corpus]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from safemig.config import load_config
    from safemig.lint import lint_paths, registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("SAFEMIG_CORPUS", "/work/corpus")))
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="safemig-cost-"))  # no safemig.toml: the default target (15)
    config = load_config()
    every = registry.all_rules

    def without(*a, **k):
        return [rule for rule in every(*a, **k) if rule.id != "unsupported-syntax"]

    times: dict[str, list[float]] = {"on": [], "off": []}
    with mock.patch("os.cpu_count", return_value=1):
        for _ in range(args.rounds):
            for side, rules in (("on", every), ("off", without)):
                with mock.patch("safemig.lint.registry.all_rules", rules):
                    start = time.process_time()
                    lint_paths([args.corpus], config, use_cache=False)
                    times[side].append(time.process_time() - start)
    for side, runs in times.items():
        print(f"rule {side:3}: " + " ".join(f"{t:.3f}" for t in runs) + f"  min {min(runs):.3f} s")
    print(f"cost: {min(times['on']) - min(times['off']):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
