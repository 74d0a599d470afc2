"""The core's shared vocabulary of types: what a neuron parameter may be, and the dtypes it runs in.

Every module of the core and its implementations imports these from here (``tssl_plugin.rule``
re-exports :data:`Param` as part of the public rule).
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

#: a neuron parameter: one number for all neurons, or a tensor broadcastable to the neuron shape.
Param = Union[float, Tensor]
#: the adapters' ``warmup`` option: True (the reference's warm-up, gate ``"trace"``), False (none), or a gate's
#: name (``tssl_plugin.rule.WARMUP_GATES``).
Warmup = Union[bool, str]

#: floating dtypes the core accepts as input.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: dtypes the recursions run in (:func:`compute_dtype`).
COMPUTE_DTYPES = (torch.float32, torch.float64)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the recursions run in for input of ``dtype``: float64 stays float64; float32 and half
    precision (float16, bfloat16) run in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


__all__ = ["Param", "Warmup", "FLOAT_DTYPES", "COMPUTE_DTYPES", "compute_dtype"]
