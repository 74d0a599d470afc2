r"""TSSL-BP gradients for snnTorch's ``Leaky`` and ``Synaptic`` neurons: :class:`TSSLLeaky`,
:class:`TSSLSynaptic` (its LIF part is the rule below on the synaptic current), :func:`convert`, :func:`revert`
(the other neurons: :mod:`._snntorch_neurons`, :mod:`._snntorch_stateleaky`).

The forward pass is snnTorch's, bit for bit (spikes, membranes, dtypes,
state handling); only the gradient changes. With ``tau_m = 1/(1 - beta)``
(``1/tau_m = 1 - beta``) and the snnTorch threshold, the gradient of a step
loop equals the core op ``tssl_lif(x, tau_m, tau_s, threshold,
output="spike", reset=...)`` run over the same input currents (the rule of each
reset: :mod:`tssl_plugin.rule` and docs/algorithm.md; the step arithmetic: :mod:`._snntorch_forward`):

* ``reset_mechanism="zero"``: exact TSSL-BP (the paper's rule, ``reset="zero"``).
* ``reset_mechanism="subtract"`` (snnTorch's default): EXTENSION, not the
  paper: the core's ``"subtract_after_leak"`` with ``reset_delay=True``
  (snnTorch subtracts on the step after the spike) and ``"subtract"`` with
  ``reset_delay=False``.
* ``reset_mechanism="none"``: the core's ``"none"``, the no-reset limit (extension).
* a ``reset_mechanism`` set after construction: snnTorch keeps the state
  function it chose at construction and applies the new mechanism only in the
  ``reset_delay=False`` correction; the rule follows the resulting reset
  (:func:`tssl_plugin.adapters._snntorch_forward.core_reset`).

``dL/dspk[t]`` plays the role of ``G[t]`` (spike output). A loss on the
returned membrane (snnTorch tutorial 5's ``sum_t CrossEntropy(mem[t], y)``)
gets snnTorch's own membrane gradient: the membrane is computed under
autograd with the reset signals detached, as snnTorch detaches them, so
``dmem[t]/dx[t] = 1`` and ``dmem[t]/dmem[t-1] = beta`` (``(1 - r) beta`` for a
zero reset), and TSSL-BP differentiates the spikes only; a loss on the
membrane alone gives exactly snnTorch's gradient. A learnable ``beta`` gets the
gradient of the leak current ``beta * v[t-1]`` under the TSSL-BP rule,
``dL/dbeta = sum_t dL/dx[t] v[t-1]``, plus its membrane gradient.

Refused (clear error): ``inhibition``, ``state_quant``, ``graded_spikes_factor != 1``
or learnable, ``learn_threshold``, ``surrogate_disable``, a threshold ``<= 0``. A ``spike_grad`` is
ignored (TSSL-BP replaces the surrogate) with a warning. The neuron fires with
the Heaviside step ``u - theta > 0``, the forward of every snntorch surrogate.

State: the TSSL-BP step state (the neuron's PSC trace ``s[t]``, which also carries
the error backwards) lives on the module as a plain attribute, not a buffer,
so ``state_dict`` keys are snnTorch's. It continues only while the membrane
passed into a step is the one the previous step returned (the same tensor, or
a ``.detach()``-ed alias of it); anything else (``init_leaky``/``reset_mem``,
``reset_hidden``/``utils.reset``, a fresh ``mem`` tensor, a shape change)
starts a new sequence with a zero trace, so no step ever backpropagates into a
previous batch's graph. A membrane with no graph (``detach``, ``detach_hidden``)
keeps the trace value but cuts the carried gradient (truncated BPTT). The
initial membrane passed in receives no gradient.
"""
from __future__ import annotations

import inspect
import warnings
import weakref
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from tssl_plugin._optional import require
from tssl_plugin._validation import check_sequence
from tssl_plugin.functional import spikes_with_tssl_grad
from tssl_plugin.rule import WARMUP_WIDTH, LIFConstants, Warmup, resolve_gate, warmup_gate, warmup_level
from tssl_plugin.stepwise import Increment, StepState, delayed_base, initial_state, tssl_step

from ._convert import (ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, Exclude, check_convert_args, checked_convert_options,
                       checked_options, crossing_for, excluded_ids, nothing_to_convert, observe_firing, original_class,
                       remove_options, sensitivity_cap_for, set_options, tssl_class_for, warmup_width_for,
                       watch_firing)
from ._snntorch_forward import RESET_VALS, STATE_FUNCTIONS, StepValues, core_reset, leaky_step, synaptic_step

snn = require("snntorch", "snntorch")
_surrogate = require("snntorch.surrogate", "snntorch")

__all__ = ["TSSLLeaky", "TSSLSynaptic", "TSSLRLeaky", "TSSLRSynaptic", "TSSLLapicque", "TSSLStateLeaky",
           "TSSLLinearLeaky", "convert", "revert", "unsupported_options"]

#: a converted layer's private state, removed by ``revert`` with its options (``_convert.LAYER_OPTIONS``).
_TSSL_PRIVATE = ("_tssl_state", "_tssl_mem_ref", "_tssl_watch", "_tssl_gate_cache")


def unsupported_options(module: nn.Module) -> List[str]:
    """Why ``module`` (an snnTorch Leaky) cannot use TSSL-BP: one message per refused option, [] if none."""
    if isinstance(module, snn.StateLeaky) and not module.output:
        return []  # no spikes (the membrane alone): the layer stays snnTorch's, every spike option inert
    msgs = []
    if getattr(module, "inhibition", False):
        msgs.append("inhibition=True: TSSL-BP has no rule for winner-take-all inhibition; "
                    "use inhibition=False (or keep this layer as snn.Leaky)")
    if getattr(module, "state_quant", False):
        msgs.append("state_quant: quantising the membrane breaks the spike-time sensitivity 1/du; "
                    "use state_quant=False (quantise after training)")
    if getattr(module, "surrogate_disable", False):
        msgs.append("surrogate_disable=True: it replaces snnTorch's spike function; TSSL-BP already has "
                    "no surrogate, use surrogate_disable=False")
    threshold = getattr(module, "threshold", None)
    if isinstance(threshold, nn.Parameter):
        msgs.append("learn_threshold=True: TSSL-BP defines no gradient for the threshold; "
                    "use learn_threshold=False")
    elif isinstance(threshold, Tensor) and not bool(torch.all(threshold > 0)):
        msgs.append(f"threshold <= 0 (min {float(threshold.min()):g}): the spike-time sensitivity 1/du needs the "
                    "membrane to rise to a positive threshold from the reset; use threshold > 0")
    gsf = getattr(module, "graded_spikes_factor", None)
    if isinstance(gsf, nn.Parameter):
        msgs.append("learn_graded_spikes_factor=True: TSSL-BP needs binary spikes; "
                    "use learn_graded_spikes_factor=False and graded_spikes_factor=1.0")
    elif isinstance(gsf, Tensor) and not bool(torch.all(gsf == 1)):
        msgs.append("graded_spikes_factor != 1: TSSL-BP needs binary spikes; use graded_spikes_factor=1.0 "
                    "and scale the next layer's weights instead")
    if isinstance(module, _WHOLE_MEMBRANE_ZERO) and _delayed_zero(module):
        msgs.append(delayed_zero_message(module))
    if isinstance(module, snn.RSynaptic) and not getattr(module, "reset_delay", True):
        msgs.append(RSYNAPTIC_RESET_DELAY)
    if isinstance(module, snn.Lapicque):
        msgs.extend(_lapicque_options(module))
    return msgs


#: host classes whose zero reset zeroes the whole new membrane (input included) on the step after a spike.
_WHOLE_MEMBRANE_ZERO = (snn.Synaptic, snn.RLeaky, snn.RSynaptic, snn.Lapicque)
#: host classes with no immediate (``reset_delay=False``) reset in snnTorch 1.0.
_NO_IMMEDIATE_RESET = (snn.RSynaptic, snn.Lapicque)

#: why an RSynaptic with ``reset_delay=False`` is refused.
RSYNAPTIC_RESET_DELAY = (
    "reset_delay=False: snnTorch 1.0's RSynaptic computes that correction on the forward's arguments and "
    "discards it (and raises TypeError when spk or mem is not passed), so its reset is the delayed one "
    "either way; use reset_delay=True (the same forward)")


def delayed_zero_message(module: nn.Module) -> str:
    """Why a delayed reset to zero (:func:`_delayed_zero`) is refused, with the fix for ``module``'s class."""
    host = _host_name(module)
    if isinstance(module, _NO_IMMEDIATE_RESET):
        setting = "reset_mechanism='zero'" if isinstance(module, snn.Lapicque) else \
            "reset_mechanism='zero' with reset_delay=True"
        fix = f"use reset_mechanism='subtract' or 'none' ({host} has no immediate reset in snnTorch 1.0)"
    else:
        setting = "reset_mechanism='zero' with reset_delay=True"
        fix = "use reset_delay=False (the paper's reset) or reset_mechanism='subtract'"
    return (f"{setting}: {host} then zeroes the membrane on the step after a spike, discarding that step's "
            f"input (not the paper's reset to zero, and TSSL-BP has no rule for it); {fix}")


def _delayed_zero(module: nn.Module) -> bool:
    """A layer whose zero-reset state function acts one step late (``reset_delay=True``, no immediate reset
    at all, or a reset mechanism changed after construction so that the immediate zero correction no longer
    applies)."""
    name = getattr(getattr(module, "state_function", None), "__func__", None)
    if getattr(name, "__name__", None) != "_base_zero":
        return False
    if isinstance(module, _NO_IMMEDIATE_RESET):
        return True
    val = getattr(module, "reset_mechanism_val", None)
    return bool(getattr(module, "reset_delay", True)) or not (isinstance(val, Tensor) and int(val) == 1)


def _lapicque_options(module: nn.Module) -> List[str]:
    """A Lapicque's leak factor ``1 - dt/(RC)`` must lie in [0, 1): TSSL-BP's ``1/tau_m = dt/(RC)`` in (0, 1]."""
    try:
        rate = module.time_step / (module.R * module.C)
    except (AttributeError, TypeError):
        return ["R, C and time_step must be tensors (as snn.Lapicque registers them)"]
    if not bool(torch.all((rate > 0) & (rate <= 1))):
        return [f"time_step/(R*C) = {float(rate.max() if rate.numel() else rate):g} is outside (0, 1]: snn.Lapicque's "
                "leak factor 1 - time_step/(R*C) must lie in [0, 1) for TSSL-BP (1/tau_m = time_step/(R*C)); "
                "use time_step <= R*C"]
    return []


#: host class -> how snnTorch messages name it (the most derived known class first).
_HOST_NAMES = ((snn.RSynaptic, "snn.RSynaptic"), (snn.RLeaky, "snn.RLeaky"), (snn.Lapicque, "snn.Lapicque"),
               (snn.Synaptic, "snn.Synaptic"), (snn.Leaky, "snn.Leaky"), (snn.LinearLeaky, "snn.LinearLeaky"),
               (snn.StateLeaky, "snn.StateLeaky"))


def _host_name(module: nn.Module) -> str:
    return next((name for cls, name in _HOST_NAMES if isinstance(module, cls)), type(module).__name__)


def _refuse(module: nn.Module, name: str = "") -> None:
    msgs = unsupported_options(module)
    if msgs:
        where = f" ({name})" if name else ""
        raise ValueError(f"TSSL-BP cannot be used with this {_host_name(module)}{where}: " + "; ".join(msgs))


def _surrogate_spec(fn: Any) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``(factory, kwargs)`` if ``fn`` is a closure made by an ``snntorch.surrogate`` factory, else None."""
    qn = getattr(fn, "__qualname__", "")
    if getattr(fn, "__module__", "") != "snntorch.surrogate" or not qn.endswith(".<locals>.inner"):
        return None
    factory = qn.split(".")[0]
    make = getattr(_surrogate, factory, None)
    if make is None:
        return None
    names = fn.__code__.co_freevars
    values = [c.cell_contents for c in (fn.__closure__ or ())]
    if not set(names) <= set(inspect.signature(make).parameters):
        return None
    return factory, dict(zip(names, values))


def _is_default_spike_grad(fn: Any) -> bool:
    spec = _surrogate_spec(fn)
    return spec is not None and spec[0] == "atan" and spec[1].get("alpha") == 2.0


class _SurrogateRef:
    """Picklable stand-in for an ``snntorch.surrogate`` closure (the default ``atan()`` cannot be pickled)."""

    def __init__(self, factory: str, kwargs: Dict[str, Any]):
        self.factory, self.kwargs = factory, kwargs

    def build(self) -> Any:
        return getattr(_surrogate, self.factory)(**self.kwargs)


def _restore_spike_grad(module: nn.Module) -> None:
    """Rebuild a pickled ``snntorch.surrogate`` closure (see :class:`_SurrogateRef`)."""
    if isinstance(module.__dict__.get("spike_grad"), _SurrogateRef):
        module.spike_grad = module.spike_grad.build()


def _warn_spike_grad(stacklevel: int = 3) -> None:
    warnings.warn("spike_grad is ignored by TSSL-BP layers (TSSLLeaky, TSSLSynaptic): TSSL-BP computes the "
                  "spike gradient from spike timing and needs no surrogate (the forward stays the Heaviside step)",
                  UserWarning, stacklevel=stacklevel)


def _finish_init(layer: nn.Module, spike_grad: Any, surrogate_disable: bool, options: Dict[str, Any]) -> None:
    """The end of a TSSL-BP layer's constructor, after snnTorch's: refuse what it cannot honour (and take the
    half-built layer out of ``snn.SpikingNeuron.instances``), warn about an ignored ``spike_grad``, set the
    TSSL-BP options (checked: ``_convert.checked_options``)."""
    try:
        _refuse(layer)
    except ValueError:
        snn.SpikingNeuron.instances.remove(layer)
        raise
    if spike_grad is not None and not surrogate_disable:
        _warn_spike_grad(stacklevel=4)  # the user's line that built the layer
    layer._tssl_setup(options)


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """``a`` is ``b`` or an alias of it (``b.detach()``): same storage, offset, shape and strides."""
    if a is b:
        return True
    return (a.device == b.device and a.dtype == b.dtype and a.shape == b.shape
            and a.stride() == b.stride() and a.data_ptr() == b.data_ptr())


class TSSLLeaky(snn.Leaky):
    """``snn.Leaky`` with TSSL-BP gradients (see the module docstring for the rule).

    Same constructor as ``snn.Leaky`` plus ``tau_s`` (PSC time constant of the
    internal trace used by the warm-up, >= 1), ``warmup`` (the reference
    warm-up surrogate for silent neurons) and ``warmup_width`` (its width in units of the threshold,
    > 0; default 0.2, the reference's at threshold 1), ``sensitivity_cap`` and ``ablation`` (a part of the rule
    switched off, for measurements: :func:`tssl_plugin.functional.tssl_lif`). Same ``(spk, mem)`` return
    contract, buffers and ``state_dict`` keys.
    """

    #: the class default, so a layer pickled before the option existed loads with the reference's width.
    warmup_width: float = WARMUP_WIDTH
    #: in units of 1/threshold; also what a layer pickled before the option existed gets.
    sensitivity_cap: Optional[float] = None
    ablation: str = "none"
    #: the warm-up surrogate's floor (:data:`._convert.ADAPTER_WARMUP_FLOOR`); ``convert(warmup_floor=...)`` sets it.
    warmup_floor: bool = ADAPTER_WARMUP_FLOOR
    #: what ``c`` measures; None: by reset (:func:`._convert.crossing_for`); ``convert(crossing=...)`` sets it.
    crossing: Optional[str] = None

    def __init__(self, beta, threshold=1.0, spike_grad=None, surrogate_disable=False, init_hidden=False,
                 inhibition=False, learn_beta=False, learn_threshold=False, reset_mechanism="subtract",
                 state_quant=False, output=False, graded_spikes_factor=1.0, learn_graded_spikes_factor=False,
                 reset_delay=True, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        tssl = checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation)
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition, learn_beta,
                         learn_threshold, reset_mechanism, state_quant, output, graded_spikes_factor,
                         learn_graded_spikes_factor, reset_delay)
        _finish_init(self, spike_grad, surrogate_disable, tssl)

    # -- TSSL state ---------------------------------------------------------------------------
    def _tssl_setup(self, options: Dict[str, Any]) -> None:
        """Set checked options (``_convert.checked_options`` or ``checked_convert_options``) and start afresh."""
        set_options(self, options)
        self.__dict__.pop("_tssl_gate_cache", None)
        self._tssl_gate()  # resolves "auto" now, in eager mode, for the compiled steps to read
        self._tssl_clear()

    def _tssl_clear(self) -> None:
        self._tssl_state: Optional[StepState] = None
        self._tssl_mem_ref: Optional[weakref.ref] = None

    def _state_for(self, mem: Tensor, u: Tensor) -> StepState:
        """The step state entering this step under the continuation rule (module docstring)."""
        state, ref = self._tssl_state, self._tssl_mem_ref
        last = ref() if ref is not None else None
        if (state is None or last is None or not _same_tensor(mem, last) or state.trace.shape != u.shape
                or state.trace.dtype != u.dtype or state.trace.device != u.device):
            return initial_state(u)
        return state if mem.requires_grad else state.detach()

    def reset_mem(self):
        self._tssl_clear()
        return super().reset_mem()

    def _mode(self) -> Tuple[str, Optional[str]]:
        """``(state function, current reset_mechanism)``: snnTorch fixes the first at construction and
        reads the second (its ``reset_mechanism_val`` buffer) only when ``reset_delay`` is False (None otherwise)."""
        name = getattr(getattr(self.state_function, "__func__", None), "__name__", None)
        if name not in STATE_FUNCTIONS:
            raise ValueError(f"TSSLLeaky: unknown state_function {self.state_function!r}; "
                             "only snn.Leaky's own reset mechanisms are supported")
        if self.reset_delay:  # like snn.Leaky, read the buffer only where it matters (a read breaks a compiled graph)
            return STATE_FUNCTIONS[name], None
        for code, reset_val in RESET_VALS.items():  # compared as snn.Leaky.forward does
            if self.reset_mechanism_val == code:
                return STATE_FUNCTIONS[name], reset_val
        raise ValueError(f"TSSLLeaky: unknown reset_mechanism_val {self.reset_mechanism_val!r}; "
                         "only snn.Leaky's own reset mechanisms are supported")

    def _inv_tau_m(self) -> Tensor:
        """``1/tau_m = 1 - beta`` (beta clamped to [0, 1] as snnTorch does)."""
        return 1 - self.beta.detach().clamp(0, 1)

    def _tssl_gate(self) -> str:
        """The warm-up gate this layer runs: ``warmup``'s, with ``"auto"`` resolved by whether ``beta < 1`` anywhere
        (read once per value of ``beta``, not at every step: no host sync per step on a GPU); ``"trace"`` when the
        warm-up is off (the gate is then unused)."""
        gate = warmup_gate(self.warmup) or "trace"
        if gate != "auto":
            return gate
        cached = self.__dict__.get("_tssl_gate_cache")
        if cached is not None and torch.compiler.is_compiling():
            return cached[1]  # resolved at setup or by an eager step (reading beta here would break the graph)
        beta = self.beta
        key = (beta.data_ptr(), beta._version, beta.device)
        if cached is None or cached[0] != key:
            cached = (key, resolve_gate("auto", self._inv_tau_m()))
            self.__dict__["_tssl_gate_cache"] = cached
        return cached[1]

    def _constants(self, like: Tensor, mode: str, reset_val: Optional[str]) -> LIFConstants:
        inv_tau_m = self._inv_tau_m().to(like.dtype)
        threshold = self.threshold.detach().to(like.dtype)
        reset = core_reset(mode, self.reset_delay, reset_val)
        return LIFConstants(inv_tau_m=inv_tau_m, inv_tau_s=1.0 / self.tau_s, threshold=threshold,
                            warmup_level=warmup_level(self.tau_s), warmup_gate=self._tssl_gate(), reset=reset,
                            warmup_width=warmup_width_for(self.warmup_width, threshold),
                            sensitivity_cap=sensitivity_cap_for(reset, self.sensitivity_cap) / threshold,
                            ablation=self.ablation, warmup_floor=self.warmup_floor,
                            crossing=crossing_for(reset, self.crossing))

    def _check_options(self) -> None:
        if (self.inhibition or self.state_quant or self.surrogate_disable
                or isinstance(self.threshold, nn.Parameter) or isinstance(self.graded_spikes_factor, nn.Parameter)):
            _refuse(self)

    def _current(self, x: Tensor, v: Tensor) -> Tensor:
        """The tensor that receives dL/dx: ``x``, plus the leak current ``beta v`` when beta learns."""
        if isinstance(self.beta, Tensor) and self.beta.requires_grad and torch.is_grad_enabled():
            return x + self.beta.clamp(0, 1) * v
        return x

    # -- forward ------------------------------------------------------------------------------
    def _begin_step(self, input_: Tensor, mem: Optional[Tensor]) -> Tuple[str, Optional[str]]:
        """snnTorch's step prologue for a one-membrane neuron (Leaky, Lapicque): take an explicit ``mem``
        (refused with ``init_hidden``), start a membrane of the input's shape, check the options; returns
        the reset mode (:meth:`_mode`)."""
        if mem is not None:
            self.mem = mem
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if not self.mem.shape == input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        self._check_options()
        return self._mode()

    def _step_output(self, spk: Tensor):
        """What snnTorch's forward returns: ``(spk, mem)``, or ``spk`` alone with ``init_hidden`` (not ``output``)."""
        if self.output:
            return spk, self.mem
        if self.init_hidden:
            return spk
        return spk, self.mem

    def forward(self, input_, mem=None):
        """One time step, exactly ``snn.Leaky.forward``; returns ``(spk, mem)`` or ``spk`` like snnTorch."""
        mode, reset_val = self._begin_step(input_, mem)
        st = leaky_step(input_, self.mem, self.beta, self.threshold, self.graded_spikes_factor, mode,
                        self.reset_delay, reset_val, membrane_grad=True, need_du=self._needs_du())
        return self._step_output(self._tssl_step(input_, st, mode, reset_val))

    def _needs_du(self) -> bool:
        """Whether a step computes ``du``: not with snnTorch's delayed reset (and its float32 threshold), where the
        membrane a step starts from is the previous step's ``u``, which that step's node holds: the node is given
        that membrane (``Increment``) and computes ``du`` in its backward, so a step saves one tensor fewer."""
        return not (getattr(self, "reset_delay", True) and self.threshold.dtype == torch.float32)

    def _tssl_step(self, x: Tensor, st: StepValues, mode: str, reset_val: Optional[str]) -> Tensor:
        """Attach the TSSL-BP step node to the host step ``st`` computed from input current ``x`` and ``self.mem``.

        ``st`` comes from the host arithmetic run with ``membrane_grad=True``: its membrane carries the host's
        own gradient (module docstring). Sets the layer's ``mem`` (the returned membrane), ``reset`` and step
        state; returns the spikes (float32, as snnTorch emits them). Shared by :class:`TSSLLeaky` and
        :class:`TSSLSynaptic`.
        """
        mem = self.mem
        k = self._constants(st.u, mode, reset_val)
        du = st.du
        if du is None:  # not computed (_needs_du): the node computes it from mem in its backward
            if mem.dtype == st.u.dtype in (torch.float32, torch.float64):
                du = Increment(mem, mode)
            else:  # a dtype mix the kernels would round differently: du as the host computes it
                with torch.no_grad():
                    du = st.u - delayed_base(mem, st.reset, self.threshold, mode)
        (spk, _), step_state = tssl_step(self._current(x, st.v.detach()), self._state_for(mem, st.u), st.u,
                                         du, st.o, None, k, warmup=self.warmup is not False)
        if torch.is_grad_enabled() and x.requires_grad:
            observe_firing(self, st.o)
        mem_out = st.mem
        self.reset = st.reset  # snnTorch keeps its delayed reset signal on the layer
        self.mem = mem_out
        self._tssl_state = step_state
        self._tssl_mem_ref = weakref.ref(mem_out)
        return spk.to(torch.float32)  # snnTorch always emits float32 spikes

    def _tssl_sequence(self, x_seq: Tensor, steps: List[StepValues], mode: str,
                       reset_val: Optional[str]) -> Tuple[Tensor, Tensor]:
        """``(spk_seq, mem_seq)`` of host steps ``steps`` run on the input currents ``x_seq``, with the backward
        of one core op call. Shared by :class:`TSSLLeaky` and :class:`TSSLSynaptic`."""
        o, _, u, du, v, mems = (torch.stack(z) for z in zip(*steps))
        k = self._constants(u, mode, reset_val)
        x = self._current(x_seq, v.detach())
        spk = spikes_with_tssl_grad(x, u.detach(), du.detach(), o, k, warmup=self.warmup is not False)
        if spk.requires_grad:
            observe_firing(self, o, steps=o.shape[0])
        return spk.to(torch.float32), mems

    def forward_sequence(self, x_seq: Tensor) -> Tuple[Tensor, Tensor]:
        """Whole sequence ``[T, N, ...]`` at once, from a zero membrane; returns ``(spk_seq, mem_seq)``.

        The same numbers as calling ``reset_mem()`` and then the step loop, but the
        backward is one call of the core TSSL-BP op
        (:func:`tssl_plugin.functional.spikes_with_tssl_grad`, which also carries
        a loss on the returned membranes). Does not read or change the step state.
        """
        check_sequence(x_seq, "x_seq")
        self._check_options()
        mode, reset_val = self._mode()
        mem = torch.zeros_like(x_seq[0], device=self.mem.device)
        steps = []
        for t in range(x_seq.shape[0]):
            st = leaky_step(x_seq[t], mem, self.beta, self.threshold, self.graded_spikes_factor, mode,
                            self.reset_delay, reset_val, membrane_grad=True)
            steps.append(st)
            mem = st.mem
        return self._tssl_sequence(x_seq, steps, mode, reset_val)

    # -- pickling / copying ---------------------------------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        # state buffers (mem; syn, spk) carrying a graph are saved detached: a graph cannot be copied
        # (a plain snn.Leaky fails here)
        state["_buffers"] = {k: b.detach() if isinstance(b, Tensor) and not b.is_leaf else b
                             for k, b in state["_buffers"].items()}
        state["_tssl_state"] = None
        state["_tssl_mem_ref"] = None
        spec = _surrogate_spec(state.get("spike_grad"))
        if spec is not None:
            state["spike_grad"] = _SurrogateRef(*spec)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        _restore_spike_grad(self)

    def extra_repr(self) -> str:
        return (f"tau_s={self.tau_s}, warmup={self.warmup}, warmup_width={self.warmup_width}, "
                f"sensitivity_cap={self.sensitivity_cap}"
                + (f", ablation={self.ablation!r}" if self.ablation != "none" else ""))


class _LeakyRule:
    """TSSLLeaky's TSSL-BP state, checks, step and pickling for the other snnTorch LIF classes (one home).

    Mixed in before the snnTorch class (``class TSSLSynaptic(_LeakyRule, snn.Synaptic)``); the methods read
    only attributes every snnTorch LIF neuron has (beta, threshold, mem, reset_delay, state_function, ...).
    """

    #: the class defaults, so a layer pickled before an option existed loads with its default.
    warmup_width: float = WARMUP_WIDTH
    sensitivity_cap: Optional[float] = None
    warmup_floor: bool = ADAPTER_WARMUP_FLOOR
    #: what ``c`` measures; None: by reset (:func:`._convert.crossing_for`); ``convert(crossing=...)`` sets it.
    crossing: Optional[str] = None

    _tssl_setup = TSSLLeaky._tssl_setup
    _tssl_clear = TSSLLeaky._tssl_clear
    _state_for = TSSLLeaky._state_for
    _check_options = TSSLLeaky._check_options
    _current = TSSLLeaky._current
    _inv_tau_m = TSSLLeaky._inv_tau_m
    _tssl_gate = TSSLLeaky._tssl_gate
    _constants = TSSLLeaky._constants
    _tssl_step = TSSLLeaky._tssl_step
    _needs_du = TSSLLeaky._needs_du
    _begin_step = TSSLLeaky._begin_step
    _step_output = TSSLLeaky._step_output
    _tssl_sequence = TSSLLeaky._tssl_sequence
    __getstate__ = TSSLLeaky.__getstate__
    extra_repr = TSSLLeaky.extra_repr

    def _mode(self) -> Tuple[str, Optional[str]]:
        """TSSLLeaky's, after refusing a reset this class's TSSL-BP version cannot follow (a delayed zero
        reset; RSynaptic's ineffective ``reset_delay=False``), set or changed after construction."""
        if _delayed_zero(self):
            raise ValueError(f"{type(self).__name__}: {delayed_zero_message(self)}")
        if isinstance(self, snn.RSynaptic) and not self.reset_delay:
            raise ValueError(f"{type(self).__name__}: {RSYNAPTIC_RESET_DELAY}")
        return TSSLLeaky._mode(self)

    def reset_mem(self):
        self._tssl_clear()
        return super().reset_mem()

    def __setstate__(self, state):
        super().__setstate__(state)
        _restore_spike_grad(self)


class TSSLSynaptic(_LeakyRule, snn.Synaptic):
    r"""``snn.Synaptic`` with TSSL-BP gradients for its LIF part (forward bit for bit snnTorch's).

    snnTorch's second-order neuron filters its input current before the membrane::

        syn[t] = alpha syn[t-1] + x[t]            (alpha, beta clamped to [0, 1] as snnTorch does)
        mem[t] = beta mem[t-1] + syn[t]           (then fire and reset exactly as snn.Leaky, with input syn[t])

    The synaptic filter is linear and is differentiated by ordinary autograd
    (``x``, a learnable ``alpha`` and an incoming ``syn`` get their exact
    gradients through it). The membrane part is :class:`TSSLLeaky`'s neuron with
    ``syn[t]`` as its input current: it gets the TSSL-BP gradient from the core
    step node (:func:`tssl_plugin.stepwise.tssl_step`; the whole-sequence op in
    :meth:`forward_sequence`), with ``1/tau_m = 1 - beta``, the same resets and
    extensions as :class:`TSSLLeaky` and ``learn_beta`` treated the same way.

    The paper's network. With ``alpha = 1 - 1/tau_s`` and ``x[t] = W o[t]``
    (spikes of the layer before), ``syn[t] = tau_s W a[t]`` where
    ``a[t] = a[t-1] + (o[t] - a[t-1]) / tau_s`` is the paper's PSC. So a network
    of Synaptic layers with ``reset_mechanism="zero"``, ``reset_delay=False``,
    ``beta = 1 - 1/tau_m`` and weights ``W / tau_s`` is TSSL-BP's network
    (weights ``W``, PSC between layers, reset to zero): the same spikes and
    ``dL/d(W/tau_s) = tau_s dL/dW`` (docs/snntorch.md).

    The warm-up's trace time constant is the synapse's own, ``tau_s = 1/(1 -
    alpha)`` (:attr:`tau_s`, read from ``alpha`` at every step): in the paper's
    network that is the PSC constant of every layer. ``convert(tau_s=...)``
    applies to Leaky layers only.

    Refused (clear error): everything :class:`TSSLLeaky` refuses, and
    ``reset_mechanism="zero"`` with ``reset_delay=True`` (snnTorch then zeroes
    the membrane on the step after a spike, that step's input included: not the
    paper's reset). Same constructor as ``snn.Synaptic`` plus ``warmup`` and
    ``warmup_width``; same ``(spk, syn, mem)`` return contract, buffers and
    ``state_dict`` keys; the step-state rules of :class:`TSSLLeaky` (the
    membrane passed in decides whether a sequence continues).
    """

    def __init__(self, alpha, beta, threshold=1.0, spike_grad=None, surrogate_disable=False, init_hidden=False,
                 inhibition=False, learn_alpha=False, learn_beta=False, learn_threshold=False,
                 reset_mechanism="subtract", state_quant=False, output=False, reset_delay=True, *,
                 warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH,
                 sensitivity_cap: Optional[float] = None, ablation: str = "none"):
        tssl = checked_options(3.0, warmup, warmup_width, sensitivity_cap, ablation)  # tau_s: the synapse's own
        super().__init__(alpha, beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_alpha, learn_beta, learn_threshold, reset_mechanism, state_quant, output, reset_delay)
        _finish_init(self, spike_grad, surrogate_disable, tssl)  # its tau_s is ignored: see the tau_s property

    @property
    def tau_s(self) -> Tensor:
        """The warm-up trace's PSC time constant: the synapse's own, ``1 / (1 - alpha)`` (inf for ``alpha = 1``)."""
        return 1.0 / (1 - self.alpha.detach().clamp(0, 1))

    @tau_s.setter
    def tau_s(self, value: Any) -> None:
        """Not settable: ``convert(tau_s=...)`` sets Leaky layers' trace constant; a Synaptic's is its synapse's."""

    def _constants(self, like: Tensor, mode: str, reset_val: Optional[str]) -> LIFConstants:
        """TSSLLeaky's constants with the trace's ``1/tau_s = 1 - alpha`` (the synapse's own PSC constant)."""
        inv_tau_s = (1 - self.alpha.detach().clamp(0, 1)).to(like.dtype)
        k = TSSLLeaky._constants(self, like, mode, reset_val)
        return k._replace(inv_tau_s=inv_tau_s, warmup_level=warmup_level(1.0 / inv_tau_s))

    # -- forward ------------------------------------------------------------------------------
    def forward(self, input_, syn=None, mem=None):
        """One time step, exactly ``snn.Synaptic.forward``; returns ``(spk, syn, mem)`` or ``spk`` like snnTorch."""
        if syn is not None:
            self.syn = syn
        if mem is not None:
            self.mem = mem
        if self.init_hidden and (mem is not None or syn is not None):
            raise TypeError("`mem` or `syn` should not be passed as an argument while `init_hidden=True`")
        if not self.syn.shape == input_.shape:
            self.syn = torch.zeros_like(input_, device=self.syn.device)
        if not self.mem.shape == input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        self._check_options()
        mode, reset_val = self._mode()
        self.syn = self.alpha.clamp(0, 1) * self.syn + input_  # the synaptic filter: linear, plain autograd
        st = synaptic_step(self.syn, self.mem, self.beta, self.threshold, self.graded_spikes_factor, mode,
                           self.reset_delay, reset_val, membrane_grad=True, need_du=self._needs_du())
        current = self.syn
        if mode == "zero":  # a caller's membrane above threshold: snnTorch zeroes this step, input included
            current = torch.where(st.reset > 0, current.detach(), current)
        spk = self._tssl_step(current, st, mode, reset_val)
        if self.output or not self.init_hidden:
            return spk, self.syn, self.mem
        return spk

    def forward_sequence(self, x_seq: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Whole sequence ``[T, N, ...]`` from zero ``syn`` and ``mem``; returns ``(spk_seq, syn_seq, mem_seq)``.

        The same numbers as ``reset_mem()`` and then the step loop; the membrane's
        backward is one call of the core op (the synaptic filter's is autograd's).
        Does not read or change the step state.
        """
        check_sequence(x_seq, "x_seq")
        self._check_options()
        mode, reset_val = self._mode()
        syn = torch.zeros_like(x_seq[0], device=self.syn.device)
        mem = torch.zeros_like(x_seq[0], device=self.mem.device)
        alpha = self.alpha.clamp(0, 1)
        syns, steps = [], []
        for t in range(x_seq.shape[0]):
            syn = alpha * syn + x_seq[t]
            st = synaptic_step(syn, mem, self.beta, self.threshold, self.graded_spikes_factor, mode,
                               self.reset_delay, reset_val, membrane_grad=True)
            syns.append(syn)
            steps.append(st)
            mem = st.mem
        syn_seq = torch.stack(syns)
        spk, mems = self._tssl_sequence(syn_seq, steps, mode, reset_val)
        return spk, syn_seq, mems

    def extra_repr(self) -> str:
        tau_s = self.tau_s
        shown = f"{float(tau_s):g}" if tau_s.numel() == 1 else f"tensor{tuple(tau_s.shape)}"
        return (f"tau_s={shown} (1/(1-alpha)), warmup={self.warmup}, warmup_width={self.warmup_width}, "
                f"sensitivity_cap={self.sensitivity_cap}"
                + (f", ablation={self.ablation!r}" if self.ablation != "none" else ""))


from ._snntorch_neurons import TSSLLapicque, TSSLRLeaky, TSSLRSynaptic  # noqa: E402  (they build on the above)
from ._snntorch_stateleaky import TSSLLinearLeaky, TSSLStateLeaky  # noqa: E402

#: snnTorch class -> TSSL-BP class (exact types), and back.
_TO_TSSL = {snn.Leaky: TSSLLeaky, snn.Synaptic: TSSLSynaptic, snn.RLeaky: TSSLRLeaky, snn.RSynaptic: TSSLRSynaptic,
            snn.Lapicque: TSSLLapicque, snn.StateLeaky: TSSLStateLeaky, snn.LinearLeaky: TSSLLinearLeaky}
_FROM_TSSL = {v: k for k, v in _TO_TSSL.items()}

#: the methods that make up a supported class's forward: a subclass overriding one is refused (its override
#: would be dropped by the TSSL-BP forward, which replays the base class's arithmetic).
FORWARD_METHODS = ("forward", "fire", "mem_reset", "state_function", "_base_state_function",
                   "_base_state_reset_zero", "_base_sub", "_base_zero", "_base_int")

#: why the other snnTorch neurons have no TSSL-BP version (class name -> one line).
NOT_SUPPORTED = {
    "Alpha": "refused: its membrane is the difference of two exponentially filtered currents (an alpha kernel, "
             "excitatory minus inhibitory) with a reset acting on both; TSSL-BP's rule is for a first-order "
             "membrane driven by one input current",
    "AssociativeLeaky": "refused: a matrix-valued associative-memory (SSM) state, not an LIF membrane",
    "SLSTM": "refused: its membrane is a gated LSTM cell state, not an LIF membrane",
    "SConv2dLSTM": "refused: its membrane is a gated convolutional LSTM cell state, not an LIF membrane",
    "DeltaLeaky": "refused: it fires where the membrane's change |mem[t] - mem[t-1]| exceeds delta_threshold, not "
                  "where the membrane crosses a threshold; TSSL-BP's spike-time sensitivity 1/du needs the crossing",
    "LeakyParallel": "not yet: a whole-sequence torch.nn.RNN membrane with its own fused linear layer",
}


#: modules of snnTorch's neuron package that are parts of a neuron, not neurons (RLeaky's one-to-one ``V``).
_NEURON_PARTS = ("RecurrentOneToOne",)


def _snntorch_neuron(module: nn.Module) -> bool:
    if type(module).__name__ in _NEURON_PARTS:
        return False
    return isinstance(module, snn.SpikingNeuron) or type(module).__module__.startswith("snntorch._neurons")


def _why_not(module: nn.Module, reason: Optional[str]) -> str:
    name = type(module).__name__
    if type(module).__module__.startswith("snntorch.") and name in NOT_SUPPORTED:
        return NOT_SUPPORTED[name]  # snnTorch's own class: the reason in its terms, not a subclass's
    return reason or NOT_SUPPORTED.get(name, "no TSSL-BP version yet")


def convert(model: nn.Module, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH,
            sensitivity_cap: Optional[float] = None, strict: bool = False, exclude: Exclude = None,
            ablation: str = "none", warmup_floor: bool = ADAPTER_WARMUP_FLOOR,
            crossing: Optional[str] = None) -> nn.Module:
    """Switch every ``snn.Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``, ``Lapicque``, ``StateLeaky`` and
    ``LinearLeaky`` to its TSSL-BP version (:class:`TSSLLeaky`, :class:`TSSLSynaptic`, :class:`TSSLRLeaky`,
    :class:`TSSLRSynaptic`, :class:`TSSLLapicque`, :class:`TSSLStateLeaky`, :class:`TSSLLinearLeaky`), in place.

    The same module objects stay in the model (their class changes), so
    optimizers, hooks and ``snn.SpikingNeuron.instances`` stay valid. A
    subclass of one of these converts too (to a class deriving from the
    TSSL-BP version and the subclass) unless it overrides a part of the forward
    (:data:`FORWARD_METHODS`); then it is left alone, and the warning names the
    method. Other snnTorch neurons (``Alpha``, ``LeakyParallel``, ...) are left alone
    with one warning listing each with its reason (:data:`NOT_SUPPORTED`);
    ``strict=True`` raises ``TypeError`` instead. A model with none of the
    supported neurons at all (a plain network, or a SpikingJelly model) gets a
    warning that nothing was converted; ``strict=True`` raises ``ValueError``
    instead. Layers with refused options raise before anything is changed.

    ``exclude``: modules (or their names in ``model.named_modules()``) that
    keep snnTorch's surrogate gradient, with everything inside them; e.g.
    ``convert(net, exclude=[net.lif_out])`` trains the hidden layers with
    TSSL-BP and the output layer with its ``spike_grad`` (the recipe for
    losses that never saturate, such as ``ce_rate_loss``). A name or module
    not in the model is an error. ``tau_s``, ``warmup`` and ``warmup_width``
    (the warm-up surrogate's width in units of each layer's threshold, default 0.2, the reference's at
    threshold 1: :func:`._convert.warmup_width_for`) are set on
    every converted layer, including layers an earlier ``convert`` converted:
    calling ``convert`` again applies the new options; a Synaptic or RSynaptic
    layer's warm-up trace uses its own synapse's ``tau_s = 1/(1 - alpha)`` instead of ``tau_s``.
    ``ablation`` switches a part of the rule off in every converted layer, to measure what it
    contributes (:func:`tssl_plugin.functional.tssl_lif`; docs/algorithm.md, "Ablations"; ``"no_intra"``
    is refused at a layer's first step if its ``reset_mechanism`` is ``"none"``).
    ``warmup_floor`` (default False, :data:`._convert.ADAPTER_WARMUP_FLOOR`): True keeps the reference's floor
    under the warm-up surrogate (:func:`tssl_plugin.functional.tssl_lif`).
    ``crossing`` (default None: ``"interpolated"`` for ``reset_mechanism="zero"``, the reference's ``"step"`` for
    the subtractions, :func:`._convert.crossing_for`) says what a spike's sensitivity ``c`` measures.
    Returns ``model``.
    """
    check_convert_args(model, strict)
    options = checked_convert_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation, warmup_floor, crossing)
    skip = excluded_ids(model, exclude)
    targets, again, others, names = [], [], [], {}
    for name, m in model.named_modules():
        if id(m) in skip:
            continue
        names[id(m)] = name or "<root>"
        if original_class(type(m), _FROM_TSSL) is not None:
            again.append(m)
            continue
        new_cls, reason = tssl_class_for(type(m), _TO_TSSL, FORWARD_METHODS)
        if new_cls is not None:
            _refuse(m, name or "<root>")
            targets.append((m, new_cls))
        elif reason is not None or _snntorch_neuron(m):
            others.append(f"{name or '<root>'} ({type(m).__name__}: {_why_not(m, reason)})")
    if not others and not any(isinstance(m, tuple(_TO_TSSL)) for m in model.modules()):  # excluded ones count
        nothing_to_convert(model, "snn.Leaky, Synaptic, RLeaky, RSynaptic, Lapicque, StateLeaky or LinearLeaky",
                           "snntorch", strict)
    if others:
        msg = ("TSSL-BP convert: left unchanged (still snnTorch surrogate gradients): " + "; ".join(others))
        if strict:
            raise TypeError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    if any(not _is_default_spike_grad(m.spike_grad) for m, _ in targets):
        _warn_spike_grad()
    for m, new_cls in targets:
        m.__class__ = new_cls
    for m in [m for m, _ in targets] + again:  # layers converted before get this call's options too
        m._tssl_setup(options)
        watch_firing(m, names[id(m)])
    return model


def revert(model: nn.Module) -> nn.Module:
    """Switch every TSSL-BP layer in ``model`` back to its snnTorch class (a converted subclass back to the
    subclass) in place; returns ``model``."""
    check_convert_args(model, False, "revert")
    for m in model.modules():
        original = original_class(type(m), _FROM_TSSL)
        if original is not None:
            m.__class__ = original
            remove_options(m, _TSSL_PRIVATE)
    return model
