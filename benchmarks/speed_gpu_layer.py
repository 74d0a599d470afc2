"""``tssl-bench speed gpu-layer``: GPU cost of one spiking layer, TSSL-BP (Triton) against SpikingJelly 2.0's
LIFNode, side by side, per T.

Forward + backward of one layer ``[T, 64, 65536]`` (input current in, upstream gradient in, input
gradient out), float32 on CUDA, for T = 4, 8, 16 by default, timed with CUDA events (timer.py: median of
``--repeats``, the two columns interleaved in one process). SpikingJelly picks its LIF kernels at import
time from ``SJ_LIF_CUDA_IMPLEMENTATION`` (``cuda``, ``triton`` or ``torch``), so each of its
implementations is measured in its own child process, which times TSSL-BP beside it; the summary
compares TSSL-BP with the fastest.

Reported per T:

* milliseconds of forward + backward and the ratio TSSL-BP / SpikingJelly (goal <= 1: no slower than
  SpikingJelly's fastest LIFNode);
* peak memory of forward + backward above what was allocated before (``torch.cuda.max_memory_allocated``),
  and its ratio (goal <= 1);
* TSSL-BP's achieved bandwidth: the bytes its kernels must move (forward: read ``x``, write the output,
  8 B/element; backward with the trace in registers, ``T <= 32``: read ``x`` and ``g``, write ``dL/dx``,
  12 B/element; two-pass backward for longer T: 30 B/element) over the measured time, as a fraction of the
  card's copy bandwidth measured in the same process (``clone`` of a 1 GiB tensor, read + write).

Without CUDA it says so and exits 0. No GPU numbers in this project's docs come from anywhere but this
command's output on a named card.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .memory import cuda_peak_bytes
from .options import HelpFormatter, Parser, add_int_list, add_timing_options
from .timer import time_calls

__all__ = ["main", "build_parser", "measure", "bytes_per_element", "copy_gbps", "SJ_IMPLS"]

SJ_IMPLS = ("cuda", "triton", "torch")


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench speed gpu-layer``."""
    p = Parser(prog="tssl-bench speed gpu-layer", formatter_class=HelpFormatter,
               description=__doc__.split("\n\n")[0].replace("``", ""))
    add_int_list(p, "--steps", "-T", default=[4, 8, 16], help="time step counts T")
    add_int_list(p, "--shape", default=[64, 65536], help="neuron shape")
    p.add_argument("--sj-impl", default="all", choices=("all", "auto", *SJ_IMPLS, "none", "this"),
                   help="SpikingJelly LIF implementations: all (one child process each), auto, cuda, triton, torch, "
                        "none (this: the child process's own, internal)")
    add_timing_options(p, repeats=20, untimed=3)
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode: one JSON line
    return p


def bytes_per_element(T: int) -> int:
    """Bytes TSSL-BP's kernels must move per element for forward + backward (float32, PSC output)."""
    from tssl_plugin._impl import triton_impl

    return 8 + (12 if T <= triton_impl.one_pass_max_t(torch.float32) else 30)


def copy_gbps(repeats: int, untimed: int = 3) -> float:
    """The card's copy bandwidth in GB/s (read + write), from ``clone`` of a 1 GiB tensor."""
    big = torch.empty(2**28, device="cuda")  # 1 GiB
    s = time_calls({"copy": lambda: big.clone()}, repeats=repeats, untimed=untimed, cuda_events=True)["copy"].median()
    del big
    torch.cuda.empty_cache()
    return 2 * 2**28 * 4 / s / 1e9


def measure(steps: Sequence[int], shape: Sequence[int], repeats: int, with_sj: bool, untimed: int = 3) -> List[dict]:
    """One row per T: TSSL-BP and (``with_sj``) this process's SpikingJelly LIFNode, side by side."""
    from tssl_plugin.functional import last_impl, tssl_lif

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

        runs: Dict[str, Callable[[], None]] = {"tssl": tssl}
        if node is not None:
            def sj() -> None:
                sjf.reset_net(node)
                xx = x.detach().requires_grad_()
                node(xx).backward(g)

            runs["sj"] = sj
        ms = {k: t.median() * 1e3 for k, t in time_calls(runs, repeats=repeats, untimed=untimed, cuda_events=True).items()}
        row = {"T": T, "shape": list(shape), "elements": x.numel(), "tssl_ms": ms["tssl"],
               "tssl_impl": last_impl("cuda", torch.float32), "tssl_peak_bytes": cuda_peak_bytes(tssl, dev),
               "tssl_bytes_per_element": bytes_per_element(T)}
        if node is not None:
            row.update(sj_impl=sj_name, sj_ms=ms["sj"], sj_peak_bytes=cuda_peak_bytes(runs["sj"], dev))
        rows.append(row)
        del x, g
        torch.cuda.empty_cache()
    return rows


def _child(impl: str, a: argparse.Namespace) -> Optional[List[dict]]:
    """Measure in a child process whose SpikingJelly uses LIF implementation ``impl``."""
    env = dict(os.environ, SJ_LIF_CUDA_IMPLEMENTATION=impl)
    cmd = [sys.executable, "-m", "tssl_plugin.benchmarks", "speed", "gpu-layer", "--json", "--sj-impl", "this",
           "--steps", *map(str, a.steps), "--shape", *map(str, a.shape), "--repeats", str(a.repeats),
           "--untimed", str(a.untimed)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"(SpikingJelly implementation {impl!r} failed: {res.stderr.strip().splitlines()[-1:]} )")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench speed gpu-layer``; returns the exit status."""
    a = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("tssl-bench speed gpu-layer: CUDA is not available on this machine; nothing measured.")
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.sj_impl == "this":  # child: SJ_LIF_CUDA_IMPLEMENTATION was set by the parent
        print(json.dumps(measure(a.steps, a.shape, a.repeats, with_sj=True, untimed=a.untimed)))
        return 0
    try:
        import spikingjelly.activation_based  # noqa: F401
        have_sj = a.sj_impl != "none"
    except ImportError as err:
        print(f"(SpikingJelly columns skipped: {err}; pip install 'tssl-plugin[spikingjelly]')")
        have_sj = False
    name = torch.cuda.get_device_name()
    bw = copy_gbps(a.repeats, a.untimed)
    print(f"one LIF layer, forward + backward, float32 [T, {', '.join(map(str, a.shape))}], {name}, "
          f"torch {torch.__version__}, median of {a.repeats}; copy bandwidth {bw:.0f} GB/s (read + write)")
    results: Dict[str, List[dict]] = {}
    if not have_sj:
        results["-"] = measure(a.steps, a.shape, a.repeats, with_sj=False, untimed=a.untimed)
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
