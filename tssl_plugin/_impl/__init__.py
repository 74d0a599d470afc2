"""Interchangeable implementations of the TSSL-BP recursions, and the one dispatch point.

Every implementation provides the op's two entry points (what
``tssl_lif`` runs; outputs in ``x``'s dtype, on ``x``'s device):

``forward_op(x, params, psc_output) -> a or o``
    the layer's output for ``x: [T, ...]`` and ``params = (tau_m, tau_s,
    threshold, reset, warmup_width, sensitivity_cap, ablation)`` (numbers already checked; tensors are
    checked where they are read; the forward does not use the width, but the
    packed parameter table holds it);
``backward_op(grad, x, params, warmup, psc_output) -> dL/dx``
    the TSSL-BP input gradient, recomputing the forward trace from ``x``
    (the op saves only ``x``),

and, with the constants given as :class:`~tssl_plugin.rule.LIFConstants`
(float32/float64):

``forward(x, k, save) -> (o, s, saved)``
    spikes ``o`` (bool) and trace ``s``; ``saved`` is what ``backward`` needs;
``backward(grad, saved, k, warmup, psc_output) -> grad_x``;
``backward_from_trace(grad, u, du, o, k, warmup) -> grad_x``
    the same from a forward trace computed elsewhere (the adapters run their
    library's own forward arithmetic and hand over ``u``, ``du``, ``o``; the
    gradient is taken with respect to the spikes, ``psc_output=False``);

and one time step of the step-wise node (:mod:`tssl_plugin.stepwise`), each one
fused pass in the fused implementations:

``step_forward(o, s, inv_tau_s, spike_dtype) -> (spike, s_next)``
    the trace's step ``s + (o - s) inv_tau_s`` and the spikes as ``spike_dtype``
    (None when ``spike_dtype`` is None);
``step_backward(G, h, u, du, o, s, k, warmup, extra, scale) -> (grad_x, delta, finite)``
    :func:`~tssl_plugin._impl.reference.carry_step` (``G`` None: zero), with
    ``grad_x`` times ``scale``; ``finite`` is True/False where the
    implementation checked ``grad_x`` while writing it, else None.

``reference`` (plain PyTorch, :mod:`tssl_plugin._impl.reference`) is the ground
truth every other implementation is tested against. ``cpu``
(:mod:`tssl_plugin._impl.cpu`, a C kernel built at first use) and ``triton``
(:mod:`tssl_plugin._impl.triton_impl`, CUDA) are fused versions.

``impl="auto"`` takes the first implementation in ``_AUTO_ORDER`` that loads
and can run the input. When none can (no C compiler, no Triton on CUDA, a
device without a fused kernel), or when the chosen one fails at run time (a
kernel that does not compile for this GPU), it runs ``reference`` and warns
once, with the reason. :func:`last_used` tells which implementation ran.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from .._types import compute_dtype
from .._validation import check_choice, check_finite
from ..rule import LIFConstants, lif_constants
from . import reference as _ref


class _ReferenceImpl:
    name = "reference"

    @staticmethod
    def available(x: Tensor) -> bool:
        return True

    @staticmethod
    def _constants(x: Tensor, params) -> Tuple[Tensor, LIFConstants]:
        xc = x.to(compute_dtype(x.dtype))
        tau_m, tau_s, threshold, reset, warmup_width, sensitivity_cap, ablation = params
        return xc, lif_constants(xc, tau_m, tau_s, threshold, reset, warmup_width, sensitivity_cap, ablation)

    @staticmethod
    def forward_op(x: Tensor, params, psc_output: bool) -> Tensor:
        xc, k = _ReferenceImpl._constants(x, params)
        check_finite(xc, "x")
        tr = _ref.forward_sequence(xc, k)
        out = tr.s if psc_output else tr.o.to(xc.dtype)
        return out.to(x.dtype)

    @staticmethod
    def backward_op(grad: Tensor, x: Tensor, params, warmup: bool, psc_output: bool) -> Tensor:
        xc, k = _ReferenceImpl._constants(x, params)
        tr = _ref.forward_sequence(xc, k)
        return _ref.backward_sequence(grad.to(xc.dtype), tr, k, warmup, psc_output).to(x.dtype)

    @staticmethod
    def forward(x: Tensor, k: LIFConstants, save: bool):
        tr = _ref.forward_sequence(x, k)
        saved = (tr.u, tr.du, tr.o) if save else ()
        return tr.o, tr.s, saved

    @staticmethod
    def backward(grad: Tensor, saved, k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        if len(saved) == 1:  # only x: recompute the trace
            tr = _ref.forward_sequence(saved[0], k)
            saved = (tr.u, tr.du, tr.o)
        return _ReferenceImpl._backward_trace(grad, *saved, k, warmup, psc_output)

    @staticmethod
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool) -> Tensor:
        return _ReferenceImpl._backward_trace(grad, u, du, o, k, warmup, False)

    @staticmethod
    def _backward_trace(grad, u, du, o, k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        s = _ref.spike_trace(o, k.inv_tau_s, u.dtype)
        return _ref.backward_sequence(grad, _ref.ForwardTrace(o, u, du, s), k, warmup, psc_output)

    @staticmethod
    def step_forward(o: Tensor, s: Tensor, inv_tau_s: Any, spike_dtype: Optional[torch.dtype]):
        spike = None if spike_dtype is None else o.to(spike_dtype)
        return spike, _ref.trace_step(s, o, inv_tau_s)

    @staticmethod
    def step_backward(G: Optional[Tensor], h: Optional[Tensor], u: Tensor, du: Tensor, o: Tensor, s: Tensor,
                      k: LIFConstants, warmup: bool, extra: Optional[Tensor], scale: Any):
        G = torch.zeros_like(u) if G is None else G
        grad_x, delta = _ref.carry_step(G, h, u, du, o, s, k, warmup, extra=extra)
        return grad_x * scale, delta, None


_REGISTRY: Dict[str, Callable[[], Any]] = {"reference": lambda: _ReferenceImpl}
#: order in which ``impl="auto"`` tries the implementations.
_AUTO_ORDER = ["reference"]
#: (device type, dtype) -> the implementation ``auto`` resolved to.
_AUTO_CHOICE: Dict[Tuple[str, torch.dtype], Any] = {}
#: (implementation, device type) -> why it failed at run time; ``auto`` no longer picks it there.
_RUNTIME_FAILURES: Dict[Tuple[str, str], str] = {}
#: fallback reasons already warned about.
_WARNED: set = set()
#: (device type, dtype) -> name of the implementation that ran last.
_LAST_USED: Dict[Tuple[str, torch.dtype], str] = {}


def register(name: str, loader: Callable[[], Any], auto_priority: Optional[int] = None) -> None:
    """Register an implementation; ``loader`` returns it or raises ImportError."""
    _REGISTRY[name] = loader
    if auto_priority is not None and name not in _AUTO_ORDER:
        _AUTO_ORDER.insert(auto_priority, name)
    _AUTO_CHOICE.clear()


def _load_cpu():
    from . import cpu

    return cpu.loader()


def _load_triton():
    from . import triton_impl

    return triton_impl.loader()


register("cpu", _load_cpu, auto_priority=0)
register("triton", _load_triton, auto_priority=1)
#: Triton's interpreter runs its kernels on CPU tensors; triton reads this variable when it is first imported.
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
#: what each fused implementation serves (a loader failure there means a fallback for that device).
_SERVES = {"cpu": ("cpu",), "triton": ("cuda",)}


def names() -> Tuple[str, ...]:
    """Names accepted by ``impl=``."""
    return ("auto",) + tuple(_REGISTRY)


def check_impl(name: object) -> str:
    """``impl=`` must name a registered implementation or ``"auto"`` (ValueError naming the choices)."""
    return check_choice(name, "impl", names())


def _warn_fallback(device_type: str, reason: str) -> None:
    key = (device_type, reason)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(f"tssl_plugin: impl='auto' on {device_type} runs the plain-PyTorch 'reference' implementation "
                  f"(slower): {reason}", RuntimeWarning, stacklevel=4)


def _resolve_auto(x: Tensor):
    reasons = []
    for cand in _AUTO_ORDER:
        if cand == "reference":
            continue
        serves = x.device.type in _SERVES.get(cand, (x.device.type,))
        if not serves and not (cand == "triton" and TRITON_INTERPRET):
            continue  # e.g. no C kernel build for a CUDA input (the interpreter runs Triton on the CPU)
        failed = _RUNTIME_FAILURES.get((cand, x.device.type))
        if failed is not None:
            reasons.append(failed)
            continue
        try:
            impl = _REGISTRY[cand]()
        except Exception as err:  # not installed (ImportError), or installed but broken: never a crash here
            if serves:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                reasons.append(f"impl {cand!r} is not available ({first})")
            continue
        if impl.available(x):
            return impl
    _warn_fallback(x.device.type, "; ".join(reasons) or f"no fused implementation runs {x.dtype} on "
                                                          f"{x.device.type}")
    return _ReferenceImpl


def select(name: str, x: Tensor):
    """Resolve ``impl=name`` for input ``x`` to an implementation object.

    ``auto`` is resolved once per device type and dtype (and warns once when
    it falls back to the reference). A named implementation that cannot run
    raises ImportError (it does not load) or ValueError (not for this input).
    """
    if name == "auto":
        key = (x.device.type, x.dtype)
        impl = _AUTO_CHOICE.get(key)
        if impl is None:
            impl = _AUTO_CHOICE[key] = _resolve_auto(x)
        return impl
    impl = _REGISTRY[check_impl(name)]()
    if not impl.available(x):
        raise ValueError(f"impl {name!r} cannot run on this input ({x.device.type}, {x.dtype})")
    return impl


#: errors that are about the input or the machine's memory, never a reason to change implementation.
_NOT_A_FALLBACK = (ValueError, TypeError, MemoryError, torch.OutOfMemoryError)


def call(name: str, x: Tensor, method: str, *args: Any) -> Any:
    """Run ``method`` of the implementation ``impl=name`` selects for ``x``, falling back for ``auto``.

    If the implementation ``auto`` chose raises at run time (say, a Triton
    kernel that does not compile for this GPU), the call warns once, runs the
    reference instead, and ``auto`` stops choosing that implementation on this
    device type. Errors about the input itself are raised as they are.
    """
    impl = select(name, x)
    try:
        out = getattr(impl, method)(*args)
    except _NOT_A_FALLBACK:
        raise
    except Exception as err:  # a fused implementation that cannot run here
        if name != "auto" or impl is _ReferenceImpl:
            raise
        reason = f"impl {impl.name!r} failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:300]})"
        _RUNTIME_FAILURES[(impl.name, x.device.type)] = reason
        _AUTO_CHOICE.clear()
        _warn_fallback(x.device.type, reason)
        impl = _ReferenceImpl
        out = getattr(impl, method)(*args)
    _LAST_USED[(x.device.type, x.dtype)] = impl.name
    return out


def last_used(device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Optional[str]:
    """Name of the implementation that ran the last op call for inputs of this device type and dtype."""
    return _LAST_USED.get((torch.device(device).type, dtype))


def _reset_for_tests() -> None:
    """Forget choices, failures, warnings given and what ran (tests simulate missing compilers)."""
    _AUTO_CHOICE.clear()
    _RUNTIME_FAILURES.clear()
    _WARNED.clear()
    _LAST_USED.clear()


__all__ = ["LIFConstants", "register", "names", "check_impl", "select", "call", "last_used"]
