"""The firing watch's cost: a converted snnTorch step loop with and without it, interleaved repeats.

snnTorch tutorial-style 64-1000-10 ``Leaky(0.95)`` network, T = 25, batch 128, forward and backward,
1 thread; prints the fastest and the median time per step of each and their ratios. Usage::

    python tools/firing_watch_cost.py [--repeats 8]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=8)
    args = p.parse_args()
    import snntorch as snn
    from snntorch import utils

    import tssl_plugin.adapters.snntorch as adapter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 1000), snn.Leaky(beta=0.95, init_hidden=True), nn.Linear(1000, 10),
                        snn.Leaky(beta=0.95, init_hidden=True))
    adapter.convert(net)
    x = torch.rand(128, 64)

    def step() -> None:
        utils.reset(net)
        torch.stack([net(x) for _ in range(25)]).sum().backward()

    watched = adapter.observe_firing
    times = {"with the watch": [], "without": []}
    for _ in range(args.repeats):
        for name, fn in (("with the watch", watched), ("without", lambda *a, **k: None)):
            adapter.observe_firing = fn
            t0 = time.perf_counter()
            for _ in range(3):
                step()
            times[name].append((time.perf_counter() - t0) / 3)
    adapter.observe_firing = watched
    for name, ts in times.items():
        ts.sort()
        print(f"{name}: fastest {ts[0]:.3f} s, median {ts[len(ts) // 2]:.3f} s per step")
    a, b = times["with the watch"], times["without"]
    print(f"ratio: fastest {a[0] / b[0]:.3f}, median {a[len(a) // 2] / b[len(b) // 2]:.3f}")


if __name__ == "__main__":
    main()
