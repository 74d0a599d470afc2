"""``tssl-bench speed host-step --grid``: what ``convert(net)`` costs per training step over a grid of host
networks, time steps and batch sizes, eager and under ``torch.compile``, with the memory autograd keeps.

Networks (:data:`NETS`; the hosts' tutorial setups of tutorials.py and hosts.py, random inputs of their
shape, pixel values in [0, 1]):

* ``snntorch-fc``: snnTorch tutorial 5, ``784-1000-10`` ``snn.Leaky`` step loop, ``sum_t CE(mem[t], y)``, Adam;
* ``snntorch-cnn``: snnTorch tutorial 6, ``Conv(1,12,5)-Conv(12,64,5)-Linear(1024,10)``, ``init_hidden``,
  ``ce_rate_loss``, Adam;
* ``snntorch-stateleaky``: snnTorch tutorial 8, ``784-1000-10`` whole-sequence ``snn.StateLeaky`` layers,
  ``sum_t CE(mem[t], y)``, Adam;
* ``spikingjelly-fc``: two multi-step ``LIFNode`` layers, ``64-1000-10`` (hosts.py), firing-rate MSE, Adam;
* ``spikingjelly-cnn``: SpikingJelly's Fashion-MNIST CNN example, multi-step ``IFNode``, with ``--channels``
  channels (the example's 128 by default; fewer keep a CPU run short), firing-rate MSE, SGD.

For each (network, T, batch) the unconverted and the converted network (and, with ``--compile``, both
under ``torch.compile``) are built from the same seed and timed side by side (interleaved rounds, median of
``--repeats``): each in a worker process of its own (``--processes each``, the default; isolated.py), or
all in this one (``--processes one``; timer.py), where they interact (isolated.py says how). A step is forward,
the host's loss, backward and the optimiser's update. Ratios are to the unconverted eager step, and the converted compiled step is also
given over the unconverted compiled one. Memory: the bytes of the tensors autograd saves for backward in
one eager forward and loss (memory.py's ``SavedBytes``; on CUDA the allocator's peak over one step),
converted over unconverted.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ["NETS", "GridNet", "grid_inputs", "isolated_step", "make_grid_step", "run_grid", "saved_bytes",
           "add_grid_options", "grid_main"]


@dataclass(frozen=True)
class GridNet:
    """One network of the grid: its library, tutorial setup (tutorials.SETUPS name, or None: hosts.py's
    multi-step FC network) and input image shape."""

    library: str
    setup: Optional[str]
    image: Tuple[int, ...]


NETS: Dict[str, GridNet] = {
    "snntorch-fc": GridNet("snntorch", "snntorch-tutorial-5", (1, 28, 28)),
    "snntorch-cnn": GridNet("snntorch", "snntorch-tutorial-6", (1, 28, 28)),
    "snntorch-stateleaky": GridNet("snntorch", "snntorch-tutorial-8", (1, 28, 28)),
    "spikingjelly-fc": GridNet("spikingjelly", None, (8, 8)),
    "spikingjelly-cnn": GridNet("spikingjelly", "spikingjelly-conv-fashion-mnist", (1, 28, 28)),
}


def _parts(name: str, args: argparse.Namespace):
    """``(build, run, loss, optimizer)`` of grid network ``name`` (the tutorials' Setup fields)."""
    from . import tutorials

    spec = NETS[name]
    if spec.setup is not None:
        s = tutorials.SETUPS[spec.setup]
        return (lambda: s.build(args)), s.run, s.loss, s.optimizer
    from .hosts import SpikingJellyTutorialNet

    def run(net: nn.Module, x: Tensor, steps: int, gen: torch.Generator) -> Tuple[Tensor, None]:
        return net(x.flatten(1).expand(steps, -1, -1))[0], None

    return ((lambda: SpikingJellyTutorialNet(args.hidden, 2.0, None)), run, tutorials._mse_rate,
            tutorials._adam(1e-3))


def make_grid_step(name: str, variant: str, x: Tensor, labels: Tensor, steps: int, args: argparse.Namespace,
                   compiled: bool) -> Callable[[], float]:
    """One training step of grid network ``name`` (``variant`` ``host`` or ``tssl``: after ``convert(net)``);
    the network is the step's ``net`` attribute, its forward and loss the step's ``forward_loss``."""
    from .comparison import adapter_for

    build, run, loss, optimizer = _parts(name, args)
    torch.manual_seed(0)
    net = build()
    if variant == "tssl":
        adapter_for(NETS[name].library).convert(net)
    net.to(x.device).train()
    opt = optimizer(net.parameters())
    gen = torch.Generator().manual_seed(0)

    def forward_loss() -> Tensor:
        spk, mem = run(net, x, steps, gen)
        return loss(spk, mem, labels)

    fl = torch.compile(forward_loss) if compiled else forward_loss

    def step() -> float:
        value = fl()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return float(value.detach())

    step.net = net  # type: ignore[attr-defined]
    step.forward_loss = forward_loss  # type: ignore[attr-defined]
    return step


def grid_inputs(name: str, batch: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """The grid's input for network ``name``: ``batch`` random images (pixels in [0, 1]) and labels, seed 0."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *NETS[name].image, generator=gen).to(device)
    return x, torch.randint(0, 10, (batch,), generator=gen).to(device)


def isolated_step(name: str, variant: str, steps: int, batch: int, args: argparse.Namespace, compiled: bool,
                  device: str) -> Tuple[Callable[[], float], Optional[int]]:
    """What a worker of ``--processes each`` times (isolated.py): the training step of :func:`make_grid_step`
    on :func:`grid_inputs`, and its memory (:func:`saved_bytes`; None when compiled)."""
    dev = torch.device(device)
    x, labels = grid_inputs(name, batch, dev)
    step = make_grid_step(name, variant, x, labels, steps, args, compiled)
    return step, None if compiled else saved_bytes(step, dev)


def saved_bytes(step: Callable[[], float], device: torch.device) -> int:
    """Memory of one step: on CPU the bytes autograd saves for backward in its forward and loss, on CUDA the
    allocator's peak over the whole step (memory.py)."""
    from .memory import SavedBytes, cuda_peak_bytes

    if device.type == "cuda":
        return cuda_peak_bytes(step, device)
    with SavedBytes() as saved:
        value = step.forward_loss()  # type: ignore[attr-defined]
    del value
    return saved.total


def _csv_ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run_grid(a: argparse.Namespace, device: torch.device = torch.device("cpu")) -> List[Dict[str, Any]]:
    """Time every point of the grid ``a`` asks for; prints one markdown row per point and returns the rows."""
    from .isolated import time_isolated
    from .timer import time_calls

    nets = [n.strip() for n in a.nets.split(",") if n.strip()]
    for n in nets:
        if n not in NETS:
            raise SystemExit(f"tssl-bench speed host-step: unknown --nets entry {n!r}; choose from {', '.join(NETS)}")
    variants = [("unconverted", "host", False), ("converted", "tssl", False)]
    if a.compile:
        variants += [("unconverted compiled", "host", True), ("converted compiled", "tssl", True)]
    print(f"one training step (forward + the host's loss + backward + update), float32, {device}, "
          f"{torch.get_num_threads()} threads, median of {a.repeats} after {a.untimed} untimed; "
          f"ratios to the unconverted eager step; memory: "
          f"{'CUDA allocator peak' if device.type == 'cuda' else 'tensors saved for backward'}, converted/unconverted; "
          f"{'each variant in a process of its own' if a.processes == 'each' else 'all variants in one process'}")
    head = "| network | T | batch | unconverted ms | converted | unconverted compiled | converted compiled | " \
           "compiled: converted/unconverted | memory MB unconverted | memory converted/unconverted |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    rows = []
    for name in nets:
        for T in _csv_ints(a.grid_steps):
            for batch in _csv_ints(a.batch_sizes):
                if a.processes == "each":
                    builds = {label: (isolated_step, (name, v, T, batch, a, c, str(device)))
                              for label, v, c in variants}
                    timings, info = time_isolated(builds, repeats=a.repeats, untimed=a.untimed, device=device)
                    mem = {label: b for label, b in info.items() if b is not None}
                else:
                    x, labels = grid_inputs(name, batch, device)
                    steps = {label: make_grid_step(name, v, x, labels, T, a, c) for label, v, c in variants}
                    mem = {label: saved_bytes(steps[label], device) for label, _, c in variants if not c}
                    timings = time_calls(steps, repeats=a.repeats, untimed=a.untimed, device=device)
                med = {k: t.median() for k, t in timings.items()}
                base = med["unconverted"]
                row = {"net": name, "T": T, "batch": batch, "ms": {k: v * 1e3 for k, v in med.items()},
                       "ratio": {k: v / base for k, v in med.items()},
                       "memory_bytes": mem}
                rows.append(row)
                cc = (f"{med['converted compiled'] / med['unconverted compiled']:.2f}" if a.compile else "-")
                r = row["ratio"]
                print(f"| {name} | {T} | {batch} | {base * 1e3:.1f} | {r['converted']:.2f} | "
                      f"{r.get('unconverted compiled', float('nan')):.2f} | {r.get('converted compiled', float('nan')):.2f} | "
                      f"{cc} | {mem['unconverted'] / 2**20:.1f} | {mem['converted'] / max(mem['unconverted'], 1):.2f} |",
                      flush=True)
    return rows


def add_grid_options(p: argparse.ArgumentParser) -> None:
    """The options of ``--grid`` (host-step's parser)."""
    p.add_argument("--grid", action="store_true",
                   help="time the grid of --nets x --grid-steps x --batch-sizes instead of one tutorial network")
    p.add_argument("--nets", default=",".join(NETS), help=f"grid networks, comma-separated: {', '.join(NETS)}")
    p.add_argument("--grid-steps", default="5,25,50", help="grid: time steps T, comma-separated")
    p.add_argument("--batch-sizes", default="32,128", help="grid: batch sizes, comma-separated")
    p.add_argument("--channels", type=int, default=128, help="grid: channels of spikingjelly-cnn (the example's 128)")
    p.add_argument("--device", default="cpu", help="grid: device to run on (cpu, cuda)")
    p.add_argument("--processes", default="each", choices=("each", "one"),
                   help="grid: time each variant in a process of its own, rounds interleaved (isolated.py; as a "
                        "user trains one network), or all four in this process (faster to start, but the "
                        "networks' states and compiled code interact)")


def grid_main(a: argparse.Namespace) -> int:
    """Run the grid for parsed host-step options ``a``; returns the exit status."""
    from tssl_plugin._optional import require

    for lib in sorted({NETS[n.strip()].library for n in a.nets.split(",") if n.strip() in NETS}):
        require(lib, lib)
    run_grid(a, torch.device(a.device))
    return 0
