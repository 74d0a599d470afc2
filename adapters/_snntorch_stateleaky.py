r"""TSSL-BP versions of snnTorch's whole-sequence neurons: :class:`TSSLStateLeaky`, :class:`TSSLLinearLeaky`.

``snn.StateLeaky`` (snnTorch 1.0) computes the membrane of a whole sequence ``[T, B, C]`` at once, as a
depthwise causal convolution of the input with the decay kernel ``exp(-k / tau)`` (``tau = 1/(1 - beta)``),
and fires where ``mem > threshold``; nothing resets the membrane. ``snn.LinearLeaky`` is the same neuron
behind its own ``nn.Linear``. Without kernel truncation the convolution is the first-order recurrence

.. math::

    mem[t] = d\, mem[t-1] + x[t], \qquad d = e^{-1/\tau},

so the layer is the core's LIF neuron with ``1/tau_m = 1 - d`` and ``reset="none"``, and its spikes get
the rule's gradient (:mod:`tssl_plugin.rule`) through
:func:`tssl_plugin.functional.spikes_with_host_grad` on the host's own membrane: ``h = v = mem`` (no
reset), ``v0 = 0``. The forward is snnTorch's, bit for bit (its convolution, its ``fire``); only the
spikes' gradient changes. A loss on the returned membrane (tutorial 8's ``sum_t CrossEntropy(mem[t], y)``)
gets snnTorch's own membrane gradient through the convolution, as :class:`TSSLLeaky`'s does. A learnable
``beta`` (``learn_beta=True``: snnTorch learns ``tau``) gets the rule's gradient of the leak current
``d mem[t-1]`` (:class:`TSSLLeaky`'s rule for ``learn_beta``) plus its membrane gradient.

Refused, besides :class:`TSSLLeaky`'s refusals (``state_quant``, graded or learnable spike factors,
``learn_threshold``, ``surrogate_disable``, a threshold ``<= 0``): ``tau <= 0`` (``beta > 1``), and, at a
forward with spikes, a ``kernel_truncation_steps`` shorter than the sequence (a truncated kernel is no
longer a recurrence the rule can carry an error through). ``output=False`` returns the membrane alone, as
snnTorch does: there are no spikes to differentiate, so the layer is snnTorch's.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from tssl_plugin._optional import require
from tssl_plugin.functional import HostTrace, spikes_with_host_grad
from tssl_plugin.rule import WARMUP_WIDTH, LIFConstants, Warmup, resolve_gate, warmup_gate, warmup_level

from ._convert import (ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, checked_options, crossing_for, observe_firing,
                       sensitivity_cap_for, set_options, warmup_width_for)
from .snntorch import TSSLLeaky, _finish_init, _refuse, _restore_spike_grad

snn = require("snntorch", "snntorch")

__all__ = ["TSSLStateLeaky", "TSSLLinearLeaky", "truncation_refusal"]


def truncation_refusal(module: nn.Module, steps: int) -> Optional[str]:
    """Why ``module``'s ``kernel_truncation_steps`` rules out TSSL-BP for a sequence of ``steps``; None if it
    does not (unset, or at least ``steps`` long: then it truncates nothing)."""
    k = getattr(module, "kernel_truncation_steps", None)
    if k is None or k >= steps:
        return None
    return (f"kernel_truncation_steps={k} < T={steps}: the truncated kernel drops the membrane's older input, so it "
            f"is no longer the leaky recurrence mem[t] = d mem[t-1] + x[t] that TSSL-BP carries its error "
            f"through; use kernel_truncation_steps=None (or convert(net, exclude=[this layer]))")


class _StateLeakyRule:
    """The TSSL-BP part shared by :class:`TSSLStateLeaky` and :class:`TSSLLinearLeaky` (mixed in first)."""

    #: the class defaults, so a layer pickled before an option existed loads with its default.
    warmup_width: float = WARMUP_WIDTH
    sensitivity_cap: Optional[float] = None
    ablation: str = "none"
    warmup_floor: bool = ADAPTER_WARMUP_FLOOR
    crossing: Optional[str] = None  # reset "none": the reference's "step" unless convert(crossing=...) says otherwise

    def _tssl_setup(self, options: Dict[str, Any]) -> None:
        set_options(self, options)

    def _check_options(self, steps: int) -> None:
        if torch.compiler.is_compiling():
            TSSLLeaky._check_options(self)  # the options' types only: a compiled graph reads no tensor's value
        else:
            _refuse(self)
            if not bool(torch.all(self.tau.detach() > 0)):
                raise ValueError(f"TSSL-BP cannot be used with this {type(self).__name__}: beta > 1 (tau <= 0) makes "
                                 f"the membrane grow without bound; use 0 <= beta < 1")
        why = truncation_refusal(self, steps)
        if why is not None:
            raise ValueError(f"TSSL-BP cannot be used with this {type(self).__name__}: {why}")

    def _decay(self) -> Tensor:
        """``d = exp(-1/tau)``, the per-step factor of snnTorch's decay kernel (with ``tau``'s graph)."""
        return torch.exp(-1.0 / self.tau)

    def _constants(self, like: Tensor) -> LIFConstants:
        threshold = self.threshold.detach().to(like.dtype)
        gate = warmup_gate(self.warmup) or "trace"
        return LIFConstants(inv_tau_m=(1 - self._decay().detach()).to(like.dtype), inv_tau_s=1.0 / self.tau_s,
                            threshold=threshold, warmup_level=warmup_level(self.tau_s),
                            warmup_gate=resolve_gate(gate, 1.0),  # tau > 0: every StateLeaky leaks
                            reset="none", warmup_width=warmup_width_for(self.warmup_width, threshold),
                            sensitivity_cap=sensitivity_cap_for("none", self.sensitivity_cap) / threshold,
                            ablation=self.ablation, warmup_floor=self.warmup_floor,
                            crossing=crossing_for("none", self.crossing))

    def _current(self, x: Tensor, mem: Tensor) -> Tensor:
        """The tensor that receives ``dL/dx``: ``x``, plus the leak current ``d mem[t-1]`` when ``tau`` learns."""
        if not (self.tau.requires_grad and torch.is_grad_enabled()):
            return x
        previous = torch.cat((torch.zeros_like(mem[:1]), mem[:-1])).detach()
        return x + self._decay().to(x.dtype) * previous

    def _tssl_spikes(self, x: Tensor, mem: Tensor) -> Tensor:
        """The host's spikes of membrane ``mem`` (driven by ``x``), snnTorch's ``fire`` times its spike factor as
        its forward computes them, with the TSSL-BP gradient to ``x``."""
        with torch.no_grad():
            spk = self.fire(mem.detach()) * self.graded_spikes_factor
        current = self._current(x, mem)
        if not (torch.is_grad_enabled() and current.requires_grad):
            return spk
        # snnTorch's membrane is time-last in memory: one contiguous copy serves as h and v, and the spikes go out
        # contiguous, so the next layer's reshape is a view and autograd saves one copy of them, not two; v0 is
        # one broadcast zero (saved for the backward at 4 bytes)
        m = mem.detach().contiguous()
        k = self._constants(current)
        v0 = m.new_zeros(()).expand(m.shape[1:])
        out = spikes_with_host_grad(current, HostTrace(m, v0, m, spk.contiguous(), 0.0), k,
                                    warmup=self.warmup is not False)
        observe_firing(self, spk, steps=spk.shape[0])
        return out.to(spk.dtype)

    __getstate__ = TSSLLeaky.__getstate__

    def __setstate__(self, state):
        super().__setstate__(state)
        _restore_spike_grad(self)

    extra_repr = TSSLLeaky.extra_repr


class TSSLStateLeaky(_StateLeakyRule, snn.StateLeaky):
    """``snn.StateLeaky`` with TSSL-BP gradients for its spikes (module docstring).

    Same constructor as ``snn.StateLeaky`` plus ``tau_s``, ``warmup``, ``warmup_width``, ``sensitivity_cap``
    and ``ablation`` (as :class:`TSSLLeaky`); same ``(spk, mem)`` return, buffers and ``state_dict`` keys.

    Example::

        lif = TSSLStateLeaky(beta=0.95, channels=1)
        spk, mem = lif(cur)            # cur: [T, B, C]; spk's gradient is TSSL-BP's
    """

    def __init__(self, beta, channels, threshold=1.0, spike_grad=None, surrogate_disable=False, learn_beta=False,
                 learn_threshold=False, state_quant=False, output=True, graded_spikes_factor=1.0,
                 learn_graded_spikes_factor=False, kernel_truncation_steps=None, *, tau_s: float = 3.0,
                 warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH,
                 sensitivity_cap: Optional[float] = None, ablation: str = "none"):
        tssl = checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation)
        super().__init__(beta, channels, threshold, spike_grad, surrogate_disable, learn_beta, learn_threshold,
                         state_quant, output, graded_spikes_factor, learn_graded_spikes_factor,
                         kernel_truncation_steps)
        _finish_init(self, spike_grad, surrogate_disable, tssl)

    def forward(self, input_):
        """Exactly ``snn.StateLeaky.forward``: ``(spk, mem)``, or ``mem`` alone with ``output=False``."""
        if not self.output:
            return snn.StateLeaky.forward(self, input_)
        self._check_options(input_.shape[0])
        mem = self._base_state_function(input_)
        self.spk = self._tssl_spikes(input_, mem)
        return self.spk, mem


class TSSLLinearLeaky(_StateLeakyRule, snn.LinearLeaky):
    """``snn.LinearLeaky`` (``nn.Linear`` then a ``StateLeaky`` membrane) with TSSL-BP gradients for its spikes.

    Same constructor as ``snn.LinearLeaky`` plus the TSSL-BP options of :class:`TSSLStateLeaky`; same return,
    buffers, ``state_dict`` keys (its ``linear`` included).
    """

    def __init__(self, beta, in_features, out_features, bias=True, device=None, dtype=None, threshold=1.0,
                 spike_grad=None, surrogate_disable=False, learn_beta=False, learn_threshold=False,
                 state_quant=False, output=True, graded_spikes_factor=1.0, learn_graded_spikes_factor=False,
                 kernel_truncation_steps=None, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None, ablation: str = "none"):
        tssl = checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation)
        super().__init__(beta, in_features, out_features, bias, device, dtype, threshold, spike_grad,
                         surrogate_disable, learn_beta, learn_threshold, state_quant, output, graded_spikes_factor,
                         learn_graded_spikes_factor, kernel_truncation_steps)
        _finish_init(self, spike_grad, surrogate_disable, tssl)

    def forward(self, input_):
        """Exactly ``snn.LinearLeaky.forward``: ``(spk, mem)``, or ``mem`` alone with ``output=False``."""
        if not self.output:
            return snn.LinearLeaky.forward(self, input_)
        num_steps, batch, _ = input_.shape
        self._check_options(num_steps)
        current = self.linear(input_.reshape(-1, self.linear.in_features))
        current = current.reshape(num_steps, batch, self.linear.out_features)
        self.mem = self._base_state_function(current)
        self.spk = self._tssl_spikes(current, self.mem)
        return self.spk, self.mem
