r"""Version-independent part of the SpikingJelly adapter: the TSSL-BP node logic.

A converted node runs SpikingJelly's own forward arithmetic (supplied by a
version module, :mod:`._spikingjelly_v2` or :mod:`._spikingjelly_v014`) under
``torch.no_grad()``, so spikes and membrane values are the library's, bit for
bit, and attaches the TSSL-BP gradient to the spikes.

Mapping of a SpikingJelly neuron to the core recursion (docs/algorithm.md, "What adapters
need beyond the paper"), with ``V_r = v_reset`` (0 for ``v_reset=None``) and
``h`` SpikingJelly's membrane after charging (before firing/reset):

* ``LIFNode(decay_input=True)``: ``h = v + (x - (v - V_r)) / tau`` is the core's
  ``u = v + x' - v / tau_m`` on the shifted membrane ``v - V_r`` with input
  ``x' = x / tau``: ``tau_m = tau``, ``input_scale = dL/dx' -> dL/dx = 1/tau``.
* ``LIFNode(decay_input=False)``: ``h = v - (v - V_r) / tau + x``: ``tau_m = tau``,
  ``input_scale = 1``.
* ``IFNode``: ``h = v + x``: the no-leak limit ``tau_m = inf`` (``1/tau_m = 0``).
* ``ParametricLIFNode``: as ``LIFNode`` with ``1/tau = sigmoid(w)``; the leak is
  treated as an input current so that ``w`` learns (:meth:`TSSLNodeMixin._tssl_input`).
* ``CUBALIFNode`` (SpikingJelly 2.x): ``c = c_decay c_prev + x`` (the synaptic
  current, a linear filter differentiated by autograd), then ``h = v_decay v + c``:
  the core's neuron with input current ``c - V_r / tau_m``, ``1/tau_m = 1 - v_decay``,
  ``input_scale = 1`` (the gradient reaches ``c``, and through the filter ``x``); the
  warm-up trace uses the synapse's own ``tau_s = 1/(1 - c_decay)``.
* hard reset (``v_reset`` a float): core ``reset="zero"`` on ``u = h - V_r`` with
  threshold ``v_threshold - V_r`` (the paper's rule after the shift).
* soft reset (``v_reset=None``): core ``reset="subtract"`` (``v = h - theta o``,
  then the leak), this project's documented extension, not the paper's rule.

Forward semantics stay SpikingJelly's: it fires at ``h >= v_threshold`` where
the core would fire at ``u > threshold``; the adapter hands SpikingJelly's
spikes to the core backward, so only gradients change.

What the core works from per step: ``u = h - V_r``, ``du = h - v_prev`` (the
step's increment, the same in shifted coordinates), ``o = spike != 0``
(:func:`tssl_plugin._impl.reference.host_trace`). In multi-step mode the node
hands the core what the host returned (:class:`~tssl_plugin.functional.HostTrace`:
``h``, the membranes, the spikes, ``V_r``) and the core's fused CPU backward
computes the trace inside, so it is never materialised.

Single-step mode (``step_mode='s'``) calls the shared node
:func:`tssl_plugin.stepwise.tssl_step` each step; its step state is kept
in the plain attribute ``_tssl_state`` (not a buffer and not a SpikingJelly
memory, so ``state_dict`` keys do not change) and is cleared by ``reset()``
(hence by ``functional.reset_net``) and detached by ``detach()``. Multi-step
mode (``'m'``) calls :func:`tssl_plugin.functional.spikes_with_host_grad` once
per call on the whole sequence. Both give the same gradients.

The membrane potential (``node.v``, ``node.v_seq``) gets no TSSL-BP gradient:
the rule defines gradients through spikes. Where autograd is recording, these
tensors carry a guard node whose backward raises if a nonzero gradient
reaches it, so a loss on the membrane fails loudly instead of silently
contributing nothing.
"""
from __future__ import annotations

import math
import warnings
from numbers import Real
from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor

from tssl_plugin._types import compute_dtype
from tssl_plugin._validation import (check_optional_sensitivity_cap, check_tau_s, check_warmup_width,
                                     values_readable)
from tssl_plugin.functional import HostTrace, spikes_with_host_grad
from tssl_plugin._impl.reference import host_trace
from tssl_plugin.rule import (WARMUP_WIDTH, LIFConstants, Warmup, check_ablation, check_warmup, lif_constants, resolve_gate,
                              warmup_gate)
from tssl_plugin.stepwise import StepState, initial_state, next_state, tssl_step

from ._convert import (ADAPTER_WARMUP_FLOOR, checked_options, crossing_for, observe_firing, sensitivity_cap_for,
                       set_options, warmup_width_for)

__all__ = ["SpikingJellyVersion", "TSSLNodeMixin", "check_binary_surrogate", "cuba_tau_s", "node_mapping",
           "charge_steps", "previous_membranes",
           "KINDS", "SURROGATE_IGNORED", "NON_BINARY"]

SURROGATE_IGNORED = (
    "surrogate_function is ignored by TSSL-BP nodes: TSSL-BP uses no surrogate gradient "
    "(the forward pass is SpikingJelly's Heaviside either way)"
)


DETACH_RESET_NOTE = (
    "detach_reset=True has no effect on TSSL-BP gradients (the rule has its own dependence on "
    "the reset); the forward pass is unchanged"
)


NON_BINARY = (
    "a surrogate_function with spiking=False makes SpikingJelly's forward non-binary (the surrogate's "
    "primitive instead of the Heaviside step); TSSL-BP needs binary spikes: use spiking=True (the default)"
)


def check_binary_surrogate(surrogate_function: Any, where: str) -> None:
    """Refuse a SpikingJelly surrogate whose forward is not the Heaviside step (``spiking=False``)."""
    if getattr(surrogate_function, "spiking", True) is False:
        raise ValueError(f"{where}: {NON_BINARY}")


def init_tssl(node: Any, surrogate_function: Any, detach_reset: bool, tau_s: float, warmup: Warmup,
              warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
              ablation: str = "none") -> None:
    """Warn about ignored SpikingJelly arguments and set the TSSL-BP attributes of a new node."""
    if surrogate_function is not None:
        check_binary_surrogate(surrogate_function, type(node).__name__)
        warnings.warn(SURROGATE_IGNORED, UserWarning, stacklevel=3)
    if detach_reset:
        warnings.warn(DETACH_RESET_NOTE, UserWarning, stacklevel=3)
    set_options(node, checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation))
    node._tssl_state = None


def _number(node: Any, name: str) -> float:
    value = getattr(node, name)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(
            f"{type(node).__name__}: {name}={value!r} cannot be honoured by the TSSL-BP adapter; "
            f"it must be a finite Python float (tensors and learnable values are not supported)"
        )
    return float(value)


#: node kinds: leaky with a fixed ``tau``, integrate-and-fire, leaky with a learnable ``w`` (1/tau = sigmoid(w)),
#: current-based leaky (a synaptic current filter before the membrane: ``c_decay``, ``v_decay``).
KINDS = ("lif", "if", "plif", "cuba")


def cuba_tau_s(node: Any) -> float:
    """A CUBA node's synaptic time constant ``1 / (1 - c_decay)`` (ValueError unless ``0 <= c_decay < 1``)."""
    c_decay = _number(node, "c_decay")
    if not 0.0 <= c_decay < 1.0:
        raise ValueError(f"{type(node).__name__}: c_decay={c_decay} must be in [0, 1) for TSSL-BP "
                         f"(the synapse's PSC time constant tau_s = 1/(1 - c_decay) >= 1)")
    return 1.0 / (1.0 - c_decay)


def node_mapping(node: Any, kind: str) -> Tuple[Any, Any, float, str, float]:
    """``(tau_m, input_scale, threshold_rel, reset, v_reset_value)`` of a SpikingJelly LIF/IF/PLIF node.

    Raises ValueError naming the option when a value cannot be honoured. A PLIF node's ``tau_m`` (and
    ``input_scale``) are 0-d tensors while ``torch.compile`` traces, floats otherwise.
    """
    name = type(node).__name__
    check_binary_surrogate(getattr(node, "surrogate_function", None), name)
    thr = _number(node, "v_threshold")
    if node.v_reset is None:
        vr, reset = 0.0, "subtract"
    else:
        vr, reset = _number(node, "v_reset"), "zero"
    if thr <= vr:
        raise ValueError(f"{name}: v_threshold={thr} must be above v_reset={vr} for TSSL-BP "
                         f"(the rule needs a positive threshold relative to the reset)")
    if kind == "if":
        return math.inf, 1.0, thr - vr, reset, vr
    if kind == "cuba":
        cuba_tau_s(node)
        v_decay = _number(node, "v_decay")
        if not 0.0 < v_decay <= 1.0:
            raise ValueError(f"{name}: v_decay={v_decay} must be in (0, 1] for TSSL-BP "
                             f"(1/tau_m = 1 - v_decay; v_decay = 1 is an IF neuron)")
        return (math.inf if v_decay == 1.0 else 1.0 / (1.0 - v_decay)), 1.0, thr - vr, reset, vr
    if kind == "plif":
        w = getattr(node, "w", None)
        if not isinstance(w, Tensor) or w.numel() != 1:
            raise ValueError(f"{name}: w must be a finite one-element tensor (1/tau = sigmoid(w))")
        tau = 1.0 / torch.sigmoid(w.detach().double().reshape(()))
        if values_readable():  # eager: check and read it; compiled, it stays a tensor (a read breaks the graph)
            if not bool(torch.isfinite(w.detach()).all()):
                raise ValueError(f"{name}: w must be a finite one-element tensor (1/tau = sigmoid(w))")
            tau = float(tau)
    else:
        tau = _number(node, "tau")
    if isinstance(tau, float) and not tau > 1.0:
        raise ValueError(f"{name}: tau must be > 1, got {tau}")
    scale = 1.0 / tau if node.decay_input else 1.0  # SpikingJelly tests decay_input by truthiness
    return tau, scale, thr - vr, reset, vr


def _leaky(tau_m: Any) -> bool:
    """The node leaks: ``tau_m`` is not ``inf`` (IF nodes map to ``tau_m = inf``, ``1/tau_m = 0``)."""
    return not (isinstance(tau_m, Real) and math.isinf(tau_m))


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the rule runs in for ``x`` (:func:`tssl_plugin._types.compute_dtype` of its dtype)."""
    return compute_dtype(x.dtype)


MEMBRANE_LOSS_ERROR = (
    "a loss reached the membrane potential (node.v / node.v_seq) of a TSSL-BP "
    "SpikingJelly node; TSSL-BP defines gradients through spikes only. Use the spikes, "
    "or .detach() the membrane where it is only monitored"
)


@torch.library.custom_op("tssl_plugin::membrane_grad_check", mutates_args=())
def _membrane_grad_check(g: Tensor) -> Tensor:
    """A 0-d zero; raises the membrane-loss error if ``g`` is not all zero (compiled backward's check)."""
    if bool((g != 0).any()):
        raise RuntimeError(MEMBRANE_LOSS_ERROR)
    return g.new_zeros(())


@_membrane_grad_check.register_fake
def _membrane_grad_check_fake(g: Tensor) -> Tensor:
    return g.new_empty(())


class _MembraneNoGrad(torch.autograd.Function):
    """Identity on the membrane values; raises if a nonzero gradient reaches them."""

    @staticmethod
    def forward(ctx: Any, anchor: Tensor, v: Tensor) -> Tensor:
        ctx.anchor = (anchor.shape, anchor.dtype)
        return v.clone()

    @staticmethod
    def backward(ctx: Any, g: Optional[Tensor]):
        if g is None:
            return None, None
        if torch.compiler.is_compiling():  # the check as an opaque op (a value read would break the graph)
            shape, dtype = ctx.anchor
            return g.new_zeros(shape, dtype=dtype) + _membrane_grad_check(g).to(dtype), None
        if bool((g != 0).any()):
            raise RuntimeError(MEMBRANE_LOSS_ERROR)
        return None, None


def _guard(anchor: Tensor, v: Tensor) -> Tensor:
    if torch.is_grad_enabled() and anchor.requires_grad:
        return _MembraneNoGrad.apply(anchor, v)
    return v


class SpikingJellyVersion:
    """The version contract: how one SpikingJelly release runs a node's own forward.

    SpikingJelly 2.x and 0.0.0.0.14 run their neurons differently (2.x through
    ``functional.*_multi_step`` dispatchers, 0.0.0.0.14 step by step or in
    TorchScript loops). A version module (:mod:`._spikingjelly_v2`,
    :mod:`._spikingjelly_v014`) subclasses this once and implements the hooks
    below; its node classes put that subclass first in their bases, then
    :class:`TSSLNodeMixin`, then SpikingJelly's own class. A version module also
    exports ``ORIGINALS`` (SpikingJelly class -> TSSL-BP class), ``lib_check``
    and ``DETACH_RESET_NOTE``, which :mod:`tssl_plugin.adapters.spikingjelly` reads.
    """

    def _lib_check(self) -> None:
        """Raise ``ValueError`` naming an option of this release the adapter cannot honour."""
        raise NotImplementedError

    def _lib_run(self, x_seq: Tensor, single: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """Run the release's own forward over the detached ``x_seq`` ``[T, ...]``, updating the node's state.

        Returns ``(spikes, v0, v_seq)``: the spikes ``[T, ...]``, the membrane
        entering the first step ``[...]`` and the membrane after each step's
        reset ``[T, ...]`` (so the membrane entering step ``t >= 1`` is ``v_seq[t-1]``).
        """
        raise NotImplementedError

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """The charged membrane ``h`` (before firing) with the release's charge formula (for the backward),
        from the membranes :meth:`_lib_run` returned (:func:`charge_steps` applies a formula to them)."""
        raise NotImplementedError


def previous_membranes(v0: Tensor, v_seq: Tensor) -> Tensor:
    """``v_prev`` ``[T, ...]``: the membrane entering each step, ``v0`` then ``v_seq[:-1]`` (one copy)."""
    return torch.cat((v0.unsqueeze(0), v_seq[:-1]))


def charge_steps(formula: Callable[[Tensor, Tensor, Optional[Tensor]], Tensor], x_seq: Tensor, v0: Tensor,
                 v_seq: Tensor) -> Tensor:
    """``h[t] = formula(x[t], v_prev[t])`` for a whole sequence without building ``v_prev``.

    ``formula(x, v, out)`` is a charge equation, element-wise, that writes its last operation into ``out``
    (a new tensor where ``out`` is None); it runs once on the first step (from ``v0``) and once on the
    others (from ``v_seq[:-1]``), straight into one ``h``, so the values are the formula's on ``v_prev``.
    """
    h0 = formula(x_seq[:1], v0.unsqueeze(0), None)
    h = torch.empty((x_seq.shape[0],) + tuple(h0.shape[1:]), dtype=h0.dtype, device=h0.device)
    h[:1] = h0
    formula(x_seq[1:], v_seq[:-1], h[1:])
    return h


class TSSLNodeMixin:
    """TSSL-BP forward/backward for a SpikingJelly node.

    Bases of a node class: a :class:`SpikingJellyVersion` subclass, this
    mixin, then SpikingJelly's class; ``_TSSL_KIND`` is one of :data:`KINDS`.
    """

    tau_s: float = 3.0
    warmup: Warmup = True
    warmup_width: float = WARMUP_WIDTH  # also what a node pickled before the option existed gets
    sensitivity_cap: Optional[float] = None  # in units of 1/threshold (relative to v_reset); None: by reset
    ablation: str = "none"  # a part of the rule switched off (tssl_plugin.rule.ABLATIONS), for measurements
    warmup_floor: bool = ADAPTER_WARMUP_FLOOR  # the warm-up surrogate's floor; convert(warmup_floor=...) sets it
    crossing: Optional[str] = None  # what c measures; None: by reset (_convert.crossing_for); convert sets it
    _tssl_state: Optional[StepState] = None
    _TSSL_KIND = "lif"

    # ----- mapping ---------------------------------------------------------
    def _tssl_mapping(self) -> Tuple[float, float, float, str, float]:
        return node_mapping(self, type(self)._TSSL_KIND)

    def _tssl_learns(self, x: Tensor) -> bool:
        """A TSSL-BP node is needed: grad mode, and the input or a learnable leak (PLIF's ``w``) needs a gradient."""
        if not torch.is_grad_enabled():
            return False
        w = getattr(self, "w", None) if self._TSSL_KIND == "plif" else None
        return x.requires_grad or (isinstance(w, Tensor) and w.requires_grad)

    def _tssl_leak_learns(self) -> bool:
        """A learnable leak (PLIF's ``w``) needs a gradient: :meth:`_tssl_input` builds the leak current."""
        w = getattr(self, "w", None) if self._TSSL_KIND == "plif" else None
        return w is not None and w.requires_grad and torch.is_grad_enabled()

    def _tssl_input(self, x: Tensor, v_prev: Optional[Tensor], vr: float, scale: float) -> Tuple[Tensor, float]:
        """``(tensor, scale)``: the tensor that receives ``dL/dx``, and the factor from the rule's current to it.

        For fixed time constants that is the input itself (``x / tau`` enters the
        rule for ``decay_input=True``: scale ``1/tau``). A learnable leak (PLIF,
        ``1/tau = sigmoid(w)``) is treated as an input current, as the snnTorch
        adapter treats ``learn_beta``: the rule's current is
        ``I = sigmoid(w) (x - (v - V_r))`` (``decay_input=True``) or
        ``I = x - sigmoid(w) (v - V_r)``, built here with autograd so that
        ``dL/dw = sum_t dL/dI[t] dI[t]/dw`` and ``dL/dx = dL/dI dI/dx``; the
        membrane ``v`` itself stays detached (the rule carries its gradient). ``v_prev``, the membrane
        entering each step, is read only then (None elsewhere).
        """
        cd = _compute_dtype(x)
        xc = x if x.dtype == cd else x.to(cd)
        if not self._tssl_leak_learns():
            return xc, scale
        q = torch.sigmoid(self.w).to(cd)
        shifted = v_prev.detach().to(cd) - vr
        return (q * (xc - shifted) if self.decay_input else xc - shifted * q), 1.0

    def _tssl_check_common(self) -> None:
        check_tau_s(self.tau_s)
        check_warmup(self.warmup)
        check_warmup_width(self.warmup_width)
        check_optional_sensitivity_cap(self.sensitivity_cap)
        self._lib_check()
        check_ablation(self.ablation, self._tssl_mapping()[3], self.warmup)

    # ----- step modes --------------------------------------------------------
    def _tssl_gate(self, tau_m: Any) -> str:
        """The warm-up gate this node runs (``"auto"`` resolved by its leak, read from the mapping without a host
        sync; ``"trace"`` when the warm-up is off: the gate is then unused)."""
        return resolve_gate(warmup_gate(self.warmup) or "trace", 1.0 if _leaky(tau_m) else 0.0)

    def _tssl_constants(self, like: Tensor, tau_m: Any, thr: float, reset: str) -> LIFConstants:
        """The rule's constants of this node (``thr``: the threshold measured from the reset value): the
        warm-up width and the sensitivity cap in units of it (:mod:`._convert`)."""
        return lif_constants(like, tau_m, self.tau_s, thr, reset, warmup_width_for(self.warmup_width, thr),
                             sensitivity_cap_for(reset, self.sensitivity_cap, _leaky(tau_m)) / thr, self.ablation,
                             self._tssl_gate(tau_m), self.warmup_floor,
                             crossing_for(reset, self.crossing, _leaky(tau_m)))

    def multi_step_forward(self, x_seq: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.forward takes one input tensor")
        self._tssl_check_common()
        tau_m, scale, thr, reset, vr = self._tssl_mapping()
        spikes, v0, v_post = self._lib_run(x_seq.detach(), single=False)
        self._tssl_state = None
        if not self._tssl_learns(x_seq):
            return spikes
        with torch.no_grad():
            h = self._lib_charge(x_seq.detach(), v0, v_post)
        v_prev = previous_membranes(v0, v_post) if self._tssl_leak_learns() else None
        current, scale = self._tssl_input(x_seq, v_prev, vr, scale)
        k = self._tssl_constants(current, tau_m, thr, reset)
        # the trace (u = h - V_r, du = h - v_prev, o = spikes != 0) is built inside the core's backward
        out = spikes_with_host_grad(current, HostTrace(h, v0, v_post, spikes, vr), k, warmup=self.warmup is not False,
                                    input_scale=scale)
        observe_firing(self, spikes, steps=spikes.shape[0])
        self._tssl_guard_membrane(current)
        return out.to(spikes.dtype)

    def single_step_forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.forward takes one input tensor")
        if x.dim() == 0:
            return self._tssl_scalar_step(x)
        self._tssl_check_common()
        tau_m, scale, thr, reset, vr = self._tssl_mapping()
        spikes, v0, v_post = self._lib_run(x.detach().unsqueeze(0), single=True)
        spike = spikes[0]
        state = self._tssl_current_state(x)
        if not (self._tssl_learns(x) or (torch.is_grad_enabled() and state.trace.requires_grad)):
            self._tssl_state = next_state(state, spike != 0, 1.0 / self.tau_s)
            return spike
        with torch.no_grad():
            h = self._lib_charge(x.detach().unsqueeze(0), v0, v_post)
            u, du, o = host_trace(HostTrace(h, v0, v_post, spikes, vr), _compute_dtype(x))
        k = self._tssl_constants(u, tau_m, thr, reset)
        current, scale = self._tssl_input(x, v0, vr, scale)
        (out, _), self._tssl_state = tssl_step(current, state, u[0], du[0], o[0], v_post[0], k,
                                               warmup=self.warmup is not False, input_scale=scale)
        observe_firing(self, o[0])
        self._tssl_guard_membrane(out)
        return out.to(spike.dtype)

    def _tssl_scalar_step(self, x: Tensor) -> Tensor:
        """A 0-d input, as SpikingJelly accepts it: one neuron, with a 0-d membrane kept between steps."""
        self._tssl_reshape_state((1,))
        try:
            out = self.single_step_forward(x.reshape(1))
        finally:
            self._tssl_reshape_state(())
        return out.reshape(())

    def _tssl_reshape_state(self, shape: Tuple[int, ...]) -> None:
        v = getattr(self, "v", None)
        if isinstance(v, Tensor) and v.numel() == 1:
            self.v = v.reshape(shape)
        v_seq = getattr(self, "v_seq", None)
        if isinstance(v_seq, Tensor) and v_seq.dim() >= 1 and v_seq.numel() == v_seq.shape[0]:
            self.v_seq = v_seq.reshape(v_seq.shape[0], *shape)

    def _tssl_current_state(self, x: Tensor) -> StepState:
        """The step state of the running sequence, or a fresh one (new sequence, shape, dtype or device)."""
        cd = _compute_dtype(x)
        state = self._tssl_state
        if (state is None or state.trace.shape != x.shape or state.trace.dtype != cd
                or state.trace.device != x.device):
            state = initial_state(torch.empty(x.shape, dtype=cd, device=x.device))
        return state

    def _tssl_guard_membrane(self, anchor: Tensor) -> None:
        v = getattr(self, "v", None)
        if isinstance(v, Tensor):
            self.v = _guard(anchor, v)
        v_seq = getattr(self, "v_seq", None)
        if isinstance(v_seq, Tensor):
            self.v_seq = _guard(anchor, v_seq)

    # ----- SpikingJelly state hooks -----------------------------------------
    def reset(self) -> None:
        super().reset()
        self._tssl_state = None

    def detach(self) -> None:
        super().detach()
        if self._tssl_state is not None:
            self._tssl_state = self._tssl_state.detach()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tssl_state"] = None  # transient step state, never saved or copied
        memories = state.get("_memories")
        if isinstance(memories, dict) and any(isinstance(m, Tensor) and not m.is_leaf for m in memories.values()):
            # memories carrying a graph (the guarded membrane, a CUBA node's synaptic current) are saved
            # detached: a graph cannot be copied (SpikingJelly's own nodes fail to copy here)
            state["_memories"] = {k: m.detach() if isinstance(m, Tensor) else m for k, m in memories.items()}
        return state

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", tau_s={self.tau_s}, warmup={self.warmup}, "
                                       f"warmup_width={self.warmup_width}, sensitivity_cap={self.sensitivity_cap}"
                + (f", ablation={self.ablation!r}" if self.ablation != "none" else ""))
