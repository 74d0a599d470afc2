"""The parameter table the fused kernels read: its one definition, its packing and its cache.

The table holds, per neuron (``[N_ROWS, N]``, one column per neuron) or for
all neurons at once (``[N_ROWS]``), the constants of :mod:`tssl_plugin.rule`
in the form the recursions use, and the warm-up width and the ablation gains
(one value per layer each, rows like the others, so every kernel reads them at
run time and no kernel is rebuilt or recompiled for another width or ablation). :data:`ROWS` is the only place that
says which row holds what: the C kernel gets the row numbers as
``-DROW_<NAME>=i`` at build time (:func:`c_defines`), the Triton kernels as
constexpr globals built from :data:`ROW`.

Derived rows are computed exactly as ``reference.py`` computes them (Python
floats in double precision, then rounded once to the table dtype; tensors in
the tensor dtype), so the kernels repeat the reference's rounding.

Packing is cached (:func:`param_table`): for numbers by value, for tensors by
identity and version (an in-place change repacks), per dtype and device. A
layer therefore packs and copies its parameters to the device once, not on
every forward and backward, and a parameter tensor's values are checked (one
host sync on a GPU) only when it is packed.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .reference import DELAYED_RESETS

from ..rule import RESETS, LIFConstants, LIFParameters, Param, ablation_gains, warmup_bound

#: what each row of the table holds, in row order (``beta = 1 - inv_tau_m``).
ROWS: Tuple[str, ...] = (
    "inv_tau_m",          # 1 / tau_m (0 for an IF neuron)
    "membrane_decay",     # beta = 1 - inv_tau_m
    "inv_tau_s",          # 1 / tau_s
    "trace_decay",        # 1 - inv_tau_s
    "threshold",          # theta
    "threshold_x_membrane_decay",  # beta theta: what a "subtract" spike removes from the next step's membrane
    "warmup_level",       # 1 / (4 tau_s)
    "warmup_width",       # w of the warm-up surrogate sigma'((u - theta)/w)/w (per neuron where w theta is)
    "sensitivity_cap",    # cap of the spike-time sensitivity c = min(1/du, cap)
    "spike_timing_gain",  # a_c: factor on c, 1 (0 for the ablation "no_spike_timing", rule.ablation_gains)
    "intra_gain",         # a_J: factor on the intra-neuron term, 1 (0 for the ablation "no_intra")
    "silent_gain",        # a_S: 1 for the warm-up gate "silent" (the surrogate added at the other silent steps), else 0
    "warmup_bound",       # b: the warm-up sigmoid's argument is clamped to [-b, b] (8, the reference's floor; 40: none)
    "crossing_gain",      # r: c is multiplied by max(0, 1 - r (u - theta)/du) at a crossing (1: "interpolated", 0: "step")
)
#: row name -> row number.
ROW: Dict[str, int] = {name: i for i, name in enumerate(ROWS)}
N_ROWS = len(ROWS)
#: reset name -> the code the kernels branch on.
RESET_CODES: Dict[str, int] = {name: i for i, name in enumerate(RESETS)}


def row_values(k: LIFConstants) -> List[Param]:
    """The table's rows for constants ``k``, in :data:`ROWS` order (floats or tensors)."""
    beta = 1 - k.inv_tau_m
    spike_timing_gain, intra_gain = ablation_gains(k.ablation)
    values = {
        "inv_tau_m": k.inv_tau_m,
        "membrane_decay": beta,
        "inv_tau_s": k.inv_tau_s,
        "trace_decay": 1 - k.inv_tau_s,
        "threshold": k.threshold,
        "threshold_x_membrane_decay": beta * k.threshold,
        "warmup_level": k.warmup_level,
        "warmup_width": k.warmup_width,
        "sensitivity_cap": k.sensitivity_cap,
        "spike_timing_gain": spike_timing_gain,
        "intra_gain": intra_gain,
        "silent_gain": 1.0 if k.warmup_gate == "silent" else 0.0,
        "warmup_bound": warmup_bound(k),
        "crossing_gain": 1.0 if k.crossing == "interpolated" else 0.0,
    }
    return [values[name] for name in ROWS]


def pack_params(k: LIFConstants, like: Tensor) -> Tuple[Tensor, bool]:
    """Return ``(table, per_neuron)``: ``[N_ROWS]`` (all scalars) or ``[N_ROWS, N]`` (per-neuron values).

    ``like`` gives the dtype and device, and ``like.shape[1:]`` the neuron
    shape (``N`` is its number of elements).
    """
    vals = row_values(k)
    if not any(isinstance(v, Tensor) for v in vals):
        return torch.tensor(vals, dtype=like.dtype, device=like.device), False
    shape = like.shape[1:]
    rows = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(shape).reshape(-1) for v in vals]
    return torch.stack(rows).contiguous(), True


#: step tables of one-value constants, by value (the adapters build new constant tensors every step).
_STEP_TABLES: "OrderedDict[tuple, Tensor]" = OrderedDict()


def _value_key(v: Param) -> tuple:
    """A one-value constant as a cache key: its value and, for a tensor, the dtype its arithmetic rounds to."""
    if isinstance(v, Tensor):
        return (v.item(), v.dtype)
    return (float(v), None)


def step_table(k: LIFConstants, like: Tensor) -> Tuple[Tensor, bool]:
    """The table of one step of the step-wise node, whose elements are those of ``like`` (``[batch, *neurons]``).

    Constants that are numbers or one-element tensors (what the adapters build each step) give a
    ``[N_ROWS]`` table, without expanding them; on the CPU it is cached by the constants' values (and the
    dtypes their derived rows are computed in), so a step reads a few numbers and packs nothing. Any other
    tensor gives the ``[N_ROWS, like.numel()]`` table of :func:`pack_params`. Derived rows are computed as
    :func:`row_values` computes them.
    """
    base = (k.inv_tau_m, k.inv_tau_s, k.threshold, k.warmup_level, k.warmup_width, k.sensitivity_cap)
    if any(isinstance(v, Tensor) and v.numel() != 1 for v in base):
        return pack_params(k, like.unsqueeze(0))
    if like.device.type != "cpu":
        if not any(isinstance(v, Tensor) for v in base):
            return torch.tensor([float(v) for v in row_values(k)], dtype=like.dtype, device=like.device), False
        return torch.stack([torch.as_tensor(v).to(like.device, like.dtype).reshape(())
                            for v in row_values(k)]), False
    # ablation, gate, floor, crossing: 5 rows
    key = (tuple(_value_key(v) for v in base), k.ablation, k.warmup_gate, k.warmup_floor, k.crossing, like.dtype)
    with _LOCK:
        table = _STEP_TABLES.get(key)
    if table is None:
        table = torch.tensor([float(v) for v in row_values(k)], dtype=like.dtype)
        with _LOCK:
            _STEP_TABLES[key] = table
            while len(_STEP_TABLES) > _CACHE_SIZE:
                _STEP_TABLES.popitem(last=False)
    return table, False


def step_row(value: Param, like: Tensor) -> Tuple[Tensor, bool]:
    """One constant for the elements of ``like``: ``([1] tensor, False)`` for a number (cached by value on
    the CPU) or a one-element tensor, else ``(its values expanded to like's shape, contiguous, True)``."""
    if not isinstance(value, Tensor):
        if like.device.type != "cpu":
            return torch.tensor([value], dtype=like.dtype, device=like.device), False
        key = ((float(value), None), like.dtype)
        with _LOCK:
            row = _STEP_TABLES.get(key)
        if row is None:
            row = torch.tensor([value], dtype=like.dtype)
            with _LOCK:
                _STEP_TABLES[key] = row
                while len(_STEP_TABLES) > _CACHE_SIZE:
                    _STEP_TABLES.popitem(last=False)
        return row, False
    if value.device != like.device or value.dtype != like.dtype:
        value = value.to(like.device, like.dtype)
    if value.numel() == 1:
        return value.reshape(1), False
    return value.expand(like.shape).contiguous(), True


def step_forward_rows(inv_tau_s: Param, warmup_level: Optional[Param], like: Tensor) -> Tuple[Tensor, Tensor, bool]:
    """``(inv_tau_s, warmup_level, per_neuron)`` as the step-wise forward kernels read them (:func:`step_row`):
    one value each, or, if either is per element, both per element. ``warmup_level`` None (no flags wanted):
    ``inv_tau_s``'s row in its place."""
    its, per_neuron = step_row(inv_tau_s, like)
    if warmup_level is None:
        return its, its, per_neuron
    lvl, lvl_per_neuron = step_row(warmup_level, like)
    if lvl_per_neuron == per_neuron:
        return its, lvl, per_neuron
    its, lvl = (t if p else t.expand(like.shape).contiguous() for t, p in ((its, per_neuron), (lvl, lvl_per_neuron)))
    return its, lvl, True


def c_defines() -> List[str]:
    """Compiler flags that give the C kernel the table layout, the reset codes and the delayed resets' codes
    (:data:`~tssl_plugin._impl.reference.DELAYED_RESETS`).

    The warm-up width, the sensitivity cap and the ablation gains are not among them: they are options
    (rows of the table), read at run time.
    """
    flags = [f"-DROW_{name.upper()}={i}" for i, name in enumerate(ROWS)] + [f"-DN_ROWS={N_ROWS}"]
    flags += [f"-DRESET_{name.upper()}={code}" for name, code in RESET_CODES.items()]
    flags += [f"-DDELAYED_{name.upper()}={code}" for name, code in DELAYED_RESETS.items()]
    return flags


class _Entry(NamedTuple):
    refs: Tuple[Optional[weakref.ref], ...]
    table: Tensor
    per_neuron: bool


_CACHE: "OrderedDict[tuple, _Entry]" = OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()  # DataParallel and other threads share the cache


def _key_part(p: Param):
    if isinstance(p, Tensor):
        return ("tensor", id(p), p._version)
    return ("number", p)


def param_table(p: LIFParameters, neuron_shape: torch.Size, dtype: torch.dtype,
                device: torch.device) -> Tuple[Tensor, bool]:
    """The packed table for the parameters ``p`` (checked, cached; see the module docstring).

    Numbers must already be checked (:func:`~tssl_plugin.rule.check_parameters`); tensors are checked here when
    they are packed.
    """
    try:
        key = (tuple(_key_part(v) for v in p), tuple(neuron_shape), dtype, device)
    except RuntimeError:  # inference tensors have no version counter: no caching
        key = None
    if key is not None:
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None and all(r is None or r() is v for r, v in zip(hit.refs, p)):
                _CACHE.move_to_end(key)
                return hit.table, hit.per_neuron
    like = torch.empty((0, *neuron_shape), dtype=dtype, device=device)
    table, per_neuron = pack_params(p.constants(like), like)
    if key is not None:
        # an entry lives as long as its tensors: the table of a dropped tensor is freed with it
        drop = lambda _ref, key=key: _CACHE.pop(key, None)  # noqa: E731
        refs = tuple(weakref.ref(v, drop) if isinstance(v, Tensor) else None for v in p)
        with _LOCK:
            _CACHE[key] = _Entry(refs, table, per_neuron)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return table, per_neuron


def clear_cache() -> None:
    """Forget every packed table (tests)."""
    with _LOCK:
        _CACHE.clear()
        _STEP_TABLES.clear()
