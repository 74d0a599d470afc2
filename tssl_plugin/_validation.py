"""Input checks shared by the public functions: clear errors instead of silent wrong answers."""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Param = Union[float, Tensor]


def check_sequence(x: object, name: str = "x", *, allow_int: bool = False) -> Tensor:
    """``x`` must be a time-first floating tensor ``[T, N, ...]`` with T >= 1 and no NaN/inf."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not allow_int and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), got {x.dtype}"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: missing time dimension; expected time-first "
            f"[T, N, ...] (e.g. x.unsqueeze(1) for a single neuron group)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} has T == 0 time steps (shape {tuple(x.shape)}); need T >= 1")
    check_finite(x, name)
    return x


def check_finite(x: Tensor, name: str) -> None:
    """Raise naming NaN or inf (and where the first one sits) if ``x`` is not finite."""
    if not x.is_floating_point() or x.numel() == 0:
        return
    if torch.isfinite(x).all():
        return
    nan = torch.isnan(x)
    if nan.any():
        idx = tuple(int(i) for i in nan.nonzero()[0])
        raise ValueError(f"{name} contains NaN ({int(nan.sum())} values, first at index {idx})")
    idx = tuple(int(i) for i in torch.isinf(x).nonzero()[0])
    raise ValueError(f"{name} contains inf ({int(torch.isinf(x).sum())} values, first at index {idx})")


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


def as_param(
    value: object,
    name: str,
    neuron_shape: torch.Size,
    like: Tensor,
    *,
    lower: Optional[float] = None,
    lower_inclusive: bool = False,
    allow_inf: bool = False,
) -> Param:
    """Validate a neuron parameter: a real number, or a tensor broadcastable to ``neuron_shape``.

    Tensors are moved to ``like``'s device and dtype. ``lower`` is the bound the
    values must exceed (or reach, with ``lower_inclusive``).
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a tensor, got bool")
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise ValueError(
                f"{name} requires grad, but TSSL-BP defines no gradient for neuron parameters; "
                f"pass {name}.detach()"
            )
        try:
            shape = torch.broadcast_shapes(value.shape, neuron_shape)
        except RuntimeError:
            shape = None
        if shape != neuron_shape:
            raise ValueError(
                f"{name} of shape {tuple(value.shape)} does not broadcast to the neuron shape "
                f"{tuple(neuron_shape)} (x.shape[1:])"
            )
        t = value.to(device=like.device, dtype=like.dtype)
        bad = torch.isnan(t) | (torch.isinf(t) if not allow_inf else torch.zeros_like(t, dtype=torch.bool))
        if bad.any():
            raise ValueError(f"{name} contains NaN{'' if allow_inf else ' or inf'}")
        if lower is not None:
            ok = t >= lower if lower_inclusive else t > lower
            if not ok.all():
                rel = ">=" if lower_inclusive else ">"
                raise ValueError(f"{name} must be {rel} {lower:g} everywhere (min {float(t.min()):g})")
        return t
    if not isinstance(value, Real):
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {v}")
    if lower is not None and not (v >= lower if lower_inclusive else v > lower):
        rel = ">=" if lower_inclusive else ">"
        raise ValueError(f"{name} must be {rel} {lower:g}, got {v:g}")
    return v
