r"""The one single-step TSSL-BP node, for code that calls a neuron once per time step.

snnTorch's step loop and SpikingJelly's single-step mode compute one step of
the membrane with their own arithmetic. :func:`tssl_step` takes what that step
computed and attaches the TSSL-BP gradient to it, as a pure step function
returning ``(output, state)``::

    state = initial_state(x0)                       # a zero PSC trace, outside any graph
    for t in range(T):
        u, du, o, mem = host_step(x[t], ...)        # the host's own forward, under no_grad
        (spike, mem), state = tssl_step(x[t], state, u, du, o, mem, k)

The state is the neuron's PSC trace :math:`s[t] = s[t-1] + (o[t] - s[t-1])/\tau_s`,
which the warm-up reads; in the backward pass its gradient edge carries the
rule's :math:`h = \delta[t+1]` from one step to the step before. Each call's
node runs one step of the recursion (:func:`tssl_plugin._impl.reference.carry_step`), in eager mode as one
fused kernel per step for the forward bookkeeping (the trace's step) and one for the backward (C on the
CPU, Triton on CUDA; ``step_forward`` and ``step_backward`` of :mod:`tssl_plugin._impl`), chosen by device
as the whole-sequence op chooses; under ``torch.compile`` the same kernels as two registered operators
(``tssl_plugin::step_forward``, ``tssl_plugin::step_backward``, :mod:`tssl_plugin._impl._op`), which the
compiled graph calls as they are; under other tracing the reference's operations. The step is the rule of
:mod:`tssl_plugin.rule` with ``G[t] = dL/do[t]`` (spike output), plus a loss placed on the returned membrane,
added to ``delta[t]`` before it is carried back. So a step loop gets exactly the gradients of the whole-sequence
op (:func:`tssl_plugin.functional.tssl_lif` with ``output="spike"``),
which :func:`tssl_plugin.functional.spikes_with_tssl_grad` computes for a whole sequence the host ran at once.

A state continues a sequence only while the caller hands it back; a new
sequence starts from :func:`initial_state`. Detaching the state (its
``trace``) keeps its value and cuts the carried gradient (truncated BPTT).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple, TypeVar, Union

import torch
from torch import Tensor

from ._impl import Implementation, _op, call_untraced
from ._impl.reference import DELAYED_RESETS, Increment, delayed_base
from .rule import LIFConstants, Param, check_ablation
from ._validation import check_gradient_finite

__all__ = ["Increment", "StepState", "delayed_base", "initial_state", "next_state", "tssl_step"]


class StepState(NamedTuple):
    """What one layer carries from step to step: its own PSC trace ``s`` (same shape as the layer)."""

    trace: Tensor

    def detach(self) -> "StepState":
        """The same trace with the carried gradient cut (truncated BPTT)."""
        return StepState(self.trace.detach())


def initial_state(like: Tensor) -> StepState:
    """The state at the start of a sequence: a zero trace shaped like ``like``, outside any graph."""
    return StepState(torch.zeros_like(like))


R = TypeVar("R")


def _run(like: Tensor, run: Callable[[Implementation], R]) -> R:
    """``run(impl)`` (``impl.step_forward`` or ``impl.step_backward``, see :mod:`tssl_plugin._impl`) with the
    implementation ``impl="auto"`` picks for ``like``'s device and dtype: one fused kernel (C on the CPU, Triton
    on CUDA); the reference's operations while anything traces (:func:`~tssl_plugin._impl.call_untraced`; the node
    takes the registered operators instead while ``torch.compile`` traces)."""
    return call_untraced("auto", like, run)


def next_state(state: StepState, o: Tensor, inv_tau_s: Param) -> StepState:
    """The state after a step with spikes ``o`` when no gradient is needed: the trace alone advances."""
    trace = state.trace.detach()
    with torch.no_grad():
        return StepState(_run(trace, lambda i: i.step_forward(o, trace, inv_tau_s, None, None))[1])


class _StepNode(torch.autograd.Function):
    """One time step: ``(x_t, trace_in) -> (spike, mem, trace_out)``; backward runs one step of the rule."""

    @staticmethod
    def forward(ctx: Any, x_t: Tensor, trace_in: Tensor, u: Tensor, du: Tensor, o: Tensor,
                mem: Optional[Tensor], k: LIFConstants, warmup: bool, input_scale: Param, delayed: Optional[str]):
        ctx.set_materialize_grads(False)
        if torch.compiler.is_compiling():
            spike, s, flags = _op.step_forward(o, trace_in, k, x_t.dtype)
        else:
            spike, s, flags = _run(trace_in, lambda i: i.step_forward(o, trace_in, k.inv_tau_s, k.warmup_level,
                                                                       x_t.dtype))
        # flags: the spikes and the warm-up's test, one byte per element; du: the increment, or (delayed not
        # None) the membrane the step started from, often the previous step's u, saved by its node already
        ctx.save_for_backward(u, du, flags)
        ctx.meta = (k, warmup, input_scale, delayed)
        return spike, None if mem is None else mem.clone(), s

    @staticmethod
    def backward(ctx: Any, g_spike: Optional[Tensor], g_mem: Optional[Tensor], g_trace: Optional[Tensor]):
        u, du, flags = ctx.saved_tensors
        k, warmup, input_scale, delayed = ctx.meta
        if torch.compiler.is_compiling() and flags.dtype == torch.uint8:  # the forward's operator wrote the flags
            grad_x, delta = _op.step_backward(g_spike, g_trace, u, du, flags, k, warmup, g_mem, input_scale, delayed)
        else:
            if delayed is not None:
                du = Increment(du, delayed)
            grad_x, delta, finite = _run(u, lambda i: i.step_backward(g_spike, g_trace, u, du, flags, k, warmup,
                                                                      g_mem, input_scale))
            if not finite:  # unchecked (None), or a NaN/inf the fused kernel saw: look for its cause
                check_gradient_finite(grad_x, u)
        return grad_x, delta, None, None, None, None, None, None, None, None


def tssl_step(
    x_t: Tensor,
    state: StepState,
    u: Tensor,
    du: Union[Tensor, Increment],
    o: Tensor,
    mem: Optional[Tensor],
    k: LIFConstants,
    *,
    warmup: bool = True,
    input_scale: Param = 1.0,
) -> Tuple[Tuple[Tensor, Tensor], StepState]:
    """One step with TSSL-BP gradients: returns ``((spike, mem), state)``.

    Args:
        x_t: the step's input current, the tensor that receives ``dL/dx``
            (times ``input_scale``: ``1/tau`` for an input divided by ``tau``).
        state: the previous step's state, or :func:`initial_state` at a new sequence.
        u: the membrane the spike fired on, relative to the reset value.
        du: the step's increment, measured from the membrane after every reset; or an :class:`Increment`
            (the membrane the step started from, before a delayed reset), from which the backward computes
            it, so the node saves that membrane instead (no memory where it is the previous step's ``u``).
        o: the spikes (bool).
        mem: the membrane the host returns; a loss on it enters ``delta[t]``. ``None``: the caller
            gives its membrane a gradient of its own (the snnTorch adapter does), and ``None`` is returned.
        k: the layer's constants (:func:`tssl_plugin.rule.lif_constants`), the
            warm-up surrogate's width ``k.warmup_width`` and an ablation ``k.ablation`` included
            (checked against ``warmup`` here).

    ``spike`` has ``x_t``'s dtype. Without grad mode, or when neither ``x_t``
    nor the state needs a gradient, no node is built and only the trace advances.
    """
    check_ablation(k.ablation, k.reset, warmup)
    if torch.is_grad_enabled() and (x_t.requires_grad or state.trace.requires_grad):
        delayed = None
        if isinstance(du, Increment):
            if du.reset not in DELAYED_RESETS:
                raise ValueError(f"Increment.reset must be one of {sorted(DELAYED_RESETS)}, got {du.reset!r}")
            delayed, du = du.reset, du.prev
        spike, mem_out, s_out = _StepNode.apply(x_t, state.trace, u.detach(), du.detach(), o,
                                                None if mem is None else mem.detach(), k,
                                                warmup, input_scale, delayed)
        return (spike, mem_out), StepState(s_out)
    trace = state.trace.detach()
    with torch.no_grad():
        spike, s, _ = _run(trace, lambda i: i.step_forward(o, trace, k.inv_tau_s, None, x_t.dtype))
    return (spike, mem), StepState(s)
