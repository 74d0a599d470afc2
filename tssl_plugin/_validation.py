"""Every input check of the core, in one place: clear one-line errors instead of silent wrong answers.

Two kinds of checks:

* static checks look only at Python values and tensor metadata (type, dtype,
  shape, ``requires_grad``); they cost nothing, run on every call and trace
  through ``torch.compile`` without a graph break;
* value checks read tensor data (NaN/inf in the input, parameter tensors out
  of range). They run where the data is read anyway or where a read is cheap:
  see ``tssl_plugin/_impl/_op.py`` for where each op does them.

Type errors raise ``TypeError``, values out of range ``ValueError``; each
message names the argument and what to do.
"""
from __future__ import annotations

import math
import os
import warnings
from numbers import Real
from typing import Dict, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from ._types import FLOAT_DTYPES, Param, compute_dtype


_DTYPE_NAMES = "/".join(str(d).replace("torch.", "") for d in FLOAT_DTYPES)


def check_sequence(x: object, name: str = "x", *, allow_int: bool = False, finite: bool = True) -> Tensor:
    """``x`` must be a time-first floating tensor ``[T, N, ...]`` with T >= 1 (and, with ``finite``, no NaN/inf)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not allow_int and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor ({_DTYPE_NAMES}), got {x.dtype}"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: missing time dimension; expected time-first "
            f"[T, N, ...] (e.g. x.unsqueeze(1) for a single neuron group)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} has T == 0 time steps (shape {tuple(x.shape)}); need T >= 1")
    if finite:
        check_finite(x, name)
    return x


def values_readable() -> bool:
    """Whether a check may read tensor values here: in eager mode, not while ``torch.compile`` traces.

    Reading a value (``bool(t)``, ``t.item()``) inside a compiled region breaks the graph. Compiled
    code therefore skips the value checks of the functions around the op (losses, ``psp``); the op
    itself checks its input inside its kernels (see ``tssl_plugin/_impl/_op.py``).
    """
    return not torch.compiler.is_compiling()


def check_finite(x: Tensor, name: str) -> None:
    """Raise naming NaN or inf (and where the first one sits) if ``x`` is not finite.

    One reduction and one host sync on the fast path (a finite sum proves
    every element finite); only a non-finite sum pays for the element-wise
    search that names the index.
    """
    if not x.is_floating_point() or x.numel() == 0 or not values_readable():
        return
    if bool(torch.isfinite(x.sum(dtype=compute_dtype(x.dtype)))):
        return
    raise_non_finite(x, name)


#: where :func:`check_gradient_finite` runs, from ``TSSL_PLUGIN_CHECK_GRADIENTS`` (read at import):
#: ``"cpu"`` (default: CPU tensors only, no host sync on a GPU's hot path), ``"all"`` (every device; one
#: host sync per backward call on a GPU) or ``"off"`` (``0`` is ``off``, ``1`` is ``all``).
def _gradient_check_setting() -> str:
    raw = os.environ.get("TSSL_PLUGIN_CHECK_GRADIENTS", "cpu").strip().lower()
    value = {"0": "off", "1": "all", "": "cpu"}.get(raw, raw)
    if value not in ("cpu", "all", "off"):
        warnings.warn(f"TSSL_PLUGIN_CHECK_GRADIENTS={raw!r} is not one of cpu, all, off (or 0, 1); using cpu",
                      RuntimeWarning, stacklevel=2)
        return "cpu"
    return value


CHECK_GRADIENTS = _gradient_check_setting()


def check_gradient_finite(grad_x: Tensor, u: Tensor) -> None:
    """In a TSSL-BP backward on a forward run elsewhere (the adapters): raise if ``grad_x`` is not finite
    because the forward's membrane ``u`` was, i.e. NaN or inf reached the layer's input.

    Fast path: one reduction of ``grad_x`` and one host sync (a finite sum proves every element finite);
    ``u`` is read only when that sum is not finite. A non-finite gradient that comes from the incoming
    gradient (the loss) with a finite membrane is passed on, as any PyTorch op does. Skipped while
    ``torch.compile`` traces (a value read would break the graph); see :data:`CHECK_GRADIENTS` for devices.
    """
    if CHECK_GRADIENTS not in ("cpu", "all"):
        return
    if (CHECK_GRADIENTS == "cpu" and grad_x.device.type != "cpu") or grad_x.numel() == 0 or not grad_x.is_floating_point() or not values_readable():
        return
    if bool(torch.isfinite(grad_x.sum(dtype=compute_dtype(grad_x.dtype)))):
        return
    bad = ~torch.isfinite(u)
    if not bool(bad.any()):
        return
    idx = tuple(int(i) for i in bad.nonzero()[0])
    kind = "NaN" if bool(torch.isnan(u).any()) else "inf"
    raise ValueError(f"TSSL-BP backward: {kind} reached this layer's input (its membrane is not finite at "
                     f"{int(bad.sum())} values, first at index {idx}), so its gradient would be NaN; "
                     f"find the source with torch.autograd.set_detect_anomaly(True)")


def raise_non_finite(x: Tensor, name: str) -> None:
    """Raise the error naming the first NaN (else inf) of ``x``; return if there is none."""
    nan = torch.isnan(x)
    if nan.any():
        idx = tuple(int(i) for i in nan.nonzero()[0])
        raise ValueError(f"{name} contains NaN ({int(nan.sum())} values, first at index {idx})")
    inf = torch.isinf(x)
    if inf.any():
        idx = tuple(int(i) for i in inf.nonzero()[0])
        raise ValueError(f"{name} contains inf ({int(inf.sum())} values, first at index {idx})")


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """``value`` must be one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


def check_bool(value: object, name: str) -> bool:
    """``value`` must be a Python bool (``"no"`` or ``0`` are refused, not converted)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")
    return value


def _bound_text(lower: float, lower_inclusive: bool) -> str:
    return f"{'>=' if lower_inclusive else '>'} {lower:g}"


def check_number(
    value: object,
    name: str,
    *,
    lower: Optional[float] = None,
    lower_inclusive: bool = False,
    allow_inf: bool = False,
    what: Optional[str] = None,
) -> float:
    """A real number (not a bool), finite unless ``allow_inf`` (+inf only), above ``lower``; returned as float.

    ``what`` marks a layer option (one number, never a tensor) and says what it is; the errors then name it
    and state the whole condition at once (``must be a finite number > 0 (what)``).
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        kind = "a number or a tensor" if what is None else f"a number ({what})"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    v = float(value)
    not_finite = math.isnan(v) or (math.isinf(v) and not allow_inf)
    too_low = lower is not None and not (v >= lower if lower_inclusive else v > lower)
    if what is not None and (not_finite or too_low):
        bound = "" if lower is None else " " + _bound_text(lower, lower_inclusive)
        raise ValueError(f"{name} must be a finite number{bound} ({what}), got {v}")
    if not_finite:
        raise ValueError(f"{name} must be finite, got {v}")
    if too_low:
        raise ValueError(f"{name} must be {_bound_text(lower, lower_inclusive)}, got {v:g}")
    return v


class Bounds(NamedTuple):
    """The range of a neuron parameter: above ``lower`` (``>=`` when ``lower_inclusive``), finite unless
    ``allow_inf`` (+inf)."""

    lower: float
    lower_inclusive: bool = False
    allow_inf: bool = False


#: the bounds of each neuron parameter, their one definition (numbers: :func:`check_number`; tensors:
#: :func:`check_param_values`).
PARAM_BOUNDS: Dict[str, Bounds] = {
    "tau_m": Bounds(1.0, allow_inf=True),  # > 1; inf: a non-leaky IF neuron
    "tau_s": Bounds(1.0, lower_inclusive=True),  # >= 1
    "threshold": Bounds(0.0),  # > 0
}


def check_param_number(value: object, name: str) -> float:
    """Neuron parameter ``name`` (a key of :data:`PARAM_BOUNDS`) given as a number: in its bounds."""
    return check_number(value, name, **PARAM_BOUNDS[name]._asdict())


def check_tau_s(value: object) -> float:
    """Synaptic (PSC) time constant as a number (the adapters' layer option): finite, >= 1."""
    return check_param_number(value, "tau_s")


def check_warmup_width(value: object) -> float:
    """Width ``w`` of the warm-up surrogate ``sigma'((u - theta)/w)/w``: one finite number > 0."""
    return check_number(value, "warmup_width", lower=0.0, what="the width of the warm-up surrogate")


def check_sensitivity_cap(value: object) -> float:
    """The cap on the spike-time sensitivity ``c = min(1/du, cap)``: one finite number > 0."""
    return check_number(value, "sensitivity_cap", lower=0.0,
                        what="the cap on the spike-time sensitivity c = 1/du")


def check_optional_sensitivity_cap(value: object) -> Optional[float]:
    """An adapter's ``sensitivity_cap``: None (the default for the layer's reset) or one finite number > 0."""
    return None if value is None else check_sensitivity_cap(value)


def check_param(value: object, name: str, neuron_shape: torch.Size) -> Param:
    """Static check of a neuron parameter: a number in range, or a tensor broadcastable to ``neuron_shape``.

    Numbers are fully checked and returned as float. Tensors are checked for
    type, ``requires_grad`` and shape only; their values are checked by
    :func:`check_param_values` where they are read.
    """
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise ValueError(
                f"{name} requires grad, but TSSL-BP defines no gradient for neuron parameters; "
                f"pass {name}.detach()"
            )
        if value.is_complex():
            raise TypeError(f"{name} must be a real tensor, got {value.dtype}")
        try:
            shape = torch.broadcast_shapes(value.shape, neuron_shape)
        except RuntimeError:
            shape = None
        if shape != neuron_shape:
            raise ValueError(
                f"{name} of shape {tuple(value.shape)} does not broadcast to the neuron shape "
                f"{tuple(neuron_shape)} (x.shape[1:])"
            )
        return value
    return check_param_number(value, name)


def check_param_values(t: Tensor, name: str) -> None:
    """Value check of a parameter tensor (reads it: one host sync on a GPU)."""
    lower, inclusive, allow_inf = PARAM_BOUNDS[name]
    bad = torch.isnan(t) if allow_inf else ~torch.isfinite(t)
    if bad.any():
        raise ValueError(f"{name} contains NaN{'' if allow_inf else ' or inf'}")
    ok = t >= lower if inclusive else t > lower
    if not ok.all():
        raise ValueError(f"{name} must be {_bound_text(lower, inclusive)} everywhere (min {float(t.min()):g})")


def as_param(value: object, name: str, neuron_shape: torch.Size, like: Tensor) -> Param:
    """Fully checked neuron parameter: a float, or a tensor on ``like``'s device and dtype (its values are
    checked in eager mode; see :func:`values_readable`)."""
    v = check_param(value, name, neuron_shape)
    if isinstance(v, Tensor):
        v = v.to(device=like.device, dtype=like.dtype)
        if values_readable():
            check_param_values(v, name)
    return v
