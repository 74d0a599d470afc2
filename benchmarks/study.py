"""``tssl-bench study``: backend x loss x reset over seeds, one table.

Which loss and reset suit TSSL-BP, against each host's surrogate, measured the same way: for every
(loss, reset) cell the study runs one ordinary training run of all its backends (``run_benchmark``,
with ``--loss`` and ``--reset`` set to the cell's) into ``DIR/cells/<loss>-<reset>/``, and after each
cell rewrites ``DIR/study.md``, ``study.json`` and ``study.csv``: per backend, loss and reset the mean
± std over seeds of the final test accuracy, the accuracy of each seed, the mean firing rate of each
spiking layer (training) and the activation sparsity per layer (test set).

Every cell is a normal results folder, checkpointed after every epoch; ``tssl-bench study --resume DIR``
continues an interrupted study (finished cells are read back, not retrained).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .options import HelpFormatter, Parser, explicit_options, option_text, pos_int

__all__ = ["main", "build_parser", "study_tables", "DEFAULT_STUDY_BACKENDS"]

#: each library's full TSSL-BP conversion, its hidden-layers recipe and its usual surrogate.
DEFAULT_STUDY_BACKENDS = ("snntorch:tssl", "snntorch:tssl+atan", "snntorch:atan",
                          "spikingjelly:tssl", "spikingjelly:tssl+sigmoid", "spikingjelly:sigmoid")
STUDY_FILES = ("study_config.json", "study.json", "study.md", "study.csv", "cells")

DESCRIPTION = """\
tssl-bench study: train every backend with every loss and every reset over several
seeds and write one table (study.md, study.json, study.csv): mean +- std of the
final test accuracy and the firing rates per layer, per backend x loss x reset.
Each (loss, reset) cell is an ordinary tssl-bench run in DIR/cells/<loss>-<reset>/.
The other options are those of tssl-bench (see tssl-bench --help)."""


def _names(text: str, valid: Sequence[str], what: str) -> List[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vals if v not in valid]
    if bad or not vals:
        raise argparse.ArgumentTypeError(f"{what}: {', '.join(bad) or 'none given'}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(vals))


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``tssl-bench study``: the training options, with ``--losses``/``--resets`` for ``--loss``/``--reset``."""
    from .losses import LOSSES
    from .train_options import add_training_options

    p = Parser(prog="tssl-bench study", formatter_class=HelpFormatter, description=DESCRIPTION)
    p.add_argument("--losses", type=lambda t: _names(t, LOSSES, "--losses"), default=["kernel", "ce_rate", "mse_rate"],
                   help="comma-separated losses, one cell each (natural: each backend's own)")
    p.add_argument("--resets", type=lambda t: _names(t, ("zero", "subtract"), "--resets"), default=["zero", "subtract"],
                   help="comma-separated resets, one cell each")
    p.add_argument("--backends", default=",".join(DEFAULT_STUDY_BACKENDS),
                   help="comma-separated LIBRARY:GRADIENT backends (tssl-bench --list-backends)")
    p.add_argument("--seeds", type=pos_int, default=4, help="seeds per cell; mean and std are reported")
    add_training_options(p, skip={"loss", "reset", "list_backends", "backends", "seeds"})
    return p


def resume_command(out: Path) -> str:
    """The exact command that continues the study in ``out``."""
    return f"tssl-bench study --resume {shlex.quote(str(out))}"


def _cell_name(loss: str, reset: str) -> str:
    return f"{loss}-{reset}"


def study_tables(cells: List[Dict[str, Any]]) -> Dict[str, str]:
    """``{"md": ..., "csv": ...}`` for the finished cells (each ``{"loss", "reset", "runs"}``)."""
    from . import report as R

    rows, long_rows, csv_rows = {}, [], []
    cols = [f"{c['loss']} / {c['reset']}" for c in cells]
    for c in cells:
        for r in c["runs"]:
            acc = f"{r['test_accuracy']:.4f}" + (f" ± {r['test_accuracy_std']:.4f}" if len(r["seeds"]) > 1 else "")
            rows.setdefault(r["backend"], {})[f"{c['loss']} / {c['reset']}"] = acc
            long_rows.append([f"`{r['backend']}`", r["loss"], c["reset"], acc, len(r["seeds"]),
                              " ".join(f"{a:.3f}" for a in r["test_accuracy_per_seed"]),
                              " / ".join(f"{x:.3f}" for x in r["firing_rates"]),
                              " / ".join(f"{x:.3f}" for x in r.get("activation_sparsity", [])) or "-"])
            csv_rows.append([r["backend"], c["loss"], r["loss"], c["reset"], r["test_accuracy"],
                             r["test_accuracy_std"], len(r["seeds"]),
                             " ".join(f"{a:.4f}" for a in r["test_accuracy_per_seed"]),
                             " ".join(f"{x:.4f}" for x in r["firing_rates"]),
                             " ".join(f"{x:.4f}" for x in r.get("activation_sparsity", []))])
    pivot = R.markdown_table(["backend"] + cols, [[f"`{b}`"] + [v.get(c, "-") for c in cols] for b, v in rows.items()])
    detail = R.markdown_table(["backend", "loss", "reset", "test acc (mean ± std)", "seeds", "per seed",
                               "firing rate per layer", "activation sparsity per layer"], long_rows)
    csv = R.csv_text(["backend", "cell_loss", "loss", "reset", "test_accuracy", "test_accuracy_std", "seeds",
                      "test_accuracy_per_seed", "firing_rates", "activation_sparsity"], csv_rows)
    return {"pivot": pivot, "detail": detail, "csv": csv}


def _write(out: Path, base: Dict[str, Any], cells: List[Dict[str, Any]], plan: List[str], started: float) -> None:
    from . import report as R

    t = study_tables(cells)
    done = [_cell_name(c["loss"], c["reset"]) for c in cells]
    todo = [c for c in plan if c not in done]
    cfg_text = ", ".join(f"{k}={base[k]}" for k in ("dataset", "arch", "hidden", "steps", "epochs", "batch_size",
                                                   "optimizer", "lr", "schedule", "weight_clip", "grad_clip",
                                                   "encoding", "tau_m", "tau_s", "warmup", "warmup_width", "ablation",
                                                   "preset") if k in base)
    md = (f"# tssl-bench study: backend x loss x reset\n\n{cfg_text}; seeds {base['seed']}..{base['seed'] + base['seeds'] - 1}."
          f"\n\nTest accuracy after the last epoch (mean ± std over seeds):\n\n{t['pivot']}\n"
          f"Every cell, with the mean firing rate of each spiking layer (training) and the activation sparsity "
          f"of each layer (test set):\n\n{t['detail']}\n"
          + (f"Cells still to run: {', '.join(todo)}.\n" if todo else "")
          + f"\nEach cell's own results (summary.md, results.jsonl, plots) are in cells/<loss>-<reset>/; "
            f"wall time so far {time.time() - started:.0f} s.\n")
    R.atomic_write_text(out / "study.md", md)
    R.atomic_write_text(out / "study.csv", t["csv"])
    R.atomic_write_json(out / "study.json", {"config": base, "cells": cells, "pending": todo})


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the study sub-command; returns the exit status."""
    from . import report as R
    from .backends import BackendUnavailable, resolve
    from .config import check_config, config_from_json
    from .data import DataError
    from .extras import MissingExtras, check_requirements
    from .device import check_device
    from .results_dir import check_new_out, clear_results
    from .train import run_benchmark
    from .train_options import config_from_args, training_requirements

    parser = build_parser()
    argv = list(argv or [])
    args = parser.parse_args(argv)
    explicit = explicit_options(parser, argv)
    out: Optional[Path] = None
    try:
        if args.resume:
            out = Path(args.resume)
            path = out / "study_config.json"
            if not path.exists():
                raise ValueError(f"--resume {out}: no study_config.json there (not a tssl-bench study folder)")
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                base_cfg = config_from_json(saved["config"], str(path))
                losses, resets = list(saved["losses"]), list(saved["resets"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise ValueError(f"--resume: cannot read {path} ({type(err).__name__}: {err}); it is damaged") from err
            ignored = sorted(explicit - {"resume", "quiet"})
            if ignored:
                print(f"tssl-bench study: note: --resume continues with the options saved in {path}; ignoring "
                      f"{option_text(parser, ignored, vars(args))}", file=sys.stderr)
        else:
            base_cfg = config_from_args(args, explicit)
            losses, resets = args.losses, args.resets
            out = Path(args.out or str(Path("tssl-bench-results") / ("study-" + time.strftime("%Y%m%d-%H%M%S"))))
            check_new_out(out, overwrite=args.overwrite, resume=resume_command, files=STUDY_FILES,
                          holding="a tssl-bench study")
            check_new_out(out, overwrite=args.overwrite)
        resolve(base_cfg.backends)
        check_config(base_cfg)
        check_device(base_cfg.device)
        check_requirements(training_requirements(base_cfg, args.quiet))
    except (ValueError, BackendUnavailable, MissingExtras) as err:
        print(f"tssl-bench study: error: {err}", file=sys.stderr)
        return 2
    from .config import as_dict

    base = as_dict(base_cfg)
    plan = [_cell_name(lo, re) for lo in losses for re in resets]
    started = time.time()
    try:
        if not args.resume:
            if args.overwrite:
                clear_results(out, STUDY_FILES)
            out.mkdir(parents=True, exist_ok=True)
            R.atomic_write_json(out / "study_config.json", {"config": base, "losses": losses, "resets": resets})
        cells: List[Dict[str, Any]] = []
        for loss in losses:
            for reset in resets:
                cell_dir = out / "cells" / _cell_name(loss, reset)
                cfg = config_from_json({**base, "loss": loss, "reset": reset}, "study cell")
                if not args.quiet:
                    print(f"tssl-bench study: cell loss={loss} reset={reset} -> {cell_dir}", file=sys.stderr)
                summary = run_benchmark(cfg, cell_dir, resume=(cell_dir / "config.json").exists(), quiet=args.quiet)
                cells.append({"loss": loss, "reset": reset, "runs": summary["runs"]})
                _write(out, base, cells, plan, started)
    except KeyboardInterrupt:
        print(f"tssl-bench study: interrupted; finished epochs are saved under {out / 'cells'}; continue with: "
              f"{resume_command(out)}", file=sys.stderr)
        return 130
    except (ValueError, BackendUnavailable, DataError, MissingExtras) as err:
        print(f"tssl-bench study: error: {err}", file=sys.stderr)
        return 2
    print(study_tables(cells)["pivot"])
    print(f"study in {out} (study.md, study.json, study.csv; each cell's results in cells/)")
    return 0
