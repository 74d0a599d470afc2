"""The benchmark harness, installed as ``tssl_plugin.benchmarks`` (``tssl-bench``)."""
