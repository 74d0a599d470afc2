"""The benchmark harness, installed as ``tssl_plugin.benchmarks`` (``tssl-bench``).

``tssl_plugin.benchmarks.compare(make_model, train_loader, test_loader, loss_fn, library=..., ...)``
trains your own model unconverted and converted, side by side (comparison.py).
"""
from typing import Any

__all__ = ["compare"]


def __getattr__(name: str) -> Any:  # loaded on first use: ``tssl-bench``'s commands do not need it
    if name == "compare":
        from .comparison import compare

        return compare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
