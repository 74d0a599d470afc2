"""SpikingJelly 0.0.0.0.14 forward for the TSSL-BP nodes.

0.0.0.0.14 neurons run ``neuronal_charge`` / ``neuronal_fire`` /
``neuronal_reset`` step by step in training mode (``backend='torch'``) and
TorchScript loops in eval mode. The adapter calls the original class's own
``single_step_forward`` (training, and single-step eval) or its own
``jit_eval_multi_step_forward_*_with_v_seq`` function (multi-step eval; the same
loop as the variant without ``v_seq``) under ``no_grad``, so spikes and
membranes are the library's, and recomputes the charged membrane ``h`` with the
same charge formula for the backward pass only. ``backend='cupy'`` is refused:
its CUDA kernels are a separate forward the adapter does not reproduce.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from spikingjelly.activation_based import neuron, surrogate

from ._convert import ADAPTER_WARMUP
from tssl_plugin.rule import WARMUP_WIDTH, Warmup

from ._spikingjelly_common import DETACH_RESET_NOTE, SpikingJellyVersion, TSSLNodeMixin, charge_steps, init_tssl

__all__ = ["TSSLLIFNode", "TSSLIFNode", "TSSLParametricLIFNode", "ORIGINALS", "lib_check", "DETACH_RESET_NOTE"]

def lib_check(node: Any, label: str = "") -> None:
    """Refuse SpikingJelly 0.0.0.0.14 options the adapter cannot honour."""
    where = f" ({label})" if label else ""
    backend = getattr(node, "_backend", "torch")
    if backend != "torch":
        raise ValueError(
            f"{type(node).__name__}{where}: backend={backend!r} cannot be honoured by the TSSL-BP adapter "
            f"(its kernels are a separate forward pass); use backend='torch' (functional.set_backend)"
        )


class _V014Engine(SpikingJellyVersion):
    """``_lib_run`` / ``_lib_charge`` with SpikingJelly 0.0.0.0.14 arithmetic."""

    _ORIGINAL: type
    #: whether the original class has 0.0.0.0.14's TorchScript eval loops (``jit_eval_multi_step_forward_*``)
    _EVAL_LOOP = True

    def _lib_check(self) -> None:
        lib_check(self)

    def _lib_run(self, x_seq: Tensor, single: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """Run 0.0.0.0.14's own forward over ``x_seq`` ([T, ...], detached); returns ``(spikes, v0, v_post)``."""
        original = type(self)._ORIGINAL
        with torch.no_grad():
            self.v_float_to_tensor(x_seq[0])
            if isinstance(self.v, Tensor) and self.v.requires_grad:
                self.v = self.v.detach()
            if single or self.training or not self._EVAL_LOOP:
                v0, spikes, v_post = self.v, [], []
                for t in range(x_seq.shape[0]):
                    spikes.append(original.single_step_forward(self, x_seq[t]))
                    v_post.append(self.v)
                spikes, v_post = torch.stack(spikes), torch.stack(v_post)
            else:
                v0 = self.v
                spikes, self.v, v_post = self._eval_loop()(x_seq, v0, *self._eval_args())
        if not single and self.store_v_seq:
            self.v_seq = v_post
        return spikes, v0, v_post

    def _eval_loop(self):
        reset = "soft" if self.v_reset is None else "hard"
        name = f"jit_eval_multi_step_forward_{reset}_reset{self._eval_suffix()}_with_v_seq"
        return getattr(type(self)._ORIGINAL, name)

    def _eval_args(self) -> tuple:
        args = (self.v_threshold,) if self.v_reset is None else (self.v_threshold, self.v_reset)
        return args + self._eval_extra()


class TSSLLIFNode(_V014Engine, TSSLNodeMixin, neuron.LIFNode):
    """SpikingJelly 0.0.0.0.14 ``LIFNode`` with TSSL-BP gradients (forward unchanged); see the 2.x class."""

    _TSSL_KIND = "lif"
    _ORIGINAL = neuron.LIFNode

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Any = 0.0, surrogate_function: Any = None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "torch", store_v_seq: bool = False, *,
                 tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset,
                         step_mode, backend, store_v_seq)
        lib_check(self)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap, ablation)

    def _eval_suffix(self) -> str:
        return "_decay_input" if self.decay_input else "_no_decay_input"

    def _eval_extra(self) -> tuple:
        return (self.tau,)

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """0.0.0.0.14 charge, as ``neuronal_charge`` (training) or the eval TorchScript loops compute it."""
        vr, tau = self.v_reset, self.tau
        reset0 = vr is None or vr == 0.0
        if self.decay_input and reset0:
            formula = lambda x, v, out: torch.add(v, (x.to(v.dtype) - v) / tau, out=out)  # noqa: E731
        elif self.decay_input:
            formula = lambda x, v, out: torch.add(v, (x.to(v.dtype) - (v - vr)) / tau, out=out)  # noqa: E731
        elif vr is None or (reset0 and self.training):
            formula = lambda x, v, out: torch.add(v * (1.0 - 1.0 / tau), x.to(v.dtype), out=out)  # noqa: E731
        else:
            formula = lambda x, v, out: torch.add(v - (v - vr) / tau, x.to(v.dtype), out=out)  # noqa: E731
        return charge_steps(formula, x_seq, v0, v_seq)


class TSSLIFNode(_V014Engine, TSSLNodeMixin, neuron.IFNode):
    """SpikingJelly 0.0.0.0.14 ``IFNode`` with TSSL-BP gradients: the no-leak limit."""

    _TSSL_KIND = "if"
    _ORIGINAL = neuron.IFNode

    def __init__(self, v_threshold: float = 1.0, v_reset: Any = 0.0, surrogate_function: Any = None,
                 detach_reset: bool = False, step_mode: str = "s", backend: str = "torch",
                 store_v_seq: bool = False, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(v_threshold, v_reset, surrogate.Sigmoid(), detach_reset, step_mode, backend, store_v_seq)
        lib_check(self)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap, ablation)

    def _eval_suffix(self) -> str:
        return ""

    def _eval_extra(self) -> tuple:
        return ()

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """0.0.0.0.14 IF charge: ``v + x``."""
        return charge_steps(lambda x, v, out: torch.add(v, x.to(v.dtype), out=out), x_seq, v0, v_seq)


class TSSLParametricLIFNode(_V014Engine, TSSLNodeMixin, neuron.ParametricLIFNode):
    """SpikingJelly 0.0.0.0.14 ``ParametricLIFNode`` with TSSL-BP gradients; see the 2.x class.

    0.0.0.0.14 has no TorchScript eval loop for PLIF: every mode runs its own
    ``single_step_forward`` step by step.
    """

    _TSSL_KIND = "plif"
    _ORIGINAL = neuron.ParametricLIFNode
    _EVAL_LOOP = False

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Any = 0.0, surrogate_function: Any = None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "torch", store_v_seq: bool = False, *,
                 tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(init_tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset,
                         step_mode, backend, store_v_seq)
        lib_check(self)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap, ablation)

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """0.0.0.0.14 PLIF ``neuronal_charge`` with ``q = sigmoid(w)``."""
        q = self.w.detach().sigmoid().to(v0.dtype)
        vr = self.v_reset
        reset0 = vr is None or vr == 0.0
        if self.decay_input and reset0:
            formula = lambda x, v, out: torch.add(v, (x.to(v.dtype) - v) * q, out=out)  # noqa: E731
        elif self.decay_input:
            formula = lambda x, v, out: torch.add(v, (x.to(v.dtype) - (v - vr)) * q, out=out)  # noqa: E731
        elif reset0:
            formula = lambda x, v, out: torch.add(v * (1.0 - q), x.to(v.dtype), out=out)  # noqa: E731
        else:
            formula = lambda x, v, out: torch.add(v - (v - vr) * q, x.to(v.dtype), out=out)  # noqa: E731
        return charge_steps(formula, x_seq, v0, v_seq)


#: original SpikingJelly class -> TSSL-BP class (exact types).
ORIGINALS = {neuron.LIFNode: TSSLLIFNode, neuron.IFNode: TSSLIFNode,
             neuron.ParametricLIFNode: TSSLParametricLIFNode}
