"""Interchangeable implementations of the TSSL-BP recursions, and the one dispatch point.

Every implementation provides the same two functions over a whole sequence:

``forward(x, k, save) -> (o, s, saved)``
    spikes ``o`` (bool) and trace ``s`` for ``x: [T, ...]``; ``saved`` is the
    tuple of tensors its ``backward`` needs (empty when ``save`` is False).
``backward(grad, saved, k, warmup, psc_output) -> grad_x``
    the TSSL-BP input gradient.
``backward_from_trace(grad, u, du, o, k, warmup, psc_output) -> grad_x``
    the same from a forward trace computed elsewhere (the adapters run their
    library's own forward arithmetic and hand over ``u``, ``du``, ``o``).

``reference`` (plain PyTorch, :mod:`tssl_plugin._impl.reference`) is the ground
truth every other implementation is tested against. ``cpu``
(:mod:`tssl_plugin._impl.cpu`, a C kernel built at first use) and ``triton``
(:mod:`tssl_plugin._impl.triton_impl`, CUDA) are fused versions; ``impl="auto"``
takes the first available one in ``_AUTO_ORDER`` and falls back to the
reference without a warning when none can run.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor

from . import reference as _ref
from .reference import LIFConstants


class _ReferenceImpl:
    name = "reference"

    @staticmethod
    def available(x: Tensor) -> bool:
        return True

    @staticmethod
    def forward(x: Tensor, k: LIFConstants, save: bool):
        tr = _ref.forward_sequence(x, k)
        saved = (tr.u, tr.du, tr.o) if save else ()
        return tr.o, tr.s, saved

    @staticmethod
    def backward(grad: Tensor, saved, k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        return _ReferenceImpl.backward_from_trace(grad, *saved, k, warmup, psc_output)

    @staticmethod
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        s = _ref.spike_trace(o, k.inv_tau_s, u.dtype)
        return _ref.backward_sequence(grad, _ref.ForwardTrace(o, u, du, s), k, warmup, psc_output)


_REGISTRY: Dict[str, Callable[[], object]] = {"reference": lambda: _ReferenceImpl}
#: order in which ``impl="auto"`` tries the implementations.
_AUTO_ORDER = ["reference"]


def register(name: str, loader: Callable[[], object], auto_priority: int | None = None) -> None:
    """Register an implementation; ``loader`` returns it or raises ImportError."""
    _REGISTRY[name] = loader
    if auto_priority is not None and name not in _AUTO_ORDER:
        _AUTO_ORDER.insert(auto_priority, name)


def _load_cpu():
    from . import cpu

    return cpu.loader()


def _load_triton():
    from . import triton_impl

    return triton_impl.loader()


register("cpu", _load_cpu, auto_priority=0)
register("triton", _load_triton, auto_priority=1)


def names() -> Tuple[str, ...]:
    """Names accepted by ``impl=``."""
    return ("auto",) + tuple(_REGISTRY)


def select(name: str, x: Tensor):
    """Resolve ``impl=name`` for input ``x`` to an implementation object."""
    if name == "auto":
        for cand in _AUTO_ORDER:
            try:
                impl = _REGISTRY[cand]()
            except ImportError:
                continue
            if impl.available(x):
                return impl
        return _ReferenceImpl
    if name not in _REGISTRY:
        raise ValueError(f"unknown impl {name!r}; expected one of {', '.join(names())}")
    impl = _REGISTRY[name]()
    if not impl.available(x):
        raise ValueError(f"impl {name!r} cannot run on this input ({x.device.type}, {x.dtype})")
    return impl


__all__ = ["LIFConstants", "register", "names", "select"]
