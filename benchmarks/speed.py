"""``tssl-bench speed``: forward + backward time and memory of one spiking layer, every backend side by side.

For each backend, time step count ``T`` and layer size ``n``, an input current
``x [T, batch, n]`` (requires grad) goes through one layer of LIF neurons, the
loss ``sum(out * g)`` (fixed random ``g``) is back-propagated to ``x``, and the
median wall time over ``--repeats`` runs (after ``--warmup`` runs) is recorded,
split into forward and backward. Only the neuron layer is timed: that is the
part that differs between backends.

* ``native:tssl``: ``tssl_plugin.tssl_lif`` over the whole sequence (PSC output);
* ``snntorch:*``: ``snn.Leaky`` called once per step with explicit ``mem``
  (``snntorch:tssl`` = the same after the adapter's ``convert``; when the adapter
  offers ``forward_sequence`` a second row ``snntorch:tssl[seq]`` times that);
* ``spikingjelly:*``: ``LIFNode`` in multi-step mode on ``[T, batch, n]``.

Memory: CUDA allocator peak during forward+backward on GPU; on CPU the bytes
autograd saves for backward (distinct storages), as in training.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from . import backends as B
from . import models as M
from . import report as R
from .options import HelpFormatter, Parser, ints, nonneg_int, pos_int

__all__ = ["main", "build_parser", "layer_fn", "time_layer"]

DEFAULT_SPEED_BACKENDS = ("native:tssl", "snntorch:tssl", "spikingjelly:tssl", "snntorch:atan", "spikingjelly:sigmoid")


DESCRIPTION = """\
tssl-bench speed: forward + backward time and memory of one spiking layer, every
backend side by side. An input current x [T, batch, size] goes through one layer
of LIF neurons, sum(out * g) is back-propagated to x, and the median wall time
over --repeats runs (after --warmup untimed runs) is recorded, split into forward
and backward, with the ratio to native:tssl. Only the neuron layer is timed."""


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench speed`` (every option shows its default)."""
    p = Parser(prog="tssl-bench speed", formatter_class=HelpFormatter, description=DESCRIPTION)
    p.add_argument("--backends", default=",".join(DEFAULT_SPEED_BACKENDS),
                   help="comma-separated LIBRARY:GRADIENT backends (tssl-bench --list-backends)")
    p.add_argument("--steps", "-T", type=ints, default=[8, 32, 128], help="time step counts T to time")
    p.add_argument("--sizes", type=ints, default=[256, 2048], help="layer sizes (neurons per sample) to time")
    p.add_argument("--batch-size", type=pos_int, default=32, help="batch size N of the input [T, N, size]")
    p.add_argument("--repeats", type=pos_int, default=5, help="timed runs per point (the median is reported)")
    p.add_argument("--warmup", type=nonneg_int, default=2, help="untimed runs before timing")
    p.add_argument("--tau-m", type=float, default=5.0, help="membrane time constant")
    p.add_argument("--tau-s", type=float, default=3.0, help="synaptic (PSC) time constant")
    p.add_argument("--threshold", type=float, default=1.0, help="firing threshold")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=nonneg_int, default=1, help="torch CPU threads (0: torch default)")
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_layer(fn: Callable[[Tensor], Tensor], T: int, N: int, n: int, device: torch.device, *,
               repeats: int, warmup: int, seed: int) -> Dict[str, float]:
    """Median forward / backward milliseconds and peak memory of ``fn`` on ``[T, N, n]``."""
    from .memory import SavedBytes as _SavedBytes

    gen = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(T, N, n, generator=gen) * 0.8).to(device)
    g = torch.randn(T, N, n, generator=gen).to(device)
    fw, bw, peak = [], [], 0
    for i in range(warmup + repeats):
        x = x0.clone().requires_grad_(True)
        counter = _SavedBytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        _sync(device)
        t0 = time.perf_counter()
        if device.type == "cpu" and i == 0:
            with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
                out = fn(x)
            peak = counter.total
        else:
            out = fn(x)
        loss = (out * g).sum()
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device) - base)
        if i >= warmup:
            fw.append((t1 - t0) * 1e3)
            bw.append((t2 - t1) * 1e3)
    f, b = statistics.median(fw), statistics.median(bw)
    return {"forward_ms": f, "backward_ms": b, "total_ms": statistics.median([a + c for a, c in zip(fw, bw)]),
            "peak_memory_mb": peak / 2 ** 20}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the speed sub-command; returns the exit status."""
    from .device import pick_device

    from .extras import MissingExtras, check_requirements
    from .results_dir import check_new_out, clear_results

    args = build_parser().parse_args(argv)
    out = Path(args.out or str(Path("tssl-bench-results") / ("speed-" + time.strftime("%Y%m%d-%H%M%S"))))
    show_bar = not args.quiet and sys.stderr.isatty()
    try:
        if not (args.threshold > 0 and args.tau_m > 1 and args.tau_s >= 1):
            raise ValueError(f"need --threshold > 0, --tau-m > 1, --tau-s >= 1; got {args.threshold}, {args.tau_m}, "
                             f"{args.tau_s}")
        backends = B.resolve(args.backends.split(","))
        check_requirements([("matplotlib", "bench")] + ([("tqdm", "bench")] if show_bar else [])
                           + [r for b in backends for r in b.requirements()])
        for b in backends:
            b.check_available()
        device = pick_device(args.device)
        check_new_out(out, overwrite=args.overwrite)
    except (ValueError, B.BackendUnavailable, MissingExtras) as err:
        print(f"tssl-bench speed: error: {err}", file=sys.stderr)
        return 2
    try:
        return _run(args, backends, device, out, show_bar, clear_results)
    except KeyboardInterrupt:
        print(f"tssl-bench speed: interrupted; the points timed so far are in {out / 'results.jsonl'}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, backends: List[B.Backend], device: torch.device, out: Path, show_bar: bool,
         clear_results) -> int:
    from .machine import machine_info
    from .memory import MEASURE_LABELS as _MEASURE_LABEL

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.overwrite:
        clear_results(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = M.NeuronCfg(args.tau_m, args.tau_s, args.threshold)
    measure = ("cuda_max_memory_allocated" if device.type == "cuda" else "cpu_autograd_saved_tensors")
    writer = R.JsonlWriter(out / "results.jsonl")
    writer.rewrite([])
    config = {k: v for k, v in vars(args).items()}
    R.atomic_write_json(out / "config.json", config)
    points = [(b, n, T) for b in backends for n in args.sizes for T in args.steps]
    bar = points
    if show_bar:
        from tqdm.auto import tqdm

        bar = tqdm(points, desc="speed", dynamic_ncols=True)
    records: List[Dict[str, Any]] = []
    fn_cache: Dict[tuple, Dict[str, Callable]] = {}
    for b, n, T in bar:
        key = (b.name, n)
        if key not in fn_cache:
            fn_cache[key] = layer_fns(b, cfg, n, device)
        for row, fn in fn_cache[key].items():
            m = time_layer(fn, T, args.batch_size, n, device, repeats=args.repeats, warmup=args.warmup, seed=args.seed)
            rec = {"backend": row, "library": b.library, "gradient": b.gradient, "T": T, "size": n,
                   "batch": args.batch_size, "device": str(device), "memory_measure": measure, **m}
            records.append(rec)
            writer.append(rec)
    base = {(r["T"], r["size"]): r["total_ms"] for r in records if r["backend"] == "native:tssl"}
    for r in records:
        r["ratio_to_native_tssl"] = r["total_ms"] / base[(r["T"], r["size"])] if (r["T"], r["size"]) in base else None
    summary = {"runs": records, "config": config, "machine": machine_info(device, 1), "memory_measure": measure,
               "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    R.atomic_write_json(out / "summary.json", summary)
    cols = ["backend", "T", "size", "batch", "forward_ms", "backward_ms", "total_ms", "ratio_to_native_tssl",
            "peak_memory_mb"]
    R.atomic_write_text(out / "summary.csv", R.csv_text(cols, [[r[c] for c in cols] for r in records]))
    rows = [[f"`{r['backend']}`", r["T"], r["size"], f"{r['forward_ms']:.3f}", f"{r['backward_ms']:.3f}",
             f"{r['total_ms']:.3f}", "-" if r["ratio_to_native_tssl"] is None else f"{r['ratio_to_native_tssl']:.2f}",
             f"{r['peak_memory_mb']:.2f}"] for r in records]
    head = ["backend", "T", "size", "forward ms", "backward ms", "total ms", "× native:tssl", "peak MB"]
    mi = summary["machine"]
    md = (f"# tssl-bench speed: one spiking layer, forward + backward\n\nInput [T, {args.batch_size}, size], "
          f"median of {args.repeats} runs after {args.warmup} warm-up runs, device {mi.get('gpu') or mi['device']}, "
          f"{mi['cpu_count']} CPU cores, torch {mi['torch']}, {torch.get_num_threads()} thread(s). "
          f"Peak memory: {measure}.\n\n" + R.markdown_table(head, rows))
    R.atomic_write_text(out / "summary.md", md)
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
                 ("peak memory MB", [r["peak_memory_mb"] for r in pick], None, _MEASURE_LABEL.get(measure, measure))],
                title=f"one LIF layer at T={Tm}, size {nm_}, batch {args.batch_size} ({device})")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(str(c).strip("`").ljust(w) for c, w in zip(row, widths)))
    print(f"\nresults in {out}")
    return 0
