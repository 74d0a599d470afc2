"""Why the step-wise node calls its fused kernels under ``torch.compile``: one step, three ways, side by side.

For each ``[batch, neurons]`` shape, on the CPU in one thread, with the rule's constants of a ``tau_m = 20`` layer:

* ``backward``: one step of the node's backward (``reference.carry_step`` on one-byte flags) by the fused kernel
  (``impl.step_backward``), by the reference's operations eagerly, and by the same operations under
  ``torch.compile`` (inductor's code, what the node ran compiled before the ``tssl_plugin::step_backward``
  operator);
* ``operator``: the fused forward bookkeeping called directly and through its registered operator
  (``tssl_plugin::step_forward``, what a compiled graph calls), i.e. the operator's per-call cost;
* ``bool``: a comparison that writes a bool tensor (``x > 1``, as the reference's forward left the masks its
  backward needs), eagerly and compiled.

Each line is the median of ``--repeats`` calls after untimed ones (the benchmarks' timer.py), in microseconds
(docs/performance.md, "The host-step grid in processes of their own").

Usage::

    python tools/step_compile_speed.py [--shapes 128x1000,32x12x12x12,32x1000] [--repeats 200]
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch


def _median_us(f: Callable[[], object], repeats: int, untimed: int) -> float:
    from tssl_plugin.benchmarks.timer import time_calls

    return time_calls({"f": f}, repeats=repeats, untimed=untimed)["f"].median() * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="128x1000,32x12x12x12,32x1000")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--untimed", type=int, default=10)
    a = p.parse_args()
    from tssl_plugin._impl import _op, _ReferenceImpl, select
    from tssl_plugin._impl import reference as ref
    from tssl_plugin.rule import lif_constants

    torch.set_num_threads(1)
    for text in a.shapes.split(","):
        shape = tuple(int(v) for v in text.split("x"))
        gen = torch.Generator().manual_seed(0)
        u = torch.rand(shape, generator=gen) * 1.5
        du, s, G, h = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen), \
            torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        o = u > 1.0
        k = lif_constants(u, 20.0, 3.0, 1.0, "subtract")
        flags = ref.step_flags(o, s, k.warmup_level)
        fused = select("auto", u)

        def reference(G, h, u, du, flags):
            return _ReferenceImpl.step_backward(G, h, u, du, flags, k, True, None, 1.0)[:2]

        compiled = torch.compile(reference)
        r = lambda f: _median_us(f, a.repeats, a.untimed)  # noqa: E731
        print(f"{text} backward: fused {r(lambda: fused.step_backward(G, h, u, du, flags, k, True, None, 1.0)):.0f} "
              f"us, reference eager {r(lambda: reference(G, h, u, du, flags)):.0f} us, reference compiled "
              f"{r(lambda: compiled(G, h, u, du, flags)):.0f} us ({fused.name})")
        enc = _op.encode(k)
        of = o.float()
        direct = r(lambda: fused.step_forward(o, s, k.inv_tau_s, k.warmup_level, torch.float32))
        through = r(lambda: torch.ops.tssl_plugin.step_forward.default(of, s, *enc, torch.float32))
        print(f"{text} operator: step_forward direct {direct:.0f} us, through the operator {through:.0f} us")
        gt = torch.compile(lambda x: x > 1.0)
        print(f"{text} bool: x > 1 eager {r(lambda: u > 1.0):.0f} us, compiled {r(lambda: gt(u)):.0f} us")


if __name__ == "__main__":
    main()
