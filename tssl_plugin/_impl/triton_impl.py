"""Triton implementation of the TSSL-BP recursions (CUDA; optional dependency ``triton``).

One program handles ``BLOCK`` neurons and walks over T inside the kernel, so
each element of every ``[T, N]`` tensor is read or written exactly once per
pass:

* forward: reads ``x``; writes ``o`` (uint8 viewed as bool), ``s`` and, when a
  backward will follow, ``u`` and ``du`` (17 bytes per element in float32);
* backward: reads ``g``, ``u``, ``du``, ``o``, ``s``; writes ``dL/dx`` (21 bytes).
  The PSC error ``G`` is accumulated in registers on the way back.

The arithmetic repeats ``reference.py`` operation by operation (parameter
table from :mod:`._params`). State is kept in float32 (float64 for float64
input); float16/bfloat16 inputs are loaded and converted in the kernel and the
gradient is stored in the input dtype.

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
def _fwd_kernel(x_ptr, o_ptr, s_ptr, u_ptr, du_ptr, par_ptr, T, N,
                RESET: tl.constexpr, SAVE: tl.constexpr, PS: tl.constexpr, ACC: tl.constexpr,
                BLOCK: tl.constexpr):
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
        du = x - v * itm
        if RESET == 2:  # subtract_after_leak
            du = du - of * th
        u = v + du
        fired = u > th
        of = tl.where(fired, 1.0, 0.0).to(ACC)
        if RESET == 0:  # zero
            v = tl.where(fired, 0.0, u).to(ACC)
        elif RESET == 1:  # subtract
            v = u - of * th
        else:
            v = u
        s = s + (of - s) * its
        tl.store(o_ptr + idx, fired.to(tl.uint8), mask=mask)
        tl.store(s_ptr + idx, s, mask=mask)
        if SAVE:
            tl.store(u_ptr + idx, u, mask=mask)
            tl.store(du_ptr + idx, du, mask=mask)
        idx += N


@triton.jit
def _trace_kernel(o_ptr, s_ptr, par_ptr, T, N, PS: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    its = _param(par_ptr, 2, N, offs, mask, PS, ACC)
    s = tl.zeros([BLOCK], ACC)
    idx = offs
    for _t in range(T):
        of = tl.load(o_ptr + idx, mask=mask, other=0).to(ACC)
        s = s + (of - s) * its
        tl.store(s_ptr + idx, s, mask=mask)
        idx += N


@triton.jit
def _bwd_kernel(g_ptr, u_ptr, du_ptr, o_ptr, s_ptr, gx_ptr, par_ptr, T, N,
                RESET: tl.constexpr, WARMUP: tl.constexpr, PSC: tl.constexpr, PS: tl.constexpr,
                ACC: tl.constexpr, CAP: tl.constexpr, WIDTH: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    itm = _param(par_ptr, 0, N, offs, mask, PS, ACC)
    beta = _param(par_ptr, 1, N, offs, mask, PS, ACC)
    its = _param(par_ptr, 2, N, offs, mask, PS, ACC)
    decs = _param(par_ptr, 3, N, offs, mask, PS, ACC)
    th = _param(par_ptr, 4, N, offs, mask, PS, ACC)
    thb = _param(par_ptr, 5, N, offs, mask, PS, ACC)
    wl = _param(par_ptr, 6, N, offs, mask, PS, ACC)
    h = tl.zeros([BLOCK], ACC)
    acc = tl.zeros([BLOCK], ACC)
    idx = offs + (T - 1).to(tl.int64) * N
    for _t in range(T):
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(ACC)
        u = tl.load(u_ptr + idx, mask=mask, other=0.0).to(ACC)
        du = tl.load(du_ptr + idx, mask=mask, other=1.0).to(ACC)
        of = tl.load(o_ptr + idx, mask=mask, other=0).to(ACC)
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
        elif RESET == 1:
            delta = c * (G - thb * h) + beta * h
        elif RESET == 2:
            delta = c * (G - th * h) + beta * h
        else:
            delta = c * G + beta * h
        h = delta
        out = delta
        if WARMUP:
            s = tl.load(s_ptr + idx, mask=mask, other=1.0).to(ACC)
            a = (th - u) / WIDTH
            a = tl.minimum(tl.maximum(a, -8.0), 8.0)
            z = tl.exp(a)
            sur = G * z / ((1.0 + z) * (1.0 + z) * WIDTH)
            out = tl.where(s < wl, sur, delta)
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
        sd = _state_dtype(xc.dtype)
        T, N = xc.shape[0], xc[0].numel()
        o = torch.empty(xc.shape, dtype=torch.uint8, device=xc.device)
        s = torch.empty(xc.shape, dtype=sd, device=xc.device)
        u = torch.empty(xc.shape, dtype=sd, device=xc.device) if save else s
        du = torch.empty(xc.shape, dtype=sd, device=xc.device) if save else s
        par, ps = pack_params(k, xc.new_empty((1,) + tuple(xc.shape[1:]), dtype=sd))
        _fwd_kernel[_grid(N)](xc, o, s, u, du, par, T, N, RESET=RESET_CODES[k.reset], SAVE=save, PS=ps,
                              ACC=_acc(xc.dtype), BLOCK=_BLOCK)
        ob = o.view(torch.bool)
        return ob, s, ((u, du, ob, s) if save else ())

    @staticmethod
    def backward(grad: Tensor, saved: Sequence[Tensor], k: LIFConstants, warmup: bool, psc_output: bool,
                 out_dtype: torch.dtype | None = None) -> Tensor:
        u, du, o, s = saved
        g = grad.contiguous()
        T, N = u.shape[0], u[0].numel()
        gx = torch.empty(u.shape, dtype=out_dtype or g.dtype, device=u.device)
        par, ps = pack_params(k, u)
        _bwd_kernel[_grid(N)](g, u, du, o.view(torch.uint8), s, gx, par, T, N, RESET=RESET_CODES[k.reset],
                              WARMUP=warmup, PSC=psc_output, PS=ps, ACC=_acc(u.dtype), CAP=SENSITIVITY_CAP,
                              WIDTH=WARMUP_WIDTH, BLOCK=_BLOCK)
        return gx

    @staticmethod
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool, psc_output: bool) -> Tensor:
        sd = _state_dtype(u.dtype)
        uc, duc = u.to(sd).contiguous(), du.to(sd).contiguous()
        oc = o.to(torch.bool).contiguous()
        T, N = uc.shape[0], uc[0].numel()
        s = torch.empty(uc.shape, dtype=sd, device=uc.device)
        if warmup:
            par, ps = pack_params(k, uc)
            _trace_kernel[_grid(N)](oc.view(torch.uint8), s, par, T, N, PS=ps, ACC=_acc(sd), BLOCK=_BLOCK)
        return TritonImpl.backward(grad, (uc, duc, oc, s), k, warmup, psc_output, out_dtype=grad.dtype)


def loader() -> type:
    """Registry loader (raises ImportError without triton)."""
    return TritonImpl
