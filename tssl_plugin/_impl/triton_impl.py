"""Triton implementation of the TSSL-BP recursions (CUDA; optional dependency ``triton``).

One program handles ``BLOCK`` neurons and walks over T inside the kernel, so
each element of every ``[T, N]`` tensor is read or written once per pass. As
in the CPU kernel, the forward saves only ``x`` for the backward, which
recomputes the forward trace itself:

* forward: reads ``x``; writes ``o`` (uint8 viewed as bool) and ``s``
  (9 bytes per element in float32). Nothing but ``x`` is kept for the backward,
  so between forward and backward a layer holds 4 bytes per element.
* backward, phase 1 (forward in time): reads ``x``; writes ``u``, ``du`` and a
  flag byte (bit 0: fired, bit 1: warm-up applies, ``s < 1/(4 tau_s)``);
  ``du`` is written into the output buffer ``dL/dx`` when the dtypes agree
  (each element is read back before it is overwritten), so the scratch is
  ``u`` + flags, 5 bytes per element, alive only during this backward.
* backward, phase 2 (backward in time): reads ``g``, ``u``, ``du``, flags;
  writes ``dL/dx``. The PSC error ``G`` is accumulated in registers.

That is 9 + 30 = 39 bytes moved per element and training step (float32).
``backward_from_trace`` (the adapters' path) gets ``u``, ``du``, ``o`` from the
caller, and its phase 1 only turns ``o`` into the flags.

The arithmetic repeats ``reference.py`` operation by operation (parameter
table from :mod:`._params`), in the forward and in the recomputation, so the
recomputed trace is bit-identical to the forward's. State is kept in float32
(float64 for float64 input); float16/bfloat16 inputs are loaded and converted
in the kernel and the gradient is stored in the input dtype.

Correctness is tested on the CPU with ``TRITON_INTERPRET=1`` (set before triton
is imported), where :meth:`TritonImpl.available` also accepts CPU tensors.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import Tensor

from .._optional import require
from ._params import RESET_CODES, pack_params
from .reference import LIFConstants, SENSITIVITY_CAP, WARMUP_WIDTH

triton = require("triton", "triton")
tl = triton.language

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_BLOCK = 256
_NATIVE = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit
def _param(par_ptr, row: tl.constexpr, pld, offs, mask, PS: tl.constexpr, ACC: tl.constexpr):
    if PS:
        return tl.load(par_ptr + row * pld + offs, mask=mask, other=1.0).to(ACC)
    else:
        return tl.load(par_ptr + row).to(ACC)


@triton.jit
def _lif_step(x, v, of, itm, th, RESET: tl.constexpr):
    """One forward step as reference.py computes it: returns (du, u, fired, of, v)."""
    du = x - v * itm
    u = v + du
    if RESET == 2:  # subtract_after_leak: du is the increment from the subtracted membrane
        u = u - of * th
    fired = u > th
    of = tl.where(fired, 1.0, 0.0).to(v.dtype)
    if RESET == 0:  # zero
        v = tl.where(fired, 0.0, u).to(v.dtype)
    elif RESET == 1:  # subtract
        v = u - of * th
    else:
        v = u
    return du, u, fired, of, v


@triton.jit
def _fwd_kernel(x_ptr, o_ptr, s_ptr, par_ptr, T, N,
                RESET: tl.constexpr, PS: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm = _param(par_ptr, 0, N, offs, mask, PS, ACC)
    its = _param(par_ptr, 2, N, offs, mask, PS, ACC)
    th = _param(par_ptr, 4, N, offs, mask, PS, ACC)
    v = tl.zeros([BLOCK], ACC)
    s = tl.zeros([BLOCK], ACC)
    of = tl.zeros([BLOCK], ACC)
    idx = offs
    for _t in range(T):
        x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(ACC)
        du, u, fired, of, v = _lif_step(x, v, of, itm, th, RESET)
        s = s + (of - s) * its
        tl.store(o_ptr + idx, fired.to(tl.uint8), mask=mask)
        tl.store(s_ptr + idx, s, mask=mask)
        idx += N


@triton.jit
def _bwd_kernel(x_ptr, o_ptr, g_ptr, u_ptr, du_ptr, f_ptr, gx_ptr, par_ptr, T, N,
                RECOMPUTE: tl.constexpr, RESET: tl.constexpr, WARMUP: tl.constexpr, PSC: tl.constexpr,
                PS: tl.constexpr, ACC: tl.constexpr, CAP: tl.constexpr, WIDTH: tl.constexpr,
                BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm = _param(par_ptr, 0, N, offs, mask, PS, ACC)
    beta = _param(par_ptr, 1, N, offs, mask, PS, ACC)
    its = _param(par_ptr, 2, N, offs, mask, PS, ACC)
    decs = _param(par_ptr, 3, N, offs, mask, PS, ACC)
    th = _param(par_ptr, 4, N, offs, mask, PS, ACC)
    thi = _param(par_ptr, 5, N, offs, mask, PS, ACC)
    wl = _param(par_ptr, 6, N, offs, mask, PS, ACC)

    # phase 1, forward in time: the trace the backward needs (u, du: recomputed from x; flags)
    v = tl.zeros([BLOCK], ACC)
    s = tl.zeros([BLOCK], ACC)
    of = tl.zeros([BLOCK], ACC)
    idx = offs
    for _t in range(T):
        if RECOMPUTE:
            x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(ACC)
            du, u, fired, of, v = _lif_step(x, v, of, itm, th, RESET)
            tl.store(u_ptr + idx, u, mask=mask)
            tl.store(du_ptr + idx, du, mask=mask)
        else:
            fired = tl.load(o_ptr + idx, mask=mask, other=0) != 0
            of = tl.where(fired, 1.0, 0.0).to(ACC)
        s = s + (of - s) * its
        flags = (fired.to(tl.uint8) + 2 * (s < wl).to(tl.uint8)).to(tl.uint8)
        tl.store(f_ptr + idx, flags, mask=mask)
        idx += N
    tl.debug_barrier()

    # phase 2, backward in time: the TSSL-BP rule
    h = tl.zeros([BLOCK], ACC)
    acc = tl.zeros([BLOCK], ACC)
    idx = offs + (T - 1).to(tl.int64) * N
    for _t in range(T):
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(ACC)
        u = tl.load(u_ptr + idx, mask=mask, other=0.0).to(ACC)
        du = tl.load(du_ptr + idx, mask=mask, other=1.0).to(ACC)
        flags = tl.load(f_ptr + idx, mask=mask, other=0)
        of = tl.where((flags & 1) != 0, 1.0, 0.0).to(ACC)
        if PSC:
            acc = g * its + decs * acc
            G = acc
        else:
            G = g
        # c = -clamp(-1/du, -CAP, 0) * o
        r = -1.0 / du
        r = tl.where(r < -CAP, -CAP, r)
        r = tl.where(r > 0.0, 0.0, r)
        c = -r * of
        if RESET == 0:
            delta = c * (G + h * u * itm) + (1.0 - of) * beta * h
        elif RESET == 1 or RESET == 2:
            delta = c * (G + thi * h) + beta * h
        else:
            delta = c * G + beta * h
        h = delta
        out = delta
        if WARMUP:
            a = (th - u) / WIDTH
            a = tl.minimum(tl.maximum(a, -8.0), 8.0)
            z = tl.exp(a)
            sur = G * z / ((1.0 + z) * (1.0 + z) * WIDTH)
            out = tl.where((flags & 2) != 0, sur, delta)
        tl.store(gx_ptr + idx, out.to(gx_ptr.dtype.element_ty), mask=mask)
        idx -= N


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grid(N: int):
    return (max(1, triton.cdiv(N, _BLOCK)),)


class TritonImpl:
    """Fused Triton kernels (see module docstring)."""

    name = "triton"

    @staticmethod
    def available(x: Tensor) -> bool:
        return x.dtype in _NATIVE and (x.is_cuda or (_INTERPRET and x.device.type == "cpu"))

    @staticmethod
    def forward(x: Tensor, k: LIFConstants, save: bool):
        xc = x.contiguous()
        T, N = xc.shape[0], xc[0].numel()
        o = torch.empty(xc.shape, dtype=torch.uint8, device=xc.device)
        s = torch.empty(xc.shape, dtype=_state_dtype(xc.dtype), device=xc.device)
        par, ps = pack_params(k, s)
        _fwd_kernel[_grid(N)](xc, o, s, par, T, N, RESET=RESET_CODES[k.reset], PS=ps, ACC=_acc(xc.dtype),
                              BLOCK=_BLOCK)
        return o.view(torch.bool), s, ((xc,) if save else ())

    @staticmethod
    def _backward(grad: Tensor, x, u, du, o, k: LIFConstants, warmup: bool, psc_output: bool,
                  out_dtype: torch.dtype) -> Tensor:
        """Run both phases; ``x`` given: recompute ``u``, ``du``; else ``u``, ``du``, ``o`` are the trace."""
        recompute = x is not None
        like = x if recompute else u
        sd = _state_dtype(like.dtype)
        g = grad.contiguous()
        T, N = like.shape[0], like[0].numel()
        dev = like.device
        gx = torch.empty(like.shape, dtype=out_dtype, device=dev)
        flags = torch.empty(like.shape, dtype=torch.uint8, device=dev)
        if recompute:
            u = torch.empty(like.shape, dtype=sd, device=dev)
            du = gx if out_dtype == sd else torch.empty(like.shape, dtype=sd, device=dev)
        par, ps = pack_params(k, u)
        # x_ptr / o_ptr: the one phase 1 does not read gets a placeholder tensor (never dereferenced)
        _bwd_kernel[_grid(N)](x if recompute else u, u if recompute else o, g, u, du, flags, gx, par, T, N,
                              RECOMPUTE=recompute, RESET=RESET_CODES[k.reset], WARMUP=warmup, PSC=psc_output,
                              PS=ps, ACC=_acc(sd), CAP=SENSITIVITY_CAP, WIDTH=WARMUP_WIDTH, BLOCK=_BLOCK)
        return gx

    @staticmethod
    def backward(grad: Tensor, saved: Sequence[Tensor], k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        (x,) = saved
        return TritonImpl._backward(grad, x, None, None, None, k, warmup, psc_output, out_dtype=x.dtype)

    @staticmethod
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        sd = _state_dtype(u.dtype)
        uc, duc = u.to(sd).contiguous(), du.to(sd).contiguous()
        oc = o.to(torch.bool).contiguous().view(torch.uint8)
        return TritonImpl._backward(grad, None, uc, duc, oc, k, warmup, psc_output, out_dtype=grad.dtype)


def loader() -> type:
    """Registry loader (raises ImportError without triton)."""
    return TritonImpl
