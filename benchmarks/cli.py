"""``tssl-bench``: command line of the benchmark harness (not built yet)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(
        "tssl-bench: the training benchmark harness is not built yet (issue: Benchmark harness). "
        "Use benchmarks/core_scaling.py from a source checkout for the core op's scaling.",
        file=sys.stderr,
    )
    return 2
