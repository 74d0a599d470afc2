"""Triton implementation of the TSSL-BP recursions (CUDA; optional dependency ``triton``).

One program handles ``BLOCK`` neurons and walks over T inside the kernel, so
each element of every ``[T, N]`` tensor is read or written once per pass. As
in the CPU kernel, the forward saves only ``x`` for the backward, which
recomputes the forward trace itself. Bytes moved per element and training
step (float32, PSC output):

* forward (:func:`_forward_kernel`): reads ``x``, writes the layer's output in
  its dtype (the PSC, or the spikes as 0/1): 8 bytes. Nothing but ``x`` is
  kept for the backward.
* backward, small T (``T <= 32``, 16 in float64, :func:`_backward_one_pass_kernel`):
  one pass that recomputes the trace forward in time into registers (``T`` is
  a compile-time constant, the loops are unrolled and the trace is a tuple of
  registers), then walks back: reads ``x`` and ``g``, writes ``dL/dx``:
  12 bytes, 20 per training step.
* backward, larger T (:func:`_backward_two_pass_kernel`): phase 1 (forward in
  time) reads ``x`` and writes ``u``, ``du`` and a flag byte (bit 0: fired,
  bit 1: warm-up applies, no spike and ``s`` below its level); ``du`` goes into the output
  buffer ``dL/dx`` when the dtypes agree (each element is read back before it
  is overwritten), so the scratch is ``u`` + flags, 5 bytes per element, alive
  only during this backward. Phase 2 (backward in time) reads ``g``, ``u``,
  ``du``, flags and writes ``dL/dx``: 30 bytes, 38 per training step.

``backward_from_trace`` (the adapters' path) gets ``u``, ``du``, ``o`` from the
caller and uses the same two kernels without the recomputation.

One time step of the step-wise node (``tssl_plugin.stepwise``) is one launch
each way: :func:`_step_forward_kernel` (the trace's step and the spikes) and
:func:`_step_backward_kernel` (``reference.carry_step``, sharing
``_sensitivity``, ``_carry_step`` and ``_warmup_surrogate`` with the sequence
kernels).

The arithmetic repeats ``reference.py`` operation by operation, in the forward
and in the recomputation (the recomputed trace is bit-identical to the
forward's), and the kernels are compiled with ``enable_fp_fusion=False`` so
that no multiply-add is contracted into an FMA the reference does not do.
State is kept in float32 (float64 for float64 input); float16/bfloat16 inputs
are loaded and converted in the kernel, and outputs and gradients are stored
in the input dtype, so half precision costs no cast copy. The parameter table
(:mod:`._params`, its row numbers reach the kernels as constexpr globals) is
packed once per parameter set and device. Launches run under the tensor's
device guard (a tensor on ``cuda:1`` works whatever the current device), and
every index is 64-bit (``T * N`` and the per-neuron table may exceed 2^31
elements).

Input check without a host sync: the forward kernel sets a per-device flag
when ``x`` holds a NaN or inf. On a GPU that flag is copied to pinned host
memory asynchronously and looked at by the next call on the device, which
raises (a delayed error, but no sync on the hot path); under the interpreter
it is read at once.

Correctness is tested on the CPU with ``TRITON_INTERPRET=1`` (set before triton
is imported), where :meth:`TritonImpl.available` also accepts CPU tensors, and
every kernel variant is compiled for sm_80 and sm_90 in a CPU-only test.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._optional import require
from .._types import COMPUTE_DTYPES, FLOAT_DTYPES, compute_dtype
from .._validation import raise_non_finite
from ..rule import LIFConstants, LIFParameters
from . import TRITON_INTERPRET
from .reference import DELAYED_RESETS, Increment
from ._params import RESET_CODES, ROW, pack_params, param_table, step_forward_rows, step_table

triton = require("triton", "triton")
tl = triton.language

#: neurons per program of the forward and two-pass backward kernels.
BLOCK = 256
#: neurons per program of the one-pass backward (one per thread of its 4 warps), whatever T. Compiled for
#: sm_90 (float32, warm-up on; ``cuobjdump -res-usage`` on the cubin, one run) it took 32 registers per
#: thread at T=4, 89 at T=16 and 178 at T=32, with no spills (float64 spilled at T=32, hence its lower
#: limit); 256 neurons per program took about twice the registers and spilled at T=32. Not tuned on a GPU.
ONE_PASS_BLOCK = 128
#: the backward holds the trace in registers (one pass) up to this many time steps (half that for
#: float64, whose values take two registers each; see one_pass_max_t).
ONE_PASS_MAX_T = 32

# The table layout and the reset codes, from their one definition (_params.py), as constexpr globals.
ROW_INV_TAU_M = tl.constexpr(ROW["inv_tau_m"])
ROW_MEMBRANE_DECAY = tl.constexpr(ROW["membrane_decay"])
ROW_INV_TAU_S = tl.constexpr(ROW["inv_tau_s"])
ROW_TRACE_DECAY = tl.constexpr(ROW["trace_decay"])
ROW_THRESHOLD = tl.constexpr(ROW["threshold"])
ROW_THRESHOLD_X_MEMBRANE_DECAY = tl.constexpr(ROW["threshold_x_membrane_decay"])
ROW_WARMUP_LEVEL = tl.constexpr(ROW["warmup_level"])
ROW_WARMUP_WIDTH = tl.constexpr(ROW["warmup_width"])
ROW_SENSITIVITY_CAP = tl.constexpr(ROW["sensitivity_cap"])
ROW_SPIKE_TIMING_GAIN = tl.constexpr(ROW["spike_timing_gain"])
ROW_INTRA_GAIN = tl.constexpr(ROW["intra_gain"])
ROW_SILENT_GAIN = tl.constexpr(ROW["silent_gain"])
ROW_WARMUP_BOUND = tl.constexpr(ROW["warmup_bound"])
ROW_CROSSING_GAIN = tl.constexpr(ROW["crossing_gain"])
RESET_ZERO = tl.constexpr(RESET_CODES["zero"])
RESET_SUBTRACT = tl.constexpr(RESET_CODES["subtract"])
RESET_SUBTRACT_AFTER_LEAK = tl.constexpr(RESET_CODES["subtract_after_leak"])
DELAYED_SUBTRACT = tl.constexpr(DELAYED_RESETS["subtract"])
DELAYED_ZERO = tl.constexpr(DELAYED_RESETS["zero"])


@triton.jit
def _load_param(table_ptr, row: tl.constexpr, n_neurons, offs, mask, PER_NEURON: tl.constexpr,
                STATE: tl.constexpr):
    """Row ``row`` of the parameter table for the neurons ``offs`` (or its one value)."""
    if PER_NEURON:
        # 64-bit row offset: row * N passes 2^31 for more than 2^31 / 7 neurons
        return tl.load(table_ptr + (offs + tl.cast(n_neurons, tl.int64) * row), mask=mask, other=1.0).to(STATE)
    else:
        return tl.load(table_ptr + row).to(STATE)


@triton.jit
def _backward_params(table_ptr, n_neurons, offs, mask, PER_NEURON: tl.constexpr, STATE: tl.constexpr):
    """Every row of the table, in ROWS order: itm, beta, its, trace decay, th, beta th, warm-up level and width,
    sensitivity cap, ablation gains a_c and a_J, the warm-up gate's a_S, the warm-up bound b and the crossing gain
    crg."""
    return (_load_param(table_ptr, ROW_INV_TAU_M, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_MEMBRANE_DECAY, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_INV_TAU_S, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_TRACE_DECAY, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_THRESHOLD, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_THRESHOLD_X_MEMBRANE_DECAY, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_WARMUP_LEVEL, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_WARMUP_WIDTH, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_SENSITIVITY_CAP, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_SPIKE_TIMING_GAIN, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_INTRA_GAIN, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_SILENT_GAIN, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_WARMUP_BOUND, n_neurons, offs, mask, PER_NEURON, STATE),
            _load_param(table_ptr, ROW_CROSSING_GAIN, n_neurons, offs, mask, PER_NEURON, STATE))


@triton.jit
def _lif_step(x, v, of, itm, th, RESET: tl.constexpr):
    """One forward step as reference.py computes it: returns (du, u, fired, of, v)."""
    du = x - v * itm
    u = v + du
    if RESET == RESET_SUBTRACT_AFTER_LEAK:  # du is the increment from the subtracted membrane
        u = u - of * th
    fired = u > th
    of = tl.where(fired, 1.0, 0.0).to(v.dtype)
    if RESET == RESET_ZERO:
        v = tl.where(fired, 0.0, u).to(v.dtype)
    elif RESET == RESET_SUBTRACT:
        v = u - of * th
    else:
        v = u
    return du, u, fired, of, v


@triton.jit
def _sensitivity(u, du, of, th, cap, a_c, crg, RESET: tl.constexpr):
    """c = -clamp(-1/du, -cap, 0) * o at a threshold crossing (reference.crossed, reference.spike_sensitivity),
    times the ablation gain ``a_c`` (rule.ablation_gains: 1 or 0; a factor 1 changes no bit) and the crossing
    fraction max(0, 1 - crg (u - th)/du) at a crossing (reference.crossing_fraction; crg 0: exactly 1)."""
    if RESET == RESET_ZERO:
        crossed = of
    else:
        crossed = tl.where(u - du <= th, of, 0.0)
    r = -1.0 / du
    r = tl.where(r < -cap, -cap, r)
    r = tl.where(r > 0.0, 0.0, r)
    phi = 1.0 - crg * ((u - th) / du)
    phi = tl.where(phi < 0.0, 0.0, phi)
    phi = tl.where(crossed != 0.0, phi, 1.0)
    return -r * crossed * a_c * phi


@triton.jit
def _carry_step(G, h, u, du, of, itm, beta, th, thb, cap, a_c, a_j, crg, RESET: tl.constexpr):
    """delta[t] from G[t], the carry h = delta[t+1] and the step's trace (reference.carry_step).

    ``a_c``, ``a_j``: the ablation gains (rule.ablation_gains), 1 or 0; a factor 1 changes no bit."""
    c = _sensitivity(u, du, of, th, cap, a_c, crg, RESET)
    if RESET == RESET_ZERO:
        delta = c * (G + h * u * itm * a_j) + (1.0 - of) * beta * h
    elif RESET == RESET_SUBTRACT:  # the spike's subtraction, beta theta, reaches the next step
        delta = c * (G - thb * h * a_j) + beta * h
    elif RESET == RESET_SUBTRACT_AFTER_LEAK:  # theta, subtracted after the leak
        delta = c * (G - th * h * a_j) + beta * h
    else:
        delta = c * G + beta * h
    return delta


@triton.jit
def _warmup_surrogate(G, u, th, width, bound):
    """G * sigma'((u - th) / width) / width with the argument clamped to [-bound, bound]
    (reference.warmup_surrogate).

    ``width`` and ``bound`` are the table's warm-up rows: run-time values, so every width and bound runs the same
    compiled kernel.
    """
    a = (th - u) / width
    a = tl.minimum(tl.maximum(a, -bound), bound)
    z = tl.exp(a)
    return G * z / ((1.0 + z) * (1.0 + z) * width)


@triton.jit
def _walk_back_step(g, h, acc, u, du, of, warm, itm, beta, its, decs, th, thb, ww, wb, cap, a_c, a_j, a_s, crg,
                    RESET: tl.constexpr, WARMUP: tl.constexpr, PSC: tl.constexpr):
    """One step of the backward walk over time, shared by both backward kernels (reference.backward_sequence):
    the upstream ``G`` (``g``, or for a PSC output its adjoint ``acc = g its + (1 - its) acc``), the carry
    ``h = delta[t]`` from ``delta[t+1]``, and ``dL/dx[t]`` (the warm-up surrogate where ``warm``; for the gate
    "silent", ``a_s = 1``, ``h`` plus the surrogate at the other steps without a spike).

    Returns ``(dL/dx[t], h, acc)``."""
    if PSC:
        acc = g * its + decs * acc
        G = acc
    else:
        G = g
    h = _carry_step(G, h, u, du, of, itm, beta, th, thb, cap, a_c, a_j, crg, RESET)
    out = h
    if WARMUP:
        sur = _warmup_surrogate(G, u, th, ww, wb)
        out = tl.where(warm, sur, h + a_s * (1.0 - of) * sur)
    return out, h, acc


@triton.jit
def _forward_kernel(x_ptr, spikes_ptr, trace_ptr, table_ptr, nonfinite_ptr, T, N,
                    RESET: tl.constexpr, PER_NEURON: tl.constexpr, STATE: tl.constexpr,
                    STORE_SPIKES: tl.constexpr, STORE_TRACE: tl.constexpr, FINITE_MAX: tl.constexpr,
                    BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm = _load_param(table_ptr, ROW_INV_TAU_M, N, offs, mask, PER_NEURON, STATE)
    its = _load_param(table_ptr, ROW_INV_TAU_S, N, offs, mask, PER_NEURON, STATE)
    th = _load_param(table_ptr, ROW_THRESHOLD, N, offs, mask, PER_NEURON, STATE)
    v = tl.zeros([BLOCK], STATE)
    s = tl.zeros([BLOCK], STATE)
    of = tl.zeros([BLOCK], STATE)
    bad = tl.zeros([BLOCK], tl.int32)
    idx = offs
    for _t in range(T):
        x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(STATE)
        bad = bad | ((x != x) | (tl.abs(x) > FINITE_MAX)).to(tl.int32)
        du, u, fired, of, v = _lif_step(x, v, of, itm, th, RESET)
        s = s + (of - s) * its
        if STORE_SPIKES:
            tl.store(spikes_ptr + idx, of.to(spikes_ptr.dtype.element_ty), mask=mask)
        if STORE_TRACE:
            tl.store(trace_ptr + idx, s.to(trace_ptr.dtype.element_ty), mask=mask)
        idx += N
    any_bad = tl.max(bad, axis=0)
    tl.atomic_max(nonfinite_ptr, any_bad, mask=any_bad > 0)


@triton.jit
def _backward_two_pass_kernel(x_ptr, spikes_ptr, g_ptr, u_ptr, du_ptr, flags_ptr, gx_ptr, table_ptr, T, N,
                              RECOMPUTE: tl.constexpr, RESET: tl.constexpr, WARMUP: tl.constexpr,
                              PSC: tl.constexpr, PER_NEURON: tl.constexpr, STATE: tl.constexpr,
                              BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm, beta, its, decs, th, thb, wl, ww, cap, a_c, a_j, a_s, wb, crg = _backward_params(table_ptr, N, offs,
                                                                                          mask, PER_NEURON, STATE)

    # phase 1, forward in time: the trace the backward needs (u, du: recomputed from x; flags)
    v = tl.zeros([BLOCK], STATE)
    s = tl.zeros([BLOCK], STATE)
    of = tl.zeros([BLOCK], STATE)
    idx = offs
    for _t in range(T):
        if RECOMPUTE:
            x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(STATE)
            du, u, fired, of, v = _lif_step(x, v, of, itm, th, RESET)
            tl.store(u_ptr + idx, u, mask=mask)
            tl.store(du_ptr + idx, du, mask=mask)
        else:
            fired = tl.load(spikes_ptr + idx, mask=mask, other=0) != 0
            of = tl.where(fired, 1.0, 0.0).to(STATE)
        s = s + (of - s) * its
        flags = (fired.to(tl.uint8) + 2 * ((s < wl) & (of == 0)).to(tl.uint8)).to(tl.uint8)
        tl.store(flags_ptr + idx, flags, mask=mask)
        idx += N
    tl.debug_barrier()

    # phase 2, backward in time: the TSSL-BP rule. idx is offs + T * N here (64-bit; stepping back
    # avoids a (T - 1) * N product, which would also break when Triton turns T == 1 into a constant)
    h = tl.zeros([BLOCK], STATE)
    acc = tl.zeros([BLOCK], STATE)
    for _t in range(T):
        idx -= N
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(STATE)
        u = tl.load(u_ptr + idx, mask=mask, other=0.0).to(STATE)
        du = tl.load(du_ptr + idx, mask=mask, other=1.0).to(STATE)
        flags = tl.load(flags_ptr + idx, mask=mask, other=0)
        of = tl.where((flags & 1) != 0, 1.0, 0.0).to(STATE)
        out, h, acc = _walk_back_step(g, h, acc, u, du, of, (flags & 2) != 0, itm, beta, its, decs, th, thb, ww,
                                      wb, cap, a_c, a_j, a_s, crg, RESET, WARMUP, PSC)
        tl.store(gx_ptr + idx, out.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_one_pass_kernel(x_ptr, spikes_ptr, g_ptr, u_ptr, du_ptr, gx_ptr, table_ptr, N,
                              T: tl.constexpr, RECOMPUTE: tl.constexpr, RESET: tl.constexpr,
                              WARMUP: tl.constexpr, PSC: tl.constexpr, PER_NEURON: tl.constexpr,
                              STATE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm, beta, its, decs, th, thb, wl, ww, cap, a_c, a_j, a_s, wb, crg = _backward_params(table_ptr, N, offs,
                                                                                          mask, PER_NEURON, STATE)

    # forward in time, unrolled: the trace stays in registers (tuples indexed by constants)
    us = ()
    dus = ()
    fired_seq = ()
    warm_seq = ()
    v = tl.zeros([BLOCK], STATE)
    s = tl.zeros([BLOCK], STATE)
    of = tl.zeros([BLOCK], STATE)
    idx = offs
    for t in tl.static_range(T):
        if RECOMPUTE:
            x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(STATE)
            du, u, fired, of, v = _lif_step(x, v, of, itm, th, RESET)
            us = us + (u,)
            dus = dus + (du,)
        else:
            fired = tl.load(spikes_ptr + idx, mask=mask, other=0) != 0
            of = tl.where(fired, 1.0, 0.0).to(STATE)
        s = s + (of - s) * its
        fired_seq = fired_seq + (of,)
        warm_seq = warm_seq + ((s < wl) & (of == 0),)
        idx += N

    # backward in time: the TSSL-BP rule
    h = tl.zeros([BLOCK], STATE)
    acc = tl.zeros([BLOCK], STATE)
    for i in tl.static_range(T):
        idx -= N
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(STATE)
        if RECOMPUTE:
            u = us[T - 1 - i]
            du = dus[T - 1 - i]
        else:
            u = tl.load(u_ptr + idx, mask=mask, other=0.0).to(STATE)
            du = tl.load(du_ptr + idx, mask=mask, other=1.0).to(STATE)
        out, h, acc = _walk_back_step(g, h, acc, u, du, fired_seq[T - 1 - i], warm_seq[T - 1 - i], itm, beta, its,
                                      decs, th, thb, ww, wb, cap, a_c, a_j, a_s, crg, RESET, WARMUP, PSC)
        tl.store(gx_ptr + idx, out.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _step_forward_kernel(o_ptr, s_ptr, s_out_ptr, spike_ptr, flags_ptr, its_ptr, lvl_ptr, N, PER_NEURON: tl.constexpr,
                         STORE_SPIKE: tl.constexpr, STORE_FLAGS: tl.constexpr, STATE: tl.constexpr,
                         BLOCK: tl.constexpr):
    """One step's forward bookkeeping (stepwise): s_out = s + (o - s) inv_tau_s, the spikes as 0/1, and the step's
    flags (reference.step_flags: bit 0 the spike, bit 1 no spike and s_out < warmup_level)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    fired = tl.load(o_ptr + offs, mask=mask, other=0) != 0
    of = tl.where(fired, 1.0, 0.0).to(STATE)
    s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(STATE)
    if PER_NEURON:
        its = tl.load(its_ptr + offs, mask=mask, other=1.0).to(STATE)
    else:
        its = tl.load(its_ptr).to(STATE)
    sn = s + (of - s) * its
    tl.store(s_out_ptr + offs, sn, mask=mask)
    if STORE_SPIKE:
        tl.store(spike_ptr + offs, of.to(spike_ptr.dtype.element_ty), mask=mask)
    if STORE_FLAGS:
        if PER_NEURON:
            lvl = tl.load(lvl_ptr + offs, mask=mask, other=0.0).to(STATE)
        else:
            lvl = tl.load(lvl_ptr).to(STATE)
        warm = (sn < lvl) & (of == 0)
        tl.store(flags_ptr + offs, tl.where(fired, 1, 0).to(tl.uint8) | tl.where(warm, 2, 0).to(tl.uint8),
                 mask=mask)


@triton.jit
def _step_backward_kernel(g_ptr, h_ptr, extra_ptr, u_ptr, du_ptr, flags_ptr, gx_ptr, delta_ptr, table_ptr,
                          scale_ptr, N, RESET: tl.constexpr, DELAYED: tl.constexpr, WARMUP: tl.constexpr,
                          HAS_H: tl.constexpr,
                          HAS_EXTRA: tl.constexpr, PER_NEURON: tl.constexpr, STATE: tl.constexpr,
                          BLOCK: tl.constexpr):
    """One step of the rule (reference.carry_step): delta, and grad_x (the warm-up where the step's flags say no spike
    and s < its level) times scale. Without a carry (HAS_H false, the sequence's last step) delta = c G.
    DELAYED (reference.DELAYED_RESETS, 0: none): du_ptr holds the membrane the step started from, and du is
    computed from it (reference.increment)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm, beta, its, decs, th, thb, wl, ww, cap, a_c, a_j, a_s, wb, crg = _backward_params(table_ptr, N, offs,
                                                                                          mask, PER_NEURON, STATE)
    G = tl.load(g_ptr + offs, mask=mask, other=0.0).to(STATE)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(STATE)
    if DELAYED == 0:
        du = tl.load(du_ptr + offs, mask=mask, other=1.0).to(STATE)
    else:  # reference.increment: r = [prev - th > 0]; du = u - base
        m = tl.load(du_ptr + offs, mask=mask, other=0.0).to(STATE)
        r = tl.where(m - th > 0.0, 1.0, 0.0).to(STATE)
        if DELAYED == DELAYED_SUBTRACT:
            du = u - (m - r * th)
        elif DELAYED == DELAYED_ZERO:
            du = u - (1.0 - r) * m
        else:
            du = u - m
    flags = tl.load(flags_ptr + offs, mask=mask, other=0)
    of = tl.where((flags & 1) != 0, 1.0, 0.0).to(STATE)
    if HAS_H:
        h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(STATE)
        delta = _carry_step(G, h, u, du, of, itm, beta, th, thb, cap, a_c, a_j, crg, RESET)
    else:
        delta = _sensitivity(u, du, of, th, cap, a_c, crg, RESET) * G
    if HAS_EXTRA:
        e = tl.load(extra_ptr + offs, mask=mask, other=0.0).to(STATE)
        delta = delta + e
    tl.store(delta_ptr + offs, delta, mask=mask)
    out = delta
    if WARMUP:
        pure = _warmup_surrogate(G, u, th, ww, wb)
        sur = pure
        if HAS_EXTRA:
            sur = pure + e
        out = tl.where((flags & 2) != 0, sur, delta + a_s * (1.0 - of) * pure)
    tl.store(gx_ptr + offs, out * tl.load(scale_ptr).to(STATE), mask=mask)


def _tl(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def one_pass_max_t(state: torch.dtype) -> int:
    """Largest T the one-pass backward takes for this state dtype (longer sequences take two passes)."""
    return ONE_PASS_MAX_T // 2 if state == torch.float64 else ONE_PASS_MAX_T


class Launch(NamedTuple):
    """One kernel launch: ``kernel[grid](*args, **constexprs, enable_fp_fusion=False)``."""

    kernel: Any
    grid: Tuple[int]
    args: Tuple[Any, ...]
    constexprs: Dict[str, Any]


def forward_launch(x: Tensor, spikes: Optional[Tensor], trace: Optional[Tensor], table: Tensor,
                   per_neuron: bool, reset: str, nonfinite: Tensor) -> Launch:
    """The forward launch for contiguous ``x`` ``[T, ...]``; ``spikes`` and/or ``trace`` receive the outputs."""
    T, N = x.shape[0], x[0].numel()
    state = compute_dtype(x.dtype)
    placeholder = trace if spikes is None else spikes  # the output not stored is never dereferenced
    return Launch(
        _forward_kernel, (max(1, triton.cdiv(N, BLOCK)),),
        (x, placeholder if spikes is None else spikes, placeholder if trace is None else trace, table, nonfinite,
         T, N),
        dict(RESET=RESET_CODES[reset], PER_NEURON=per_neuron, STATE=_tl(state), STORE_SPIKES=spikes is not None,
             STORE_TRACE=trace is not None, FINITE_MAX=torch.finfo(state).max, BLOCK=BLOCK))


def backward_launch(grad: Tensor, x: Optional[Tensor], u: Tensor, du: Tensor, spikes: Optional[Tensor],
                    flags: Optional[Tensor], gx: Tensor, table: Tensor, per_neuron: bool, reset: str, warmup: bool,
                    psc: bool) -> Launch:
    """The backward launch: one pass when ``flags`` is None (``T <= one_pass_max_t``), else two passes.

    ``x`` given: recompute the trace (``u``, ``du`` are scratch for the two-pass
    kernel, placeholders for the one-pass kernel); else ``u``, ``du``,
    ``spikes`` are the trace. Pointers a variant does not read get a
    placeholder tensor (never dereferenced).
    """
    recompute = x is not None
    like = x if recompute else u
    T, N = like.shape[0], like[0].numel()
    first = x if recompute else u
    second = u if recompute else spikes
    modes = dict(RECOMPUTE=recompute, RESET=RESET_CODES[reset], WARMUP=warmup, PSC=psc, PER_NEURON=per_neuron,
                 STATE=_tl(compute_dtype(like.dtype)))
    if flags is None:
        return Launch(_backward_one_pass_kernel, (max(1, triton.cdiv(N, ONE_PASS_BLOCK)),),
                      (first, second, grad, u, du, gx, table, N), dict(T=T, **modes, BLOCK=ONE_PASS_BLOCK))
    return Launch(_backward_two_pass_kernel, (max(1, triton.cdiv(N, BLOCK)),),
                  (first, second, grad, u, du, flags, gx, table, T, N), dict(**modes, BLOCK=BLOCK))


def step_forward_launch(o: Tensor, s: Tensor, s_out: Tensor, spike: Optional[Tensor], flags: Optional[Tensor],
                        its: Tensor, lvl: Tensor, per_neuron: bool) -> Launch:
    """The step-wise node's forward bookkeeping on contiguous one-step tensors (``o`` as bytes, or 0/1 in ``s``'s
    dtype); ``spike``,
    ``flags`` None: not written."""
    N = s.numel()
    return Launch(_step_forward_kernel, (max(1, triton.cdiv(N, BLOCK)),),
                  (o, s, s_out, s_out if spike is None else spike, o if flags is None else flags, its, lvl, N),
                  dict(PER_NEURON=per_neuron, STORE_SPIKE=spike is not None, STORE_FLAGS=flags is not None,
                       STATE=_tl(s.dtype), BLOCK=BLOCK))


def step_backward_launch(G: Tensor, h: Optional[Tensor], extra: Optional[Tensor], u: Tensor, du: Tensor,
                         flags: Tensor, gx: Tensor, delta: Tensor, table: Tensor, scale: Tensor,
                         per_neuron: bool, reset: str, warmup: bool, delayed: Optional[str] = None) -> Launch:
    """The step-wise node's backward on contiguous one-step tensors; ``h``, ``extra`` None: not read; ``delayed``
    (a key of reference.DELAYED_RESETS): ``du`` is the membrane the step started from."""
    N = u.numel()
    return Launch(_step_backward_kernel, (max(1, triton.cdiv(N, BLOCK)),),
                  (G, u if h is None else h, u if extra is None else extra, u, du, flags, gx, delta, table, scale, N),
                  dict(RESET=RESET_CODES[reset], DELAYED=0 if delayed is None else DELAYED_RESETS[delayed],
                       WARMUP=warmup, HAS_H=h is not None, HAS_EXTRA=extra is not None,
                       PER_NEURON=per_neuron, STATE=_tl(u.dtype), BLOCK=BLOCK))


def _run(launch: Launch, device: torch.device) -> None:
    if device.type == "cuda":
        with torch.cuda.device(device):  # the launch uses the current device's context and stream
            launch.kernel[launch.grid](*launch.args, **launch.constexprs, enable_fp_fusion=False)
    else:  # the interpreter (TRITON_INTERPRET=1) on CPU tensors
        launch.kernel[launch.grid](*launch.args, **launch.constexprs)


class _NonFiniteMonitor:
    """The forward kernels' NaN/inf flag for one device, read back without a host sync (module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.flag = torch.zeros(1, dtype=torch.int32, device=device)
        self.deferred = device.type == "cuda"
        self.host = torch.zeros(1, dtype=torch.int32, pin_memory=True) if self.deferred else None
        self.event: Optional[Any] = None

    def raise_pending(self, wait: bool = False) -> None:
        """Raise if a finished earlier forward on this device saw NaN or inf (``wait``: sync and look now)."""
        if not self.deferred or self.event is None:
            return
        if wait:
            self.event.synchronize()
        elif not self.event.query():  # not finished yet: look again at a later call
            return
        if int(self.host[0]):
            self.flag.zero_()
            self.host.zero_()
            self.event = None
            raise ValueError(
                f"x contains NaN or inf: an earlier tssl_lif call on {self.device} received it (the kernel "
                f"checks the input without stopping the GPU and the next call reports it; run that step with "
                f"impl='reference' to be told where)")

    def after_forward(self, x: Tensor) -> None:
        if not self.deferred:  # interpreter on CPU: the flag is readable at no cost, report now
            if int(self.flag[0]):
                self.flag.zero_()
                raise_non_finite(x, "x")
            return
        if torch.cuda.is_current_stream_capturing():
            return
        self.host.copy_(self.flag, non_blocking=True)
        if self.event is None:
            self.event = torch.cuda.Event()
        self.event.record()


_MONITORS: Dict[torch.device, _NonFiniteMonitor] = {}


def nonfinite_monitor(device: torch.device) -> _NonFiniteMonitor:
    mon = _MONITORS.get(device)
    if mon is None:
        mon = _MONITORS[device] = _NonFiniteMonitor(device)
    return mon


def raise_pending_input_errors(device: torch.device | str = "cuda") -> None:
    """Wait for the device and raise if an earlier forward's input held NaN or inf (GPU check script, tests)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    mon = _MONITORS.get(device)
    if mon is not None:
        mon.raise_pending(wait=True)


class TritonImpl:
    """Fused Triton kernels (see module docstring)."""

    name = "triton"

    @staticmethod
    def available(x: Tensor) -> bool:
        return x.dtype in FLOAT_DTYPES and (x.is_cuda or (TRITON_INTERPRET and x.device.type == "cpu"))

    # ----- the op's entry points (parameters packed once, outputs in x's dtype)
    @staticmethod
    def forward_op(x: Tensor, params: LIFParameters, psc_output: bool) -> Tensor:
        xc = x.contiguous()
        table, per_neuron = param_table(params, xc.shape[1:], compute_dtype(xc.dtype), xc.device)
        out = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device)
        TritonImpl._forward(xc, None if psc_output else out, out if psc_output else None, table, per_neuron,
                            params.reset)
        return out

    @staticmethod
    def backward_op(grad: Tensor, x: Tensor, params: LIFParameters, warmup: bool, psc_output: bool) -> Tensor:
        xc = x.contiguous()
        table, per_neuron = param_table(params, xc.shape[1:], compute_dtype(xc.dtype), xc.device)
        return TritonImpl._backward(grad, xc, None, None, None, table, per_neuron, params.reset, warmup, psc_output,
                                    out_dtype=xc.dtype)

    # ----- the adapters' backward (constants as LIFConstants)
    @staticmethod
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool) -> Tensor:
        sd = compute_dtype(u.dtype)
        uc, duc = u.to(sd).contiguous(), du.to(sd).contiguous()
        oc = o.to(torch.bool).contiguous().view(torch.uint8)
        table, per_neuron = pack_params(k, uc[:0])
        return TritonImpl._backward(grad, None, uc, duc, oc, table, per_neuron, k.reset, warmup, False,
                                    out_dtype=grad.dtype)

    @staticmethod
    def backward_from_host(grad, host, k: LIFConstants, warmup: bool, scale: Any):
        from . import backward_from_host_trace

        return backward_from_host_trace(TritonImpl, grad, host, k, warmup, scale)

    # ----- one step of the step-wise node (tssl_plugin.stepwise); float32/float64, bool or 0/1 spikes
    @staticmethod
    def step_forward(o: Tensor, s: Tensor, inv_tau_s: Any, warmup_level: Any, spike_dtype: Optional[torch.dtype]):
        from . import _ReferenceImpl

        if s.dtype not in COMPUTE_DTYPES or o.dtype not in (torch.bool, s.dtype) or o.shape != s.shape:
            return _ReferenceImpl.step_forward(o, s, inv_tau_s, warmup_level, spike_dtype)
        sc = s.contiguous()
        its, lvl, per_neuron = step_forward_rows(inv_tau_s, warmup_level, sc)
        s_out = torch.empty_like(sc)
        spike = None if spike_dtype is None else torch.empty(sc.shape, dtype=spike_dtype, device=sc.device)
        flags = None if warmup_level is None else torch.empty(sc.shape, dtype=torch.uint8, device=sc.device)
        oc = o.contiguous()
        _run(step_forward_launch(oc.view(torch.uint8) if oc.dtype == torch.bool else oc, sc, s_out, spike, flags, its,
                                 lvl, per_neuron), sc.device)
        return spike, s_out, flags

    @staticmethod
    def step_backward(G, h, u, du, flags, k: LIFConstants, warmup: bool, extra, scale):
        from . import _ReferenceImpl

        dt = u.dtype
        delayed, dut = (du.reset, du.prev) if isinstance(du, Increment) else (None, du)
        if (isinstance(scale, Tensor) or dt not in COMPUTE_DTYPES or flags.dtype != torch.uint8
                or any(t is not None and t.shape != u.shape for t in (G, h, dut, flags, extra))):
            return _ReferenceImpl.step_backward(G, h, u, du, flags, k, warmup, extra, scale)
        uc = u.contiguous()
        as_dt = lambda t: None if t is None else t.to(dt).contiguous()  # noqa: E731
        table, per_neuron = step_table(k, uc)
        gx, delta = torch.empty_like(uc), torch.empty_like(uc)
        scale_t = torch.full((1,), float(scale), dtype=dt, device=uc.device)
        launch = step_backward_launch(torch.zeros_like(uc) if G is None else as_dt(G), as_dt(h), as_dt(extra), uc,
                                      as_dt(dut), flags.contiguous(), gx, delta, table,
                                      scale_t, per_neuron, k.reset, warmup, delayed)
        _run(launch, uc.device)
        return gx, delta, None

    # ----- launches
    @staticmethod
    def _forward(xc: Tensor, spikes: Optional[Tensor], trace: Optional[Tensor], table: Tensor, per_neuron: bool,
                 reset: str) -> None:
        mon = nonfinite_monitor(xc.device)
        mon.raise_pending()
        _run(forward_launch(xc, spikes, trace, table, per_neuron, reset, mon.flag), xc.device)
        mon.after_forward(xc)

    @staticmethod
    def _backward(grad: Tensor, x: Optional[Tensor], u, du, o, table: Tensor, per_neuron: bool, reset: str,
                  warmup: bool, psc_output: bool, out_dtype: torch.dtype) -> Tensor:
        """``x`` given: recompute ``u``, ``du``; else ``u``, ``du``, ``o`` are the trace."""
        recompute = x is not None
        like = x if recompute else u
        sd = compute_dtype(like.dtype)
        g = grad.contiguous()
        T, dev = like.shape[0], like.device
        gx = torch.empty(like.shape, dtype=out_dtype, device=dev)
        flags = None
        if T > one_pass_max_t(sd):
            flags = torch.empty(like.shape, dtype=torch.uint8, device=dev)
            if recompute:
                u = torch.empty(like.shape, dtype=sd, device=dev)
                du = gx if out_dtype == sd else torch.empty(like.shape, dtype=sd, device=dev)
        elif recompute:
            u = du = gx  # placeholders: the one-pass kernel keeps the trace in registers
        _run(backward_launch(g, x, u, du, o, flags, gx, table, per_neuron, reset, warmup, psc_output), dev)
        return gx


def loader() -> type:
    """Registry loader (raises ImportError without triton)."""
    return TritonImpl
