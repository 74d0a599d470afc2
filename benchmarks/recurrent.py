"""``tssl-bench recurrent``: a recurrent snnTorch network on row-by-row MNIST, with and without ``convert``.

A sequence task that needs memory: each 28x28 MNIST image is fed one row per
time step (T = 28, 28 inputs per step), so the class is only decidable from
what the network kept of earlier rows. The network, as snnTorch users build
recurrent SNNs::

    Linear(28, H) - snn.RLeaky(beta, linear_features=H) - Linear(H, 10) - snn.Leaky(beta)

in snnTorch's step loop with explicit ``spk``/``mem`` (snnTorch's defaults: reset
by subtraction, ``atan`` surrogate, all-to-all recurrence). Variants: ``host``
(unconverted) and ``tssl`` (``convert(net)``: TSSL-BP in both layers, the
recurrent path included). Loss ``snntorch.functional.mse_count_loss(0.8, 0.2)``
(``tssl-bench hosts``' saturating default); Adam; accuracy from the output spike
counts on the first ``--test`` test images. Each run goes to ``--out``'s
``results.jsonl``; the summary (``hosts``' table: mean ± std over seeds) to
``summary.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["main", "build_parser", "RecurrentNet", "run_one"]


class RecurrentNet(nn.Module):
    """``Linear - snn.RLeaky - Linear - snn.Leaky`` over the rows of an image (module docstring)."""

    def __init__(self, hidden: int, beta: float) -> None:
        super().__init__()
        import snntorch as snn

        self.fc1, self.lif1 = nn.Linear(28, hidden), snn.RLeaky(beta=beta, linear_features=hidden)
        self.fc2, self.lif2 = nn.Linear(hidden, 10), snn.Leaky(beta=beta)

    def forward(self, rows: Tensor) -> Tuple[Tensor, Tensor]:
        """``rows`` ``[T, N, 28]`` -> (output spikes ``[T, N, 10]``, hidden spikes ``[T, N, H]``)."""
        spk1, mem1 = self.lif1.reset_mem()
        mem2 = self.lif2.reset_mem()
        out, hid = [], []
        for t in range(rows.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(rows[t]), spk1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
            hid.append(spk1)
        return torch.stack(out), torch.stack(hid)


def _rows(x: Tensor) -> Tensor:
    """``[N, 1, 28, 28]`` images -> ``[28, N, 28]``: one row per time step."""
    return x[:, 0].permute(1, 0, 2).contiguous()


def run_one(variant: str, seed: int, args: argparse.Namespace,
            data: Tuple[Tensor, Tensor, Tensor, Tensor]) -> Dict[str, Any]:
    """Train one network; returns its record in ``tssl-bench hosts``' format."""
    import snntorch.functional as SF

    from .machine import code_info, machine_info

    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    net = RecurrentNet(args.hidden, args.beta)
    if variant == "tssl":
        from tssl_plugin.adapters.snntorch import convert

        convert(net)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            spk, _ = net(_rows(xtr[idx]))
            loss = loss_fn(spk, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        spk, hid = net(_rows(xte))
        acc = float((spk.sum(0).argmax(1) == yte).float().mean())
    return {"library": "snntorch", "loss": "mse_count", "reset": "default", "variant": variant, "seed": seed,
            "task": "row-by-row MNIST", "code": code_info(), "machine": machine_info(torch.device("cpu"), 1),
            # a step loop: the step-wise node (tssl_plugin.stepwise), not the whole-sequence op's kernels
            "tssl_impl": "stepwise" if variant == "tssl" else None, "test_accuracy": acc,
            "firing_rates": [float(hid.mean()), float(spk.mean())], "seconds": seconds, "steps": 28,
            "epochs": args.epochs, "lr": args.lr, "hidden": args.hidden, "beta": args.beta,
            "train": len(ytr), "test": len(yte)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tssl-bench recurrent", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="snnTorch RLeaky network on row-by-row MNIST (T=28): unconverted vs convert(net).")
    p.add_argument("--variants", default="host,tssl", help="comma-separated: host, tssl")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--train", type=int, default=5000, help="first N MNIST training images")
    p.add_argument("--test", type=int, default=2000, help="first N MNIST test images")
    p.add_argument("--hidden", type=int, default=128, help="recurrent layer size")
    p.add_argument("--beta", type=float, default=0.9, help="snnTorch beta of both layers")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=128, help="batch size")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="folder for results.jsonl and summary.md (none: print only)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tssl-bench recurrent``."""
    import sys

    from .data import load_mnist_pureml
    from .hosts import markdown, summarize

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in ("host", "tssl")]
    if bad:
        raise SystemExit(f"tssl-bench recurrent: unknown variant(s) {', '.join(bad)}; valid: host, tssl")
    torch.set_num_threads(args.threads)
    ds = load_mnist_pureml()
    data = (ds.x_train[:args.train], ds.y_train[:args.train], ds.x_test[:args.test], ds.y_test[:args.test])
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in range(args.seeds):
        for variant in variants:
            rec = run_one(variant, seed, args, data)
            records.append(rec)
            print(f"{variant} seed {seed}: test accuracy {rec['test_accuracy']:.4f} ({rec['seconds']:.0f} s)",
                  flush=True)
            if out is not None:
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
    table = markdown(summarize(records))
    print(table)
    if out is not None:
        (out / "summary.md").write_text(table)
    return 0
