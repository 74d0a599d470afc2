"""What ``crossing="interpolated"`` costs a converted network's training step, against ``crossing="step"``.

Two copies of SpikingJelly's multi-step FC net (``Linear(64, H) - LIFNode(tau=2) - Linear(H, 10) - LIFNode(tau=2)``,
hard reset, the same weights), converted with ``crossing="step"`` and with ``convert``'s default
(``"interpolated"`` for this reset), each timed for a forward and backward pass on the same input, interleaved
(one step of each in turn, so a change of the machine's load reaches both), after untimed warm-up steps. Prints the
median time of each and their ratio (docs/algorithm.md, "The interpolated crossing").

Usage::

    python tools/crossing_speed.py [--hidden 1000] [--steps 8] [--batch-size 128] [--repeats 40]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--untimed", type=int, default=5)
    a = p.parse_args()
    from spikingjelly.activation_based import functional, layer, neuron

    from tssl_plugin.adapters.spikingjelly import convert

    torch.set_num_threads(1)
    torch.manual_seed(0)

    def make(**kw: str) -> torch.nn.Module:
        net = torch.nn.Sequential(layer.Linear(64, a.hidden), neuron.LIFNode(tau=2.0), layer.Linear(a.hidden, 10),
                                  neuron.LIFNode(tau=2.0))
        functional.set_step_mode(net, "m")
        return convert(net, **kw)

    nets = {"step": make(crossing="step"), "interpolated": make()}
    nets["interpolated"].load_state_dict(nets["step"].state_dict())
    x = torch.rand(a.steps, a.batch_size, 64) * 2

    def train_step(net: torch.nn.Module) -> None:
        functional.reset_net(net)
        net.zero_grad()
        net(x).sum().backward()

    times = {name: [] for name in nets}
    for net in nets.values():
        for _ in range(a.untimed):
            train_step(net)
    for _ in range(a.repeats):
        for name, net in nets.items():
            t0 = time.perf_counter()
            train_step(net)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"step {med['step'] * 1e3:.2f} ms, interpolated {med['interpolated'] * 1e3:.2f} ms, "
          f"ratio interpolated/step {med['interpolated'] / med['step']:.3f} (median of {a.repeats}, T {a.steps}, "
          f"batch {a.batch_size}, hidden {a.hidden})")


if __name__ == "__main__":
    main()
