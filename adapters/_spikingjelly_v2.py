"""SpikingJelly 2.x forward for the TSSL-BP nodes.

SpikingJelly 2.0 neurons dispatch through ``functional.lif_multi_step`` /
``functional.if_multi_step`` (native CPU loop, CUDA/Triton kernels, or a Torch
reference, chosen by device, dtype and surrogate). The adapter calls those same
functions under ``no_grad`` with the node's own arguments, so spikes and
membrane values are the library's on every path, and recomputes the charged
membrane ``h`` with SpikingJelly's charge formula for the backward pass only.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor

from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import neuron, surrogate

from tssl_plugin.rule import WARMUP_WIDTH

from ._convert import SENSITIVITY_CAP
from ._spikingjelly_common import DETACH_RESET_NOTE, SpikingJellyVersion, TSSLNodeMixin, init_tssl

__all__ = ["TSSLLIFNode", "TSSLIFNode", "TSSLParametricLIFNode", "ORIGINALS", "lib_check", "DETACH_RESET_NOTE"]

def lib_check(node: Any, label: str = "") -> None:
    """Refuse SpikingJelly 2.x options the adapter cannot honour."""
    where = f" ({label})" if label else ""
    if getattr(node, "_neuron_precision", None) is not None:
        raise ValueError(
            f"{type(node).__name__}{where}: neuron precision (spikingjelly.activation_based.precision, "
            f"_neuron_precision={node._neuron_precision!r}) cannot be honoured by the TSSL-BP adapter; "
            f"convert before applying precision settings, or remove them"
        )


class _V2Engine(SpikingJellyVersion):
    """``_lib_run`` / ``_lib_charge`` with SpikingJelly 2.x arithmetic."""

    def _lib_check(self) -> None:
        lib_check(self)

    def _lib_run(self, x_seq: Tensor, single: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """Run SpikingJelly's own transition over ``x_seq`` ([T, ...], detached), update ``v``/``v_seq``.

        Returns ``(spikes, v_prev, v_post)``, each ``[T, ...]``: the spikes, the
        membrane entering each step and the membrane after each step's reset.
        """
        if single:
            states = self.materialize_states((x_seq[0],), tuple(self._memories.values()), "s")
        else:
            states = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        v0 = states[0].detach()
        with torch.no_grad():
            spikes, v_final, v_post = self._lib_multi_step(x_seq, v0)
        self._memories["v"] = v_final
        if single:
            if self.store_v_seq:
                self._append_v_seq(v_final)
        else:
            self.v_seq = v_post if self.store_v_seq else None
        v_prev = torch.cat((v0.unsqueeze(0), v_post[:-1]))
        return spikes, v_prev, v_post

    # SpikingJelly's functional API threads explicit states; the TSSL-BP carry is not one of them.
    def functional_forward(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(
            f"{type(self).__name__} does not support SpikingJelly's explicit-state functional API "
            f"(base.to_functional_forward, memopt checkpointing): its TSSL-BP carry is not a "
            f"SpikingJelly memory. Call the module directly, or revert() the model first."
        )

    single_step_functional_forward = functional_forward
    multi_step_functional_forward = functional_forward


class TSSLLIFNode(_V2Engine, TSSLNodeMixin, neuron.LIFNode):
    """SpikingJelly ``LIFNode`` with TSSL-BP gradients (forward unchanged).

    ``tau_m = tau``; ``decay_input=True`` is input scaling by ``1/tau``; hard
    reset to ``v_reset`` is the paper's rule on ``h - v_reset`` with threshold
    ``v_threshold - v_reset``; ``v_reset=None`` is the "subtract" extension.
    ``tau_s`` is the PSC time constant of the warm-up trace, ``warmup`` the
    reference warm-up surrogate for silent neurons and ``warmup_width`` its
    width (default 0.2, the reference's; docs/algorithm.md).
    """

    _TSSL_KIND = "lif"

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Any = 0.0, surrogate_function: Any = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, tau_s: float = 3.0, warmup: bool = True,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: float = SENSITIVITY_CAP):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset,
                         step_mode, store_v_seq)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap)

    def _lib_multi_step(self, x_seq: Tensor, v0: Tensor):
        spikes, v_final, v_post = sjf.lif_multi_step(
            x_seq, v0, self.tau, self.decay_input, self.v_threshold, self.v_reset,
            self.surrogate_function, self.detach_reset, True)
        return spikes, v_final, v_post

    def _lib_charge(self, x_seq: Tensor, v_prev: Tensor) -> Tensor:
        """SpikingJelly 2.x charge: ``v + (x - (v - V_r)) / tau`` or ``v - (v - V_r) / tau + x``."""
        x = x_seq.to(v_prev.dtype)
        rv = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v_prev + (x - (v_prev - rv)) / self.tau
        return v_prev - (v_prev - rv) / self.tau + x


class TSSLIFNode(_V2Engine, TSSLNodeMixin, neuron.IFNode):
    """SpikingJelly ``IFNode`` with TSSL-BP gradients: the no-leak limit ``1/tau_m = 0``."""

    _TSSL_KIND = "if"

    def __init__(self, v_threshold: float = 1.0, v_reset: Any = 0.0, surrogate_function: Any = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False, *,
                 tau_s: float = 3.0, warmup: bool = True,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: float = SENSITIVITY_CAP):
        super().__init__(v_threshold, v_reset, surrogate.Sigmoid(), detach_reset, step_mode, store_v_seq)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap)

    def _lib_multi_step(self, x_seq: Tensor, v0: Tensor):
        spikes, v_final, v_post = sjf.if_multi_step(
            x_seq, v0, self.v_threshold, self.v_reset, self.surrogate_function, self.detach_reset, True)
        return spikes, v_final, v_post

    def _lib_charge(self, x_seq: Tensor, v_prev: Tensor) -> Tensor:
        """SpikingJelly 2.x IF charge: ``v + x``."""
        return v_prev + x_seq.to(v_prev.dtype)


class TSSLParametricLIFNode(_V2Engine, TSSLNodeMixin, neuron.ParametricLIFNode):
    """SpikingJelly ``ParametricLIFNode`` with TSSL-BP gradients (forward unchanged).

    ``1/tau_m = sigmoid(w)`` (the node's learnable ``w``); otherwise as
    :class:`TSSLLIFNode`. The leak ``w`` learns through the leak current: the
    rule's input current ``I = sigmoid(w) (x - (v - V_r))`` (``decay_input=True``)
    or ``I = x - sigmoid(w) (v - V_r)`` receives the TSSL-BP gradient ``dL/dI``
    and ``dL/dw = sum_t dL/dI[t] dI[t]/dw`` (the snnTorch adapter's ``learn_beta`` rule).
    """

    _TSSL_KIND = "plif"

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Any = 0.0, surrogate_function: Any = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, tau_s: float = 3.0, warmup: bool = True,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: float = SENSITIVITY_CAP):
        super().__init__(init_tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset,
                         step_mode, store_v_seq)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap)

    def _lib_multi_step(self, x_seq: Tensor, v0: Tensor):
        spikes, v_final, v_post = sjf.plif_multi_step(
            x_seq, v0, self.w, self.decay_input, self.v_threshold, self.v_reset,
            self.surrogate_function, self.detach_reset, True)
        return spikes, v_final, v_post

    def _lib_charge(self, x_seq: Tensor, v_prev: Tensor) -> Tensor:
        """SpikingJelly 2.x PLIF charge with ``q = sigmoid(w)``: ``v + (x - (v - V_r)) q`` or ``v - (v - V_r) q + x``."""
        x = x_seq.to(v_prev.dtype)
        q = self.w.detach().sigmoid().to(v_prev.dtype)  # as SpikingJelly: q in the dtype of w
        rv = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v_prev + (x - (v_prev - rv)) * q
        return v_prev - (v_prev - rv) * q + x


#: original SpikingJelly class -> TSSL-BP class (exact types).
ORIGINALS = {neuron.LIFNode: TSSLLIFNode, neuron.IFNode: TSSLIFNode,
             neuron.ParametricLIFNode: TSSLParametricLIFNode}
