"""Interchangeable implementations of the TSSL-BP recursions, and the one dispatch point.

:class:`Implementation` is the contract: exactly what production calls. The op's two entry points (what
``tssl_lif`` runs; outputs in ``x``'s dtype, on ``x``'s device):

``forward_op(x, params, psc_output) -> a or o``
    the layer's output for ``x: [T, ...]`` and the :class:`~tssl_plugin.rule.LIFParameters` ``params`` (numbers
    already checked, :func:`~tssl_plugin.rule.check_parameters`; tensors are checked where they are read);
``backward_op(grad, x, params, warmup, psc_output) -> dL/dx``
    the TSSL-BP input gradient, recomputing the forward trace from ``x``
    (the op saves only ``x``);

the adapters' backward, with the constants given as :class:`~tssl_plugin.rule.LIFConstants`:

``backward_from_trace(grad, u, du, o, k, warmup) -> grad_x``
    the same from a forward trace computed elsewhere (the adapters run their
    library's own forward arithmetic and hand over ``u``, ``du``, ``o``; the
    gradient is taken with respect to the spikes);
``backward_from_host(grad, host, k, warmup, scale) -> (grad_x, finite)``
    the same from what a host's forward returns
    (:class:`~tssl_plugin._impl.reference.HostTrace`: charged membrane,
    membranes, spikes), ``grad_x`` times ``scale``; the fused CPU kernel
    computes :func:`~tssl_plugin._impl.reference.host_trace` inside, the others
    materialise it (:func:`backward_from_host_trace`); ``finite`` as below;

and one time step of the step-wise node (:mod:`tssl_plugin.stepwise`), each one
fused pass in the fused implementations:

``step_forward(o, s, inv_tau_s, warmup_level, spike_dtype) -> (spike, s_next, flags)``
    the trace's step ``s + (o - s) inv_tau_s`` for spikes ``o`` (bool, or 0/1 in ``s``'s dtype: what a compiled
    graph hands over), the spikes as ``spike_dtype``
    (None when ``spike_dtype`` is None) and the step's flags, what its backward needs of ``o`` and
    ``s_next`` (the fused kernels: one byte, :func:`~tssl_plugin._impl.reference.step_flags`; the reference, also
    what ``torch.compile`` traces: :func:`~tssl_plugin._impl.reference.trace_flags`; read by
    :func:`~tssl_plugin._impl.reference.unpack_flags`; None when ``warmup_level`` is None);
``step_backward(G, h, u, du, flags, k, warmup, extra, scale) -> (grad_x, delta, finite)``
    :func:`~tssl_plugin._impl.reference.carry_step` with the spikes and the warm-up's test read from
    ``flags`` and ``du`` a tensor or a :class:`~tssl_plugin._impl.reference.Increment`
    (:func:`~tssl_plugin._impl.reference.increment`) (``G`` None: zero), with
    ``grad_x`` times ``scale``; ``finite`` is True/False where the
    implementation checked ``grad_x`` while writing it, else None.

:data:`BACKENDS` lists the implementations, the devices each runs and how each loads:
``reference`` (plain PyTorch, :mod:`tssl_plugin._impl.reference`, any device) is the ground
truth every other implementation is tested against. ``cpu``
(:mod:`tssl_plugin._impl.cpu`, a C kernel built at first use) and ``triton``
(:mod:`tssl_plugin._impl.triton_impl`, CUDA) are fused versions.

``impl="auto"`` takes the first fused implementation in :data:`BACKENDS` that serves the input's device,
loads and can run the input. When none can (no C compiler, no Triton on CUDA, a
device without a fused kernel), or when the chosen one fails at run time (a
kernel that does not compile for this GPU), it runs ``reference`` and warns
once, with the reason. :func:`last_used` tells which implementation ran.

A loss placed on the membrane (``spikes_with_tssl_grad`` with ``mem``) adds a term to each step's carry,
which the fused whole-sequence kernels do not take and the step kernels do: its backward,
:func:`backward_by_steps`, runs ``step_forward`` and ``step_backward`` of the dispatched implementation
step by step. :func:`call_untraced` is the dispatch of code that runs a kernel per step: the reference's
operations, which the compiler fuses, whenever anything traces.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Dict, NamedTuple, Optional, Protocol, Tuple, TypeVar

import torch
from torch import Tensor

from .._types import compute_dtype
from .._validation import check_choice, check_finite
from ..rule import LIFConstants, LIFParameters
from . import reference as _ref

#: Triton's interpreter runs its kernels on CPU tensors; triton reads this variable when it is first imported.
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


class Implementation(Protocol):
    """What production calls on an implementation (see the module docstring for each entry point)."""

    name: str

    def available(self, x: Tensor) -> bool: ...

    def forward_op(self, x: Tensor, params: LIFParameters, psc_output: bool) -> Tensor: ...

    def backward_op(self, grad: Tensor, x: Tensor, params: LIFParameters, warmup: bool,
                    psc_output: bool) -> Tensor: ...

    def backward_from_trace(self, grad: Tensor, u: Tensor, du: Tensor, o: Tensor, k: LIFConstants,
                            warmup: bool) -> Tensor: ...

    def backward_from_host(self, grad: Tensor, host: _ref.HostTrace, k: LIFConstants, warmup: bool,
                           scale: Any) -> Tuple[Tensor, Optional[bool]]: ...

    def step_forward(self, o: Tensor, s: Tensor, inv_tau_s: Any, warmup_level: Any,
                     spike_dtype: Optional[torch.dtype]) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor]]: ...

    def step_backward(self, G: Optional[Tensor], h: Optional[Tensor], u: Tensor, du: Any, flags: Tensor,
                      k: LIFConstants, warmup: bool, extra: Optional[Tensor],
                      scale: Any) -> Tuple[Tensor, Tensor, Optional[bool]]: ...


def backward_from_host_trace(impl: Any, grad: Tensor, host: _ref.HostTrace, k: LIFConstants, warmup: bool,
                             scale: Any) -> Tuple[Tensor, None]:
    """``backward_from_host`` of an implementation without a fused one: ``impl.backward_from_trace`` on the
    trace :func:`~tssl_plugin._impl.reference.host_trace` materialises, times ``scale`` (not checked: None)."""
    u, du, o = _ref.host_trace(host, compute_dtype(host.h.dtype))
    return impl.backward_from_trace(grad, u, du, o, k, warmup) * scale, None


class _ReferenceImpl:
    name = "reference"

    @staticmethod
    def available(x: Tensor) -> bool:
        return True

    @staticmethod
    def _constants(x: Tensor, params: LIFParameters) -> Tuple[Tensor, LIFConstants]:
        xc = x.to(compute_dtype(x.dtype))
        return xc, params.constants(xc)

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
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool) -> Tensor:
        s = _ref.spike_trace(o, k.inv_tau_s, u.dtype)
        return _ref.backward_sequence(grad, _ref.ForwardTrace(o, u, du, s), k, warmup, False)

    @staticmethod
    def backward_from_host(grad: Tensor, host: _ref.HostTrace, k: LIFConstants, warmup: bool, scale: Any):
        return backward_from_host_trace(_ReferenceImpl, grad, host, k, warmup, scale)

    @staticmethod
    def step_forward(o: Tensor, s: Tensor, inv_tau_s: Any, warmup_level: Any, spike_dtype: Optional[torch.dtype]):
        spike = None if spike_dtype is None else o.to(spike_dtype)
        s_next = _ref.trace_step(s, o, inv_tau_s)
        return spike, s_next, None if warmup_level is None else _ref.trace_flags(o, s_next)

    @staticmethod
    def step_backward(G: Optional[Tensor], h: Optional[Tensor], u: Tensor, du: Any, flags: Tensor,
                      k: LIFConstants, warmup: bool, extra: Optional[Tensor], scale: Any):
        G = torch.zeros_like(u) if G is None else G
        o, warm = _ref.unpack_flags(flags, k.warmup_level)
        du = _ref.increment(u, du, k.threshold)
        grad_x, delta = _ref.carry_step(G, h, u, du, o, warm, k, warmup, extra=extra)
        return grad_x * scale, delta, None


def _load_reference() -> Implementation:
    return _ReferenceImpl


def _load_cpu() -> Implementation:
    from . import cpu

    return cpu.loader()


def _load_triton() -> Implementation:
    from . import triton_impl

    return triton_impl.loader()


class Backend(NamedTuple):
    """One implementation: its ``impl=`` name, the device types it serves (None: any device, the fallback) and
    its loader (returns the implementation, or raises: ImportError when it is not installed or cannot be built)."""

    name: str
    devices: Optional[Tuple[str, ...]]
    load: Callable[[], Implementation]


#: every implementation; ``impl="auto"`` tries the fused ones (those with devices) in this order.
BACKENDS: Tuple[Backend, ...] = (
    Backend("reference", None, _load_reference),
    Backend("cpu", ("cpu",), _load_cpu),
    Backend("triton", ("cuda", "cpu") if TRITON_INTERPRET else ("cuda",), _load_triton),
)


class _DispatchState:
    """What the dispatch remembers between calls (one instance, :data:`_STATE`)."""

    def __init__(self) -> None:
        #: (device type, dtype) -> the implementation ``auto`` resolved to.
        self.auto_choice: Dict[Tuple[str, torch.dtype], Implementation] = {}
        #: (implementation, device type) -> why it failed at run time; ``auto`` no longer picks it there.
        self.runtime_failures: Dict[Tuple[str, str], str] = {}
        #: fallback reasons already warned about.
        self.warned: set = set()
        #: (device type, dtype) -> name of the implementation that ran last.
        self.last_used: Dict[Tuple[str, torch.dtype], str] = {}

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


_STATE = _DispatchState()


def _backend(name: str) -> Backend:
    return next(b for b in BACKENDS if b.name == name)


def names() -> Tuple[str, ...]:
    """Names accepted by ``impl=``."""
    return ("auto",) + tuple(b.name for b in BACKENDS)


def check_impl(name: object) -> str:
    """``impl=`` must name a registered implementation or ``"auto"`` (ValueError naming the choices)."""
    return check_choice(name, "impl", names())


def _warn_fallback(device_type: str, reason: str) -> None:
    key = (device_type, reason)
    if key in _STATE.warned:
        return
    _STATE.warned.add(key)
    warnings.warn(f"tssl_plugin: impl='auto' on {device_type} runs the plain-PyTorch 'reference' implementation "
                  f"(slower): {reason}", RuntimeWarning, stacklevel=4)


def _resolve_auto(x: Tensor) -> Implementation:
    reasons = []
    for backend in BACKENDS:
        if backend.devices is None or x.device.type not in backend.devices:
            continue  # the fallback, or not for this device (e.g. no C kernel build for a CUDA input)
        failed = _STATE.runtime_failures.get((backend.name, x.device.type))
        if failed is not None:
            reasons.append(failed)
            continue
        try:
            impl = backend.load()
        except Exception as err:  # not installed (ImportError), or installed but broken: never a crash here
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            reasons.append(f"impl {backend.name!r} is not available ({first})")
            continue
        if impl.available(x):
            return impl
    _warn_fallback(x.device.type, "; ".join(reasons) or f"no fused implementation runs {x.dtype} on "
                                                          f"{x.device.type}")
    return _ReferenceImpl


def select(name: str, x: Tensor) -> Implementation:
    """Resolve ``impl=name`` for input ``x`` to an implementation.

    ``auto`` is resolved once per device type and dtype (and warns once when
    it falls back to the reference). A named implementation that cannot run
    raises ImportError (it does not load) or ValueError (not for this input).
    """
    if name == "auto":
        key = (x.device.type, x.dtype)
        impl = _STATE.auto_choice.get(key)
        if impl is None:
            impl = _STATE.auto_choice[key] = _resolve_auto(x)
        return impl
    impl = _backend(check_impl(name)).load()
    if not impl.available(x):
        raise ValueError(f"impl {name!r} cannot run on this input ({x.device.type}, {x.dtype})")
    return impl


#: errors that are about the input or the machine's memory, never a reason to change implementation.
_NOT_A_FALLBACK = (ValueError, TypeError, MemoryError, torch.OutOfMemoryError)
R = TypeVar("R")


def call(name: str, x: Tensor, run: Callable[[Implementation], R]) -> R:
    """``run(impl)`` with the implementation ``impl=name`` selects for ``x``, falling back for ``auto``.

    ``run`` calls one entry point of :class:`Implementation`, e.g. ``lambda impl: impl.forward_op(x, p, psc)``.
    If the implementation ``auto`` chose raises at run time (say, a Triton
    kernel that does not compile for this GPU), the call warns once, runs the
    reference instead, and ``auto`` stops choosing that implementation on this
    device type. Errors about the input itself are raised as they are.
    """
    impl = select(name, x)
    try:
        out = run(impl)
    except _NOT_A_FALLBACK:
        raise
    except Exception as err:  # a fused implementation that cannot run here
        if name != "auto" or impl is _ReferenceImpl:
            raise
        reason = f"impl {impl.name!r} failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:300]})"
        _STATE.runtime_failures[(impl.name, x.device.type)] = reason
        _STATE.auto_choice.clear()
        _warn_fallback(x.device.type, reason)
        impl = _ReferenceImpl
        out = run(impl)
    _STATE.last_used[(x.device.type, x.dtype)] = impl.name
    return out


def plain_eager(x: Tensor) -> bool:
    """True when nothing traces this call: a plain tensor, no compiler, no mode, no functorch transform."""
    return (
        type(x) is Tensor
        and not torch.compiler.is_compiling()
        and torch._C._len_torch_dispatch_stack() == 0
        and not torch._C._is_torch_function_mode_enabled()
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def call_untraced(name: str, like: Tensor, run: Callable[[Implementation], R]) -> R:
    """:func:`call` when nothing traces (:func:`plain_eager`) and no backward builds a graph of its own
    (``create_graph=True``); otherwise ``run`` on the reference, whose PyTorch operations the compiler traces and
    fuses (a fused kernel is opaque to it)."""
    if plain_eager(like) and not torch.is_grad_enabled():
        return call(name, like, run)
    return run(_ReferenceImpl)


def backward_by_steps(impl: Implementation, grad: Optional[Tensor], u: Tensor, du: Tensor, o: Tensor,
                      k: LIFConstants, warmup: bool, extra: Tensor) -> Tensor:
    """``backward_from_trace`` with a loss on the membrane as well, ``extra[t] = dL/du[t]``, added to ``delta[t]``
    before it is carried back (:func:`~tssl_plugin._impl.reference.carry_step`); ``grad`` (``dL/do``) may be None.

    The fused whole-sequence kernels take no such term and the step kernels do, so this runs ``impl``'s
    ``step_forward`` over the spikes (the trace's flags) and then its ``step_backward`` from the last step to the
    first: one fused pass per step in the fused implementations, the step-wise node's arithmetic exactly.
    Returns ``dL/dx`` in ``u``'s dtype.
    """
    dt = u.dtype
    s = torch.zeros_like(u[0])
    flags = []
    for t in range(u.shape[0]):
        _, s, f = impl.step_forward(o[t], s, k.inv_tau_s, k.warmup_level, None)
        flags.append(f)
    grad = None if grad is None else grad.to(dt)
    extra = extra.to(dt)
    grad_x = torch.empty_like(u)
    h: Optional[Tensor] = None
    for t in range(u.shape[0] - 1, -1, -1):
        grad_x[t], h, _ = impl.step_backward(None if grad is None else grad[t], h, u[t], du[t], flags[t], k,
                                             warmup, extra[t], 1.0)
    return grad_x


def last_used(device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Optional[str]:
    """Name of the implementation that ran the last op call for inputs of this device type and dtype."""
    return _STATE.last_used.get((torch.device(device).type, dtype))


def _reset_for_tests() -> None:
    """Forget choices, failures, warnings given and what ran (tests simulate missing compilers)."""
    _STATE.clear()


__all__ = ["LIFConstants", "Implementation", "Backend", "BACKENDS", "names", "check_impl", "select", "call",
           "call_untraced", "plain_eager", "backward_by_steps", "last_used"]
