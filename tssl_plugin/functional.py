"""TSSL-BP as pure functions: the spiking layer :func:`tssl_lif` and the PSC filter :func:`psp`.

Time-first layout throughout: a sequence is ``[T, N, ...]``. The rule these
functions compute (forward recursion, TSSL-BP backward, resets, warm-up) is
stated once, with its math, in :mod:`tssl_plugin.rule`. Time and memory are
O(T).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from . import _impl
from ._impl import _op
from ._impl import reference as _reference
from ._impl.reference import HostTrace
from ._types import Warmup, compute_dtype
from ._validation import as_param, check_choice, check_gradient_finite, check_sequence
from .rule import (
    OUTPUTS, RESETS, SENSITIVITY_CAP, WARMUP_WIDTH, LIFConstants, LIFParameters, Param, check_ablation,
    check_parameters, check_warmup, lif_constants, warmup_gate,
)

__all__ = [
    "tssl_lif", "psp", "lif_constants", "spikes_with_tssl_grad", "spikes_with_host_grad", "HostTrace", "impl_names",
    "last_impl", "resolve_impl", "OUTPUTS", "RESETS", "LIFConstants",
]


def tssl_lif(
    x: Tensor,
    tau_m: Param = 5.0,
    tau_s: Param = 3.0,
    threshold: Param = 1.0,
    *,
    warmup: Warmup = True,
    output: str = "psc",
    reset: str = "zero",
    impl: str = "auto",
    warmup_width: float = WARMUP_WIDTH,
    sensitivity_cap: float = SENSITIVITY_CAP,
    ablation: str = "none",
    warmup_floor: bool = True,
    crossing: str = "step",
) -> Tensor:
    """TSSL-BP leaky integrate-and-fire layer over a whole sequence (the rule: :mod:`tssl_plugin.rule`).

    A registered operator (``torch.ops.tssl_plugin.lif``): ``torch.compile``
    traces it without a graph break, ``torch.export`` keeps it as one node.

    Args:
        x: input current, time-first ``[T, N, ...]``; float16/bfloat16/float32/float64,
            any device. The Triton kernels compute half precision natively (state in
            float32); the CPU kernel and the reference compute it in float32 and cast back.
        tau_m: membrane time constant (> 1; ``inf`` = no leak), number or
            per-neuron tensor broadcastable to ``x.shape[1:]``.
        tau_s: synaptic (PSC) time constant (>= 1), number or per-neuron tensor.
        threshold: firing threshold (> 0), number or per-neuron tensor. Fires where ``u > threshold``.
        warmup: reference behaviour (True, or ``"trace"``): steps without a spike while the trace is
            low (``s < 1/(4 tau_s)``) get a sigmoid-derivative surrogate; ``"silent"`` (an extension):
            every other step without a spike gets it too, added to the carried error; ``"auto"`` (the
            adapters' default): ``"silent"`` where the neurons leak, ``"trace"`` where none does; False is
            the pure rule (:data:`~tssl_plugin.rule.WARMUP_GATES`).
        output: ``"psc"`` returns the post-synaptic current ``a`` (the paper's
            layer output); ``"spike"`` returns spikes ``o`` and treats the
            incoming gradient as ``dL/do`` (used in place of ``G``).
        reset: ``"zero"`` (paper), ``"subtract"`` (extension: ``v = u - theta o``,
            then the leak), ``"subtract_after_leak"`` (extension: the threshold
            is subtracted from the next step after the leak, as snnTorch does),
            ``"none"`` (no reset).
        impl: implementation, ``"auto"`` or one of :func:`impl_names`. ``"auto"``
            warns once when it has to use the slow reference; :func:`last_impl`
            tells which implementation ran.
        warmup_width: width ``w`` of the warm-up surrogate
            ``G sigma'((u - threshold)/w)/w`` (a number > 0). The default 0.2 is the
            reference's; a wider one (an extension) gives silent neurons a
            gradient from further below the threshold.
        sensitivity_cap: the cap of the spike-time sensitivity ``c = min(1/du, cap)``
            (a number > 0). The default 8 is the reference's; the adapters use
            ``1/threshold`` for the resets by subtraction (docs/algorithm.md,
            "Why the subtraction rule is what it is").
        ablation: ``"none"`` (the rule), or a part of the rule switched off to measure what it
            contributes (docs/algorithm.md, "Ablations"; not a recommendation): ``"no_intra"`` drops
            the intra-neuron (reset-timing) term, ``"no_spike_timing"`` every gradient at spikes, which
            leaves the warm-up surrogate alone (needs ``warmup=True``); :mod:`tssl_plugin.rule`.
        warmup_floor: True (the reference's): the warm-up sigmoid's argument is clamped at 8 widths, so a
            silent neuron however far below the threshold gets at least ``G sigma'(8)/w``; False (an
            extension, the adapters' default): no floor, the surrogate decays to zero far below the
            threshold (docs/algorithm.md, "The warm-up floor").
        crossing: ``"step"`` (the reference's): a spike's sensitivity is ``c = min(1/du, cap)``;
            ``"interpolated"`` (an extension): ``c`` times the fraction of the step's rise spent below the
            threshold, ``max(0, 1 - (u - threshold)/du)``, so a spike far above the threshold moves less
            (docs/algorithm.md, "The interpolated crossing"; :data:`~tssl_plugin.rule.CROSSINGS`).

    Returns:
        ``a`` or ``o``, same shape, dtype and device as ``x`` (contiguous).
        Neuron parameters receive no gradient.

    Bad input raises ``TypeError``/``ValueError`` naming the argument; what is
    checked where (NaN/inf in ``x`` on a GPU is reported by the next call) is
    described in ``tssl_plugin/_impl/_op.py`` and the README.
    """
    check_sequence(x, finite=False)  # NaN/inf: checked by the implementation while it reads x
    check_choice(output, "output", OUTPUTS)
    gate = warmup_gate(check_warmup(warmup))
    _impl.check_impl(impl)
    p = check_parameters(LIFParameters(tau_m, tau_s, threshold, reset, warmup_width, sensitivity_cap, ablation,
                                       gate or "trace", warmup_floor, crossing), x.shape[1:])
    check_ablation(ablation, reset, warmup)
    return _op.lif(x, p, gate is not None, output == "psc", impl)


class _TraceGradFunction(torch.autograd.Function):
    """Spikes (and membranes) computed elsewhere, with the TSSL-BP gradient w.r.t. the input current."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, u: Tensor, du: Tensor, o: Tensor, mem: Optional[Tensor], k: LIFConstants,
                warmup: bool, input_scale: Param, impl: str):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u, du, o)
        ctx.meta = (k, warmup, input_scale, impl)
        spikes = o.to(x.dtype)
        return spikes if mem is None else (spikes, mem.clone())

    @staticmethod
    def backward(ctx: Any, *grads: Optional[Tensor]) -> Tuple[Any, ...]:
        k, warmup, input_scale, impl = ctx.meta
        u, du, o = ctx.saved_tensors
        g_spike, g_mem = grads[0], (grads[1] if len(grads) > 1 else None)
        grad_x = None
        if g_mem is not None:  # a loss on the membrane: the step kernels take its term, the sequence kernels do not
            grad_x = _impl.call_untraced(impl, u, lambda i: _impl.backward_by_steps(i, g_spike, u, du, o, k, warmup,
                                                                                     g_mem))
        elif g_spike is not None:
            grad_x = _op.trace_backward(g_spike.contiguous(), u, du, o, k, warmup, impl)
        if grad_x is not None:
            check_gradient_finite(grad_x, u)
        return (None if grad_x is None else grad_x * input_scale), None, None, None, None, None, None, None, None


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
    mem: Optional[Tensor] = None,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """The core op's backward on a forward pass computed elsewhere (for library adapters).

    Returns ``o`` as ``x.dtype``; its gradient ``dL/do`` is turned into
    ``dL/dx = input_scale * TSSL-BP(dL/do)`` by the same implementation
    :func:`tssl_lif` uses. ``u`` (membrane before reset, relative to the reset
    value), ``du`` (its increment) and ``o`` (bool spikes) are ``[T, ...]``
    traces of the forward the caller ran with its own arithmetic; ``k`` comes
    from :func:`lif_constants` (threshold relative to the reset value; its
    ``warmup_width`` sets the warm-up surrogate's width, its ``ablation`` a part of the rule
    switched off, checked against ``warmup`` here).
    ``input_scale`` is ``d(effective current)/dx`` (``1/tau`` for an input
    that is divided by tau before integration).

    With ``mem`` (the ``[T, ...]`` membrane the host returns), returns
    ``(spikes, mem)``: a loss on that membrane adds ``dL/dmem[t]`` to
    ``delta[t]`` before it is carried back, as in the step-wise node
    (:func:`tssl_plugin.stepwise.tssl_step`), so a whole sequence and a step
    loop get the same gradients.
    """
    _impl.check_impl(impl)
    check_ablation(k.ablation, k.reset, warmup)
    if torch.is_grad_enabled() and x.requires_grad:
        return _TraceGradFunction.apply(x, u.detach(), du.detach(), o.detach(),
                                        None if mem is None else mem.detach(), k, warmup, input_scale, impl)
    spikes = o.to(x.dtype)
    return spikes if mem is None else (spikes, mem)


class _HostTraceGradFunction(torch.autograd.Function):
    """The host's spikes, with the TSSL-BP gradient w.r.t. the input current from the host's own forward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h: Tensor, v0: Tensor, v_seq: Tensor, spikes: Tensor, shift: float,
                k: LIFConstants, warmup: bool, input_scale: Param, impl: str) -> Tensor:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(h, v0, v_seq, spikes)
        ctx.meta = (shift, k, warmup, input_scale, impl)
        return spikes if spikes.dtype == x.dtype else spikes.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g_spike: Optional[Tensor]) -> Tuple[Any, ...]:
        if g_spike is None:
            return (None,) * 10
        shift, k, warmup, input_scale, impl = ctx.meta
        host = HostTrace(*ctx.saved_tensors, shift)
        grad_x, finite = _impl.call(impl, host.h, lambda i: i.backward_from_host(g_spike, host, k, warmup,
                                                                                 input_scale))
        if not finite:  # False: not finite (the kernel checked); None: not checked yet
            check_gradient_finite(grad_x, _reference.host_trace(host, grad_x.dtype)[0])
        return (grad_x,) + (None,) * 9


def spikes_with_host_grad(
    x: Tensor,
    host: HostTrace,
    k: LIFConstants,
    *,
    warmup: bool = True,
    input_scale: Param = 1.0,
    impl: str = "auto",
) -> Tensor:
    """:func:`spikes_with_tssl_grad` on what a host's forward returns, without building the trace first.

    ``host`` (:class:`~tssl_plugin._impl.reference.HostTrace`) holds the
    charged membranes ``h``, the membrane entering the sequence ``v0``, the
    membranes after each reset ``v_seq``, the host's spikes and the reset
    value ``shift``; the trace the rule needs is
    :func:`~tssl_plugin._impl.reference.host_trace`'s ``u = h - shift``,
    ``du = h - v_prev``, ``o = spikes != 0``. Returns ``host.spikes`` as
    ``x.dtype`` (the same tensor when the dtypes agree), whose gradient
    ``dL/do`` becomes ``dL/dx = input_scale * TSSL-BP(dL/do)``, equal to
    :func:`spikes_with_tssl_grad`'s on that trace. In eager mode on the CPU the
    fused kernel computes the trace inside its backward, so neither the trace
    nor ``v_prev`` is materialised; under ``torch.compile`` (or another trace)
    this is :func:`spikes_with_tssl_grad` on the materialised trace (also where ``h`` is not in ``x``'s
    float32/float64 compute dtype).
    """
    _impl.check_impl(impl)
    check_ablation(k.ablation, k.reset, warmup)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return host.spikes if host.spikes.dtype == x.dtype else host.spikes.to(x.dtype)
    dtype = compute_dtype(x.dtype)
    if host.h.dtype != dtype or not _impl.plain_eager(x):
        u, du, o = _reference.host_trace(host, dtype)
        return spikes_with_tssl_grad(x, u, du, o, k, warmup=warmup, input_scale=input_scale, impl=impl)
    return _HostTraceGradFunction.apply(x, host.h.detach(), host.v0.detach(), host.v_seq.detach(),
                                        host.spikes.detach(), host.shift, k, warmup, input_scale, impl)


def impl_names() -> Tuple[str, ...]:
    """The names ``tssl_lif(impl=...)`` accepts."""
    return _impl.names()


def last_impl(device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Optional[str]:
    """Which implementation ran the last :func:`tssl_lif` forward or backward for this device type and dtype.

    ``None`` if none has run. After a fallback of ``impl="auto"`` this is ``"reference"``.
    """
    return _impl.last_used(device, dtype)


def resolve_impl(x: Tensor, impl: str = "auto") -> str:
    """The implementation a :func:`tssl_lif` call on ``x`` with this ``impl`` would use now."""
    _impl.check_impl(impl)
    return _impl.select(impl, x).name


def psp(x: Tensor, tau_s: Param = 3.0) -> Tensor:
    """PSC filter along dim 0: ``q[t] = q[t-1] (1 - 1/tau_s) + x[t]``, returns ``q[t] / tau_s``.

    Used to encode a static image repeated over T steps (the reference input
    encoding) and to build kernel-loss targets. Linear, differentiable by
    autograd, O(T).
    """
    check_sequence(x)
    ts = as_param(tau_s, "tau_s", x.shape[1:], x)
    decay = 1.0 - 1.0 / ts
    q = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        q = q * decay + x[t]
        out.append(q / ts)
    return torch.stack(out)
