"""SpikingJelly 2.x forward for the TSSL-BP nodes.

SpikingJelly 2.0 neurons dispatch through ``functional.lif_multi_step`` /
``functional.if_multi_step`` (native CPU loop, CUDA/Triton kernels, or a Torch
reference, chosen by device, dtype and surrogate). The adapter calls those same
functions under ``no_grad`` with the node's own arguments, so spikes and
membrane values are the library's on every path, and recomputes the charged
membrane ``h`` with SpikingJelly's charge formula for the backward pass only.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import neuron, surrogate

from ._convert import ADAPTER_WARMUP
from tssl_plugin.rule import WARMUP_WIDTH, Warmup

from ._spikingjelly_common import (DETACH_RESET_NOTE, SpikingJellyVersion, TSSLNodeMixin, _compute_dtype, charge_steps,
                                   init_tssl)

__all__ = ["TSSLLIFNode", "TSSLIFNode", "TSSLParametricLIFNode", "TSSLCUBALIFNode", "TSSLSimpleLIFNode",
           "TSSLSimpleIFNode", "ORIGINALS", "lib_check", "DETACH_RESET_NOTE"]

def lib_check(node: Any, label: str = "") -> None:
    """Refuse SpikingJelly 2.x options the adapter cannot honour."""
    where = f" ({label})" if label else ""
    if getattr(node, "_neuron_precision", None) is not None:
        raise ValueError(
            f"{type(node).__name__}{where}: neuron precision (spikingjelly.activation_based.precision, "
            f"_neuron_precision={node._neuron_precision!r}) cannot be honoured by the TSSL-BP adapter; "
            f"convert before applying precision settings, or remove them"
        )


def _shifted(v: Tensor, rv: float) -> Tensor:
    """``v - V_r`` as SpikingJelly computes it; ``v`` itself for ``V_r = 0`` (``v - 0.0`` is ``v`` bit for bit,
    signed zeros, NaN and inf included), which saves a pass."""
    return v if rv == 0.0 else v - rv


class _V2Engine(SpikingJellyVersion):
    """``_lib_run`` / ``_lib_charge`` with SpikingJelly 2.x arithmetic."""

    def _lib_check(self) -> None:
        lib_check(self)

    def _lib_run(self, x_seq: Tensor, single: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """Run SpikingJelly's own transition over ``x_seq`` ([T, ...], detached), update ``v``/``v_seq``.

        Returns ``(spikes, v0, v_post)``: the spikes ``[T, ...]``, the membrane
        entering the first step and the membrane after each step's reset ``[T, ...]``.
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
        return spikes, v0, v_post

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
                 step_mode: str = "s", store_v_seq: bool = False, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset,
                         step_mode, store_v_seq)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap, ablation)

    def _lib_multi_step(self, x_seq: Tensor, v0: Tensor):
        spikes, v_final, v_post = sjf.lif_multi_step(
            x_seq, v0, self.tau, self.decay_input, self.v_threshold, self.v_reset,
            self.surrogate_function, self.detach_reset, True)
        return spikes, v_final, v_post

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """SpikingJelly 2.x charge: ``v + (x - (v - V_r)) / tau`` or ``v - (v - V_r) / tau + x``."""
        rv = 0.0 if self.v_reset is None else self.v_reset
        tau = self.tau
        if self.decay_input:
            return charge_steps(lambda x, v, out: torch.add(v, (x.to(v.dtype) - _shifted(v, rv)) / tau, out=out),
                                x_seq, v0, v_seq)
        return charge_steps(lambda x, v, out: torch.add(v - _shifted(v, rv) / tau, x.to(v.dtype), out=out),
                            x_seq, v0, v_seq)


class TSSLIFNode(_V2Engine, TSSLNodeMixin, neuron.IFNode):
    """SpikingJelly ``IFNode`` with TSSL-BP gradients: the no-leak limit ``1/tau_m = 0``."""

    _TSSL_KIND = "if"

    def __init__(self, v_threshold: float = 1.0, v_reset: Any = 0.0, surrogate_function: Any = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False, *,
                 tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(v_threshold, v_reset, surrogate.Sigmoid(), detach_reset, step_mode, store_v_seq)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap, ablation)

    def _lib_multi_step(self, x_seq: Tensor, v0: Tensor):
        spikes, v_final, v_post = sjf.if_multi_step(
            x_seq, v0, self.v_threshold, self.v_reset, self.surrogate_function, self.detach_reset, True)
        return spikes, v_final, v_post

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """SpikingJelly 2.x IF charge: ``v + x``."""
        return charge_steps(lambda x, v, out: torch.add(v, x.to(v.dtype), out=out), x_seq, v0, v_seq)


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
                 step_mode: str = "s", store_v_seq: bool = False, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(init_tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset,
                         step_mode, store_v_seq)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap, ablation)

    def _lib_multi_step(self, x_seq: Tensor, v0: Tensor):
        spikes, v_final, v_post = sjf.plif_multi_step(
            x_seq, v0, self.w, self.decay_input, self.v_threshold, self.v_reset,
            self.surrogate_function, self.detach_reset, True)
        return spikes, v_final, v_post

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """SpikingJelly 2.x PLIF charge with ``q = sigmoid(w)``: ``v + (x - (v - V_r)) q`` or ``v - (v - V_r) q + x``."""
        q = self.w.detach().sigmoid().to(v0.dtype)  # as SpikingJelly: q in the dtype of w
        rv = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return charge_steps(lambda x, v, out: torch.add(v, (x.to(v.dtype) - _shifted(v, rv)) * q, out=out),
                                x_seq, v0, v_seq)
        return charge_steps(lambda x, v, out: torch.add(v - _shifted(v, rv) * q, x.to(v.dtype), out=out),
                            x_seq, v0, v_seq)


class TSSLCUBALIFNode(_V2Engine, TSSLNodeMixin, neuron.CUBALIFNode):
    r"""SpikingJelly ``CUBALIFNode`` with TSSL-BP gradients for its LIF part (forward unchanged).

    SpikingJelly 2.x (``functional.cuba_lif_step``), per step::

        c[t] = c_decay c[t-1] + x[t]          (synaptic current; a memory like v)
        h[t] = v_decay v[t-1] + c[t]           (charge)
        s[t] = [h[t] >= v_threshold]           (fire)
        v[t] = h[t] (1 - s[t]) + V_r s[t]      (hard reset; v_reset=None: h[t] - v_threshold s[t])

    The filter ``c`` is linear and differentiated by ordinary autograd (``x`` and
    an incoming ``c`` get their exact gradients through it). The membrane part is
    the core's neuron with input current ``c[t] - V_r (1 - v_decay)``,
    ``1/tau_m = 1 - v_decay`` (``v_decay = 1``: no leak), threshold
    ``v_threshold - V_r`` and the paper's reset to zero on ``h - V_r`` (the
    "subtract" extension for ``v_reset=None``); its gradient ``dL/dc[t]`` comes
    from the core step node (``step_mode='s'``) or the whole-sequence op
    (``'m'``). The warm-up trace's time constant is the synapse's own,
    ``tau_s = 1/(1 - c_decay)`` (:attr:`tau_s`; ``convert(tau_s=...)`` does
    not change it).

    The paper's network: with ``c_decay = 1 - 1/tau_s``, ``v_decay = 1 - 1/tau_m``,
    ``v_reset = 0`` and weights ``W / tau_s`` on the spikes of the layer before,
    ``c[t] = W a[t]`` (``a`` the paper's PSC), so a network of CUBALIF nodes is
    TSSL-BP's network (docs/spikingjelly.md), up to SpikingJelly firing at
    ``h >= theta`` where the paper fires at ``u > theta`` (equal except on exact ties).
    ``c_decay`` and ``v_decay`` are Python floats (SpikingJelly has no learnable
    CUBA decays); ``c_decay`` must be in [0, 1) and ``v_decay`` in (0, 1].
    """

    _TSSL_KIND = "cuba"
    _tssl_cuba: Any = None  # (c0, c_seq, single) of the running call, between _lib_run and _tssl_input

    def __init__(self, c_decay: float = 0.5, v_decay: float = 0.75, v_threshold: float = 0.5,
                 v_reset: Any = 0.0, surrogate_function: Any = None, *, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None,
                 ablation: str = "none"):
        super().__init__(c_decay, v_decay, v_threshold, v_reset, surrogate.Rect())
        # tau_s: property
        init_tssl(self, surrogate_function, False, 1.0, warmup, warmup_width, sensitivity_cap, ablation)
        self._tssl_mapping()

    @property
    def tau_s(self) -> float:
        """The warm-up trace's PSC time constant: the synapse's own, ``1 / (1 - c_decay)``."""
        c_decay = self.c_decay
        return 1.0 / (1.0 - c_decay) if c_decay < 1 else float("inf")

    @tau_s.setter
    def tau_s(self, value: Any) -> None:
        """Not settable: ``convert(tau_s=...)`` sets LIF/IF nodes' trace constant; a CUBA node's is its synapse's."""

    def _tssl_check_common(self) -> None:
        self._tssl_mapping()  # c_decay / v_decay first: their own message, not tau_s's
        super()._tssl_check_common()

    def _tssl_learns(self, x: Tensor) -> bool:
        c0 = self._tssl_cuba[0]
        return torch.is_grad_enabled() and (x.requires_grad or (isinstance(c0, Tensor) and c0.requires_grad))

    def _lib_run(self, x_seq: Tensor, single: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """SpikingJelly's own ``CUBALIFNode`` step over ``x_seq`` (detached), updating ``v``, ``c`` and ``v_seq``."""
        inputs = (x_seq[0],) if single else (x_seq,)
        v0, c0 = self.materialize_states(inputs, tuple(self._memories.values()), "s" if single else "m")[:2]
        spikes, v_post, cs = [], [], []
        with torch.no_grad():
            v, c = v0.detach(), c0.detach()
            for t in range(x_seq.shape[0]):
                (spike,), (v, c) = neuron.CUBALIFNode.single_step_functional_forward(self, (x_seq[t],), (v, c))
                spikes.append(spike)
                v_post.append(v)
                cs.append(c)
        v_post_seq = torch.stack(v_post)
        self._memories["v"], self._memories["c"] = v, c
        self._tssl_cuba = (c0, torch.stack(cs), single)
        if single:
            if self.store_v_seq:
                self._append_v_seq(v)
        else:
            self.v_seq = v_post_seq if self.store_v_seq else None
        return torch.stack(spikes), v0.detach(), v_post_seq

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """SpikingJelly 2.x CUBA charge ``v * v_decay + c`` (``c`` as the library computed it)."""
        v_decay = self.v_decay
        return charge_steps(lambda c, v, out: torch.add(v * v_decay, c.to(v.dtype), out=out), self._tssl_cuba[1],
                            v0, v_seq)

    def _tssl_input(self, x: Tensor, v_prev: Optional[Tensor], vr: float, scale: float) -> Tuple[Tensor, float]:
        """The synaptic current ``c`` rebuilt with autograd (the same operations as SpikingJelly's), scale 1.

        Its last value becomes the node's ``c`` memory, carrying the graph into the next call as
        SpikingJelly's own node does (``reset_net``/``detach_net`` end or cut it).
        """
        c0, _, single = self._tssl_cuba
        c = c0
        if single:
            c = c * self.c_decay + x
            out = c
        else:
            steps = []
            for t in range(x.shape[0]):
                c = c * self.c_decay + x[t]
                steps.append(c)
            out = torch.stack(steps)
        self._memories["c"] = c
        cd = _compute_dtype(x)
        return (out if out.dtype == cd else out.to(cd)), 1.0

    def single_step_forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        try:
            return super().single_step_forward(x, *args, **kwargs)
        finally:
            self._tssl_cuba = None

    def multi_step_forward(self, x_seq: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        try:
            return super().multi_step_forward(x_seq, *args, **kwargs)
        finally:
            self._tssl_cuba = None

    def _tssl_reshape_state(self, shape: Tuple[int, ...]) -> None:
        super()._tssl_reshape_state(shape)
        c = self._memories.get("c")
        if isinstance(c, Tensor) and c.numel() == 1:
            self._memories["c"] = c.reshape(shape)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_tssl_cuba", None)
        return state


class _SimpleEngine(SpikingJellyVersion):
    """SpikingJelly 2.x's pure-PyTorch nodes (``SimpleBaseNode``): their own ``neuronal_charge``,
    ``neuronal_fire`` and ``neuronal_reset`` run step by step under ``no_grad`` (the node's own arithmetic,
    so bit for bit); the charged membrane ``h`` of each step is kept for the backward."""

    _tssl_h: Any = None  # [T, ...] charged membranes of the running call, between _lib_run and _lib_charge

    def _lib_check(self) -> None:
        lib_check(self)

    def _lib_run(self, x_seq: Tensor, single: bool) -> Tuple[Tensor, Tensor, Tensor]:
        spikes, v_post, hs = [], [], []
        v = self.v  # a float until the first step, as SpikingJelly keeps it
        v0 = v.detach() if isinstance(v, Tensor) else torch.full_like(x_seq[0], v)
        with torch.no_grad():
            for x in x_seq:
                self.neuronal_charge(x)
                hs.append(self.v)
                spike = self.neuronal_fire()
                self.neuronal_reset(spike)
                spikes.append(spike)
                v_post.append(self.v)
        self._tssl_h = torch.stack(hs)
        return torch.stack(spikes), v0, torch.stack(v_post)

    def _lib_charge(self, x_seq: Tensor, v0: Tensor, v_seq: Tensor) -> Tensor:
        """The node's own charged membrane, as its ``neuronal_charge`` computed it in :meth:`_lib_run`."""
        h, self._tssl_h = self._tssl_h, None
        return h

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_tssl_h", None)
        return state


class TSSLSimpleLIFNode(_SimpleEngine, TSSLNodeMixin, neuron.SimpleLIFNode):
    """SpikingJelly 2.x ``SimpleLIFNode`` with TSSL-BP gradients (forward: the node's own methods).

    Its charge ``h = v + (V_r - v + x) / tau`` (``decay_input=True``) or ``v + (V_r - v) / tau + x`` is
    ``LIFNode``'s (the same equation, another order of operations), and so are its fire and reset: the
    mapping and the rule are :class:`TSSLLIFNode`'s.
    """

    _TSSL_KIND = "lif"

    def __init__(self, tau: float, decay_input: bool, v_threshold: float = 1.0, v_reset: float = 0.0,
                 surrogate_function: Any = None, detach_reset: bool = False, step_mode: str = "s", *,
                 tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH,
                 sensitivity_cap: Optional[float] = None):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate.Sigmoid(), detach_reset, step_mode)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap)


class TSSLSimpleIFNode(_SimpleEngine, TSSLNodeMixin, neuron.SimpleIFNode):
    """SpikingJelly 2.x ``SimpleIFNode`` with TSSL-BP gradients: ``h = v + x``, :class:`TSSLIFNode`'s rule."""

    _TSSL_KIND = "if"

    def __init__(self, v_threshold: float = 1.0, v_reset: Any = 0.0, surrogate_function: Any = None,
                 detach_reset: bool = False, step_mode: str = "s", *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP,
                 warmup_width: float = WARMUP_WIDTH, sensitivity_cap: Optional[float] = None):
        super().__init__(v_threshold, v_reset, surrogate.Sigmoid(), detach_reset, step_mode)
        init_tssl(self, surrogate_function, detach_reset, tau_s, warmup, warmup_width, sensitivity_cap)


#: original SpikingJelly class -> TSSL-BP class (exact types).
ORIGINALS = {neuron.LIFNode: TSSLLIFNode, neuron.IFNode: TSSLIFNode,
             neuron.ParametricLIFNode: TSSLParametricLIFNode, neuron.CUBALIFNode: TSSLCUBALIFNode,
             neuron.SimpleLIFNode: TSSLSimpleLIFNode, neuron.SimpleIFNode: TSSLSimpleIFNode}
