r"""Activity and cost of a trained network on the test set: synaptic operations and activation sparsity.

Both follow NeuroBench's definitions (``neurobench.metrics.workload.SynapticOperations`` and
``ActivationSparsityByLayer``, neurobench 2.3):

* **Synaptic operations** of one weighted layer (``nn.Linear``/``nn.Conv2d``; pooling and flatten are
  not counted) at one time step are the number of (input element, weight) pairs with both non-zero
  that reach an output, i.e. ``sum(layer_bin(input_bin))`` with every non-zero input and weight set to
  1 and no bias. For a layer whose input ``x`` holds only 0 and 1 (spikes) that is

  .. math:: \mathrm{ACs} = \sum_i [x_i \ne 0] \cdot \mathrm{fanout}_i

  where :math:`\mathrm{fanout}_i` counts the non-zero weights that carry input ``i`` to an output
  inside the layer's output map (a convolution's border inputs reach fewer outputs; zero padding adds
  nothing). A step whose input holds any value other than 0 and +-1 counts its operations as
  multiply-accumulates (MACs) instead: the analog first layer (the encoded image) and a layer fed by
  sum pooling (pooled spike counts times 1.1). Reported per test sample: summed over the T steps and
  the layers, divided by the number of samples. ``dense`` is the same count with every input and
  weight non-zero (NeuroBench's ``Dense``).
* **Activation sparsity** of a spiking layer: the fraction of zeros among its outputs over all test
  samples and steps, ``1 - spikes / (neurons * T * samples)`` (1 - the firing rate).

The native network (:class:`models.NativeNet`) passes each layer's PSC to the next layer, which is
non-zero on every step after a spike. Because the PSC filter is linear, ``W psc(s) = psc(W s)``: the
same layer can accumulate its weights only where spikes ``s`` occur and filter the result, so its
operations are counted from its binary spikes, like those of the library networks.

:class:`ModuleActivityMeter` counts the same quantities on any host model (``compare``), with forward
hooks: on every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (SpikingJelly's ``layer.*`` wrappers are subclasses)
it adds ``sum(layer_bin(input_bin))`` and the dense count ``sum(layer_1(input_1))``, and on every spiking
module (:func:`spiking_modules`) it counts the spikes. One call of a weighted module is classified as a
whole (ACs when its input holds only 0 and +-1, else MACs): one time step in a step loop, the whole
sequence in SpikingJelly's multi-step mode.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import models as M

__all__ = ["ActivityMeter", "ModuleActivityMeter", "fanout", "spiking_modules"]


def fanout(layer: M.Layer, weight: Tensor, in_shape: Sequence[int], *, dense: bool = False) -> Tensor:
    """Per-input fan-out of one weighted layer: the non-zero weights (all weights if ``dense``) that carry
    each input element to an output. Shape ``in_shape`` (per sample)."""
    w = torch.ones_like(weight) if dense else (weight != 0).to(weight.dtype)
    if layer.kind == "fc":
        return w.sum(0)
    if layer.kind == "conv":
        c, h, wd = in_shape
        ho, wo = h + 2 * layer.padding - layer.k + 1, wd + 2 * layer.padding - layer.k + 1
        ones = torch.ones(1, layer.out, ho, wo, dtype=w.dtype, device=w.device)
        out = F.conv_transpose2d(ones, w, padding=layer.padding)  # the adjoint of the convolution
        return out[0, :, :h, :wd]
    raise ValueError(f"{layer.kind} layers have no synapses")


class _Counts:
    """The counters of a meter (per weighted layer: ACs, MACs, dense ops; per spiking layer: non-zero
    outputs, outputs; samples) and what is reported from them."""

    def _zero(self, n_weighted: int, n_spiking: int) -> None:
        self.acs = torch.zeros(n_weighted, dtype=torch.float64)
        self.macs = torch.zeros(n_weighted, dtype=torch.float64)
        self.dense = torch.zeros(n_weighted, dtype=torch.float64)
        self.nonzero = torch.zeros(n_spiking, dtype=torch.float64)
        self.numel = torch.zeros(n_spiking, dtype=torch.float64)
        self.samples = 0

    def state(self) -> Tensor:
        """The counters as one float64 vector (to sum over DistributedDataParallel ranks)."""
        return torch.cat([self.acs, self.macs, self.dense, self.nonzero, self.numel,
                          torch.tensor([float(self.samples)], dtype=torch.float64)])

    def load_state(self, state: Tensor) -> None:
        """Set the counters from :meth:`state` (e.g. summed over ranks)."""
        n, k = len(self.acs), len(self.nonzero)
        state = state.detach().cpu().double()
        self.acs, self.macs, self.dense = (t.clone() for t in state[:3 * n].split(n))
        self.nonzero, self.numel = (t.clone() for t in state[3 * n:3 * n + 2 * k].split(k))
        self.samples = int(state[-1])

    def result(self) -> Dict[str, Any]:
        """Per-sample counts and per-layer sparsity (see the module docstring)."""
        n = max(self.samples, 1)
        return {
            "synops_per_sample": float((self.acs + self.macs).sum()) / n,
            "acs_per_sample": float(self.acs.sum()) / n,
            "macs_per_sample": float(self.macs.sum()) / n,
            "dense_synops_per_sample": float(self.dense.sum()) / n,
            "synops_per_layer": [float(a + m) / n for a, m in zip(self.acs, self.macs)],
            "activation_sparsity": [float(1 - z / max(t, 1)) for z, t in zip(self.nonzero, self.numel)],
            "activation_sparsity_total": float(1 - self.nonzero.sum() / max(float(self.numel.sum()), 1.0)),
            "activity_samples": self.samples,
        }


class ActivityMeter(_Counts):
    """Accumulates synaptic operations and per-layer activation sparsity over evaluation batches.

    ``weights``: the network's synapse weights in order (``net.synapses()``). :meth:`add` takes the
    encoded input ``[T, N, ...]`` and the spikes of every spiking layer (as ``SpikingNet.forward``
    returns them); the input of weighted layer ``k > 0`` is rebuilt from the spikes of layer ``k - 1``
    through the pooling and flatten layers between them.
    """

    def __init__(self, arch: M.Arch, in_shape: Sequence[int], weights: Sequence[Tensor]) -> None:
        self.arch = arch
        shapes = M.layer_input_shapes(arch, in_shape)
        self._fan: List[Tensor] = []
        self._dense: List[float] = []
        w = iter(weights)
        for layer, shape in zip(arch.layers, shapes):
            if layer.kind in ("fc", "conv"):
                weight = next(w).detach()
                self._fan.append(fanout(layer, weight, shape).double())
                self._dense.append(float(fanout(layer, weight, shape, dense=True).double().sum()))
        self._zero(len(self._fan), len(self._fan))

    def _layer_inputs(self, seq: Tensor, spikes: Sequence[Tensor]) -> List[Tensor]:
        inputs, current, k = [], seq, 0
        for layer in self.arch.layers:
            if layer.kind in ("fc", "conv"):
                inputs.append(current)
                current = spikes[k]
                k += 1
            elif layer.kind == "pool":
                T, N = current.shape[:2]
                pooled = M.SumPool(layer.k)(current.reshape(T * N, *current.shape[2:]))
                current = pooled.reshape(T, N, *pooled.shape[1:])
            elif layer.kind == "flatten":
                current = current.flatten(2)
        return inputs

    @torch.no_grad()
    def add(self, seq: Tensor, spikes: Sequence[Tensor]) -> None:
        """Count one batch: ``seq`` the encoded input ``[T, N, ...]``, ``spikes`` one ``[T, N, ...]`` per spiking layer."""
        if len(spikes) != len(self._fan):
            raise ValueError(f"{len(spikes)} spike records for {len(self._fan)} weighted layers")
        T, N = seq.shape[:2]
        for i, x in enumerate(self._layer_inputs(seq, spikes)):
            nz = x != 0
            fan = self._fan[i].to(x.device)
            per_step = (nz.double() * fan).flatten(1).sum(1)  # [T]: ops at each step, whole batch
            analog = (nz & (x != 1) & (x != -1)).flatten(1).any(1)  # NeuroBench: not all in {0, +-1}
            self.macs[i] += float(per_step[analog].sum())
            self.acs[i] += float(per_step[~analog].sum())
            self.dense[i] += self._dense[i] * T * N
        for i, s in enumerate(spikes):
            self.nonzero[i] += float(torch.count_nonzero(s))
            self.numel[i] += float(s.numel())
        self.samples += N


_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def spiking_modules(net: nn.Module, library: str) -> List[nn.Module]:
    """The host's neuron modules of ``net`` (converted ones included), in order: snnTorch's
    ``SpikingNeuron`` or SpikingJelly's ``BaseNode`` subclasses."""
    if library == "snntorch":
        import snntorch as snn

        base: type = snn.SpikingNeuron
    else:
        from spikingjelly.activation_based.neuron import BaseNode as base  # type: ignore[no-redef]
    return [m for m in net.modules() if isinstance(m, base)]


def _binary_ops(module: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    """``sum(module(x))`` with ``weight`` as the module's weight and no bias (any leading dimensions)."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight).sum()
    trailing = weight.dim() - 1  # (C, *spatial) of one sample
    return module._conv_forward(x.reshape(-1, *x.shape[-trailing:]), weight, None).sum()  # type: ignore[operator]


class ModuleActivityMeter(_Counts):
    """Synaptic operations and activation sparsity of any host model, counted with forward hooks while
    the ``with`` block runs (see the module docstring)::

        with ModuleActivityMeter(net, spiking_modules(net, "snntorch")) as meter:
            ...  # forward passes; meter.samples += batch size
        meter.result()

    ``ops=False`` counts only the spikes (the training pass's firing rates, :meth:`firing_rates`).
    """

    def __init__(self, model: nn.Module, spiking: Sequence[nn.Module], *, ops: bool = True) -> None:
        self.weighted = [m for m in model.modules() if isinstance(m, _WEIGHTED)] if ops else []
        self.spiking = list(spiking)
        self._zero(len(self.weighted), len(self.spiking))
        self.spike_sum = torch.zeros(len(self.spiking), dtype=torch.float64)
        self._hooks: List[Any] = []

    def __enter__(self) -> "ModuleActivityMeter":
        for i, m in enumerate(self.weighted):
            self._hooks.append(m.register_forward_hook(self._weighted_hook(i)))
        for i, m in enumerate(self.spiking):
            self._hooks.append(m.register_forward_hook(self._spike_hook(i)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _weighted_hook(self, i: int):
        @torch.no_grad()
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            x, w = inputs[0].detach(), module.weight.detach()
            nz = x != 0
            ops = float(_binary_ops(module, nz.to(w.dtype), (w != 0).to(w.dtype)))
            if bool((nz & (x != 1) & (x != -1)).any()):
                self.macs[i] += ops
            else:
                self.acs[i] += ops
            self.dense[i] += float(_binary_ops(module, torch.ones_like(x, dtype=w.dtype), torch.ones_like(w)))
        return hook

    def _spike_hook(self, i: int):
        @torch.no_grad()
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            spk = (output[0] if isinstance(output, (tuple, list)) else output).detach()
            self.nonzero[i] += float(torch.count_nonzero(spk))
            self.numel[i] += float(spk.numel())
            self.spike_sum[i] += float(spk.double().sum())
        return hook

    def synops(self, samples: int) -> Dict[str, float]:
        """Synaptic operations (ACs + MACs), ACs and MACs per sample over the ``samples`` the forward passes
        counted (sets :attr:`samples`): the records of ``tssl-bench hosts`` and ``tutorials``."""
        self.samples = samples
        r = self.result()
        return {k: r[k] for k in ("synops_per_sample", "acs_per_sample", "macs_per_sample")}

    def firing_rates(self) -> List[float]:
        """Mean output (spikes per neuron per step) of each spiking module over what was counted."""
        return [float(s / max(float(n), 1.0)) for s, n in zip(self.spike_sum, self.numel)]
