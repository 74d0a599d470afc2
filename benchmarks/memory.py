"""How the harness measures peak memory, and the names under which it reports it.

* CUDA: the allocator's peak, ``torch.cuda.max_memory_allocated`` (training: over the epoch; one layer:
  above what was allocated before the call).
* CPU, where no allocator peak exists: the bytes of the tensors autograd saves for backward, each storage
  counted once (:class:`SavedBytes`, through ``torch.autograd.graph.saved_tensors_hooks``); for training
  plus the parameters, their gradients and the optimiser state (:func:`state_bytes`). The process peak RSS
  (:func:`process_peak_rss_mb`, whole process, never decreases) is recorded alongside.
"""
from __future__ import annotations

import sys
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor, nn

__all__ = ["CUDA_PEAK", "CPU_SAVED", "CPU_SAVED_PLUS_STATE", "MEASURE_LABELS", "memory_measure", "SavedBytes",
           "state_bytes", "cuda_peak_bytes", "process_peak_rss_mb"]

CUDA_PEAK = "cuda_max_memory_allocated"
CPU_SAVED = "cpu_autograd_saved_tensors"
CPU_SAVED_PLUS_STATE = "cpu_autograd_saved_tensors_plus_params_grads_optimizer"
#: short labels of the measures, for plots.
MEASURE_LABELS = {CUDA_PEAK: "CUDA allocator peak",
                  CPU_SAVED_PLUS_STATE: "CPU: saved for backward + params, grads, optimizer state",
                  CPU_SAVED: "CPU: tensors saved for backward"}


def memory_measure(device: torch.device, *, with_state: bool = True) -> str:
    """Name of the peak-memory figure reported for ``device`` (``with_state``: training, which adds the
    parameters, gradients and optimiser state on CPU)."""
    if device.type == "cuda":
        return CUDA_PEAK
    return CPU_SAVED_PLUS_STATE if with_state else CPU_SAVED


class SavedBytes:
    """Counts bytes of distinct storages autograd saves for backward while the ``with`` block runs::

        with SavedBytes() as saved:
            out = net(x)
        saved.total
    """

    def __init__(self) -> None:
        self.seen: Dict[Tuple[int, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def __enter__(self) -> "SavedBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def pack(self, t: Tensor) -> Tensor:
        try:
            st = t.untyped_storage()
            self.seen[(st.data_ptr(), t.device.index or 0)] = st.nbytes()
        except Exception:  # tensors without storage (e.g. sparse, wrapper subclasses)
            self.seen[(id(t), -1)] = t.numel() * t.element_size()
        return t

    @staticmethod
    def unpack(t: Tensor) -> Tensor:
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Bytes of the parameters, their gradients (as many again) and the optimiser's state tensors."""
    n = sum(p.numel() * p.element_size() * 2 for p in model.parameters())  # weights + grads
    for st in opt.state.values():
        n += sum(v.numel() * v.element_size() for v in st.values() if isinstance(v, Tensor))
    return n


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """CUDA allocator peak during ``fn()`` above what was allocated before it."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def process_peak_rss_mb() -> float:
    """The process's peak resident set size in MiB (``ru_maxrss``; NaN where unavailable)."""
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024
    except Exception:
        return float("nan")
