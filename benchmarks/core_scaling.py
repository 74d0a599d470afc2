"""``python -m tssl_plugin.benchmarks.core_scaling``: the earlier name of ``tssl-bench speed scaling`` (speed_scaling.py),
kept because the performance tables in the docs quote it. Same options, same output."""
from .speed_scaling import main

if __name__ == "__main__":
    raise SystemExit(main())
