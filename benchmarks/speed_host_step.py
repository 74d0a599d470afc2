"""``tssl-bench speed host-step``: what ``convert(net)`` costs a host's own model per training step, eager
and under ``torch.compile``.

The tutorial network of ``tssl-bench hosts`` (hosts.py: snnTorch's step loop of two ``snn.Leaky`` layers,
or SpikingJelly's two multi-step ``LIFNode`` layers), unconverted and after ``convert(net)``, timed side by
side in one process (timer.py: interleaved rounds, median of ``--repeats`` steps each). A step is forward,
the host's own loss (snnTorch's ``mse_count_loss``, SpikingJelly's firing-rate MSE), backward and an Adam
update. With ``--compile`` the same two networks are also timed under ``torch.compile`` (inductor).
Prints ms per step and each variant's ratio to the unconverted eager network. ``--grid`` times a grid of
host networks, time steps and batch sizes instead (speed_host_grid.py).
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from .options import HelpFormatter, Parser, add_timing_options, pos_int
from .timer import time_calls

__all__ = ["main", "build_parser", "make_step"]

#: the host's own loss of each library's tutorial (hosts.make_loss names).
HOST_LOSS = {"snntorch": "mse_count", "spikingjelly": "mse_rate"}
#: the tutorials' time steps.
HOST_STEPS = {"snntorch": 25, "spikingjelly": 8}


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench speed host-step``."""
    p = Parser(prog="tssl-bench speed host-step", formatter_class=HelpFormatter,
               description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--library", default="snntorch", choices=sorted(HOST_LOSS), help="host library")
    p.add_argument("--steps", "-T", type=pos_int, default=None, help="time steps T (default: 25 snnTorch, 8 SpikingJelly)")
    p.add_argument("--hidden", type=pos_int, default=1000, help="hidden layer size (64 inputs, 10 outputs)")
    p.add_argument("--batch-size", type=pos_int, default=128, help="batch size")
    p.add_argument("--compile", action="store_true", help="also time both networks under torch.compile")
    add_timing_options(p, repeats=20, untimed=3, threads=1)
    from .speed_host_grid import add_grid_options

    add_grid_options(p)
    return p


def make_step(library: str, variant: str, x: torch.Tensor, labels: torch.Tensor, hidden: int,
              compiled: bool) -> Callable[[], float]:
    """One training step of the tutorial network (``variant`` ``host`` or ``tssl``, hosts.build_net); the
    network is the step's ``net`` attribute."""
    from .hosts import build_net, make_loss
    from tssl_plugin.rule import WARMUP_WIDTH

    torch.manual_seed(0)
    net = build_net(library, variant, None,
                    argparse.Namespace(hidden=hidden, beta=0.95, tau=2.0, warmup_width=WARMUP_WIDTH,
                                       warmup_gate=None, warmup_floor=None, crossing=None))
    run: nn.Module = torch.compile(net) if compiled else net
    _, loss_fn = make_loss(HOST_LOSS[library])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> float:
        spikes = run(x)[0]
        value = loss_fn(spikes, labels)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value.item()

    step.net = net  # type: ignore[attr-defined]
    return step


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench speed host-step``; returns the exit status."""
    from tssl_plugin._optional import require

    a = build_parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.grid:
        from .speed_host_grid import grid_main

        return grid_main(a)
    require(a.library, a.library)
    T = a.steps or HOST_STEPS[a.library]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch_size, 64, generator=gen).expand(T, -1, -1)
    labels = torch.randint(0, 10, (a.batch_size,), generator=gen)
    steps: Dict[str, Callable[[], float]] = {}
    for compiled in (False, True) if a.compile else (False,):
        for variant in ("host", "tssl"):
            name = ("unconverted" if variant == "host" else "convert(net)") + (" compiled" if compiled else "")
            steps[name] = make_step(a.library, variant, x, labels, a.hidden, compiled)
    med = {k: t.median() for k, t in time_calls(steps, repeats=a.repeats, untimed=a.untimed).items()}
    print(f"one training step (fwd + {HOST_LOSS[a.library]} + bwd + Adam), {a.library} tutorial network "
          f"64-{a.hidden}-10, T={T}, batch {a.batch_size}, float32, CPU, {torch.get_num_threads()} threads, "
          f"median of {a.repeats}")
    base = med["unconverted"]
    print(f"{'network':<24} {'ms/step':>9} {'/unconverted eager':>19}")
    for name, t in med.items():
        print(f"{name:<24} {t * 1e3:>9.2f} {t / base:>19.2f}")
    return 0
