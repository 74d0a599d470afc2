r"""The TSSL-BP rule (Zhang & Li, NeurIPS 2020): its constants, its types and its math.

This module is the public home of what defines the rule. The readable
implementation is :mod:`tssl_plugin._impl.reference`; the fused kernels
(``_impl/cpu.py``, ``_impl/triton_impl.py``) repeat it operation by operation
and are tested against it.

Sequences are time-first, ``[T, *neuron_shape]``; every formula is
element-wise over the neurons. Per neuron, from ``v = s = 0`` and
:math:`o[-1] = 0`, with :math:`\beta = 1 - 1/\tau_m`:

.. math::

    \Delta u[t] &= x[t] - v[t-1] / \tau_m \\
    u[t] &= v[t-1] + \Delta u[t] \;
        \bigl(- \vartheta\, o[t-1] \text{ for } \texttt{subtract\_after\_leak}\bigr) \\
    o[t] &= [\, u[t] > \vartheta \,] \\
    v[t] &= \begin{cases}
        u[t] (1 - o[t]) & \texttt{zero} \text{ (the paper)} \\
        u[t] - \vartheta\, o[t] & \texttt{subtract} \\
        u[t] & \texttt{subtract\_after\_leak}, \texttt{none}
    \end{cases} \\
    a[t] = s[t] &= s[t-1] + (o[t] - s[t-1]) / \tau_s

``a`` is the post-synaptic current (PSC), the layer's output in the paper.

Backward. The error reaching the spike at step ``t`` is the PSC-filtered
gradient (``output="psc"``) or ``dL/do`` itself (``output="spike"``):

.. math::

    G[t] = \sum_{t' \ge t} \kappa[t'-t]\, \frac{\partial L}{\partial a[t']},
    \qquad \kappa[j] = \frac{1}{\tau_s} \Bigl(1 - \frac{1}{\tau_s}\Bigr)^{j},

evaluated by the O(T) recursion :math:`G[t] = g[t]/\tau_s + (1 - 1/\tau_s) G[t+1]`.
The spike-time sensitivity is capped at ``sensitivity_cap`` (:data:`SENSITIVITY_CAP` = 8, the
reference's, by default; the adapters use ``1/threshold`` for the resets by subtraction):

.. math::

    c[t] = \hat o[t] \min\bigl(1/\Delta u[t],\; \mathrm{cap}\bigr) \quad (0 \text{ where } \Delta u[t] < 0),

where :math:`\hat o[t] = o[t]` for a spike that crossed the threshold during its step, i.e. whose
membrane started the step at :math:`u[t] - \Delta u[t] \le \vartheta`. After a reset to zero every
spike did; after a subtraction the membrane can start above the threshold, and such a spike cannot
move in time, so :math:`\hat o[t] = 0` there (an extension, with the subtraction rules below).

``crossing="interpolated"`` (this project's extension; the adapters' default for a leaky neuron's reset to zero)
weights ``c`` by where the threshold was crossed within the step, on the straight line from the membrane the step
started from, :math:`u[t] - \Delta u[t]`, to :math:`u[t]`:

.. math::

    c[t] = \hat o[t] \min\bigl(1/\Delta u[t],\; \mathrm{cap}\bigr)\, \phi[t], \qquad
    \phi[t] = \max\Bigl(0,\; 1 - \frac{u[t] - \vartheta}{\Delta u[t]}\Bigr)
    = \frac{\vartheta - (u[t] - \Delta u[t])}{\Delta u[t]},

the fraction of the step's rise spent below the threshold, which is what a change of :math:`x[t]` alone moves
the interpolated crossing time by: :math:`\phi/\Delta u` (with :math:`\phi = 1`, the reference's
``crossing="step"``, a spike far above the threshold is as movable as one that barely crossed). On noisy
leaky neurons with the reset to zero (cap 8), the reference's ``c`` overstates the finite-difference slope of the
spike count 1.9 to 3.3 times at firing rates 0.3-0.9, the interpolated one stays within 30 % of it there
(docs/algorithm.md, "The interpolated crossing").

Walking back from :math:`t = T-1` with the carry :math:`h = \delta[t+1]`
(:math:`h = 0` at the last step):

.. math::

    \delta[t] = \begin{cases}
        c[t] \bigl(G[t] + h\, u[t] / \tau_m\bigr) + (1 - o[t])\, \beta h & \texttt{zero} \text{ (the paper)} \\
        c[t] \bigl(G[t] - \beta\vartheta\, h\bigr) + \beta h & \texttt{subtract} \\
        c[t] \bigl(G[t] - \vartheta\, h\bigr) + \beta h & \texttt{subtract\_after\_leak} \\
        c[t]\, G[t] + \beta h & \texttt{none}
    \end{cases}

and :math:`\partial L / \partial x[t] = \delta[t]`. The three resets other than
``zero`` are this project's extensions (docs/algorithm.md, "What the adapters
need beyond the paper"): the spike-time sensitivity ``c`` is used as the spike's local
derivative inside the membrane's own recursion, so the carried error crosses a
spike through the leak and through the subtraction, which removes
:math:`\beta\vartheta` (``subtract``: removed, then leaked) or
:math:`\vartheta` (``subtract_after_leak``) from the next step's membrane
(:func:`subtracted_next`); for ``subtract_after_leak`` the increment
:math:`\Delta u[t]` is measured from the membrane after the subtraction.
With ``c <= 1/threshold`` the carry's factor at a spike, :math:`\beta - c\vartheta`
(``subtract_after_leak``), stays within :math:`[\beta - 1, \beta]`. With
the warm-up (``warmup=True``, the reference's behaviour), steps without a spike whose trace is
still below :math:`1/(4\tau_s)` (:func:`warmup_level`; a spike step always has
:math:`s[t] \ge 1/\tau_s`) get a sigmoid-derivative surrogate instead, of width :math:`w`
(``warmup_width``, default :data:`WARMUP_WIDTH` = 0.2, the reference's value; other widths are this
project's extension):

.. math::

    S[t] = G[t]\, \sigma'\Bigl(\frac{u[t] - \vartheta}{w}\Bigr) / w, \qquad
    \frac{\partial L}{\partial x[t]} = S[t]
    \quad \text{where } o[t] = 0 \text{ and } s[t] < \frac{1}{4\tau_s},

with the sigmoid's argument clamped to :math:`[-b, b]`; the carry is never replaced. The reference clamps at
:math:`b = 8` (:data:`WARMUP_BOUND`), which leaves a floor: every silent neuron more than :math:`8w` below the
threshold, however far, gets :math:`G\,\sigma'(8)/w \approx 3.4 \cdot 10^{-4}\,G/w`. ``warmup_floor=False``
(this project's extension; the adapters' default) clamps at :math:`b = 40` (:data:`WARMUP_BOUND_NO_FLOOR`,
where :math:`\sigma' \approx 4 \cdot 10^{-18}` and the exponential stays finite in float32), so the surrogate
decays to zero far below the threshold, as the hosts' sigmoid surrogates do (docs/algorithm.md, "The warm-up
floor"). That is the gate
``"trace"`` (:data:`WARMUP_GATES`). The gate ``"silent"`` (this project's extension) also gives the other
steps without a spike the surrogate, added to the carried error (``"auto"``, the adapters' default, is
``"silent"`` for leaky neurons and ``"trace"`` for integrate-and-fire ones: :func:`resolve_gate`):

.. math::

    \frac{\partial L}{\partial x[t]} = \delta[t] + S[t]
    \quad \text{where } o[t] = 0 \text{ and } s[t] \ge \frac{1}{4\tau_s}.

Under ``"trace"`` a neuron that has fired gets nothing but the carried error at the later steps where it
stays silent until its trace decays (at ``tau_s`` 3 that takes 4 steps, the whole of a T = 5 window), so
an error asking for spikes there reaches the input only through the timing of the spikes it already has,
at and before them, every batch. In the converted SpikingJelly Fashion-MNIST CNN this made the hidden
layers fire more every epoch (docs/algorithm.md, "The warm-up gate").
The neuron parameters receive no gradient.

Ablations (``ablation``, :data:`ABLATIONS`; for measuring what each part of the rule contributes,
docs/algorithm.md "Ablations", not recommendations). ``"none"`` is the rule above. Written with
:math:`J` for the intra-neuron (reset-timing) term inside :math:`c[t](G[t] + J)` (``zero``:
:math:`J = h\,u[t]/\tau_m`; ``subtract``: :math:`-\beta\vartheta h`; ``subtract_after_leak``:
:math:`-\vartheta h`; ``none``: no term):

* ``"no_intra"``: :math:`J = 0`, so the error of later steps crosses a spike only through the leak
  (:math:`\beta h`, the resets by subtraction) or not at all (``zero``:
  :math:`\delta[t] = c[t] G[t] + (1 - o[t])\beta h`). Refused with ``reset="none"``, which has no
  such term.
* ``"no_spike_timing"``: :math:`c \equiv 0`, no gradient at spikes: :math:`\delta \equiv 0`
  (apart from a loss placed on the membrane), so ``dL/dx`` is the warm-up surrogate where the warm-up
  applies and 0 elsewhere: the warm-up surrogate alone. Refused with ``warmup=False``, where no
  gradient would be left.

The kernels apply both as factors (:func:`ablation_gains`, 1 or 0) on ``c`` and on :math:`J`; a
factor 1 changes no bit.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ._types import Param, Warmup
from ._validation import (as_param, check_bool, check_choice, check_param, check_sensitivity_cap,
                          check_warmup_width)

#: reset rules, the paper's (``"zero"``) first.
RESETS = ("zero", "subtract", "subtract_after_leak", "none")
#: what a layer returns: the PSC ``a`` (the paper) or the spikes ``o`` (gradient taken as ``dL/do``).
OUTPUTS = ("psc", "spike")
#: cap on the spike-time sensitivity ``1/du`` (reference value).
SENSITIVITY_CAP = 8.0
#: width of the warm-up sigmoid surrogate: the reference's value, the default of every ``warmup_width``.
WARMUP_WIDTH = 0.2
#: where within a step a spike crossed the threshold, for its sensitivity ``c``: ``"step"`` (the reference: ``c =
#: min(1/du, cap)``) or ``"interpolated"`` (``c`` times the fraction of the step's rise spent below the threshold).
CROSSINGS = ("step", "interpolated")
#: the reference's clamp of the warm-up sigmoid's argument, ``[-8, 8]``: it leaves a floor ``sigma'(8)/w``.
WARMUP_BOUND = 8.0
#: the clamp without that floor (``warmup_floor=False``): ``sigma'(40) ~ 4e-18``, and ``exp(40)`` squared stays
#: finite in float32.
WARMUP_BOUND_NO_FLOOR = 40.0
#: the warm-up applies where the trace ``s < 1 / (WARMUP_LEVEL_DIVISOR * tau_s)`` (gate ``"trace"``).
WARMUP_LEVEL_DIVISOR = 4.0
#: where the warm-up surrogate applies: ``"trace"`` (the reference: steps without a spike while the trace is
#: below ``1/(4 tau_s)``), ``"silent"`` (also every other step without a spike, added to the carried error), or
#: ``"auto"`` (``"silent"`` for a leaky neuron, ``"trace"`` for one without leak: :func:`resolve_gate`).
WARMUP_GATES = ("trace", "silent", "auto")
#: ablations of the rule's parts (module docstring), the full rule (``"none"``) first.
ABLATIONS = ("none", "no_intra", "no_spike_timing")


class LIFConstants(NamedTuple):
    """Per-layer constants in the form the recursions use (see :func:`lif_constants`)."""

    inv_tau_m: Param  # 1/tau_m; 0 for a non-leaky (IF) neuron
    inv_tau_s: Param  # 1/tau_s
    threshold: Param
    warmup_level: Param  # 1 / (4 tau_s)
    reset: str
    warmup_width: Param = WARMUP_WIDTH  # w of sigma'((u - theta)/w)/w; the adapters' w theta may be a tensor
    sensitivity_cap: Param = SENSITIVITY_CAP  # c = min(1/du, cap) at a spike
    ablation: str = "none"  # one of ABLATIONS: a part of the rule switched off (measurements only)
    warmup_gate: str = "trace"  # "trace" or "silent" (adds the surrogate at the other silent steps); never "auto"
    warmup_floor: bool = True  # the reference's clamp at 8 (a floor sigma'(8)/w far below threshold); False: none
    crossing: str = "step"  # one of CROSSINGS: c = min(1/du, cap), or times the interpolated crossing's fraction


class LIFParameters(NamedTuple):
    """A layer's parameters as the user gives them: the one object that travels from :func:`tssl_lif
    <tssl_plugin.functional.tssl_lif>` through the registered operator (:mod:`tssl_plugin._impl._op` derives its
    schema from these fields) to every implementation, which turns it into :class:`LIFConstants`
    (:meth:`constants`) and the kernels' parameter table (``tssl_plugin._impl._params``). Defaults are the
    reference's. Each field's check: :func:`check_parameters`; the bounds of the neuron parameters:
    ``tssl_plugin._validation.PARAM_BOUNDS``."""

    tau_m: Param = 5.0  # membrane time constant, > 1 (inf: no leak); number or per-neuron tensor
    tau_s: Param = 3.0  # synaptic (PSC) time constant, >= 1
    threshold: Param = 1.0  # firing threshold, > 0
    reset: str = "zero"  # one of RESETS
    warmup_width: float = WARMUP_WIDTH  # w of the warm-up surrogate sigma'((u - theta)/w)/w, > 0
    sensitivity_cap: float = SENSITIVITY_CAP  # cap of c = min(1/du, cap), > 0
    ablation: str = "none"  # one of ABLATIONS
    warmup_gate: str = "trace"  # one of WARMUP_GATES
    warmup_floor: bool = True  # the reference's clamp of the warm-up sigmoid at 8 widths
    crossing: str = "step"  # one of CROSSINGS

    def constants(self, like: Tensor) -> LIFConstants:
        """The recursion constants for input ``like`` (:func:`lif_constants`; tensor values checked here)."""
        return lif_constants(like, *self)


def check_parameters(p: LIFParameters, neuron_shape: torch.Size) -> LIFParameters:
    """Every field of ``p`` checked without reading a tensor (a one-line error naming the field); numbers are
    returned as floats. Tensors' values are checked where they are read (:func:`lif_constants`, the packed table)."""
    check_choice(p.reset, "reset", RESETS)
    check_ablation(p.ablation, p.reset, None)
    check_choice(p.warmup_gate, "warmup_gate", WARMUP_GATES)
    check_choice(p.crossing, "crossing", CROSSINGS)
    return p._replace(
        tau_m=check_param(p.tau_m, "tau_m", neuron_shape), tau_s=check_param(p.tau_s, "tau_s", neuron_shape),
        threshold=check_param(p.threshold, "threshold", neuron_shape),
        warmup_width=check_warmup_width(p.warmup_width), sensitivity_cap=check_sensitivity_cap(p.sensitivity_cap),
        warmup_floor=check_bool(p.warmup_floor, "warmup_floor"))


def warmup_bound(k: LIFConstants) -> float:
    """The clamp of the warm-up sigmoid's argument for constants ``k``: :data:`WARMUP_BOUND` (the reference's,
    with its floor) or :data:`WARMUP_BOUND_NO_FLOOR`."""
    return WARMUP_BOUND if k.warmup_floor else WARMUP_BOUND_NO_FLOOR


def warmup_level(tau_s: Param) -> Param:
    """The trace level below which a step without a spike gets the warm-up surrogate alone: ``1 / (4 tau_s)``."""
    return 1.0 / (WARMUP_LEVEL_DIVISOR * tau_s)


def check_warmup(warmup: object, name: str = "warmup") -> Warmup:
    """``warmup`` if it is True, False or a gate's name (:data:`WARMUP_GATES`); otherwise one-line error."""
    if isinstance(warmup, bool) or (isinstance(warmup, str) and warmup in WARMUP_GATES):
        return warmup  # type: ignore[return-value]
    raise TypeError(  # a TypeError as when only bools were accepted
        f"{name} must be True, False or one of {', '.join(map(repr, WARMUP_GATES))} (where the warm-up surrogate "
        f"applies), got {type(warmup).__name__} {warmup!r}")


def warmup_gate(warmup: Warmup) -> Optional[str]:
    """The gate (:data:`WARMUP_GATES`) an already checked ``warmup`` option means: ``None`` (no warm-up) for
    False, ``"trace"`` (the reference's) for True, the gate itself for a gate's name."""
    if warmup is False:
        return None
    return "trace" if warmup is True else str(warmup)


def resolve_gate(gate: str, inv_tau_m: Param) -> str:
    """The gate a layer runs: ``gate``, or for ``"auto"`` ``"silent"`` where the neurons leak and the reference's
    ``"trace"`` where none does (``inv_tau_m`` 0 everywhere: integrate-and-fire). Measured in host setups
    (docs/algorithm.md, "The warm-up gate"): ``"silent"`` keeps leaky networks from drifting and costs them nothing,
    while a recurrent integrate-and-fire network trained worse with it."""
    if gate != "auto":
        return gate
    if isinstance(inv_tau_m, Tensor):
        leaky = bool((inv_tau_m != 0).any())
    else:
        leaky = float(inv_tau_m) != 0.0
    return "silent" if leaky else "trace"


def ablation_gains(ablation: str) -> Tuple[float, float]:
    """``(spike_timing, intra)``: the factors on the spike-time sensitivity ``c`` and on the intra-neuron
    term ``J`` that ``ablation`` (:data:`ABLATIONS`) means, each 1.0 (kept) or 0.0 (switched off)."""
    return (0.0 if ablation == "no_spike_timing" else 1.0), (0.0 if ablation == "no_intra" else 1.0)


def check_ablation(ablation: object, reset: Optional[str], warmup: Optional[bool]) -> str:
    """``ablation`` if it is one of :data:`ABLATIONS` and makes sense with ``reset`` and ``warmup``;
    otherwise ValueError, one line naming the problem and the fix. ``None`` for ``reset`` or ``warmup``:
    not known here (an adapter's layer learns its reset at its first step), checked where it is."""
    if ablation == "no_warmup":
        raise ValueError("ablation='no_warmup': the warm-up has its own option, warmup=False (with ablation='none')")
    check_choice(ablation, "ablation", ABLATIONS)
    if ablation == "no_spike_timing" and warmup is False:
        raise ValueError("ablation='no_spike_timing' keeps only the warm-up surrogate, which warmup=False turns "
                         "off (no gradient would be left): use warmup=True, or ablation='none' for the pure rule")
    if ablation == "no_intra" and reset == "none":
        raise ValueError("ablation='no_intra' drops the intra-neuron (reset) term, which reset='none' does not "
                         "have: use a reset, or ablation='none'")
    return ablation  # type: ignore[return-value]


def subtracted_next(k: LIFConstants) -> Param:
    r"""What one spike's subtraction removes from the next step's membrane: :math:`\beta\vartheta`
    for ``subtract`` (removed, then leaked), :math:`\vartheta` for ``subtract_after_leak`` (removed after
    the leak), 0 for the other resets. The carried error crosses a spike as :math:`\beta - c\,` this."""
    if k.reset == "subtract":
        return (1 - k.inv_tau_m) * k.threshold  # the kernels' row threshold_x_membrane_decay
    if k.reset == "subtract_after_leak":
        return k.threshold
    return 0.0


def lif_constants(
    x: Tensor,
    tau_m: Param = 5.0,
    tau_s: Param = 3.0,
    threshold: Param = 1.0,
    reset: str = "zero",
    warmup_width: float = WARMUP_WIDTH,
    sensitivity_cap: float = SENSITIVITY_CAP,
    ablation: str = "none",
    warmup_gate: str = "trace",
    warmup_floor: bool = True,
    crossing: str = "step",
) -> LIFConstants:
    """Validate the neuron parameters against input ``x`` and turn them into recursion constants.

    Parameters are Python numbers or tensors broadcastable to ``x.shape[1:]``
    (one value per neuron); tensors are moved to ``x``'s device and dtype.
    ``tau_m`` must be > 1 (``float('inf')`` gives a non-leaky IF neuron),
    ``tau_s`` >= 1, ``threshold`` finite and > 0. Tensor values are checked
    here, which reads them (a host sync on a GPU). ``warmup_width``, the width
    ``w`` of the warm-up surrogate, is one finite number > 0 for the layer, and so is
    ``sensitivity_cap`` (default :data:`SENSITIVITY_CAP`, the reference's 8). ``ablation`` is one of
    :data:`ABLATIONS`, checked against ``reset`` here and against the warm-up where that is known
    (:func:`check_ablation`). ``warmup_gate`` (:data:`WARMUP_GATES`) says where the warm-up applies
    (:func:`warmup_level`); ``warmup_floor`` (a bool) whether its sigmoid keeps the reference's floor far below
    the threshold (:data:`WARMUP_BOUND`); ``crossing`` (:data:`CROSSINGS`) what the spike-time sensitivity ``c``
    measures.
    """
    shape = x.shape[1:]
    p = check_parameters(LIFParameters(tau_m, tau_s, threshold, reset, warmup_width, sensitivity_cap, ablation,
                                       warmup_gate, warmup_floor, crossing), shape)
    tm, ts, th = (as_param(getattr(p, name), name, shape, x) for name in ("tau_m", "tau_s", "threshold"))
    return LIFConstants(1.0 / tm, 1.0 / ts, th, warmup_level(ts), p.reset, p.warmup_width, p.sensitivity_cap,
                        p.ablation, resolve_gate(p.warmup_gate, 1.0 / tm), p.warmup_floor, p.crossing)


__all__ = [
    "Param", "Warmup", "RESETS", "OUTPUTS", "SENSITIVITY_CAP", "WARMUP_WIDTH", "WARMUP_BOUND", "WARMUP_BOUND_NO_FLOOR",
    "warmup_bound", "WARMUP_LEVEL_DIVISOR", "CROSSINGS", "WARMUP_GATES",
    "ABLATIONS", "LIFConstants", "LIFParameters", "check_parameters", "warmup_level", "check_warmup", "warmup_gate", "resolve_gate", "ablation_gains", "check_ablation", "subtracted_next", "lif_constants",
]
