r"""TSSL-BP versions of snnTorch's other LIF neurons: :class:`TSSLRLeaky`, :class:`TSSLRSynaptic`, :class:`TSSLLapicque`.

Each keeps its snnTorch forward bit for bit (the arithmetic is in
:mod:`._snntorch_forward`) and reuses :class:`~tssl_plugin.adapters.snntorch.TSSLLeaky`'s
rule, step state and checks; see that module for the rule and the state rules.

**Recurrent neurons.** ``RLeaky`` adds the recurrent current ``rec[t] = V(spk[t-1])``
(``V`` an ``nn.Linear``, an ``nn.Conv2d`` or the one-to-one ``V * spk``) to
the input; ``RSynaptic`` adds it to the synaptic current::

    RLeaky:     mem[t] = beta mem[t-1] + x[t] + V(spk[t-1])                (then Leaky's reset)
    RSynaptic:  syn[t] = alpha syn[t-1] + x[t] + V(spk[t-1]);  mem[t] = beta mem[t-1] + syn[t]

The LIF part's input current is ``x[t] + rec[t]`` (RLeaky) or ``syn[t]``
(RSynaptic) and gets the TSSL-BP gradient from the core step node. The
spikes fed back are the step node's output, so the recurrent path carries
TSSL-BP's spike-output gradient as a feed-forward connection does:
``G[t] = dL/dspk[t]`` includes ``V^T dL/dx[t+1]``, and ``V``'s weights get
``sum_t dL/dx[t+1] spk[t]^T`` by autograd. Given those ``G``, the step-wise
gradients are those of the whole-sequence op ``tssl_lif`` run on the same
input currents (tests/test_adapter_snntorch_recurrent.py). ``learn_beta``
is TSSLLeaky's leak-current rule; ``learn_recurrent=False`` freezes ``V`` as
in snnTorch.

**Lapicque** is the RC form of Leaky: ``mem[t] = x[t] dt/C + (1 - dt/(RC)) mem[t-1]``,
so it converts through the Leaky mapping with ``1/tau_m = dt/(RC)`` and input
current ``x dt/C`` (its ``beta`` only sets ``C`` at construction: snnTorch's
forward, hence the rule, uses ``dt/(RC)``, and a learnable ``beta`` gets no
gradient, as in snnTorch). Its reset is always the delayed one (core
``"subtract_after_leak"`` for ``"subtract"``).

Refused, besides TSSLLeaky's refusals: a delayed reset to zero (RLeaky and
RSynaptic with ``reset_delay=True``, RSynaptic and Lapicque always; it zeroes
the membrane on the step after a spike, that step's input included), RSynaptic's
``reset_delay=False`` (snnTorch 1.0 does not apply it), a Lapicque with
``dt/(RC)`` outside (0, 1].
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tssl_plugin._optional import require
from tssl_plugin.rule import WARMUP_WIDTH, Warmup

from ._convert import ADAPTER_WARMUP, checked_options

from ._snntorch_forward import lapicque_current, lapicque_step, recurrent_step, synaptic_step
from .snntorch import TSSLSynaptic, _finish_init, _LeakyRule

snn = require("snntorch", "snntorch")

__all__ = ["TSSLRLeaky", "TSSLRSynaptic", "TSSLLapicque"]


class TSSLRLeaky(_LeakyRule, snn.RLeaky):
    """``snn.RLeaky`` with TSSL-BP gradients (forward bit for bit snnTorch's; module docstring).

    Same constructor as ``snn.RLeaky`` plus ``tau_s``, ``warmup``, ``warmup_width`` and
    ``sensitivity_cap``, ``ablation`` (as :class:`TSSLLeaky`); same ``(spk, mem)`` return, buffers and
    ``state_dict`` keys (the recurrent layer's weights included).
    """

    def __init__(self, beta, V=1.0, all_to_all=True, linear_features=None, conv2d_channels=None, kernel_size=None,
                 threshold=1.0, spike_grad=None, surrogate_disable=False, init_hidden=False, inhibition=False,
                 learn_beta=False, learn_threshold=False, learn_recurrent=True, reset_mechanism="subtract",
                 state_quant=False, output=False, reset_delay=True, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        tssl = checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation)
        super().__init__(beta, V, all_to_all, linear_features, conv2d_channels, kernel_size, threshold, spike_grad,
                         surrogate_disable, init_hidden, inhibition, learn_beta, learn_threshold, learn_recurrent,
                         reset_mechanism, state_quant, output, reset_delay)
        _finish_init(self, spike_grad, surrogate_disable, tssl)

    def forward(self, input_, spk=None, mem=None):
        """One time step, exactly ``snn.RLeaky.forward``; returns ``(spk, mem)`` or ``spk`` like snnTorch."""
        if spk is not None:
            self.spk = spk
        if mem is not None:
            self.mem = mem
        if self.init_hidden and (mem is not None or spk is not None):
            raise TypeError("When `init_hidden=True`," "RLeaky expects 1 input argument.")
        if not self.spk.shape == input_.shape:
            self.spk = torch.zeros_like(input_, device=self.spk.device)
        if not self.mem.shape == input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        self._check_options()
        mode, reset_val = self._mode()
        rec = self.recurrent(self.spk)  # the spikes fed back carry the previous step's TSSL-BP node
        st = recurrent_step(input_, rec, self.mem, self.beta, self.threshold, self.graded_spikes_factor, mode,
                            self.reset_delay, reset_val, membrane_grad=True,
                            need_du=self._needs_du())
        self.spk = self._tssl_step(input_ + rec, st, mode, reset_val)
        return self._step_output(self.spk)


class TSSLRSynaptic(_LeakyRule, snn.RSynaptic):
    """``snn.RSynaptic`` with TSSL-BP gradients for its LIF part (forward bit for bit snnTorch's).

    The synaptic filter (recurrent current included) is linear and differentiated by autograd;
    the membrane is :class:`TSSLSynaptic`'s neuron on ``syn[t]``, with the warm-up trace's
    ``tau_s = 1/(1 - alpha)``. Same constructor as ``snn.RSynaptic`` plus ``warmup``,
    ``warmup_width`` and ``sensitivity_cap``; same ``(spk, syn, mem)`` return and ``state_dict`` keys.
    """

    tau_s = TSSLSynaptic.tau_s
    _constants = TSSLSynaptic._constants

    def __init__(self, alpha, beta, V=1.0, all_to_all=True, linear_features=None, conv2d_channels=None,
                 kernel_size=None, threshold=1.0, spike_grad=None, surrogate_disable=False, init_hidden=False,
                 inhibition=False, learn_alpha=False, learn_beta=False, learn_threshold=False, learn_recurrent=True,
                 reset_mechanism="subtract", state_quant=False, output=False, reset_delay=True, *,
                 warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        tssl = checked_options(3.0, warmup, warmup_width, sensitivity_cap, ablation)  # tau_s: the synapse's own (property)
        super().__init__(alpha, beta, V, all_to_all, linear_features, conv2d_channels, kernel_size, threshold,
                         spike_grad, surrogate_disable, init_hidden, inhibition, learn_alpha, learn_beta,
                         learn_threshold, learn_recurrent, reset_mechanism, state_quant, output, reset_delay)
        _finish_init(self, spike_grad, surrogate_disable, tssl)

    def forward(self, input_, spk=None, syn=None, mem=None):
        """One time step, exactly ``snn.RSynaptic.forward``; returns ``(spk, syn, mem)`` or ``spk``."""
        if spk is not None:
            self.spk = spk
        if syn is not None:
            self.syn = syn
        if mem is not None:
            self.mem = mem
        if self.init_hidden and (spk is not None or syn is not None or mem is not None):
            raise TypeError("When `init_hidden=True`, RSynaptic expects 1 input argument.")
        if not self.spk.shape == input_.shape:
            self.spk = torch.zeros_like(input_, device=self.spk.device)
        if not self.syn.shape == input_.shape:
            self.syn = torch.zeros_like(input_, device=self.syn.device)
        if not self.mem.shape == input_.shape:
            self.mem = torch.zeros_like(input_, device=self.mem.device)
        self._check_options()
        mode, reset_val = self._mode()  # subtract or none, delayed (the only resets RSynaptic applies)
        self.syn = self.alpha.clamp(0, 1) * self.syn + input_ + self.recurrent(self.spk)  # linear: plain autograd
        st = synaptic_step(self.syn, self.mem, self.beta, self.threshold, self.graded_spikes_factor, mode,
                           self.reset_delay, reset_val, membrane_grad=True,
                           need_du=self._needs_du())
        self.spk = self._tssl_step(self.syn, st, mode, reset_val)
        if self.output or not self.init_hidden:
            return self.spk, self.syn, self.mem
        return self.spk

    def extra_repr(self) -> str:
        return TSSLSynaptic.extra_repr(self)


class TSSLLapicque(_LeakyRule, snn.Lapicque):
    """``snn.Lapicque`` with TSSL-BP gradients: the Leaky rule with ``1/tau_m = dt/(RC)`` (module docstring).

    Same constructor as ``snn.Lapicque`` plus ``tau_s``, ``warmup``, ``warmup_width`` and
    ``sensitivity_cap``; same ``(spk, mem)`` return, buffers and ``state_dict`` keys.
    """

    #: snnTorch's Lapicque resets one step late and has no ``reset_delay`` option.
    reset_delay = True

    def __init__(self, beta=False, R=False, C=False, time_step=1, threshold=1.0, spike_grad=None,
                 surrogate_disable=False, init_hidden=False, inhibition=False, learn_beta=False,
                 learn_threshold=False, reset_mechanism="subtract", state_quant=False, output=False, *,
                 tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH,
                 sensitivity_cap: Optional[float] = None, ablation: str = "none"):
        tssl = checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation)
        super().__init__(beta, R, C, time_step, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, reset_mechanism, state_quant, output)
        _finish_init(self, spike_grad, surrogate_disable, tssl)

    def _inv_tau_m(self) -> Tensor:
        """``1/tau_m = dt/(RC)``: snnTorch's Lapicque leaks by ``1 - dt/(RC)`` (not by ``beta``)."""
        return (self.time_step / (self.R * self.C)).detach()

    def _current(self, x: Tensor, v: Tensor) -> Tensor:
        """The input current alone: Lapicque's forward never reads ``beta``, so a learnable one gets no gradient."""
        return x

    def forward(self, input_, mem=None):
        """One time step, exactly ``snn.Lapicque.forward``; returns ``(spk, mem)`` or ``spk`` like snnTorch."""
        mode, reset_val = self._begin_step(input_, mem)
        current = lapicque_current(input_, self.R, self.C, self.time_step)
        st = lapicque_step(current, self.mem, self.R, self.C, self.time_step, self.threshold,
                           self.graded_spikes_factor, mode, membrane_grad=True,
                           need_du=self._needs_du())
        return self._step_output(self._tssl_step(current, st, mode, reset_val))
