"""``tssl-bench speed [layer]``: forward + backward time and memory of one spiking layer, every backend side by side.

For each backend, time step count ``T`` and layer size ``n``, an input current
``x [T, batch, n]`` (requires grad) goes through one layer of LIF neurons, the
loss ``sum(out * g)`` (fixed random ``g``) is back-propagated to ``x``, and the
median wall time over ``--repeats`` runs (after ``--untimed`` runs) is recorded,
split into forward and backward (timer.py). Only the neuron layer is timed: that
is the part that differs between backends.

* ``native:tssl``: ``tssl_plugin.tssl_lif`` over the whole sequence (PSC output);
* ``snntorch:*``: ``snn.Leaky`` called once per step with explicit ``mem``
  (``snntorch:tssl`` = the same after the adapter's ``convert``; when the adapter
  offers ``forward_sequence`` a second row ``snntorch:tssl[seq]`` times that);
* ``spikingjelly:*``: ``LIFNode`` in multi-step mode on ``[T, batch, n]``.

Memory, in one more untimed run: CUDA allocator peak during forward+backward on GPU; on CPU the bytes
autograd saves for backward (distinct storages), as in training (memory.py).

Writes ``config.json``, ``results.jsonl`` (one record per point, as it is timed), ``summary.json``,
``summary.csv``, ``summary.md`` (results_dir.py) and the plots ``speed_vs_T_size<n>.png``, ``time_memory.png``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from . import backends as B
from . import models as M
from . import report as R
from .memory import MEASURE_LABELS, SavedBytes, cuda_peak_bytes, memory_measure
from .options import HelpFormatter, Parser, add_int_list, add_timing_options, nonneg_int, pos_int
from .timer import time_calls

__all__ = ["main", "build_parser", "layer_fns", "time_layer", "DEFAULT_SPEED_BACKENDS"]

DEFAULT_SPEED_BACKENDS = ("native:tssl", "snntorch:tssl", "spikingjelly:tssl", "snntorch:atan", "spikingjelly:sigmoid")

DESCRIPTION = """\
tssl-bench speed: timing benchmarks, each measured side by side in one process.

  tssl-bench speed [layer] [options]   one spiking layer per backend (this help)
  tssl-bench speed mlp-step --help     one training step of the paper's MLP: TSSL-BP, SpikingJelly, ReLU
  tssl-bench speed scaling --help      the core op's time in T, against the O(T^2) evaluation
  tssl-bench speed gpu-layer --help    one layer on CUDA: TSSL-BP against each SpikingJelly LIF implementation

layer: forward + backward time and memory of one spiking layer, every backend side
by side. An input current x [T, batch, size] goes through one layer of LIF neurons,
sum(out * g) is back-propagated to x, and the median wall time over --repeats runs
(after --untimed runs) is recorded, split into forward and backward, with the ratio
to native:tssl. Only the neuron layer is timed."""


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench speed [layer]`` (every option shows its default)."""
    p = Parser(prog="tssl-bench speed", formatter_class=HelpFormatter, description=DESCRIPTION)
    p.add_argument("--backends", default=",".join(DEFAULT_SPEED_BACKENDS),
                   help="comma-separated LIBRARY:GRADIENT backends (tssl-bench --list-backends)")
    add_int_list(p, "--steps", "-T", default=[8, 32, 128], help="time step counts T to time")
    add_int_list(p, "--sizes", default=[256, 2048], help="layer sizes (neurons per sample) to time")
    p.add_argument("--batch-size", type=pos_int, default=32, help="batch size N of the input [T, N, size]")
    add_timing_options(p, repeats=5, untimed=2, threads=1)
    p.add_argument("--tau-m", type=float, default=5.0, help="membrane time constant")
    p.add_argument("--tau-s", type=float, default=3.0, help="synaptic (PSC) time constant")
    p.add_argument("--threshold", type=float, default=1.0, help="firing threshold")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the random inputs")
    p.add_argument("--out", default=None,
                   help="output folder, new or without earlier results (default: ./tssl-bench-results/speed-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="let --out name a folder with earlier results: delete them first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def layer_fns(backend: B.Backend, cfg: M.NeuronCfg, n: int, device: torch.device) -> Dict[str, Callable[[Tensor], Tensor]]:
    """``{row name: f(x [T, N, n]) -> out [T, N, n]}`` for one backend (one or two variants)."""
    backend.check_available()
    if backend.library == "native":
        from tssl_plugin import tssl_lif

        return {backend.name: lambda x: tssl_lif(x, cfg.tau_m, cfg.tau_s, cfg.threshold, output="psc")}
    arch = M.Arch("one", (M.Layer("fc", out=n),))
    net = backend.build(arch, (n,), M.initial_weights(arch, (n,), 0), cfg).to(device)
    neuron = net.ops[1]
    if backend.library == "snntorch":
        def step_loop(x: Tensor) -> Tensor:
            mem = neuron.init_leaky()
            out = []
            for t in range(x.shape[0]):
                spk, mem = neuron(x[t], mem)
                out.append(spk)
            return torch.stack(out)

        fns = {backend.name: step_loop}
        if hasattr(neuron, "forward_sequence"):
            def whole(x: Tensor) -> Tensor:
                out = neuron.forward_sequence(x)
                return out[0] if isinstance(out, tuple) else out  # (spk_seq, mem_seq)

            fns[backend.name + "[seq]"] = whole
        return fns
    from spikingjelly.activation_based import functional

    def multi_step(x: Tensor) -> Tensor:
        functional.reset_net(neuron)
        return neuron(x)

    return {backend.name: multi_step}


def _peak_bytes(fn: Callable[[Tensor], Tensor], x0: Tensor, g: Tensor, device: torch.device) -> int:
    """Peak memory of one forward + backward of ``fn`` (see the module docstring)."""
    x = x0.clone().requires_grad_(True)
    if device.type == "cuda":
        return cuda_peak_bytes(lambda: (fn(x) * g).sum().backward(), device)
    with SavedBytes() as saved:
        out = fn(x)
    (out * g).sum().backward()
    return saved.total


def time_layer(fn: Callable[[Tensor], Tensor], T: int, N: int, n: int, device: torch.device, *,
               repeats: int, untimed: int, seed: int) -> Dict[str, float]:
    """Median forward / backward / total milliseconds and peak memory (MiB) of ``fn`` on ``[T, N, n]``."""
    gen = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(T, N, n, generator=gen) * 0.8).to(device)
    g = torch.randn(T, N, n, generator=gen).to(device)
    run: Dict[str, Any] = {}

    def prepare() -> None:
        run["x"] = x0.clone().requires_grad_(True)

    def forward() -> None:
        run["loss"] = (fn(run["x"]) * g).sum()

    def backward() -> None:
        run.pop("loss").backward()

    peak = _peak_bytes(fn, x0, g, device)
    t = time_calls({"layer": (prepare, forward, backward)}, repeats=repeats, untimed=untimed, device=device)["layer"]
    return {"forward_ms": t.median(1) * 1e3, "backward_ms": t.median(2) * 1e3, "total_ms": t.median(1, 2) * 1e3,
            "peak_memory_mb": peak / 2 ** 20}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench speed [layer]``; returns the exit status."""
    from .device import pick_device
    from .extras import MissingExtras, check_requirements
    from .progress import progress_shown
    from .results_dir import check_new_out

    args = build_parser().parse_args(argv)
    out = Path(args.out or str(Path("tssl-bench-results") / ("speed-" + time.strftime("%Y%m%d-%H%M%S"))))
    try:
        if not (args.threshold > 0 and args.tau_m > 1 and args.tau_s >= 1):
            raise ValueError(f"need --threshold > 0, --tau-m > 1, --tau-s >= 1; got {args.threshold}, {args.tau_m}, "
                             f"{args.tau_s}")
        backends = B.resolve(args.backends.split(","))
        check_requirements([("matplotlib", "bench")] + ([("tqdm", "bench")] if progress_shown(args.quiet) else [])
                           + [r for b in backends for r in b.requirements()])
        for b in backends:
            b.check_available()
            if b.neuron != "lif":
                raise ValueError(f"backend {b.name}: the layer timing covers LIF backends only (a synaptic "
                                 f"network's layer is two filters); time it with tssl-bench training runs instead")
        device = pick_device(args.device)
        check_new_out(out, overwrite=args.overwrite, resume=None)
    except (ValueError, B.BackendUnavailable, MissingExtras) as err:
        print(f"tssl-bench speed: error: {err}", file=sys.stderr)
        return 2
    try:
        return _run(args, backends, device, out)
    except KeyboardInterrupt:
        print(f"tssl-bench speed: interrupted; the points timed so far are in {out / 'results.jsonl'}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, backends: List[B.Backend], device: torch.device, out: Path) -> int:
    from .machine import code_info, machine_info
    from .progress import progress
    from .results_dir import start_results, write_summary_files

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = M.NeuronCfg(args.tau_m, args.tau_s, args.threshold)
    measure = memory_measure(device, with_state=False)
    config = dict(vars(args))
    writer = start_results(out, config, overwrite=args.overwrite)
    points = [(b, n, T) for b in backends for n in args.sizes for T in args.steps]
    records: List[Dict[str, Any]] = []
    fn_cache: Dict[tuple, Dict[str, Callable]] = {}
    for b, n, T in progress(points, len(points), "speed", args.quiet, leave=True):
        key = (b.name, n)
        if key not in fn_cache:
            fn_cache[key] = layer_fns(b, cfg, n, device)
        for row, fn in fn_cache[key].items():
            m = time_layer(fn, T, args.batch_size, n, device, repeats=args.repeats, untimed=args.untimed, seed=args.seed)
            rec = {"backend": row, "library": b.library, "gradient": b.gradient, "T": T, "size": n,
                   "batch": args.batch_size, "device": str(device), "memory_measure": measure, **m}
            records.append(rec)
            writer.append(rec)
    base = {(r["T"], r["size"]): r["total_ms"] for r in records if r["backend"] == "native:tssl"}
    for r in records:
        r["ratio_to_native_tssl"] = r["total_ms"] / base[(r["T"], r["size"])] if (r["T"], r["size"]) in base else None
    machine = machine_info(device, 1)
    cols = ["backend", "T", "size", "batch", "forward_ms", "backward_ms", "total_ms", "ratio_to_native_tssl",
            "peak_memory_mb"]
    rows = [[f"`{r['backend']}`", r["T"], r["size"], f"{r['forward_ms']:.3f}", f"{r['backward_ms']:.3f}",
             f"{r['total_ms']:.3f}", "-" if r["ratio_to_native_tssl"] is None else f"{r['ratio_to_native_tssl']:.2f}",
             f"{r['peak_memory_mb']:.2f}"] for r in records]
    head = ["backend", "T", "size", "forward ms", "backward ms", "total ms", "× native:tssl", "peak MB"]
    md = (f"# tssl-bench speed: one spiking layer, forward + backward\n\nInput [T, {args.batch_size}, size], "
          f"median of {args.repeats} runs after {args.untimed} untimed runs, device "
          f"{machine.get('gpu') or machine['device']}, {machine['cpu_count']} CPU cores, torch {machine['torch']}, "
          f"{torch.get_num_threads()} thread(s). Peak memory: {measure}.\n\n" + R.markdown_table(head, rows))
    write_summary_files(out, {"runs": records, "config": config, "machine": machine, "code": code_info(),
                              "memory_measure": measure},
                        cols, [[r[c] for c in cols] for r in records], md)
    _plots(out, records, args, device, measure)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(str(c).strip("`").ljust(w) for c, w in zip(row, widths)))
    print(f"\nresults in {out}")
    return 0


def _plots(out: Path, records: List[Dict[str, Any]], args: argparse.Namespace, device: torch.device,
           measure: str) -> None:
    names = list(dict.fromkeys(r["backend"] for r in records))
    for n in args.sizes:
        series = {nm: ([r["T"] for r in records if r["backend"] == nm and r["size"] == n],
                       [r["total_ms"] for r in records if r["backend"] == nm and r["size"] == n]) for nm in names}
        R.plot_lines(out / f"speed_vs_T_size{n}.png", series, xlabel="time steps T", ylabel="forward+backward ms",
                     title=f"one LIF layer, size {n}, batch {args.batch_size} ({device})", logx=True, logy=True)
    Tm, nm_ = max(args.steps), max(args.sizes)
    pick = [r for r in records if r["T"] == Tm and r["size"] == nm_]
    R.plot_bars(out / "time_memory.png", [r["backend"] for r in pick],
                [("forward+backward ms", [r["total_ms"] for r in pick], None, "median wall time"),
                 ("peak memory MB", [r["peak_memory_mb"] for r in pick], None, MEASURE_LABELS.get(measure, measure))],
                title=f"one LIF layer at T={Tm}, size {nm_}, batch {args.batch_size} ({device})")
