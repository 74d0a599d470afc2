"""GPU cost of one spiking layer: TSSL-BP (Triton) against SpikingJelly 2.0's LIFNode, side by side, per T.

Forward + backward of one layer ``[T, 64, 65536]`` (input current in,
upstream gradient in, input gradient out), float32 on CUDA, for T = 4, 8, 16
by default, timed with CUDA events (median of ``--repeat``, the two columns
interleaved in one process). SpikingJelly picks its LIF kernels at import
time from ``SJ_LIF_CUDA_IMPLEMENTATION`` (``cuda``, ``triton`` or ``torch``),
so each of its implementations is measured in its own child process, which
times TSSL-BP beside it; the summary compares TSSL-BP with the fastest.

Reported per T:

* milliseconds of forward + backward and the ratio TSSL-BP / SpikingJelly
  (goal <= 1: no slower than SpikingJelly's fastest LIFNode);
* peak memory of forward + backward above what was allocated before
  (``torch.cuda.max_memory_allocated``), and its ratio (goal <= 1);
* TSSL-BP's achieved bandwidth: the bytes its kernels must move (forward: read
  ``x``, write the output, 8 B/element; backward with the trace in registers,
  ``T <= 32``: read ``x`` and ``g``, write ``dL/dx``, 12 B/element; two-pass
  backward for longer T: 30 B/element) over the measured time, as a fraction
  of the card's copy bandwidth measured in the same process (``clone`` of a
  1 GiB tensor, read + write).

Run::

    python -m tssl_plugin.benchmarks.perf_gpu_layer [--steps 4 8 16] [--shape 64 65536] [--repeat 20]
        [--sj-impl all|auto|cuda|triton|torch|none]

Without CUDA it says so and exits 0. No GPU numbers in this project's docs
come from anywhere but this script's output on a named card.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence

import torch

from tssl_plugin.functional import last_impl, tssl_lif

SJ_IMPLS = ("cuda", "triton", "torch")


def bytes_per_element(T: int) -> int:
    """Bytes TSSL-BP's kernels must move per element for forward + backward (float32, PSC output)."""
    from tssl_plugin._impl import triton_impl

    return 8 + (12 if T <= triton_impl.one_pass_max_t(torch.float32) else 30)


def cuda_time(fn: Callable[[], None], repeat: int, warmup: int = 3) -> List[float]:
    """Milliseconds of each of ``repeat`` calls of ``fn`` by CUDA events (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return times


def interleaved(runs: Dict[str, Callable[[], None]], repeat: int) -> Dict[str, float]:
    """Median ms of each entry, timed in alternation so clock changes hit all alike."""
    for fn in runs.values():
        cuda_time(fn, 0, warmup=3)
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for k, fn in runs.items():
            times[k] += cuda_time(fn, 1, warmup=0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_bytes(fn: Callable[[], None]) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def copy_gbps(repeat: int) -> float:
    big = torch.empty(2**28, device="cuda")  # 1 GiB
    ms = statistics.median(cuda_time(lambda: big.clone(), repeat))
    del big
    torch.cuda.empty_cache()
    return 2 * 2**28 * 4 / ms / 1e6


def measure(steps: Sequence[int], shape: Sequence[int], repeat: int, with_sj: bool) -> List[dict]:
    """One row per T: TSSL-BP and (``with_sj``) this process's SpikingJelly LIFNode, side by side."""
    dev = torch.device("cuda")
    rows = []
    sj_name = None
    node = None
    if with_sj:
        from spikingjelly.activation_based import functional as sjf, neuron

        try:
            from spikingjelly._ops.lif import _selection

            sj_name = _selection._get_cuda_selection(dev).name
        except Exception:  # private API of SpikingJelly 2.0; the label is informational
            sj_name = os.environ.get("SJ_LIF_CUDA_IMPLEMENTATION", "auto")
        node = neuron.LIFNode(step_mode="m").to(dev)  # default sigmoid surrogate
    for T in steps:
        gen = torch.Generator(device=dev).manual_seed(T)
        x = torch.rand((T, *shape), device=dev, generator=gen) * 0.6
        g = torch.randn((T, *shape), device=dev, generator=gen)

        def tssl() -> None:
            xx = x.detach().requires_grad_()
            tssl_lif(xx).backward(g)

        runs = {"tssl": tssl}
        if node is not None:
            def sj() -> None:
                sjf.reset_net(node)
                xx = x.detach().requires_grad_()
                node(xx).backward(g)

            runs["sj"] = sj
        ms = interleaved(runs, repeat)
        row = {"T": T, "shape": list(shape), "elements": x.numel(), "tssl_ms": ms["tssl"],
               "tssl_impl": last_impl("cuda", torch.float32), "tssl_peak_bytes": peak_bytes(tssl),
               "tssl_bytes_per_element": bytes_per_element(T)}
        if node is not None:
            row.update(sj_impl=sj_name, sj_ms=ms["sj"], sj_peak_bytes=peak_bytes(runs["sj"]))
        rows.append(row)
        del x, g
        torch.cuda.empty_cache()
    return rows


def _child(impl: str, a: argparse.Namespace) -> Optional[List[dict]]:
    """Measure in a child process whose SpikingJelly uses LIF implementation ``impl``."""
    env = dict(os.environ, SJ_LIF_CUDA_IMPLEMENTATION=impl)
    cmd = [sys.executable, "-m", "tssl_plugin.benchmarks.perf_gpu_layer", "--json", "--sj-impl", "this",
           "--steps", *map(str, a.steps), "--shape", *map(str, a.shape), "--repeat", str(a.repeat)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"(SpikingJelly implementation {impl!r} failed: {res.stderr.strip().splitlines()[-1:]} )")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16], help="T values (default 4 8 16)")
    p.add_argument("--shape", type=int, nargs="+", default=[64, 65536], help="neuron shape (default 64 65536)")
    p.add_argument("--repeat", type=int, default=20, help="timed repetitions, median reported (default 20)")
    p.add_argument("--sj-impl", default="all",
                   help="SpikingJelly LIF implementations: all (one child process each), auto, cuda, triton, "
                        "torch, none (default all)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode: one JSON line
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("perf_gpu_layer: CUDA is not available on this machine; nothing measured.")
        return 0
    if a.sj_impl == "this":  # child: SJ_LIF_CUDA_IMPLEMENTATION was set by the parent
        print(json.dumps(measure(a.steps, a.shape, a.repeat, with_sj=True)))
        return 0
    try:
        import spikingjelly.activation_based  # noqa: F401
        have_sj = a.sj_impl != "none"
    except ImportError as err:
        print(f"(SpikingJelly columns skipped: {err}; pip install 'tssl-plugin[spikingjelly]')")
        have_sj = False
    name = torch.cuda.get_device_name()
    bw = copy_gbps(a.repeat)
    print(f"one LIF layer, forward + backward, float32 [T, {', '.join(map(str, a.shape))}], {name}, "
          f"torch {torch.__version__}, median of {a.repeat}; copy bandwidth {bw:.0f} GB/s (read + write)")
    results: Dict[str, List[dict]] = {}
    if not have_sj:
        results["-"] = measure(a.steps, a.shape, a.repeat, with_sj=False)
    elif a.sj_impl == "all":
        for impl in SJ_IMPLS:
            rows = _child(impl, a)
            if rows is not None:
                results[impl] = rows
    else:
        results[a.sj_impl] = _child(a.sj_impl, a) or []
    print(f"{'T':>4} {'SJ impl':>10} {'tssl ms':>9} {'SJ ms':>9} {'time x':>7} {'tssl MiB':>9} {'SJ MiB':>9} "
          f"{'mem x':>6} {'tssl GB/s':>10} {'of copy':>8}")
    best: Dict[int, dict] = {}
    for impl, rows in results.items():
        for r in rows:
            gbps = r["tssl_bytes_per_element"] * r["elements"] / r["tssl_ms"] / 1e6
            sj_ms = r.get("sj_ms")
            line = (f"{r['T']:>4} {r.get('sj_impl', '-'):>10} {r['tssl_ms']:>9.3f} "
                    f"{(sj_ms if sj_ms else float('nan')):>9.3f} "
                    f"{(r['tssl_ms'] / sj_ms if sj_ms else float('nan')):>7.2f} {r['tssl_peak_bytes'] / 2**20:>9.1f} "
                    f"{(r.get('sj_peak_bytes', float('nan')) / 2**20):>9.1f} "
                    f"{(r['tssl_peak_bytes'] / r['sj_peak_bytes'] if sj_ms else float('nan')):>6.2f} "
                    f"{gbps:>10.0f} {gbps / bw:>8.2f}")
            print(line + f"   (tssl impl: {r['tssl_impl']})")
            if sj_ms and (r["T"] not in best or sj_ms < best[r["T"]]["sj_ms"]):
                best[r["T"]] = r
    for T, r in sorted(best.items()):
        print(f"T={T}: tssl / fastest SpikingJelly ({r['sj_impl']}): time {r['tssl_ms'] / r['sj_ms']:.2f}x "
              f"(goal <= 1), peak memory {r['tssl_peak_bytes'] / r['sj_peak_bytes']:.2f}x (goal <= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
