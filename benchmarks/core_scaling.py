"""Scaling of the core op in T: forward+backward of one TSSL-BP layer, O(T) op vs O(T^2) evaluation.

Run from a checkout or an install::

    python -m tssl_plugin.benchmarks.core_scaling [--shape 64 512] [--steps 5 10 30 100] [--repeat 5]

Both columns run the same forward and the same rule on the same input, side by
side in one process; the O(T^2) column evaluates the PSC error
``G[t] = sum_{t'>=t} kappa[t'-t] g[t']`` by the explicit sum over later steps,
as the published reference code does. Goals (issue "Core"): time(T=100) /
time(T=10) <= 12 for the op, and the op >= 5x faster than O(T^2) at T=100.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable, List, Sequence

import torch

from tssl_plugin._impl import reference as ref
from tssl_plugin.functional import lif_constants, tssl_lif


class _QuadraticTSSL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: Any) -> torch.Tensor:
        tr = ref.forward_sequence(x, k)
        ctx.save_for_backward(tr.o, tr.u, tr.du, tr.s)
        ctx.k = k
        return tr.s

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        tr = ref.ForwardTrace(*ctx.saved_tensors)
        return ref.backward_sequence(g, tr, ctx.k, True, True, explicit_sum=True), None


def quadratic_lif(x: torch.Tensor) -> torch.Tensor:
    """Reference-style layer with the O(T^2) backward (PSC output, warm-up on)."""
    return _QuadraticTSSL.apply(x, lif_constants(x))


def time_fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor, repeat: int) -> float:
    """Median seconds of one forward+backward."""
    times = []
    for _ in range(repeat + 1):  # first call warms up
        xx = x.detach().requires_grad_()
        t0 = time.perf_counter()
        fn(xx).backward(g)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return times[len(times) // 2]


def run(shape: Sequence[int], steps: Sequence[int], repeat: int, device: str, impl: str) -> List[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for T in steps:
        x = (torch.rand(T, *shape, generator=gen) * 0.6).to(device)
        g = torch.randn(T, *shape, generator=gen).to(device)
        op = time_fwd_bwd(lambda z: tssl_lif(z, impl=impl), x, g, repeat)
        quad = time_fwd_bwd(quadratic_lif, x, g, repeat)
        rows.append({"T": T, "op_s": op, "quadratic_s": quad, "speedup": quad / op})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[64, 512], help="neuron shape N, ... (default: 64 512)")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 30, 100], help="T values (default: 5 10 30 100)")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions, median reported (default: 5)")
    p.add_argument("--device", default="cpu", help="device (default: cpu)")
    p.add_argument("--impl", default="auto", help="tssl_lif implementation (default: auto)")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    rows = run(a.shape, a.steps, a.repeat, a.device, a.impl)
    print(f"forward+backward, float32 [T, {', '.join(map(str, a.shape))}], device {a.device}, impl {a.impl}")
    print(f"{'T':>5} {'op (ms)':>10} {'O(T^2) (ms)':>12} {'O(T^2)/op':>10}")
    for r in rows:
        print(f"{r['T']:>5} {r['op_s'] * 1e3:>10.2f} {r['quadratic_s'] * 1e3:>12.2f} {r['speedup']:>10.2f}")
    by_t = {r["T"]: r for r in rows}
    if 10 in by_t and 100 in by_t:
        print(f"op time(T=100)/time(T=10) = {by_t[100]['op_s'] / by_t[10]['op_s']:.2f}  (goal <= 12)")
        print(f"O(T^2)/op at T=100        = {by_t[100]['speedup']:.2f}  (goal >= 5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
