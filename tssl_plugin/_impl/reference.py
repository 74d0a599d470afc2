"""Plain-PyTorch TSSL-BP recursions: the readable ground truth.

The rule itself (its math, constants and types) is stated in
:mod:`tssl_plugin.rule`; this file implements it as plainly as possible, and
every other implementation (fused CPU, Triton) is tested against this file.
Shapes are time-first: sequences are ``[T, *neuron_shape]``; every formula is
element-wise over the neurons. Parameters (``inv_tau_m``, ``inv_tau_s``,
``threshold``, ``warmup_level``) are Python floats or tensors that broadcast
to ``neuron_shape``; the warm-up width ``warmup_width`` is a float, or a tensor where an adapter
scales it by a tensor threshold.

Forward and backward follow the formulas of :mod:`tssl_plugin.rule` step by step (:func:`carry_step` is
one step of the backward walk); the ablation gains ``a_c``, ``a_J`` are
:func:`tssl_plugin.rule.ablation_gains`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

# The rule's constants and types live in the public module tssl_plugin.rule; they are
# re-exported here for the code that imports them from the reference.
from ..rule import (RESETS, SENSITIVITY_CAP, WARMUP_BOUND, WARMUP_WIDTH, LIFConstants, Param, ablation_gains,
                    subtracted_next, warmup_bound)

__all__ = [
    "RESETS", "SENSITIVITY_CAP", "WARMUP_WIDTH", "LIFConstants", "Param", "ForwardTrace",
    "forward_step", "forward_sequence", "trace_step", "spike_trace", "psc_error", "psc_error_explicit",
    "DELAYED_RESETS", "Increment", "delayed_base", "increment",
    "warm_steps", "step_flags", "trace_flags", "unpack_flags",
    "spike_sensitivity", "warmup_surrogate", "carry_step", "backward_sequence", "HostTrace", "host_trace",
]


class ForwardTrace(NamedTuple):
    """What a forward pass over a sequence produces, all ``[T, ...]``."""

    o: Tensor  # spikes, bool
    u: Tensor  # membrane before reset
    du: Tensor  # membrane increment of the step
    s: Tensor  # post-synaptic current (trace of own spikes)


def forward_step(
    x_t: Tensor, v: Tensor, o_prev: Tensor, s: Tensor, k: LIFConstants
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One forward step. Returns ``(o, u, du, v_next, s_next)``; ``o`` is bool."""
    du = x_t - v * k.inv_tau_m
    u = v + du
    if k.reset == "subtract_after_leak":
        # snnTorch's delayed subtraction: u[t] = beta u[t-1] + x[t] - threshold o[t-1]. The
        # increment du is measured from the subtracted membrane u[t-1] - threshold o[t-1], as
        # for every other reset (the membrane the step starts from after its reset).
        u = u - o_prev.to(u.dtype) * k.threshold
    o = u > k.threshold
    if k.reset == "zero":
        v_next = torch.where(o, torch.zeros_like(u), u)
    elif k.reset == "subtract":
        v_next = u - o.to(u.dtype) * k.threshold
    else:  # "none", and "subtract_after_leak" which subtracts in the next du
        v_next = u
    return o, u, du, v_next, trace_step(s, o, k.inv_tau_s)


def forward_sequence(x: Tensor, k: LIFConstants) -> ForwardTrace:
    """Run the LIF recursion over ``x[0..T-1]`` from a zero state."""
    v = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    o = torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
    os, us, dus, ss = [], [], [], []
    for t in range(x.shape[0]):
        o, u, du, v, s = forward_step(x[t], v, o, s, k)
        os.append(o)
        us.append(u)
        dus.append(du)
        ss.append(s)
    return ForwardTrace(torch.stack(os), torch.stack(us), torch.stack(dus), torch.stack(ss))


class HostTrace(NamedTuple):
    """A forward pass a host library ran with its own arithmetic, as the host returns it.

    ``h`` (``[T, ...]``) is the charged membrane of each step (before firing and
    reset), ``v0`` (``[...]``) the membrane entering step 0, ``v_seq``
    (``[T, ...]``) the membrane after each step's reset (so the membrane
    entering step ``t >= 1`` is ``v_seq[t-1]``), ``spikes`` the host's spikes
    (any dtype; nonzero is a spike) and ``shift`` the reset value ``V_r`` that
    the rule's membrane is measured from.
    """

    h: Tensor
    v0: Tensor
    v_seq: Tensor
    spikes: Tensor
    shift: float


def host_trace(tr: HostTrace, dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """The core's trace ``(u, du, o)`` of a host's forward, in ``dtype``::

        v_prev[0] = v0,  v_prev[t] = v_seq[t-1]
        u[t]  = h[t] - shift
        du[t] = h[t] - v_prev[t]
        o[t]  = spikes[t] != 0

    The fused implementations compute the same inside their backward, without
    materialising ``u``, ``du``, ``o`` or ``v_prev``.
    """
    h = tr.h.to(dtype)
    v_prev = torch.cat((tr.v0.unsqueeze(0), tr.v_seq[:-1]))
    return h - tr.shift, h - v_prev.to(dtype), tr.spikes != 0


def trace_step(s: Tensor, o: Tensor, inv_tau_s: Param) -> Tensor:
    """One step of the PSC trace: ``s + (o - s) * inv_tau_s``."""
    return s + (o.to(s.dtype) - s) * inv_tau_s


#: the delayed resets an :class:`Increment` names, and their codes in the step kernels
DELAYED_RESETS = {"subtract": 1, "zero": 2, "none": 3}


class Increment(NamedTuple):
    """A step's increment ``du`` given by the membrane ``prev`` the step started from, before a delayed reset::

        r = [prev - threshold > 0];   base = prev - r threshold  ("subtract"),  (1 - r) prev  ("zero"),  prev  ("none")
        du = u - base

    (snnTorch's reset by the previous step's membrane, ``reset_delay=True``). A step-wise node saves ``prev``
    instead of ``du`` and computes ``du`` in its backward (:func:`increment`): where ``prev`` is the previous
    step's ``u``, which that step's node saves anyway, a step then saves one float tensor fewer.
    """

    prev: Tensor
    reset: str  # a key of DELAYED_RESETS


def delayed_base(prev: Tensor, r: Tensor, threshold: Param, reset: str) -> Tensor:
    """The membrane ``prev`` after the delayed reset ``reset`` (a key of :data:`DELAYED_RESETS`) with the reset
    signal ``r`` (0/1): ``prev - r threshold``, ``(1 - r) prev`` or ``prev``. The one home of these operations: a
    host adapter measures its ``du`` from this base (snnTorch's), and :func:`increment` recomputes it."""
    if reset == "subtract":
        return prev - r * threshold
    if reset == "zero":
        return (1 - r) * prev
    return prev


def increment(u: Tensor, du: "Tensor | Increment", threshold: Param) -> Tensor:
    """``du`` itself, or ``u - base`` for an :class:`Increment` (its docstring; :func:`delayed_base` with the
    reset signal ``[prev - threshold > 0]`` as 0/1), operation by operation as the host computes it."""
    if not isinstance(du, Increment):
        return du
    prev = du.prev
    return u - delayed_base(prev, (prev - threshold > 0).to(prev.dtype), threshold, du.reset)


def warm_steps(s: Tensor, o: Tensor, warmup_level: Param) -> Tensor:
    """Where the warm-up acts (bool): no spike and the trace below ``warmup_level``, ``s < warmup_level``."""
    return (s < warmup_level) & (o == 0)


def step_flags(o: Tensor, s: Tensor, warmup_level: Param) -> Tensor:
    """One step's spikes and warm-up test in one byte per element (``uint8``): 1 where ``o != 0``, 2 where
    :func:`warm_steps` of the step's trace ``s`` (never at a spike), else 0; so bit 0 is the spike and bit 1 the
    warm-up's test. What the fused step kernels write and the step-wise node then saves for its backward instead of
    the spikes and the trace (1 byte per element where they took 1 + 4 in float32); the reference writes
    :func:`trace_flags`."""
    return (o != 0).to(torch.uint8) + 2 * warm_steps(s, o, warmup_level).to(torch.uint8)


def trace_flags(o: Tensor, s: Tensor) -> Tensor:
    """The reference's flags: the step's trace ``s`` (in ``[0, 1]``) with ``-1`` where the neuron spiked. One
    float tensor like :func:`step_flags`'s byte holds what the backward needs; built and read with the operations
    the node used on the spikes and the trace (inductor compiles the byte codes to much slower CPU code)."""
    return torch.where(o != 0, torch.full_like(s, -1.0), s)


def unpack_flags(flags: Tensor, warmup_level: Param) -> Tuple[Tensor, Tensor]:
    """``(o, warm)`` (both bool) from :func:`step_flags` (``uint8``) or :func:`trace_flags` (a float dtype)."""
    if flags.dtype == torch.uint8:
        return flags == 1, flags == 2
    o = flags < 0
    return o, warm_steps(flags, o, warmup_level)


def spike_trace(o: Tensor, inv_tau_s: Param, dtype: torch.dtype) -> Tensor:
    """PSC trace ``s[t] = s[t-1] + (o[t] - s[t-1]) * inv_tau_s`` of a spike train."""
    s = torch.zeros(o.shape[1:], dtype=dtype, device=o.device)
    out = []
    for t in range(o.shape[0]):
        s = trace_step(s, o[t], inv_tau_s)
        out.append(s)
    return torch.stack(out)


def psc_error(g: Tensor, inv_tau_s: Param) -> Tensor:
    """``G[t] = sum_{t' >= t} kappa[t'-t] g[t']`` with ``kappa[j] = inv_tau_s (1-inv_tau_s)^j``.

    O(T) by the backward recursion ``G[t] = g[t] inv_tau_s + (1 - inv_tau_s) G[t+1]``.
    """
    out = torch.empty_like(g)
    acc = torch.zeros_like(g[0])
    for t in range(g.shape[0] - 1, -1, -1):
        acc = g[t] * inv_tau_s + (1 - inv_tau_s) * acc
        out[t] = acc
    return out


def psc_error_explicit(g: Tensor, inv_tau_s: Param) -> Tensor:
    """The same ``G`` as :func:`psc_error` by the explicit sum over later steps, O(T^2).

    This is how the published reference code evaluates it; kept for tests and
    the scaling benchmark, never used on the hot path.
    """
    T = g.shape[0]
    j = torch.arange(T, device=g.device, dtype=g.dtype)
    kappa = inv_tau_s * (1 - inv_tau_s) ** j.view((T,) + (1,) * (g.dim() - 1))
    return torch.stack([(kappa[: T - t] * g[t:]).sum(0) for t in range(T)])


def spike_sensitivity(o: Tensor, du: Tensor, cap: Param = SENSITIVITY_CAP) -> Tensor:
    """``c = o * min(1/du, cap)``, 0 where ``du < 0`` (reference, cap 8: ``-clamp(-1/du, -8, 0) * o``)."""
    if isinstance(cap, Tensor):
        return -torch.maximum(-1.0 / du, -cap).clamp(max=0.0) * o
    return -torch.clamp(-1.0 / du, -cap, 0.0) * o


def crossed(of: Tensor, u: Tensor, du: Tensor, k: LIFConstants) -> Tensor:
    """The spikes ``of`` (0/1) that crossed the threshold during their step: the membrane the step started
    from, ``u - du``, was at most the threshold. Every spike after a zero reset did (``u - du`` is the
    reset membrane); after a subtraction the membrane may start above the threshold, and that spike
    cannot move in time (its ``c`` is 0)."""
    if k.reset == "zero":
        return of
    return of * (u - du <= k.threshold).to(of.dtype)


def crossing_fraction(crossed_spikes: Tensor, u: Tensor, du: Tensor, threshold: Param) -> Tensor:
    """``phi = max(0, 1 - (u - threshold)/du)`` where ``crossed_spikes`` (:func:`crossed`) is 1, else 1: the fraction
    of the step's rise spent below the threshold, the factor ``crossing="interpolated"`` puts on ``c``."""
    phi = (1 - (u - threshold) / du).clamp(min=0.0)
    return torch.where(crossed_spikes != 0, phi, torch.ones_like(phi))


def warmup_surrogate(G: Tensor, u: Tensor, threshold: Param, width: float = WARMUP_WIDTH,
                     bound: float = WARMUP_BOUND) -> Tensor:
    """``G * sigma'((u - threshold)/w) / w`` with the argument clamped to ``[-bound, bound]`` (``w = width``,
    default 0.2; ``bound`` 8, the reference's, or 40 without its floor: :func:`tssl_plugin.rule.warmup_bound`)."""
    z = torch.exp(torch.clamp((threshold - u) / width, -bound, bound))
    return G * z / ((1 + z) * (1 + z) * width)


def carry_step(
    G: Tensor,
    h: Optional[Tensor],
    u: Tensor,
    du: Tensor,
    o: Tensor,
    warm: Optional[Tensor],
    k: LIFConstants,
    warmup: bool,
    extra: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One step of the TSSL-BP backward recursion. Returns ``(grad_x, delta)``.

    ``G`` is the error reaching the spike at this step (PSC-filtered, or dL/do
    in spike-output mode), ``h`` the carry ``delta[t+1]`` (``None`` at the last
    step): ``delta[t]`` of :mod:`tssl_plugin.rule` for ``k.reset`` and ``k.ablation``.
    ``grad_x`` is ``delta`` except where the warm-up replaces it
    (``warm``, :func:`warm_steps`: no spike and ``s < warmup_level``; read only when ``warmup``) by
    :func:`warmup_surrogate` of width ``k.warmup_width``,
    and, for the gate ``k.warmup_gate == "silent"``, ``delta`` plus that surrogate at the other steps
    without a spike; the carry is never replaced.
    ``extra`` (a loss placed directly on the membrane, dL/du[t]) is added to
    ``delta`` before it is carried back, and to ``grad_x``.
    """
    of = o.to(G.dtype)
    a_c, a_J = ablation_gains(k.ablation)
    spikes = crossed(of, u, du, k)
    c = spike_sensitivity(spikes, du, k.sensitivity_cap)
    if a_c != 1.0:  # a factor 1 would change no bit; skipped to spare the step-wise node an operation
        c = c * a_c
    if k.crossing == "interpolated":
        c = c * crossing_fraction(spikes, u, du, k.threshold)
    if h is None:
        delta = c * G
    else:
        beta = 1 - k.inv_tau_m
        if k.reset == "zero":
            intra = h * u * k.inv_tau_m
            delta = c * (G + (intra if a_J == 1.0 else intra * a_J)) + (1 - of) * beta * h
        elif k.reset in ("subtract", "subtract_after_leak"):
            intra = subtracted_next(k) * h
            delta = c * (G - (intra if a_J == 1.0 else intra * a_J)) + beta * h
        else:
            delta = c * G + beta * h
    if extra is not None:
        delta = delta + extra
    if not warmup:
        return delta, delta
    pure = warmup_surrogate(G, u, k.threshold, k.warmup_width, warmup_bound(k))
    surrogate = pure if extra is None else pure + extra
    if k.warmup_gate == "silent":
        delta_out = delta + (1 - of) * pure  # the membrane loss is in delta already
    else:
        delta_out = delta
    return torch.where(warm, surrogate, delta_out), delta


def backward_sequence(
    grad: Tensor,
    trace: ForwardTrace,
    k: LIFConstants,
    warmup: bool,
    psc_output: bool,
    explicit_sum: bool = False,
    extra: Optional[Tensor] = None,
) -> Tensor:
    """dL/dx for a whole sequence given dL/da (``psc_output``) or dL/do.

    ``explicit_sum=True`` evaluates ``G`` the O(T^2) way of the published code.
    ``extra`` (``[T, ...]``) is a loss placed directly on the membrane, ``dL/du[t]``,
    added to ``delta[t]`` before it is carried back (:func:`carry_step`).
    """
    if psc_output:
        G = (psc_error_explicit if explicit_sum else psc_error)(grad, k.inv_tau_s)
    else:
        G = grad
    grad_x = torch.empty_like(grad)
    h = None
    for t in range(grad.shape[0] - 1, -1, -1):
        warm = warm_steps(trace.s[t], trace.o[t], k.warmup_level) if warmup else None
        grad_x[t], h = carry_step(G[t], h, trace.u[t], trace.du[t], trace.o[t], warm, k, warmup,
                                  extra=None if extra is None else extra[t])
    return grad_x
