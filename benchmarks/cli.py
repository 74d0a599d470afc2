"""``tssl-bench``: train the same network with TSSL-BP and with surrogate gradients, side by side.

``tssl-bench [options]`` trains (train.py); ``tssl-bench speed [layer|mlp-step|scaling|gpu-layer|host-step]``
times (speed.py); ``tssl-bench study``, ``hosts``, ``tutorials``, ``recurrent`` and ``sweep`` run their studies
(study.py, hosts.py, tutorials.py, recurrent.py, sweep.py); ``tssl-bench compare`` trains the user's own model
unconverted and converted (comparison.py);
``tssl-bench merge`` merges runs trained as separate processes (merge.py).
``python -m tssl_plugin.benchmarks`` is the same program; under ``torchrun --nproc_per_node N``
training uses DistributedDataParallel.

Every option is checked before anything is written: a bad value, a missing
optional package, an unusable device or a folder that already holds results
stops the command with one line naming the problem and what to do.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .options import HelpFormatter, Parser, explicit_options, option_text
from .train_options import add_training_options, config_from_args, training_requirements

__all__ = ["main", "build_parser"]

DESCRIPTION = """\
tssl-bench: train the same spiking network with TSSL-BP and with the surrogate
gradients of snnTorch and SpikingJelly, side by side (accuracy, time, memory,
spike activity, synaptic operations).

  tssl-bench [options]          train (this help)
  tssl-bench speed --help       forward+backward timing of one spiking layer per backend, and
                                the other timings (mlp-step, scaling, gpu-layer, host-step)
  tssl-bench study --help       backend x loss x reset over seeds, one table
  tssl-bench hosts --help       tutorial-style host models: unconverted, converted, output excluded
  tssl-bench tutorials --help   the hosts' own tutorials (MNIST / Fashion-MNIST): unconverted vs convert(net)
  tssl-bench compare --help     your own model and DataLoaders: unconverted vs convert(model)
  tssl-bench recurrent --help   an snnTorch RLeaky network on row-by-row MNIST: unconverted vs convert(net)
  tssl-bench sweep --help       accuracy against time steps T (native, hosts or tutorials), TSSL-BP vs surrogates
  tssl-bench merge --help       one side-by-side summary of runs trained as separate processes
  tssl-bench reproduce --help   re-run a run's first epochs and compare record by record
  tssl-bench --resume DIR       continue an interrupted run

The same program runs as python -m tssl_plugin.benchmarks, and under
torchrun --nproc_per_node N with DistributedDataParallel."""

#: options that keep their meaning under --resume (every other one comes from DIR/config.json).
_RESUME_OPTIONS = {"resume", "quiet"}


def _default_out() -> str:
    return str(Path("tssl-bench-results") / time.strftime("%Y%m%d-%H%M%S"))


def build_parser() -> argparse.ArgumentParser:
    """The training command's parser (every option shows its default in ``--help``)."""
    from .models import ARCHITECTURES
    from .presets import describe_presets

    p = Parser(
        prog="tssl-bench", formatter_class=HelpFormatter, description=DESCRIPTION,
        epilog="Architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items())
               + ".\n\nPresets (the paper's settings, from the official TSSL-BP configuration files): "
               + describe_presets() + ".")
    add_training_options(p)
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


def _interrupted(out: Optional[Path]) -> str:
    from .results_dir import resume_command

    if out is not None and (out / "config.json").exists():
        return (f"tssl-bench: interrupted; the finished epochs are saved in {out}; continue with: "
                f"{resume_command(out)}")
    return "tssl-bench: interrupted before any result was written; nothing to resume"


def _train(argv: Sequence[str]) -> int:
    from .backends import BackendUnavailable, resolve
    from .config import check_config, read_config
    from .data import DataError
    from .device import check_device
    from .distributed import dist_info
    from .extras import MissingExtras, check_requirements
    from .results_dir import check_new_out
    from .summary import console_table
    from .train import run_benchmark

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
            cfg = config_from_args(args, explicit)
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
        print(f"\nresults in {out} (summary.md, summary.json, summary.csv, results.jsonl, *.png)")
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
    if argv and argv[0] == "tutorials":
        from .tutorials import main as tutorials_main

        return tutorials_main(argv[1:])
    if argv and argv[0] == "compare":
        from .comparison import main as compare_main

        return compare_main(argv[1:])
    if argv and argv[0] == "recurrent":
        from .recurrent import main as recurrent_main

        return recurrent_main(argv[1:])
    if argv and argv[0] == "sweep":
        from .sweep import main as sweep_main

        return sweep_main(argv[1:])
    if argv and argv[0] == "merge":
        from .merge import main as merge_main

        return merge_main(argv[1:])
    if argv and argv[0] == "reproduce":
        from .reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    if argv and argv[0] == "study":
        from .study import main as study_main

        return study_main(argv[1:])
    return _train(argv)
