r"""TSSL-BP as pure functions: the spiking layer :func:`tssl_lif` and the PSC filter :func:`psp`.

Time-first layout throughout: a sequence is ``[T, N, ...]``.

Forward of one layer (Zhang & Li, NeurIPS 2020), per neuron, from ``v = s = 0``:

.. math::

    \Delta u[t] &= x[t] - v / \tau_m \\
    u[t] &= v + \Delta u[t] \\
    o[t] &= [u[t] > \vartheta] \\
    v &= u[t] (1 - o[t]) \quad\text{(reset to zero)} \\
    a[t] = s &= s + (o[t] - s) / \tau_s

Backward (TSSL-BP): with ``G[t] = sum_{t'>=t} kappa[t'-t] dL/da[t']`` and
``c[t] = o[t] min(1/Delta u[t], 8)``, walking back with carry ``h``::

    delta[t] = c[t] (G[t] + h u[t] / tau_m) + (1 - o[t]) (1 - 1/tau_m) h

``dL/dx[t] = delta[t]``, except that with ``warmup=True`` steps whose trace
``s[t] < 1/(4 tau_s)`` get the surrogate ``G[t] sigma'((u[t]-theta)/0.2)/0.2``.
O(T) time and memory.
"""
from __future__ import annotations

from typing import Any, Tuple, Union

import torch
from torch import Tensor

from . import _impl
from ._impl.reference import RESETS, LIFConstants
from ._validation import as_param, check_choice, check_sequence

Param = Union[float, Tensor]

OUTPUTS = ("psc", "spike")

__all__ = ["tssl_lif", "psp", "lif_constants", "spikes_with_tssl_grad", "impl_names", "OUTPUTS", "RESETS"]


def lif_constants(
    x: Tensor,
    tau_m: Param = 5.0,
    tau_s: Param = 3.0,
    threshold: Param = 1.0,
    reset: str = "zero",
) -> LIFConstants:
    """Validate the neuron parameters against input ``x`` and turn them into recursion constants.

    Parameters are Python numbers or tensors broadcastable to ``x.shape[1:]``
    (one value per neuron). ``tau_m`` must be > 1 (``float('inf')`` gives a
    non-leaky IF neuron), ``tau_s`` >= 1, ``threshold`` finite.
    """
    check_choice(reset, "reset", RESETS)
    shape = x.shape[1:]
    tm = as_param(tau_m, "tau_m", shape, x, lower=1.0, allow_inf=True)
    ts = as_param(tau_s, "tau_s", shape, x, lower=1.0, lower_inclusive=True)
    th = as_param(threshold, "threshold", shape, x)
    return LIFConstants(1.0 / tm, 1.0 / ts, th, 1.0 / (4.0 * ts), reset)


class _TSSLFunction(torch.autograd.Function):
    """Autograd node: forward through the chosen implementation, TSSL-BP backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: LIFConstants, warmup: bool, psc_output: bool, impl: Any) -> Tensor:
        o, s, saved = impl.forward(x, k, True)
        ctx.save_for_backward(*saved)
        ctx.meta = (k, warmup, psc_output, impl)
        return s if psc_output else o.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        k, warmup, psc_output, impl = ctx.meta
        grad_x = impl.backward(grad.contiguous(), ctx.saved_tensors, k, warmup, psc_output)
        return grad_x, None, None, None, None


_COMPUTE_DTYPES = (torch.float32, torch.float64)


def tssl_lif(
    x: Tensor,
    tau_m: Param = 5.0,
    tau_s: Param = 3.0,
    threshold: Param = 1.0,
    *,
    warmup: bool = True,
    output: str = "psc",
    reset: str = "zero",
    impl: str = "auto",
) -> Tensor:
    """TSSL-BP leaky integrate-and-fire layer over a whole sequence.

    Args:
        x: input current, time-first ``[T, N, ...]``; float16/bfloat16/float32/float64,
            any device. Half-precision inputs are computed in float32 and the
            result is cast back.
        tau_m: membrane time constant (> 1; ``inf`` = no leak), number or
            per-neuron tensor broadcastable to ``x.shape[1:]``.
        tau_s: synaptic (PSC) time constant (>= 1), number or per-neuron tensor.
        threshold: firing threshold, number or per-neuron tensor. Fires where ``u > threshold``.
        warmup: reference behaviour (True): silent steps (``s < 1/(4 tau_s)``)
            get a sigmoid-derivative surrogate; False is the pure rule.
        output: ``"psc"`` returns the post-synaptic current ``a`` (the paper's
            layer output); ``"spike"`` returns spikes ``o`` and treats the
            incoming gradient as ``dL/do`` (used in place of ``G``).
        reset: ``"zero"`` (paper), ``"subtract"`` (extension: ``v = u - theta o``,
            then the leak), ``"subtract_after_leak"`` (extension: the threshold
            is subtracted from the next step after the leak, as snnTorch does),
            ``"none"`` (no reset).
        impl: implementation, ``"auto"`` or one of ``tssl_plugin.functional.impl_names()``.

    Returns:
        ``a`` or ``o``, same shape, dtype and device as ``x``. Neuron parameters
        receive no gradient.
    """
    check_sequence(x)
    check_choice(output, "output", OUTPUTS)
    if not isinstance(warmup, bool):
        raise TypeError(f"warmup must be a bool, got {type(warmup).__name__}")
    xc = x if x.dtype in _COMPUTE_DTYPES else x.float()
    k = lif_constants(xc, tau_m, tau_s, threshold, reset)
    chosen = _impl.select(impl, xc)
    psc = output == "psc"
    if torch.is_grad_enabled() and xc.requires_grad:
        out = _TSSLFunction.apply(xc, k, warmup, psc, chosen)
    else:
        o, s, _ = chosen.forward(xc.detach(), k, False)
        out = s if psc else o.to(xc.dtype)
    return out if out.dtype == x.dtype else out.to(x.dtype)


class _TraceGradFunction(torch.autograd.Function):
    """Spikes computed elsewhere, with the TSSL-BP gradient w.r.t. the input current."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, u: Tensor, du: Tensor, o: Tensor, k: LIFConstants,
                warmup: bool, input_scale: Param, impl: Any) -> Tensor:
        ctx.save_for_backward(u, du, o)
        ctx.meta = (k, warmup, input_scale, impl)
        return o.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        k, warmup, input_scale, impl = ctx.meta
        u, du, o = ctx.saved_tensors
        grad_x = impl.backward_from_trace(grad.contiguous(), u, du, o, k, warmup, False)
        return grad_x * input_scale, None, None, None, None, None, None, None


def spikes_with_tssl_grad(
    x: Tensor,
    u: Tensor,
    du: Tensor,
    o: Tensor,
    k: LIFConstants,
    *,
    warmup: bool = True,
    input_scale: Param = 1.0,
    impl: str = "auto",
) -> Tensor:
    """The core op's backward on a forward pass computed elsewhere (for library adapters).

    Returns ``o`` as ``x.dtype``; its gradient ``dL/do`` is turned into
    ``dL/dx = input_scale * TSSL-BP(dL/do)`` by the same implementation
    :func:`tssl_lif` uses. ``u`` (membrane before reset, relative to the reset
    value), ``du`` (its increment) and ``o`` (bool spikes) are ``[T, ...]``
    traces of the forward the caller ran with its own arithmetic; ``k`` comes
    from :func:`lif_constants` (threshold relative to the reset value).
    ``input_scale`` is ``d(effective current)/dx`` (``1/tau`` for an input
    that is divided by tau before integration).
    """
    chosen = _impl.select(impl, u)
    if torch.is_grad_enabled() and x.requires_grad:
        return _TraceGradFunction.apply(x, u.detach(), du.detach(), o.detach(), k, warmup, input_scale, chosen)
    return o.to(x.dtype)


def impl_names() -> Tuple[str, ...]:
    """The names ``tssl_lif(impl=...)`` accepts."""
    return _impl.names()


def psp(x: Tensor, tau_s: Param = 3.0) -> Tensor:
    """PSC filter along dim 0: ``q[t] = q[t-1] (1 - 1/tau_s) + x[t]``, returns ``q[t] / tau_s``.

    Used to encode a static image repeated over T steps (the reference input
    encoding) and to build kernel-loss targets. Linear, differentiable by
    autograd, O(T).
    """
    check_sequence(x)
    ts = as_param(tau_s, "tau_s", x.shape[1:], x, lower=1.0, lower_inclusive=True)
    decay = 1.0 - 1.0 / ts
    q = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        q = q * decay + x[t]
        out.append(q / ts)
    return torch.stack(out)
