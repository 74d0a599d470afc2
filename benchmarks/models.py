r"""One architecture description -> the equivalent spiking network in each library.

An architecture is a list of :class:`Layer` records (``fc``, ``conv``, ``pool``,
``flatten``). Every ``fc``/``conv`` synapse (bias-free, as in the paper) is
followed by a layer of LIF neurons with the same constants in every library::

    u[t] = (1 - 1/tau_m) * v[t-1] + x[t],   o[t] = [u[t] > theta],   v[t] = u[t] (1 - o[t])

* native (``tssl_plugin``): synapses act on the PSC ``a`` of the previous layer,
  neurons are :class:`tssl_plugin.TSSLNeuron` (output PSC), as in the paper;
* snnTorch: ``snn.Leaky(beta=1-1/tau_m, threshold=theta, reset_mechanism="zero")``
  called once per time step with an explicit membrane (the snnTorch tutorial loop);
* SpikingJelly: ``neuron.LIFNode(tau=tau_m, decay_input=False, v_reset=0.0)`` in
  multi-step mode (``step_mode="m"``), synapses from ``spikingjelly...layer``.

* synaptic host networks (:func:`build_snntorch_synaptic`, :func:`build_spikingjelly_cuba`):
  ``snn.Synaptic`` / ``neuron.CUBALIFNode`` neurons, whose synaptic current filter is the
  paper's PSC: the paper's network built from host layers (see :class:`SynapticHostNet`).

``reset="subtract"`` selects each library's reset by subtraction instead (an
extension of the paper for TSSL-BP). Pooling is the paper's sum pooling times
1.1 (a fixed convolution of weight 1.1), with no neuron after it.

:func:`initial_weights` draws the synaptic weights once per seed; every
builder copies them, so all backends start from the same weights.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tssl_plugin.rule import WARMUP_WIDTH, Warmup

__all__ = [
    "Layer", "Arch", "NeuronCfg", "ARCHITECTURES", "make_arch", "initial_weights", "layer_input_shapes",
    "SumPool", "SpikingNet", "NATIVE_BETWEEN", "build_native", "build_snntorch", "build_spikingjelly",
    "SynapticHostNet", "build_snntorch_synaptic", "build_spikingjelly_cuba", "unfilter",
]

#: what the native network's hidden layers pass to the next layer: ``psc`` (the paper's network) or
#: ``spike`` (binary spikes, as the library networks do: the same network as ``snntorch:tssl`` /
#: ``spikingjelly:tssl``, to separate the gradient from the network).
NATIVE_BETWEEN = ("psc", "spike")


@dataclass(frozen=True)
class Layer:
    """One layer: ``kind`` in fc/conv/pool/flatten; ``out`` features or channels; ``k`` kernel."""

    kind: str
    out: int = 0
    k: int = 0
    padding: int = 0
    weight_scale: float = 1.0  # the official code's per-layer ``weight_scale`` (used by ``init="paper"``)


@dataclass(frozen=True)
class Arch:
    """A named layer list, e.g. the paper's ``15C5-P2-40C5-P2-300-10``."""

    name: str
    layers: Tuple[Layer, ...]

    def describe(self) -> str:
        """Paper notation, e.g. ``64-400-400-10`` or ``15C5-P2-...``."""
        parts = []
        for layer in self.layers:
            if layer.kind == "fc":
                parts.append(str(layer.out))
            elif layer.kind == "conv":
                parts.append(f"{layer.out}C{layer.k}")
            elif layer.kind == "pool":
                parts.append(f"P{layer.k}")
        return "-".join(parts)


@dataclass(frozen=True)
class NeuronCfg:
    """Neuron constants shared by every backend."""

    tau_m: float = 5.0
    tau_s: float = 3.0
    threshold: float = 1.0
    reset: str = "zero"  # or "subtract"
    #: TSSL-BP's cap on the spike-time sensitivity, in units of 1/threshold; None: each side's own default
    #: (the native network the reference's absolute 8, the adapters' convert 8 for a zero reset and
    #: 1/threshold for a reset by subtraction).
    sensitivity_cap: Optional[float] = None
    #: what TSSL-BP's spike-time sensitivity measures (``tssl_plugin.rule.CROSSINGS``); None: each side's own
    #: default (the native network the reference's ``"step"``, the adapters' convert ``"interpolated"`` for a zero
    #: reset and ``"step"`` for a reset by subtraction).
    crossing: Optional[str] = None

    def native_sensitivity_cap(self) -> float:
        """The absolute cap for the native network's :class:`tssl_plugin.TSSLNeuron`."""
        from tssl_plugin.rule import SENSITIVITY_CAP

        return SENSITIVITY_CAP if self.sensitivity_cap is None else self.sensitivity_cap / self.threshold

    def native_crossing(self) -> str:
        """The crossing for the native network's :class:`tssl_plugin.TSSLNeuron`."""
        return "step" if self.crossing is None else self.crossing

    def convert_options(self) -> Dict[str, Any]:
        """The keyword arguments for an adapter's ``convert`` (none: its default cap and crossing)."""
        options: Dict[str, Any] = {} if self.sensitivity_cap is None else {"sensitivity_cap": self.sensitivity_cap}
        if self.crossing is not None:
            options["crossing"] = self.crossing
        return options


_CONV_TOKEN = re.compile(r"^(\d+)C(\d+)(?:p(\d+))?(?:w(\d+(?:\.\d+)?))?$")


def _conv_stack(spec: str) -> List[Layer]:
    """Layers of a spec such as ``32C5p2-P2-1024``: ``<ch>C<k>[p<padding>][w<weight_scale>]``, ``P<k>``, ``<n>``."""
    out: List[Layer] = []
    for tok in spec.split("-"):
        conv = _CONV_TOKEN.match(tok)
        if tok.startswith("P"):
            out.append(Layer("pool", k=int(tok[1:])))
        elif conv:
            ch, k, pad, scale = conv.groups()
            out.append(Layer("conv", out=int(ch), k=int(k), padding=int(pad or 0), weight_scale=float(scale or 1)))
        else:
            if out and out[-1].kind in ("conv", "pool"):
                out.append(Layer("flatten"))
            out.append(Layer("fc", out=int(tok)))
    return out


#: the paper's networks (its results table) by name; ``mlp`` takes ``hidden`` sizes.
ARCHITECTURES: Dict[str, str] = {
    "mlp": "fully connected, hidden sizes from --hidden (paper: 400-400)",
    "mnist-cnn": "15C5-P2-40C5-P2-300-10 (paper, MNIST; no padding)",
    "fmnist-cnn": "32C5-P2-64C5-P2-1024-10 (paper, Fashion-MNIST; 5x5 convolutions with padding 2)",
    "nmnist-cnn": "12C5-P2-64C5-P2-10 (paper, N-MNIST; first convolution with padding 1)",
    "cifar10-cnn1": "96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024-10 (paper, CIFAR-10 CNN1; padding 1)",
}
#: padding (``p``) and weight_scale (``w``) from the official Networks/*.yaml (stonezwr/TSSL-BP).
_CONV_SPECS = {
    "mnist-cnn": "15C5-P2-40C5-P2-300",
    "fmnist-cnn": "32C5p2-P2-64C5p2-P2-1024",
    "nmnist-cnn": "12C5p1-P2-64C5-P2",
    "cifar10-cnn1": "96C3p1w5-256C3p1w5-P2-384C3p1w5-P2-384C3p1w5-256C3p1w5-1024-1024",
}


def make_arch(name: str, n_class: int, hidden: Sequence[int] = (400, 400)) -> Arch:
    """The architecture ``name`` (see :data:`ARCHITECTURES`) ending in ``n_class`` outputs."""
    if name == "mlp":
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"--hidden sizes must be positive integers, got {list(hidden)}")
        layers = [Layer("flatten")] + [Layer("fc", out=int(h)) for h in hidden] + [Layer("fc", out=n_class)]
    elif name in _CONV_SPECS:
        layers = _conv_stack(_CONV_SPECS[name])
        if layers[-1].kind in ("conv", "pool"):
            layers.append(Layer("flatten"))
        layers.append(Layer("fc", out=n_class))
    else:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(ARCHITECTURES)}")
    return Arch(name, tuple(layers))


def _shapes(arch: Arch, in_shape: Sequence[int]) -> List[Tuple[int, ...]]:
    """Input shape of every layer (per sample), checking that the network fits the data."""
    shape = tuple(int(s) for s in in_shape)
    shapes = []
    for layer in arch.layers:
        shapes.append(shape)
        if layer.kind == "flatten":
            shape = (math.prod(shape),)
        elif layer.kind == "fc":
            if len(shape) != 1:
                raise ValueError(f"{arch.name}: fc layer got a {shape} input; add a flatten")
            shape = (layer.out,)
        elif layer.kind == "conv":
            if len(shape) != 3:
                raise ValueError(f"{arch.name}: conv layer needs [C, H, W] input, got {shape}")
            c, h, w = shape
            h2, w2 = h + 2 * layer.padding - layer.k + 1, w + 2 * layer.padding - layer.k + 1
            if h2 < 1 or w2 < 1:
                raise ValueError(f"{arch.name} does not fit input {tuple(in_shape)}: {layer.k}x{layer.k} conv on {h}x{w}")
            shape = (layer.out, h2, w2)
        elif layer.kind == "pool":
            c, h, w = shape
            if h < layer.k or w < layer.k:
                raise ValueError(f"{arch.name} does not fit input {tuple(in_shape)}: pool {layer.k} on {h}x{w}")
            shape = (c, h // layer.k, w // layer.k)
    shapes.append(shape)
    return shapes


def layer_input_shapes(arch: Arch, in_shape: Sequence[int]) -> List[Tuple[int, ...]]:
    """Per-sample input shape of every layer of ``arch`` (ValueError if the network does not fit the data)."""
    return _shapes(arch, in_shape)[:-1]


def initial_weights(arch: Arch, in_shape: Sequence[int], seed: int, gain: float = 1.0,
                    init: str = "default") -> List[Tensor]:
    """Weights of every synapse, drawn once from ``seed``, times ``gain``.

    ``init="default"``: PyTorch's ``nn.Linear``/``nn.Conv2d`` default, uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``. ``init="paper"``: the official TSSL-BP code's,
    ``fc`` weights normal with std ``sqrt(2 / fan_in)`` (``kaiming_normal_``), ``conv`` weights
    PyTorch's default, each times the layer's ``weight_scale``.
    """
    if init not in ("default", "paper"):
        raise ValueError(f"unknown init {init!r}; valid: default, paper")
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for layer, shape in zip(arch.layers, _shapes(arch, in_shape)):
        if layer.kind == "fc":
            w = torch.empty(layer.out, shape[0])
        elif layer.kind == "conv":
            w = torch.empty(layer.out, shape[0], layer.k, layer.k)
        else:
            continue
        fan_in = w[0].numel()
        if init == "paper" and layer.kind == "fc":
            w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
        else:
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)), nn.Linear/Conv2d default
            w.uniform_(-bound, bound, generator=gen)
        scale = layer.weight_scale if init == "paper" else 1.0
        out.append(w * (gain * scale))
    return out


class SumPool(nn.Module):
    """The paper's pooling: sum over ``k x k`` windows times ``scale`` (1.1), on ``[B, C, H, W]``."""

    def __init__(self, k: int, scale: float = 1.1) -> None:
        super().__init__()
        self.k, self.scale = int(k), float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.k) * (self.k * self.k * self.scale)


class _TimeDistributed(nn.Module):
    """Apply a per-sample module to every time step of ``[T, N, ...]`` at once."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        T, N = x.shape[:2]
        y = self.module(x.reshape(T * N, *x.shape[2:]))
        return y.reshape(T, N, *y.shape[1:])


def _synapse(layer: Layer, shape: Tuple[int, ...], weight: Tensor) -> nn.Module:
    if layer.kind == "fc":
        mod: nn.Module = nn.Linear(shape[0], layer.out, bias=False)
    else:
        mod = nn.Conv2d(shape[0], layer.out, layer.k, padding=layer.padding, bias=False)
    with torch.no_grad():
        mod.weight.copy_(weight)
    return mod


class SpikingNet(nn.Module):
    """Base of the built networks: ``forward(x [T, N, ...]) -> (out [T, N, C], spikes per layer)``.

    ``out`` is the output layer's PSC for the native network and its spikes
    for the library networks (``output_kind`` says which). The spike list
    holds one detached ``[T, N, ...]`` tensor per spiking layer, for firing rates.
    """

    output_kind = "spike"

    def synapses(self) -> List[nn.Module]:
        """The weighted layers in order (for weight clipping and weight checks)."""
        return [m for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]

    def neurons(self) -> List[nn.Module]:
        """The spiking layers in order (the last one is the output layer)."""
        raise NotImplementedError


# --------------------------------------------------------------------- native
class NativeNet(SpikingNet):
    """The paper's network on the core op: PSC between layers (or spikes, ``between="spike"``),
    :class:`TSSLNeuron` neurons; the output layer gives its PSC."""

    output_kind = "psc"

    def __init__(self, arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, *, warmup: Warmup = True,
                 warmup_width: float = WARMUP_WIDTH, between: str = "psc", ablation: str = "none",
                 warmup_floor: bool = True) -> None:
        super().__init__()
        from tssl_plugin import TSSLNeuron

        if between not in NATIVE_BETWEEN:
            raise ValueError(f"between must be one of {NATIVE_BETWEEN}, got {between!r}")

        reset = {"zero": "zero", "subtract": "subtract"}[cfg.reset]
        self.tau_s = cfg.tau_s
        ops, spiking, w = [], [], iter(weights)
        n_neurons = sum(layer.kind in ("fc", "conv") for layer in arch.layers)
        for layer, shape in zip(arch.layers, _shapes(arch, in_shape)):
            if layer.kind in ("fc", "conv"):
                ops.append(_TimeDistributed(_synapse(layer, shape, next(w))))
                last = sum(spiking) == n_neurons - 1  # the output layer always gives its PSC (the read-out)
                ops.append(TSSLNeuron(cfg.tau_m, cfg.tau_s, cfg.threshold, output="psc" if last else between,
                                      reset=reset, warmup=warmup, warmup_width=warmup_width,
                                      sensitivity_cap=cfg.native_sensitivity_cap(), ablation=ablation,
                                      warmup_floor=warmup_floor, crossing=cfg.native_crossing()))
                spiking.extend([False, True])
            elif layer.kind == "pool":
                ops.append(_TimeDistributed(SumPool(layer.k)))
                spiking.append(False)
            else:
                ops.append(_TimeDistributed(nn.Flatten()))
                spiking.append(False)
        self.ops = nn.ModuleList(ops)
        self._spiking = spiking

    def neurons(self) -> List[nn.Module]:
        return [op for op, is_neuron in zip(self.ops, self._spiking) if is_neuron]

    def forward(self, x: Tensor):
        spikes = []
        decay = 1.0 - 1.0 / self.tau_s
        for op, is_neuron in zip(self.ops, self._spiking):
            x = op(x)
            if is_neuron and op.output == "spike":
                spikes.append(x.detach())
            elif is_neuron:
                with torch.no_grad():  # recover spikes from the PSC: o[t] = tau_s (a[t] - decay a[t-1])
                    prev = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
                    spikes.append(torch.round(self.tau_s * (x - decay * prev)).clamp_(0, 1))
        return x, spikes


def build_native(arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, *, warmup: Warmup = True,
                 warmup_width: float = WARMUP_WIDTH, between: str = "psc", ablation: str = "none",
                 warmup_floor: bool = True) -> SpikingNet:
    """The paper's network built on ``tssl_plugin.TSSLNeuron`` (``tssl_lif``, output PSC), with TSSL-BP's
    warm-up surrogate (``warmup``) of width ``warmup_width``; ``between`` (:data:`NATIVE_BETWEEN`) is what
    each hidden layer passes to the next; ``ablation`` (``tssl_plugin.rule.ABLATIONS``) a part of the rule
    switched off in every layer; ``warmup_floor`` whether the warm-up keeps the reference's floor."""
    return NativeNet(arch, in_shape, weights, cfg, warmup=warmup, warmup_width=warmup_width, between=between,
                     ablation=ablation, warmup_floor=warmup_floor)


# ------------------------------------------------------------------- snntorch
class SnnTorchNet(SpikingNet):
    """The network with ``snn.Leaky`` neurons, run in snnTorch's step loop with explicit ``mem``.

    Synapses are applied to the whole sequence at once (they have no state);
    each Leaky layer is then called once per time step, ``spk, mem = lif(cur[t], mem)``.
    """

    def __init__(self, arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, spike_grad) -> None:
        super().__init__()
        import snntorch as snn

        beta = 1.0 - 1.0 / cfg.tau_m
        ops, w = [], iter(weights)
        for layer, shape in zip(arch.layers, _shapes(arch, in_shape)):
            if layer.kind in ("fc", "conv"):
                ops.append(_TimeDistributed(_synapse(layer, shape, next(w))))
                ops.append(snn.Leaky(beta=beta, threshold=cfg.threshold, spike_grad=spike_grad,
                                     reset_mechanism=cfg.reset))
            elif layer.kind == "pool":
                ops.append(_TimeDistributed(SumPool(layer.k)))
            else:
                ops.append(_TimeDistributed(nn.Flatten()))
        self.ops = nn.ModuleList(ops)

    def neurons(self) -> List[nn.Module]:
        import snntorch as snn

        return [op for op in self.ops if isinstance(op, snn.Leaky)]

    def forward(self, x: Tensor):
        import snntorch as snn

        spikes = []
        for op in self.ops:
            if isinstance(op, snn.Leaky):
                mem = op.init_leaky()
                out = []
                for t in range(x.shape[0]):
                    spk, mem = op(x[t], mem)
                    out.append(spk)
                x = torch.stack(out)
                spikes.append(x.detach())
            else:
                x = op(x)
        return x, spikes


def build_snntorch(arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, spike_grad=None) -> SpikingNet:
    """The network with ``snntorch.Leaky`` neurons and surrogate ``spike_grad``."""
    return SnnTorchNet(arch, in_shape, weights, cfg, spike_grad)


# --------------------------------------------------------------- spikingjelly
def run_spikingjelly(ops: nn.Module, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
    """A multi-step SpikingJelly stack from a reset state: ``(output, [each neuron's spikes, detached])``."""
    from spikingjelly.activation_based import functional, neuron

    functional.reset_net(ops)
    spikes = []
    for op in ops:
        x = op(x)
        if isinstance(op, neuron.BaseNode):
            spikes.append(x.detach())
    return x, spikes


class SpikingJellyNet(SpikingNet):
    """The network with SpikingJelly ``LIFNode`` neurons and ``layer.*`` synapses, multi-step mode."""

    def __init__(self, arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, surrogate_function) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer as sjl, neuron

        v_reset = 0.0 if cfg.reset == "zero" else None
        ops, w = [], iter(weights)
        for layer, shape in zip(arch.layers, _shapes(arch, in_shape)):
            if layer.kind == "fc":
                syn = sjl.Linear(shape[0], layer.out, bias=False)
            elif layer.kind == "conv":
                syn = sjl.Conv2d(shape[0], layer.out, layer.k, padding=layer.padding, bias=False)
            elif layer.kind == "pool":
                ops.append(sjl.SeqToANNContainer(SumPool(layer.k)))
                continue
            else:
                ops.append(sjl.Flatten())
                continue
            with torch.no_grad():
                syn.weight.copy_(next(w))
            ops.append(syn)
            ops.append(neuron.LIFNode(tau=cfg.tau_m, decay_input=False, v_threshold=cfg.threshold,
                                      v_reset=v_reset, surrogate_function=surrogate_function))
        self.ops = nn.Sequential(*ops)
        functional.set_step_mode(self.ops, "m")

    def neurons(self) -> List[nn.Module]:
        from spikingjelly.activation_based import neuron

        return [op for op in self.ops if isinstance(op, neuron.BaseNode)]

    def forward(self, x: Tensor):
        return run_spikingjelly(self.ops, x)


def build_spikingjelly(arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg,
                       surrogate_function=None) -> SpikingNet:
    """The network with ``spikingjelly`` ``LIFNode`` neurons and the given surrogate function."""
    if surrogate_function is None:
        from spikingjelly.activation_based import surrogate

        surrogate_function = surrogate.Sigmoid()
    return SpikingJellyNet(arch, in_shape, weights, cfg, surrogate_function)


# ------------------------------------------------- synaptic host networks (the paper's network)
def unfilter(x: Tensor, tau_s: float) -> Tensor:
    """The sequence whose PSC is ``x``: ``r[t] = tau_s (x[t] - (1 - 1/tau_s) x[t-1])`` (so ``psp(r) = x``).

    For the paper's encoding ``x = psp(image)`` it is the repeated image itself (to rounding).
    """
    decay = 1.0 - 1.0 / tau_s
    prev = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
    return tau_s * (x - decay * prev)


class _Gain(nn.Module):
    """A fixed factor on ``[T, N, ...]`` (no parameters): the ``1/tau_s`` of a synaptic host network's synapses."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = float(gain)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gain

    def extra_repr(self) -> str:
        return f"gain={self.gain:g}"


class SynapticHostNet(SpikingNet):
    r"""The paper's network built from a host library's current-based neurons.

    snnTorch's ``Synaptic`` and SpikingJelly's ``CUBALIFNode`` filter their input current,
    ``syn[t] = alpha syn[t-1] + x[t]``; with ``alpha = 1 - 1/tau_s`` and ``x[t] = W o[t] / tau_s``
    this is ``W a[t]``, with ``a`` the paper's PSC of the spikes ``o`` (the filter and the synapse
    commute). So each synapse is the native network's ``W`` followed by a fixed gain ``1/tau_s``
    (host weights ``W / tau_s``, written so that the trainable weights, their initial values,
    optimiser steps and clipping are the native network's), the neurons are ``beta = 1 - 1/tau_m``
    (``v_decay``) with the paper's reset to zero, and the first layer is fed :func:`unfilter` of the
    encoded input (for ``encoding="psc"``: the repeated image, which its synaptic filter turns into
    ``psp(image)``). Spikes pass between layers; the output layer's PSC is ``psp`` of its spikes, as for
    the other host networks. Under TSSL-BP its forward and gradients are the native network's
    (tests/test_adapter_snntorch_synaptic.py, tests/test_adapter_spikingjelly_cuba.py).
    """

    def __init__(self, arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, make_neuron,
                 make_synapse, make_pool) -> None:
        super().__init__()
        self.tau_s = cfg.tau_s
        ops, w = [], iter(weights)
        for layer, shape in zip(arch.layers, _shapes(arch, in_shape)):
            if layer.kind in ("fc", "conv"):
                ops.append(make_synapse(layer, shape, next(w)))
                ops.append(_Gain(1.0 / cfg.tau_s))
                ops.append(make_neuron())
            elif layer.kind == "pool":
                ops.append(make_pool(layer.k))
            else:
                ops.append(_TimeDistributed(nn.Flatten()))
        self.ops = nn.ModuleList(ops)


class _SnnTorchSynapticNet(SynapticHostNet):
    """:class:`SynapticHostNet` with ``snn.Synaptic`` neurons, each called once per time step."""

    def __init__(self, arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, spike_grad) -> None:
        import snntorch as snn

        def neuron() -> nn.Module:
            return snn.Synaptic(alpha=1.0 - 1.0 / cfg.tau_s, beta=1.0 - 1.0 / cfg.tau_m, threshold=cfg.threshold,
                                spike_grad=spike_grad, reset_mechanism=cfg.reset, reset_delay=False)

        super().__init__(arch, in_shape, weights, cfg, neuron,
                         lambda layer, shape, weight: _TimeDistributed(_synapse(layer, shape, weight)),
                         lambda k: _TimeDistributed(SumPool(k)))

    def neurons(self) -> List[nn.Module]:
        import snntorch as snn

        return [op for op in self.ops if isinstance(op, snn.Synaptic)]

    def forward(self, x: Tensor):
        import snntorch as snn

        spikes = []
        x = unfilter(x, self.tau_s)
        for op in self.ops:
            if isinstance(op, snn.Synaptic):
                syn, mem = op.reset_mem()
                out = []
                for t in range(x.shape[0]):
                    spk, syn, mem = op(x[t], syn, mem)
                    out.append(spk)
                x = torch.stack(out)
                spikes.append(x.detach())
            else:
                x = op(x)
        return x, spikes


def build_snntorch_synaptic(arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg,
                            spike_grad=None) -> SpikingNet:
    """:class:`SynapticHostNet` with ``snntorch.Synaptic`` neurons (``reset_delay=False``), surrogate ``spike_grad``."""
    return _SnnTorchSynapticNet(arch, in_shape, weights, cfg, spike_grad)


class _SpikingJellyCubaNet(SynapticHostNet):
    """:class:`SynapticHostNet` with SpikingJelly ``CUBALIFNode`` neurons, multi-step mode."""

    def __init__(self, arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg, surrogate_function) -> None:
        from spikingjelly.activation_based import functional, layer as sjl, neuron

        if not hasattr(neuron, "CUBALIFNode"):
            raise ValueError("the CUBALIFNode network needs SpikingJelly 2.x (0.0.0.0.14 has no CUBALIFNode)")

        def synapse(layer: Layer, shape, weight: Tensor) -> nn.Module:
            if layer.kind == "fc":
                syn = sjl.Linear(shape[0], layer.out, bias=False)
            else:
                syn = sjl.Conv2d(shape[0], layer.out, layer.k, padding=layer.padding, bias=False)
            with torch.no_grad():
                syn.weight.copy_(weight)
            return syn

        def cuba() -> nn.Module:
            return neuron.CUBALIFNode(c_decay=1.0 - 1.0 / cfg.tau_s, v_decay=1.0 - 1.0 / cfg.tau_m,
                                      v_threshold=cfg.threshold, v_reset=0.0 if cfg.reset == "zero" else None,
                                      surrogate_function=surrogate_function)

        super().__init__(arch, in_shape, weights, cfg, cuba, synapse,
                         lambda k: sjl.SeqToANNContainer(SumPool(k)))
        functional.set_step_mode(self.ops, "m")

    def neurons(self) -> List[nn.Module]:
        from spikingjelly.activation_based import neuron

        return [op for op in self.ops if isinstance(op, neuron.BaseNode)]

    def forward(self, x: Tensor):
        return run_spikingjelly(self.ops, unfilter(x, self.tau_s))


def build_spikingjelly_cuba(arch: Arch, in_shape, weights: List[Tensor], cfg: NeuronCfg,
                            surrogate_function=None) -> SpikingNet:
    """:class:`SynapticHostNet` with SpikingJelly ``CUBALIFNode`` neurons (default surrogate ``Sigmoid()``)."""
    if surrogate_function is None:
        from spikingjelly.activation_based import surrogate

        surrogate_function = surrogate.Sigmoid()
    return _SpikingJellyCubaNet(arch, in_shape, weights, cfg, surrogate_function)
