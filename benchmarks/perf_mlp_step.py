"""``python -m tssl_plugin.benchmarks.perf_mlp_step``: the earlier name of ``tssl-bench speed mlp-step`` (speed_mlp_step.py),
kept because the performance tables in the docs quote it. Same options, same output."""
from .speed_mlp_step import main

if __name__ == "__main__":
    raise SystemExit(main())
