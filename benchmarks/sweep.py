"""``tssl-bench sweep``: the same networks trained over a list of time steps T, TSSL-BP against the hosts' surrogates.

TSSL-BP's claim is high accuracy with few time steps. The sweep trains one family of networks at every
T of ``--steps`` (e.g. ``2,3,5,8,16,25``), each T an ordinary run of that family's own command in
``DIR/cells/T<T>/``:

* ``native``: the training command (``tssl-bench``: presets, ``--arch``, every ``--backends`` backend);
* ``hosts``: ``tssl-bench hosts`` (tutorial-style host nets on digits, every ``--variants`` variant);
* ``tutorials``: ``tssl-bench tutorials`` (the hosts' tutorial setups, every ``--variants`` variant).

Each of those seeds its initial weights by the seed alone (not by T), so every point of a curve starts
from the same weights per seed, and at each T the TSSL-BP and host variants start from the same weights.

A **curve** is one network with one gradient (a backend, or a setup and variant); its point at T is the
final test accuracy, mean and sample standard deviation over seeds, and the synaptic operations per test
sample (ACs + MACs, activity.py). After every T the sweep rewrites ``DIR/sweep.md``, ``sweep.csv``,
``sweep.json``, ``accuracy_vs_steps.png`` and ``accuracy_vs_synops.png``. ``sweep.md`` also compares
every TSSL-BP curve with the baseline curves of the same network at each T: TSSL-BP **leads** where its
mean is above the baseline's by more than the two standard deviations added, **trails** where it is
below by more than that, and is **level** otherwise.

``tssl-bench sweep --resume DIR`` continues an interrupted sweep with the saved options: finished cells
are read back, an unfinished cell resumes as its own command does.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .options import HelpFormatter, Parser, ints

__all__ = ["main", "build_parser", "parse_command", "check_command", "FAMILIES", "curve_rows", "comparisons", "sweep_tables"]

FAMILIES = ("native", "hosts", "tutorials")
SWEEP_FILES = ("sweep_config.json", "sweep.json", "sweep.md", "sweep.csv", "accuracy_vs_steps.png",
               "accuracy_vs_synops.png", "cells")
DEFAULT_STEPS = "2,3,5,8,16,25"

DESCRIPTION = """\
tssl-bench sweep: train the same networks at every time step count T of --steps,
with every chosen backend or variant, and write accuracy against T and against
synaptic operations per sample (sweep.md, sweep.csv, sweep.json, two plots).

  tssl-bench sweep native    [--steps ...] [training options of tssl-bench]
  tssl-bench sweep hosts     [--steps ...] [options of tssl-bench hosts]
  tssl-bench sweep tutorials [--steps ...] [options of tssl-bench tutorials]
  tssl-bench sweep --resume DIR

Each T is an ordinary run of that command in DIR/cells/T<T>/ (same initial
weights per seed at every T); see that command's --help for its options."""


def build_parser() -> argparse.ArgumentParser:
    """Parser of the sweep's own options; every other option goes to the family's command."""
    p = Parser(prog="tssl-bench sweep", formatter_class=HelpFormatter, description=DESCRIPTION, allow_abbrev=False)
    p.add_argument("--steps", type=ints, default=DEFAULT_STEPS, help="comma-separated time step counts T, each >= 1")
    p.add_argument("--out", default=None, help="folder of the sweep (default: tssl-bench-results/sweep-<time>)")
    p.add_argument("--overwrite", action="store_true", help="let --out name a folder with an earlier sweep: delete it first")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the sweep in DIR with its saved options")
    return p


def resume_command(out: Path) -> str:
    """The exact command that continues the sweep in ``out``."""
    return f"tssl-bench sweep --resume {shlex.quote(str(out))}"


# ------------------------------------------------------------------ families
class _Family:
    """How one family checks its options, runs one T into a cell, and reads the cell's per-seed results."""

    def __init__(self, name: str, rest: List[str]) -> None:
        self.name, self.rest = name, rest

    def check(self) -> None:
        """Parse and check ``rest`` as the family's command would (exit 2 with one line, or ValueError)."""
        if self.name == "native":
            self._native_config(1)
            return
        mod = self._module()
        parser = self.parser()
        if any(a == "--steps" or a.startswith("--steps=") for a in self.rest):
            parser.error("--steps is the sweep's: a comma-separated list, given once")
        mod.check_args(parser, parser.parse_args(self.rest + ["--steps", "1"]))

    def parser(self) -> argparse.ArgumentParser:
        """The family command's parser, named ``tssl-bench sweep FAMILY`` (native: without the sweep's options)."""
        if self.name == "native":
            from .train_options import add_training_options

            parser: argparse.ArgumentParser = Parser(prog="tssl-bench sweep native", formatter_class=HelpFormatter)
            add_training_options(parser, skip={"resume", "list_backends", "out", "overwrite", "steps"})
        else:
            parser = self._module().build_parser()
            parser.prog = f"tssl-bench sweep {self.name}"
        return parser

    def _module(self):
        if self.name == "hosts":
            from . import hosts as mod
        else:
            from . import tutorials as mod  # type: ignore[no-redef]
        return mod

    def _native_config(self, steps: int):
        from .backends import resolve
        from .config import check_config
        from .options import explicit_options
        from .train_options import config_from_args

        parser = self.parser()
        args = parser.parse_args(self.rest)
        cfg = config_from_args(args, explicit_options(parser, self.rest), steps=steps)
        resolve(cfg.backends)
        check_config(cfg)
        return cfg, args.quiet

    def run(self, steps: int, cell: Path) -> int:
        """Train (or finish) the cell of ``steps``; returns the exit status of the family's command."""
        started = (cell / "config.json").exists()
        if self.name == "native":
            from .device import check_device
            from .extras import check_requirements
            from .train import run_benchmark
            from .train_options import training_requirements

            cfg, quiet = self._native_config(steps)
            check_device(cfg.device)
            check_requirements(training_requirements(cfg, quiet))
            run_benchmark(cfg, cell, resume=started, quiet=quiet)
            return 0
        if self.name == "hosts":
            from .hosts import main as hosts_main

            return hosts_main(["--resume", str(cell)] if started
                              else self.rest + ["--steps", str(steps), "--out", str(cell)])
        from .tutorials import main as tutorials_main

        return tutorials_main(self.rest + ["--steps", str(steps), "--out", str(cell)] + (["--resume"] if started else []))

    def records(self, steps: int, cell: Path) -> List[Dict[str, Any]]:
        """One record per curve and seed of the cell: ``group``, ``curve``, ``variant``, ``seed``, accuracy, synops."""
        from .report import read_jsonl

        out = []
        rows = read_jsonl(cell / "results.jsonl") if (cell / "results.jsonl").exists() else []
        if self.name == "native":
            last: Dict[Tuple[str, int], Dict[str, Any]] = {}
            for r in rows:
                key = (r["backend"], r["seed"])
                if key not in last or r["epoch"] > last[key]["epoch"]:
                    last[key] = r
            rows = list(last.values())
        for r in rows:
            group, variant = self._names(r)
            out.append({"group": group, "variant": variant, "curve": f"{group} {variant}", "steps": steps,
                        "seed": r["seed"], "test_accuracy": r["test_accuracy"],
                        "synops_per_sample": r.get("synops_per_sample", float("nan"))})
        return out

    def _names(self, r: Dict[str, Any]) -> Tuple[str, str]:
        """(network, gradient) of a cell record: the comparison pairs curves of one network."""
        if self.name == "native":  # every backend builds the arch from the same initial weights
            return f"{r['arch']} on {r['dataset']}", f"{r['backend']} ({r['loss']})"
        if self.name == "hosts":
            reset = "" if r["reset"] == "default" else f", reset {r['reset']}"
            return f"{r['library']} ({r['loss']}{reset})", r["variant"]
        opts = ", ".join(f"{k}={v}" for k, v in r.get("convert_options", {}).items())
        return f"{r['setup']} ({r.get('dataset') or '?'})", r["variant"] + (f" [{opts}]" if opts else "")


def _is_tssl(variant: str) -> bool:
    """Whether a curve's gradient is TSSL-BP's (hosts/tutorials variant ``tssl*``, backend ``LIBRARY:tssl*``)."""
    return variant.split(":")[-1].startswith("tssl")


# -------------------------------------------------------------------- tables
def curve_rows(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (curve, T): mean and sample std over seeds of the test accuracy and synops per sample."""
    groups: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["curve"], r["steps"]), []).append(r)
    rows = []
    order = {c: i for i, c in enumerate(dict.fromkeys(r["curve"] for r in records))}
    for (curve, steps), rs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        rs = sorted(rs, key=lambda r: r["seed"])
        acc = [r["test_accuracy"] for r in rs]
        ops = [r["synops_per_sample"] for r in rs]
        rows.append({"group": rs[0]["group"], "variant": rs[0]["variant"], "curve": curve, "steps": steps,
                     "seeds": [r["seed"] for r in rs], "accuracy": statistics.fmean(acc),
                     "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0, "accuracy_per_seed": acc,
                     "synops_per_sample": statistics.fmean(ops),
                     "synops_per_sample_std": statistics.stdev(ops) if len(ops) > 1 else 0.0})
    return rows


def comparisons(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every TSSL-BP curve against every baseline curve of the same network at each T (see the module docs)."""
    by = {(r["group"], r["variant"], r["steps"]): r for r in rows}
    out = []
    for (group, variant, steps), r in by.items():
        if not _is_tssl(variant):
            continue
        for (g2, v2, s2), b in by.items():
            if g2 != group or s2 != steps or _is_tssl(v2):
                continue
            diff, band = r["accuracy"] - b["accuracy"], r["accuracy_std"] + b["accuracy_std"]
            verdict = "leads" if diff > band else "trails" if diff < -band else "level"
            out.append({"group": group, "tssl": variant, "baseline": v2, "steps": steps, "difference": diff,
                        "band": band, "verdict": verdict})
    order = {k: i for i, k in enumerate(dict.fromkeys((r["group"], r["variant"]) for r in rows))}
    return sorted(out, key=lambda c: (order[(c["group"], c["tssl"])], order[(c["group"], c["baseline"])], c["steps"]))


def sweep_tables(rows: Sequence[Dict[str, Any]], steps: Sequence[int]) -> Dict[str, str]:
    """``{"accuracy", "synops", "compare", "csv"}``: markdown pivots (curve x T), the comparison, CSV."""
    from . import report as R

    curves = list(dict.fromkeys(r["curve"] for r in rows))
    cell = {(r["curve"], r["steps"]): r for r in rows}
    cols = [f"T={t}" for t in steps]

    def pivot(fmt: Callable[[Dict[str, Any]], str]) -> str:
        return R.markdown_table(["network", "gradient"] + cols, [
            [cell_any["group"], f"`{cell_any['variant']}`"] + [fmt(cell[(c, t)]) if (c, t) in cell else "-" for t in steps]
            for c in curves for cell_any in [next(r for r in rows if r["curve"] == c)]])

    acc = pivot(lambda r: f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}")
    ops = pivot(lambda r: R.si(r["synops_per_sample"]))
    comp = comparisons(rows)
    pairs = list(dict.fromkeys((c["group"], c["tssl"], c["baseline"]) for c in comp))
    cmp_cell = {(c["group"], c["tssl"], c["baseline"], c["steps"]): c for c in comp}
    compare = R.markdown_table(["network", "TSSL-BP", "baseline"] + cols, [
        [g, f"`{t}`", f"`{b}`"] + [(lambda c: f"{c['difference']:+.3f} {c['verdict']}")(cmp_cell[(g, t, b, s)])
                                   if (g, t, b, s) in cmp_cell else "-" for s in steps]
        for g, t, b in pairs]) if pairs else "(no TSSL-BP and baseline curves of the same network)\n"
    csv = R.csv_text(["network", "gradient", "steps", "seeds", "test_accuracy", "test_accuracy_std",
                      "test_accuracy_per_seed", "synops_per_sample", "synops_per_sample_std"],
                     [[r["group"], r["variant"], r["steps"], len(r["seeds"]), r["accuracy"], r["accuracy_std"],
                       " ".join(f"{a:.4f}" for a in r["accuracy_per_seed"]), r["synops_per_sample"],
                       r["synops_per_sample_std"]] for r in rows])
    return {"accuracy": acc, "synops": ops, "compare": compare, "csv": csv}


def _write(out: Path, saved: Dict[str, Any], records: List[Dict[str, Any]], done: List[int], started: float) -> List[Dict[str, Any]]:
    from . import report as R

    steps = saved["steps"]
    rows = curve_rows(records)
    t = sweep_tables(rows, steps)
    todo = [s for s in steps if s not in done]
    command = f"tssl-bench sweep {saved['family']} --steps {','.join(map(str, steps))} {shlex.join(saved['argv'])}".rstrip()
    md = (f"# tssl-bench sweep: accuracy against time steps\n\n`{command}`\n\n"
          f"Test accuracy after training (mean ± sample std over seeds; the same initial weights per seed at every T):"
          f"\n\n{t['accuracy']}\nSynaptic operations per test sample (ACs + MACs, mean over seeds):\n\n{t['synops']}\n"
          f"TSSL-BP minus baseline accuracy (leads / trails: the difference exceeds the two stds added; "
          f"level otherwise):\n\n{t['compare']}\n"
          + (f"T still to run: {', '.join(map(str, todo))}.\n" if todo else "")
          + f"\nEach T's own results are in cells/T<T>/; wall time of this process {time.time() - started:.0f} s.\n")
    R.atomic_write_text(out / "sweep.md", md)
    R.atomic_write_text(out / "sweep.csv", t["csv"])
    R.atomic_write_json(out / "sweep.json", {"config": saved, "rows": rows, "comparisons": comparisons(rows),
                                             "records": records, "pending": todo})
    curves = list(dict.fromkeys(r["curve"] for r in rows))
    series = {c: [r for r in rows if r["curve"] == c] for c in curves}
    R.plot_lines(out / "accuracy_vs_steps.png",
                 {c: ([r["steps"] for r in rs], [r["accuracy"] for r in rs], [r["accuracy_std"] for r in rs])
                  for c, rs in series.items()},
                 xlabel="time steps T", ylabel="test accuracy", title="accuracy against T (mean ± std over seeds)")
    with_ops = {c: rs for c, rs in series.items() if all(r["synops_per_sample"] == r["synops_per_sample"] for r in rs)}
    if with_ops:
        R.plot_lines(out / "accuracy_vs_synops.png",
                     {c: ([r["synops_per_sample"] for r in rs], [r["accuracy"] for r in rs],
                          [r["accuracy_std"] for r in rs]) for c, rs in with_ops.items()},
                     xlabel="synaptic operations per test sample (ACs + MACs)", ylabel="test accuracy",
                     title="accuracy against synaptic operations (one point per T)", logx=True)
    return rows


# ----------------------------------------------------------------------- CLI
def _saved(out: Path) -> Dict[str, Any]:
    path = out / "sweep_config.json"
    if not path.is_file():
        raise ValueError(f"--resume {out}: no sweep_config.json there (not a tssl-bench sweep folder)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["family"] not in FAMILIES or not all(isinstance(s, int) and s >= 1 for s in saved["steps"]) \
                or not isinstance(saved["argv"], list):
            raise ValueError("unexpected values")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--resume: cannot read {path} ({type(err).__name__}: {err}); it is damaged") from None
    return saved


def parse_command(argv: Sequence[str], parser: Optional[argparse.ArgumentParser] = None
                  ) -> Tuple[argparse.Namespace, List[str]]:
    """``(the sweep's options with .family, the family command's options)`` of ``argv``; exit 2 on a bad one."""
    parser = parser or build_parser()
    argv = list(argv)
    family = argv.pop(0) if argv and not argv[0].startswith("-") else None
    if family is not None and family not in FAMILIES:
        parser.error(f"cannot sweep {family!r}; name native, hosts or tutorials first")
    if family is not None and ("-h" in argv or "--help" in argv):
        print(f"tssl-bench sweep {family}: the sweep's own options are --steps T1,T2,... (default {DEFAULT_STEPS}), "
              f"--out, --overwrite and --resume (tssl-bench sweep --help); the others are those of "
              f"{'tssl-bench ' + family if family != 'native' else 'the training command tssl-bench'}:\n")
        _Family(family, []).parser().print_help()
        parser.exit(0)
    args, rest = parser.parse_known_args(argv)
    args.family = family
    return args, rest


def check_command(argv: Sequence[str]) -> None:
    """Check a whole sweep command line, the family's options included, without running or writing anything
    (exit 2 or ValueError on a bad option)."""
    args, rest = parse_command(argv)
    if args.family is not None:
        _Family(args.family, rest).check()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tssl-bench sweep``; returns the exit status."""
    from . import report as R
    from .backends import BackendUnavailable
    from .data import DataError
    from .extras import MissingExtras
    from .results_dir import check_new_out, clear_results

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parse_command(argv, parser)
    try:
        if args.resume:
            out = Path(args.resume)
            saved = _saved(out)
            ignored = [a for a in argv if a.startswith("-") and a.split("=")[0] != "--resume"]
            if args.family or ignored:
                print(f"tssl-bench sweep: note: --resume continues with the options saved in "
                      f"{out / 'sweep_config.json'}; ignoring {' '.join([args.family or ''] + ignored).strip()}",
                      file=sys.stderr)
        else:
            if args.family is None:
                parser.error("name what to sweep: native, hosts or tutorials (or --resume DIR)")
            out = Path(args.out or str(Path("tssl-bench-results") / ("sweep-" + time.strftime("%Y%m%d-%H%M%S"))))
            saved = {"family": args.family, "steps": sorted(set(args.steps)), "argv": rest}
            check_new_out(out, overwrite=args.overwrite, resume=resume_command, files=SWEEP_FILES,
                          holding="a tssl-bench sweep")
            check_new_out(out, overwrite=args.overwrite)
        family = _Family(saved["family"], list(saved["argv"]))
        family.check()
    except (ValueError, BackendUnavailable, MissingExtras) as err:
        print(f"tssl-bench sweep: error: {err}", file=sys.stderr)
        return 2
    started = time.time()
    records: List[Dict[str, Any]] = []
    done: List[int] = []
    try:
        if not args.resume:
            if args.overwrite:
                clear_results(out, SWEEP_FILES)
            out.mkdir(parents=True, exist_ok=True)
            R.atomic_write_json(out / "sweep_config.json", saved)
        for steps in saved["steps"]:
            cell = out / "cells" / f"T{steps}"
            print(f"tssl-bench sweep: T={steps} -> {cell}", file=sys.stderr, flush=True)
            rc = family.run(steps, cell)
            if rc == 130:
                raise KeyboardInterrupt
            if rc != 0:
                return rc
            records += family.records(steps, cell)
            done.append(steps)
            rows = _write(out, saved, records, done, started)
    except KeyboardInterrupt:
        print(f"tssl-bench sweep: interrupted; finished runs are saved under {out / 'cells'}; continue with: "
              f"{resume_command(out)}", file=sys.stderr)
        return 130
    except (ValueError, BackendUnavailable, DataError, MissingExtras) as err:
        print(f"tssl-bench sweep: error: {err}", file=sys.stderr)
        return 2
    print(sweep_tables(rows, saved["steps"])["accuracy"])
    print(f"sweep in {out} (sweep.md, sweep.csv, sweep.json, accuracy_vs_steps.png, accuracy_vs_synops.png; "
          f"each T's runs in cells/)")
    return 0
