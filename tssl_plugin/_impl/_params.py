"""Pack :class:`LIFConstants` into the flat parameter table the fused kernels read.

Row order (``P_*`` in ``csrc/tssl_cpu.c`` and the Triton kernels)::

    0 inv_tau_m   1 beta = 1 - inv_tau_m   2 inv_tau_s   3 1 - inv_tau_s
    4 threshold   5 threshold * inv_tau_m  6 warmup_level

Derived rows are computed exactly as ``reference.py`` computes them (Python
floats in double precision, then rounded once to the tensor dtype; tensors in
the tensor dtype), so the kernels repeat the reference's rounding.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .reference import LIFConstants

#: reset name -> code used by the kernels.
RESET_CODES = {"zero": 0, "subtract": 1, "subtract_after_leak": 2, "none": 3}
N_PARAMS = 7


def pack_params(k: LIFConstants, like: Tensor) -> Tuple[Tensor, int]:
    """Return ``(table, per_neuron)``: ``[7]`` (all scalars, ``per_neuron=0``) or ``[7, N]`` (``per_neuron=1``).

    ``like`` is the ``[T, ...]`` input; ``N`` is the number of neurons ``prod(like.shape[1:])``.
    """
    beta = 1 - k.inv_tau_m
    vals = [k.inv_tau_m, beta, k.inv_tau_s, 1 - k.inv_tau_s, k.threshold, k.threshold * k.inv_tau_m, k.warmup_level]
    if not any(isinstance(v, Tensor) for v in vals):
        return torch.tensor(vals, dtype=like.dtype, device=like.device), 0
    shape = like.shape[1:]
    rows = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(shape).reshape(-1) for v in vals]
    return torch.stack(rows).contiguous(), 1
