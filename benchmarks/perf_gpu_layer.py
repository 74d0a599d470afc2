"""``python -m tssl_plugin.benchmarks.perf_gpu_layer``: the earlier name of ``tssl-bench speed gpu-layer`` (speed_gpu_layer.py),
kept because the performance tables in the docs quote it. Same options, same output."""
from .speed_gpu_layer import main

if __name__ == "__main__":
    raise SystemExit(main())
