"""Cost of the adapters' finite-gradient check (tssl_plugin._validation.check_gradient_finite).

Times one training step (forward + backward) of a converted host tutorial network, with the check as
shipped and with it replaced by a no-op, interleaved, and prints the median of each and their ratio.

    OMP_NUM_THREADS=1 python tools/time_finite_check.py [--library snntorch|spikingjelly] [--repeats 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tssl_plugin import functional, stepwise


def build(library: str, hidden: int) -> nn.Module:
    if library == "snntorch":
        import snntorch as snn

        from tssl_plugin.adapters.snntorch import convert

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.lif1 = nn.Linear(64, hidden), snn.Leaky(beta=0.95)
                self.fc2, self.lif2 = nn.Linear(hidden, 10), snn.Leaky(beta=0.95)

            def forward(self, x):
                m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
                out = []
                for t in range(x.shape[0]):
                    s1, m1 = self.lif1(self.fc1(x[t]), m1)
                    s2, m2 = self.lif2(self.fc2(s1), m2)
                    out.append(s2)
                return torch.stack(out)

        return convert(Net())
    from spikingjelly.activation_based import functional as sjf, layer, neuron

    from tssl_plugin.adapters.spikingjelly import convert

    net = nn.Sequential(layer.Linear(64, hidden), neuron.LIFNode(tau=2.0), layer.Linear(hidden, 10),
                        neuron.LIFNode(tau=2.0))
    sjf.set_step_mode(net, "m")
    return convert(net)


def step_seconds(net: nn.Module, x: torch.Tensor, library: str) -> float:
    if library == "spikingjelly":
        from spikingjelly.activation_based import functional as sjf

        sjf.reset_net(net)
    net.zero_grad()
    t0 = time.perf_counter()
    net(x).sum().backward()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--library", default="snntorch", choices=["snntorch", "spikingjelly"])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    torch.manual_seed(0)
    net = build(a.library, a.hidden)
    x = torch.rand(a.steps, a.batch, 64)
    shipped = functional.check_gradient_finite

    def off(grad_x, u):
        return None

    times = {"with check": [], "without": []}
    for _ in range(3):
        step_seconds(net, x, a.library)  # warm-up (kernel build, allocator)
    for _ in range(a.repeats):
        for name, fn in (("with check", shipped), ("without", off)):
            functional.check_gradient_finite = stepwise.check_gradient_finite = fn
            times[name].append(step_seconds(net, x, a.library))
    functional.check_gradient_finite = stepwise.check_gradient_finite = shipped
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{a.library}: T={a.steps} batch={a.batch} hidden={a.hidden}, torch threads {torch.get_num_threads()}, "
          f"median of {a.repeats}: with check {med['with check']:.2f} ms, without {med['without']:.2f} ms, "
          f"ratio {med['with check'] / med['without']:.3f}")


if __name__ == "__main__":
    main()
