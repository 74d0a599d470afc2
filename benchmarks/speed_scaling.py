"""``tssl-bench speed scaling``: the core op's forward+backward time in T, O(T) op against O(T^2) evaluation.

Both columns run the same forward and the same rule on the same input ``[T, *shape]``, side by side in
one process (timer.py: interleaved rounds, median of ``--repeats``); the O(T^2) column evaluates the PSC
error ``G[t] = sum_{t'>=t} kappa[t'-t] g[t']`` by the explicit sum over later steps, as the published
reference code does. Goals: time(T=100) / time(T=10) <= 12 for the op, and the op >= 5x
faster than O(T^2) at T=100.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from .options import HelpFormatter, Parser, add_int_list, add_timing_options
from .timer import time_calls

__all__ = ["main", "build_parser", "quadratic_lif", "run"]


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench speed scaling``."""
    p = Parser(prog="tssl-bench speed scaling", formatter_class=HelpFormatter,
               description=__doc__.split("\n\n")[0].replace("``", ""))
    add_int_list(p, "--shape", default=[64, 512], help="neuron shape N, ...")
    add_int_list(p, "--steps", "-T", default=[5, 10, 30, 100], help="time step counts T")
    p.add_argument("--device", default="cpu", help="device")
    p.add_argument("--impl", default="auto", help="tssl_lif implementation")
    add_timing_options(p, repeats=5, untimed=1)
    return p


class _QuadraticTSSL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: Any) -> torch.Tensor:
        from tssl_plugin._impl import reference as ref

        tr = ref.forward_sequence(x, k)
        ctx.save_for_backward(tr.o, tr.u, tr.du, tr.s)
        ctx.k = k
        return tr.s

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        from tssl_plugin._impl import reference as ref

        tr = ref.ForwardTrace(*ctx.saved_tensors)
        return ref.backward_sequence(g, tr, ctx.k, True, True, explicit_sum=True), None


def quadratic_lif(x: torch.Tensor) -> torch.Tensor:
    """Reference-style layer with the O(T^2) backward (PSC output, warm-up on)."""
    from tssl_plugin.functional import lif_constants

    return _QuadraticTSSL.apply(x, lif_constants(x))


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        fn(x.detach().requires_grad_()).backward(g)

    return call


def run(shape: Sequence[int], steps: Sequence[int], repeats: int, device: str, impl: str,
        untimed: int = 1) -> List[Dict[str, float]]:
    """One row per T: seconds of the op and of the O(T^2) evaluation, and their ratio."""
    from tssl_plugin.functional import tssl_lif

    gen = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    rows = []
    for T in steps:
        x = (torch.rand(T, *shape, generator=gen) * 0.6).to(dev)
        g = torch.randn(T, *shape, generator=gen).to(dev)
        t = time_calls({"op": _fwd_bwd(lambda z: tssl_lif(z, impl=impl), x, g), "quadratic": _fwd_bwd(quadratic_lif, x, g)},
                       repeats=repeats, untimed=untimed, device=dev)
        op, quad = t["op"].median(), t["quadratic"].median()
        rows.append({"T": T, "op_s": op, "quadratic_s": quad, "speedup": quad / op})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench speed scaling``; returns the exit status."""
    from .device import check_device

    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        check_device(a.device)
    except ValueError as err:
        parser.error(str(err))
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = run(a.shape, a.steps, a.repeats, a.device, a.impl, a.untimed)
    print(f"forward+backward, float32 [T, {', '.join(map(str, a.shape))}], device {a.device}, impl {a.impl}")
    print(f"{'T':>5} {'op (ms)':>10} {'O(T^2) (ms)':>12} {'O(T^2)/op':>10}")
    for r in rows:
        print(f"{r['T']:>5} {r['op_s'] * 1e3:>10.2f} {r['quadratic_s'] * 1e3:>12.2f} {r['speedup']:>10.2f}")
    by_t = {r["T"]: r for r in rows}
    if 10 in by_t and 100 in by_t:
        print(f"op time(T=100)/time(T=10) = {by_t[100]['op_s'] / by_t[10]['op_s']:.2f}  (goal <= 12)")
        print(f"O(T^2)/op at T=100        = {by_t[100]['speedup']:.2f}  (goal >= 5)")
    return 0
