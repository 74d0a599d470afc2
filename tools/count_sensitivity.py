"""How well TSSL-BP's rule estimates d(spike count)/d(input), against finite differences.

One layer of independent LIF neurons driven by a noisy current ``x[t] = drive + 0.5 n[t]`` (``n``
standard normal, T = 50 steps, 4000 neurons, float64) and the loss ``L = sum_t o[t]`` (the spike count;
``dL/do[t] = 1``). The rule's estimate of ``dL/d drive`` is ``sum_t dL/dx[t]`` of the backward pass; the
finite difference is ``(count(x + eps) - count(x - eps)) / (2 eps)``, ``eps = 0.05``, averaged over the
neurons (the noise averages the step function's jumps into a slope). Rules compared:

* ``current``: :func:`tssl_plugin.functional.tssl_lif` as it is, with the adapters' cap
  ``sensitivity_cap = 1/threshold`` (``--cap`` changes it);
* ``current-cap8``: the same with the reference's cap 8;
* ``interpolated``: both with ``crossing="interpolated"`` (``c`` times the fraction of the step's rise spent
  below the threshold; the adapters' default for the reset to zero);
* ``shift``: the previous subtraction rule, written out here: ``delta = c (G + theta/tau_m h) + beta h``
  for both subtraction resets, cap 8, every spike counted (no threshold-crossing condition).

Usage::

    python tools/count_sensitivity.py [--betas 0.5,0.9,0.95]   # beta 1.0: integrate-and-fire (no leak) [--drives 0.3,0.6,1.0,1.5,2.5]

Prints one line per (beta, reset, drive): firing rate, the finite difference, each rule's estimate.
Warm-up off (the neurons fire), so the numbers are the spike-time part of the rule alone.
"""
from __future__ import annotations

import argparse
from typing import List

import torch

from tssl_plugin.functional import tssl_lif
from tssl_plugin.rule import lif_constants
from tssl_plugin._impl.reference import forward_sequence, spike_sensitivity

RESETS = ("subtract_after_leak", "subtract", "zero")


def rule_estimate(x: torch.Tensor, tau_m: float, reset: str, cap: float, crossing: str = "step") -> float:
    """``mean_n sum_t dL/dx[t]`` for ``L = sum_t o[t]`` by the core op."""
    xx = x.clone().requires_grad_()
    o = tssl_lif(xx, tau_m, 3.0, 1.0, output="spike", reset=reset, warmup=False, sensitivity_cap=cap,
                 crossing=crossing)
    (g,) = torch.autograd.grad(o.sum(), xx)
    return float(g.sum(0).mean())


def shift_rule_estimate(x: torch.Tensor, tau_m: float, reset: str) -> float:
    """The previous rule for the subtraction resets (the paper's rule for ``zero``), cap 8, every spike."""
    k = lif_constants(x, tau_m, 3.0, 1.0, reset)
    tr = forward_sequence(x, k)
    beta = 1 - k.inv_tau_m
    h = torch.zeros_like(x[0])
    total = torch.zeros_like(x[0])
    for t in range(x.shape[0] - 1, -1, -1):
        of = tr.o[t].to(x.dtype)
        c = spike_sensitivity(of, tr.du[t], 8.0)
        if reset == "zero":
            h = c * (1.0 + h * tr.u[t] * k.inv_tau_m) + (1 - of) * beta * h
        else:
            h = c * (1.0 + k.threshold * k.inv_tau_m * h) + beta * h
        total = total + h
    return float(total.mean())


def finite_difference(x: torch.Tensor, tau_m: float, reset: str, eps: float = 0.05) -> float:
    k = lif_constants(x, tau_m, 3.0, 1.0, reset)

    def count(z: torch.Tensor) -> torch.Tensor:
        return forward_sequence(z, k).o.to(z.dtype).sum(0)

    return float(((count(x + eps) - count(x - eps)) / (2 * eps)).mean())


def _floats(text: str) -> List[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--betas", default="0.5,0.9,0.95")
    p.add_argument("--drives", default="0.3,0.6,1.0,1.5,2.5")
    p.add_argument("--cap", type=float, default=1.0, help="the current rule's cap (threshold 1)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--neurons", type=int, default=4000)
    args = p.parse_args()
    torch.manual_seed(0)
    print("| beta | reset | drive | firing rate | finite difference | current (cap "
          f"{args.cap:g}) | current, cap 8 | interpolated (cap {args.cap:g}) | interpolated, cap 8 | "
          "previous rule (shift, cap 8) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for beta in _floats(args.betas):
        tau_m = 1.0 / (1.0 - beta) if beta < 1.0 else float("inf")  # beta 1: integrate-and-fire
        for reset in RESETS:
            for drive in _floats(args.drives):
                x = drive + 0.5 * torch.randn(args.steps, args.neurons, dtype=torch.float64)
                k = lif_constants(x, tau_m, 3.0, 1.0, reset)
                rate = float(forward_sequence(x, k).o.double().mean())
                print(f"| {beta:g} | {reset} | {drive:g} | {rate:.2f} | {finite_difference(x, tau_m, reset):.1f} | "
                      f"{rule_estimate(x, tau_m, reset, args.cap):.1f} | {rule_estimate(x, tau_m, reset, 8.0):.1f} | "
                      f"{rule_estimate(x, tau_m, reset, args.cap, 'interpolated'):.1f} | "
                      f"{rule_estimate(x, tau_m, reset, 8.0, 'interpolated'):.1f} | "
                      f"{shift_rule_estimate(x, tau_m, reset):.1f} |", flush=True)


if __name__ == "__main__":
    main()
