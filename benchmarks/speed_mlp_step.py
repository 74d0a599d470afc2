"""``tssl-bench speed mlp-step``: CPU cost of one training step of the paper's MLP 784-400-400-10 (T=5, batch
100, float32).

Three networks with the same bias-free matrix products, timed side by side in one process (timer.py:
interleaved rounds, median of ``--repeats`` steps each):

* TSSL-BP through the public API (``tssl_lif`` + ``kernel_loss``), with the implementations given by
  ``--impls`` (default: ``auto`` and ``reference``);
* the same network from SpikingJelly ``LIFNode``s (multi-step, default sigmoid surrogate), MSE on the
  firing rate (left out, with a note, when SpikingJelly is not installed);
* a plain ReLU network over the same ``[T*B, features]`` products (the floor).

Every step is forward + backward + AdamW update. Prints ms per step and the ratios to ReLU and to
SpikingJelly. Goals: TSSL-BP <= 0.75x SpikingJelly and <= 1.5x ReLU.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from .options import HelpFormatter, Parser, add_timing_options, pos_int
from .timer import time_calls

__all__ = ["main", "build_parser", "SIZES", "make_tssl_step", "make_sj_step", "make_relu_step"]

SIZES = (784, 400, 400, 10)


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench speed mlp-step``."""
    p = Parser(prog="tssl-bench speed mlp-step", formatter_class=HelpFormatter,
               description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--steps", "-T", type=pos_int, default=5, help="time steps T")
    p.add_argument("--batch-size", type=pos_int, default=100, help="batch size")
    p.add_argument("--impls", nargs="+", default=["auto", "reference"], help="tssl_lif implementations to time")
    add_timing_options(p, repeats=30, untimed=3)
    return p


def _linears(seed: int) -> nn.ModuleList:
    torch.manual_seed(seed)
    return nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(SIZES[:-1], SIZES[1:]))


def _seq_linear(lin: nn.Linear, a: torch.Tensor) -> torch.Tensor:
    """Apply a Linear to every time step of ``[T, B, F]`` as one ``[T*B, F]`` product."""
    T, B = a.shape[:2]
    return lin(a.reshape(T * B, -1)).reshape(T, B, -1)


def _training_step(layers: nn.ModuleList, forward: Callable[[], torch.Tensor], loss: Callable[[torch.Tensor], torch.Tensor],
                   reset: Callable[[], None] = lambda: None) -> Callable[[], float]:
    """One step: ``reset()``, the network's output ``forward()``, its ``loss``, backward, AdamW update."""
    opt = torch.optim.AdamW(layers.parameters(), lr=5e-4)

    def step() -> float:
        reset()
        value = loss(forward())
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value.item()

    return step


def make_tssl_step(x: torch.Tensor, labels: torch.Tensor, impl: str) -> Callable[[], float]:
    """A training step of the MLP with ``tssl_lif(impl=impl)`` neurons and the kernel loss."""
    from tssl_plugin.functional import tssl_lif
    from tssl_plugin.loss import kernel_loss

    layers = _linears(0)

    def forward() -> torch.Tensor:
        a = x
        for lin in layers:
            a = tssl_lif(_seq_linear(lin, a), 5.0, 3.0, 1.0, impl=impl)
        return a

    return _training_step(layers, forward, lambda a: kernel_loss(a, labels))


def make_sj_step(x: torch.Tensor, labels: torch.Tensor) -> Callable[[], float]:
    """A training step of the MLP with SpikingJelly ``LIFNode`` neurons (ImportError without SpikingJelly)."""
    from tssl_plugin._optional import require

    require("spikingjelly", "spikingjelly")
    from spikingjelly.activation_based import functional, neuron

    layers = _linears(0)
    nodes = nn.ModuleList(neuron.LIFNode(step_mode="m") for _ in layers)
    target = nn.functional.one_hot(labels, SIZES[-1]).float()

    def forward() -> torch.Tensor:
        a = x
        for lin, node in zip(layers, nodes):
            a = node(_seq_linear(lin, a))
        return a

    return _training_step(layers, forward, lambda a: nn.functional.mse_loss(a.mean(0), target),
                          reset=lambda: functional.reset_net(nodes))


def make_relu_step(x: torch.Tensor, labels: torch.Tensor) -> Callable[[], float]:
    """A training step of the same matrix products with ReLU between them (the floor)."""
    layers = _linears(0)
    target = nn.functional.one_hot(labels, SIZES[-1]).float()

    def forward() -> torch.Tensor:
        a = x
        for i, lin in enumerate(layers):
            a = _seq_linear(lin, a)
            if i < len(layers) - 1:
                a = torch.relu(a)
        return a

    return _training_step(layers, forward, lambda a: nn.functional.mse_loss(a.mean(0), target))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench speed mlp-step``; returns the exit status."""
    from tssl_plugin.functional import psp, resolve_impl

    a = build_parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(a.batch_size, SIZES[0], generator=gen)
    labels = torch.randint(0, SIZES[-1], (a.batch_size,), generator=gen)
    x = psp(img.unsqueeze(0).expand(a.steps, -1, -1).contiguous())  # the paper's encoding, done once
    steps: Dict[str, Callable[[], float]] = {}
    for impl in a.impls:
        label = f"tssl[{impl}={resolve_impl(x, impl)}]" if impl == "auto" else f"tssl[{impl}]"
        steps[label] = make_tssl_step(x, labels, impl)
    try:
        steps["spikingjelly LIFNode"] = make_sj_step(x, labels)
    except ImportError as err:
        print(f"(SpikingJelly column skipped: {err})")
    steps["relu"] = make_relu_step(x, labels)
    med = {k: t.median() for k, t in time_calls(steps, repeats=a.repeats, untimed=a.untimed).items()}
    print(f"one training step (fwd+bwd+AdamW), MLP {'-'.join(map(str, SIZES))}, T={a.steps}, batch {a.batch_size}, "
          f"float32, CPU, {torch.get_num_threads()} threads, median of {a.repeats}")
    relu = med["relu"]
    sj = med.get("spikingjelly LIFNode")
    print(f"{'network':<28} {'ms/step':>9} {'/relu':>7} {'/SJ':>7}")
    for name, t in med.items():
        print(f"{name:<28} {t * 1e3:>9.2f} {t / relu:>7.2f} {(t / sj if sj else float('nan')):>7.2f}")
    first = next(iter(med))
    print(f"{first}: {med[first] / relu:.2f}x ReLU (goal <= 1.5)"
          + (f", {med[first] / sj:.2f}x SpikingJelly (goal <= 0.75)" if sj else ""))
    return 0
