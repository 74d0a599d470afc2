"""The one single-step TSSL-BP autograd node, shared by the snnTorch and SpikingJelly adapters.

Code that calls a neuron once per time step builds one :class:`TSSLStep` node
per step. Each node gets the forward values the library computed with its own
arithmetic (``u``, ``du``, ``o`` and the membrane it returns) and, in
backward, runs one step of the core recursion
(:func:`tssl_plugin._impl.reference.carry_step`), so the gradients equal
those of the whole-sequence op:

* the carry ``h = delta[t+1]`` travels backwards through the ``carry`` output,
  a tensor holding the neuron's PSC trace ``s[t]`` (which the warm-up needs);
* ``dL/do[t]`` arrives through the spike output and plays the role of ``G[t]``;
* a loss on the returned membrane adds ``dL/dmem[t]`` to ``delta[t]`` before it
  is carried back (spec: "Step-by-step use").
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from tssl_plugin._impl.reference import LIFConstants, Param, carry_step, trace_step

__all__ = ["TSSLStep", "tssl_step", "new_carry"]


class TSSLStep(torch.autograd.Function):
    """Autograd node of one time step: ``(x_t, carry_in) -> (spike, mem, carry_out)``."""

    @staticmethod
    def forward(ctx: Any, x_t: Tensor, carry_in: Tensor, u: Tensor, du: Tensor, o: Tensor,
                s: Tensor, mem: Tensor, k: LIFConstants, warmup: bool, input_scale: Param):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u, du, o, s)
        ctx.meta = (k, warmup, input_scale)
        return o.to(x_t.dtype), mem.clone(), s.clone()

    @staticmethod
    def backward(ctx: Any, g_spike: Optional[Tensor], g_mem: Optional[Tensor], g_carry: Optional[Tensor]):
        u, du, o, s = ctx.saved_tensors
        k, warmup, input_scale = ctx.meta
        G = g_spike if g_spike is not None else torch.zeros_like(u)
        grad_x, delta = carry_step(G, g_carry, u, du, o, s, k, warmup, extra=g_mem)
        return grad_x * input_scale, delta, None, None, None, None, None, None, None, None


def new_carry(like: Tensor) -> Tensor:
    """The carry at the start of a sequence: a zero trace, outside any graph."""
    return torch.zeros_like(like)


def tssl_step(
    x_t: Tensor,
    carry: Tensor,
    u: Tensor,
    du: Tensor,
    o: Tensor,
    mem: Tensor,
    k: LIFConstants,
    *,
    warmup: bool = True,
    input_scale: Param = 1.0,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One step with TSSL-BP gradients. Returns ``(spike, mem, carry)``.

    ``x_t`` is the step's input (the tensor that receives ``dL/dx``), ``carry``
    the previous step's carry (or :func:`new_carry`), ``u``/``du``/``o`` the
    step's membrane before reset (relative to the reset value), its increment
    and the bool spikes, ``mem`` the membrane value the library returns.
    Without grad mode or a grad-requiring input, no node is built.
    """
    s = trace_step(carry.detach(), o, k.inv_tau_s)
    if torch.is_grad_enabled() and (x_t.requires_grad or carry.requires_grad):
        return TSSLStep.apply(x_t, carry, u.detach(), du.detach(), o, s, mem.detach(), k, warmup, input_scale)
    return o.to(x_t.dtype), mem, s
