"""GPU cost of one spiking layer ``[T=8, 64, 65536]``: TSSL-BP (Triton) vs SpikingJelly's LIF, side by side.

Forward + backward of one layer (input current in, upstream gradient in,
input gradient out), float32 on CUDA, timed with CUDA events (median of
``--repeat``), both columns in one process. Also reported:

* achieved memory bandwidth of the TSSL-BP kernels, from the bytes they must
  move (forward reads x, writes o, s: 9 B/element; backward recomputes the
  trace, reading x and writing u, du, flags, then reads g, u, du, flags and
  writes dL/dx: 30 B/element) as a fraction of the device's measured copy
  bandwidth and of its nominal peak where known;
* peak memory of forward + backward for each (``torch.cuda.max_memory_allocated``).

Run::

    python -m tssl_plugin.benchmarks.perf_gpu_layer [--steps 8] [--shape 64 65536] [--repeat 20]

Goal (issue "Performance"): within 1.2x of SpikingJelly's fastest surrogate LIF
path; peak memory <= SpikingJelly's. Without CUDA it prints why and exits 0.
"""
from __future__ import annotations

import argparse
import statistics
from typing import Callable, Dict, Sequence

import torch

from tssl_plugin.functional import tssl_lif

#: nominal peak HBM bandwidth (GB/s) by device-name fragment, most specific first.
NOMINAL_GBPS = (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100", 3350.0), ("A100-SXM4-80GB", 2039.0),
                ("A100", 1555.0), ("L40S", 864.0), ("4090", 1008.0), ("V100", 900.0))

BYTES_PER_ELEMENT = 9 + 30  # see module docstring (float32, PSC output, warm-up on)


def cuda_time(fn: Callable[[], None], repeat: int) -> float:
    """Median milliseconds of ``fn`` by CUDA events (after 3 warm-up calls)."""
    for _ in range(3):
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
    return statistics.median(times)


def peak_mb(fn: Callable[[], None], base: int) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--shape", type=int, nargs="+", default=[64, 65536])
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("perf_gpu_layer: CUDA is not available on this machine; nothing measured.")
        return 0
    from tssl_plugin import _impl

    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    shape = (a.steps, *a.shape)
    x = torch.rand(shape, device=dev, generator=gen) * 0.6
    g = torch.randn(shape, device=dev, generator=gen)
    numel = x.numel()
    impl = _impl.select("auto", x).name
    base = torch.cuda.memory_allocated()

    runs: Dict[str, Callable[[], None]] = {}

    def tssl() -> None:
        xx = x.detach().requires_grad_()
        tssl_lif(xx, impl="auto").backward(g)

    runs[f"tssl_lif (impl={impl})"] = tssl
    try:
        from spikingjelly.activation_based import functional as sjf, neuron, surrogate

        for sname in ("Sigmoid", "ATan"):
            node = neuron.LIFNode(step_mode="m", surrogate_function=getattr(surrogate, sname)()).to(dev)

            def sj(node=node) -> None:
                sjf.reset_net(node)
                xx = x.detach().requires_grad_()
                node(xx).backward(g)

            runs[f"SpikingJelly LIFNode ({sname})"] = sj
    except ImportError as err:
        print(f"(SpikingJelly columns skipped: {err})")

    ms = {k: cuda_time(fn, a.repeat) for k, fn in runs.items()}
    mem = {k: peak_mb(fn, base) for k, fn in runs.items()}
    copy_ms = cuda_time(lambda: x.clone(), a.repeat)
    copy_gbps = 2 * numel * 4 / copy_ms / 1e6
    name = torch.cuda.get_device_name()
    nominal = next((v for k, v in NOMINAL_GBPS if k in name), None)

    print(f"one layer fwd+bwd, float32 {list(shape)}, {name}, median of {a.repeat}")
    print(f"{'path':<34} {'ms':>8} {'peak MB':>9}")
    for k in runs:
        print(f"{k:<34} {ms[k]:>8.3f} {mem[k]:>9.1f}")
    tk = next(iter(runs))
    sj_keys = [k for k in runs if k.startswith("SpikingJelly")]
    if sj_keys:
        best = min(sj_keys, key=ms.get)
        print(f"tssl / fastest SpikingJelly ({best}): time {ms[tk] / ms[best]:.2f}x (goal <= 1.2), "
              f"peak memory {mem[tk] / mem[best]:.2f}x (goal <= 1)")
    gbps = BYTES_PER_ELEMENT * numel / ms[tk] / 1e6
    line = f"tssl achieved {gbps:.0f} GB/s = {gbps / copy_gbps:.2f} of measured copy bandwidth ({copy_gbps:.0f} GB/s)"
    if nominal:
        line += f", {gbps / nominal:.2f} of nominal peak ({nominal:.0f} GB/s)"
    print(line + " (includes launch overhead and the Python-side op)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
