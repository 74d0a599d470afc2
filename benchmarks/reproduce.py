"""``tssl-bench reproduce RESULTS_DIR --epochs K``: re-run the first K epochs of a finished training run
with its recorded settings, and compare the two record by record.

The settings come from ``RESULTS_DIR/config.json`` (the learning-rate schedule still spans the run's full
``epochs``; training stops after epoch K, so epoch k of the re-run is epoch k of the original). The re-run
goes into a new folder (``--out``, by default ``RESULTS_DIR-reproduce-<time>`` beside it); ``RESULTS_DIR``
is only read. For each backend and seed, epochs 1..K of both runs are compared on the numbers the training
determines (:data:`COMPARED`; times and memory are the machine's and are reported, not compared):

- ``equal``: every value is bit for bit the same;
- ``within float noise``: every value agrees to ``|a - b| <= REL_TOL * max(|a|, |b|)`` (+ ``ABS_TOL``);
- ``different``: the first value that does not, with its epoch.

Each line also names what differs in the recorded code (machine.code_info: tssl-plugin's version and git
commit, a modified checkout, torch, snnTorch, SpikingJelly; and the TSSL-BP implementation that ran), with
``not recorded`` for records written before the code was recorded. The comparison is printed and saved
as ``reproduce.json`` in the new folder. Exit status: 0 when nothing is ``different``, 1 when something
is, 2 for an error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "reproduce", "compare_runs", "COMPARED", "REL_TOL", "ABS_TOL"]

#: the numbers of an epoch record that the training determines (compared); the rest are times and memory.
COMPARED = ("train_loss", "train_accuracy", "train_samples", "test_accuracy", "firing_rates",
            "synops_per_sample", "acs_per_sample", "macs_per_sample", "synops_per_layer", "activation_sparsity",
            "activation_sparsity_total")
#: "within float noise": |a - b| <= REL_TOL * max(|a|, |b|) + ABS_TOL for every compared value.
REL_TOL = 1e-6
ABS_TOL = 1e-12
#: machine fields named when they differ (they can change numbers: threads, device; or times: the rest).
_MACHINE_FIELDS = ("platform", "cpu", "cpu_count", "torch_threads", "device", "gpu", "world_size")


def build_parser() -> argparse.ArgumentParser:
    from .options import HelpFormatter, Parser

    p = Parser(
        prog="tssl-bench reproduce", formatter_class=HelpFormatter,
        description="Re-run the first K epochs of a training run with the settings recorded in\n"
                    "RESULTS_DIR/config.json, into a new folder (RESULTS_DIR is only read), and compare\n"
                    "record by record: one line per backend and seed, equal / within float noise\n"
                    f"(relative difference <= {REL_TOL:g}) / different, and what differs in the recorded code\n"
                    "(tssl-plugin version and commit, torch, snnTorch, SpikingJelly), TSSL-BP\n"
                    "implementation and machine. Exit status 0: nothing different; 1: something is;\n"
                    "2: error.")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="folder of a tssl-bench training run")
    p.add_argument("--epochs", type=int, required=True, metavar="K",
                   help="re-run and compare epochs 1..K, at most the run's epochs (default: none, required)")
    p.add_argument("--backends", default=None,
                   help="comma-separated subset of the run's backends to re-run (default: all of them)")
    p.add_argument("--out", default=None,
                   help="a new folder for the re-run (default: RESULTS_DIR-reproduce-<date>-<time> beside it)")
    p.add_argument("--overwrite", action="store_true",
                   help="let --out name a folder that holds earlier results (deletes them; never RESULTS_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _values(v: Any) -> Optional[List[float]]:
    """A compared value as a flat list of numbers (None: absent or not numeric)."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        out: List[float] = []
        for x in v:
            sub = _values(x)
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return [float(v)]


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b)) + ABS_TOL


def _compare_epochs(orig: List[Dict[str, Any]], new: List[Dict[str, Any]]) -> Tuple[str, str]:
    """``(verdict, detail)`` for the matching epochs of one backend and seed."""
    worst = 0.0
    n = 0
    noisy = False
    for a, b in zip(orig, new):
        for key in COMPARED:
            va, vb = _values(a.get(key)), _values(b.get(key))
            if va is None or vb is None:
                continue  # not in one of them (records of an older version)
            if len(va) != len(vb):
                return "different", f"epoch {a['epoch']} {key}: {len(va)} values vs {len(vb)}"
            for x, y in zip(va, vb):
                n += 1
                if x == y or (math.isnan(x) and math.isnan(y)):
                    continue
                if not _close(x, y):
                    return "different", f"first at epoch {a['epoch']} {key}: {x:.6g} vs {y:.6g}"
                noisy = True
                worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    if noisy:
        return "within float noise", f"largest relative difference {worst:.1e} <= {REL_TOL:g}; {n} values"
    return "equal", f"{n} values"


def _differences(orig: List[Dict[str, Any]], new: List[Dict[str, Any]]) -> List[str]:
    """What differs in the recorded code, TSSL-BP implementation and machine between the two runs' records."""
    from .machine import code_differences

    out: List[str] = []
    a, b = orig[0], new[0]
    if "code" in a:
        out += code_differences(a["code"], b.get("code"), names=("the original", "the re-run"))
    else:
        out.append("code not recorded in the original")
    def impl(r: Dict[str, Any]) -> str:
        if "tssl_impl" not in r:
            return "not recorded"
        return "none" if r["tssl_impl"] is None else str(r["tssl_impl"])

    impl_a, impl_b = sorted({impl(r) for r in orig}), sorted({impl(r) for r in new})
    # a surrogate-gradient backend runs no TSSL-BP op: nothing to say when an older record did not say so
    if impl_a != impl_b and not (impl_b == ["none"] and impl_a == ["not recorded"]):
        out.append(f"TSSL-BP implementation {', '.join(impl_a)} vs {', '.join(impl_b)}")
    ma, mb = a.get("machine"), b.get("machine") or {}
    if ma is None:
        out.append("machine not recorded in the original")
    else:
        seen = lambda m, k: m.get(k) if k in m else "not recorded"  # noqa: E731
        out += [f"{k} {seen(ma, k)} vs {seen(mb, k)}" for k in _MACHINE_FIELDS if seen(ma, k) != seen(mb, k)]
    return out


def _seconds(records: List[Dict[str, Any]]) -> float:
    xs = [float(r["seconds"]) for r in records if r.get("seconds") is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def compare_runs(orig: Sequence[Dict[str, Any]], new: Sequence[Dict[str, Any]], pairs: Sequence[Tuple[str, int]],
                 epochs: int) -> List[Dict[str, Any]]:
    """One comparison per ``(backend, seed)`` of ``pairs``: epochs 1..``epochs`` of the original records
    ``orig`` against the re-run's ``new``. Each is ``{"backend", "seed", "epochs", "verdict", "detail",
    "differences", "seconds_per_epoch": [original, re-run], "line"}``; verdict ``equal``, ``within float
    noise``, ``different`` or ``not compared`` (one side has no epoch)."""
    out = []
    for backend, seed in pairs:
        pick = lambda recs: sorted((r for r in recs if r["backend"] == backend and r["seed"] == seed  # noqa: E731
                                    and int(r["epoch"]) <= epochs), key=lambda r: int(r["epoch"]))
        a, b = pick(orig), pick(new)
        common = sorted({int(r["epoch"]) for r in a} & {int(r["epoch"]) for r in b})
        a = [r for r in a if int(r["epoch"]) in common]
        b = [r for r in b if int(r["epoch"]) in common]
        if not common:
            verdict, detail, diffs = "not compared", ("the original has no epoch of it" if b else
                                                      "the re-run has no epoch of it"), []
        else:
            verdict, detail = _compare_epochs(a, b)
            if len(common) < epochs:
                detail += f"; only epochs {', '.join(map(str, common))} of 1..{epochs} are in both"
            diffs = _differences(a, b)
        secs = [_seconds(a), _seconds(b)]
        line = (f"{backend} seed {seed}: {verdict} ({len(common)} epoch{'s' if len(common) != 1 else ''}; {detail})"
                + (f"; recorded: {'; '.join(diffs)}" if diffs else "; recorded: same code, implementation and machine"
                   if common else "")
                + (f"; s/epoch {secs[0]:.2f} vs {secs[1]:.2f}" if common and not any(map(math.isnan, secs)) else ""))
        out.append({"backend": backend, "seed": seed, "epochs": common, "verdict": verdict, "detail": detail,
                    "differences": diffs, "seconds_per_epoch": secs, "line": line})
    return out


def _default_out(src: Path) -> Path:
    return src.parent / f"{src.name}-reproduce-{time.strftime('%Y%m%d-%H%M%S')}"


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def reproduce(src: Path, epochs: int, out: Optional[Path] = None, *, backends: Optional[Sequence[str]] = None,
              overwrite: bool = False, quiet: bool = True) -> Dict[str, Any]:
    """Re-run epochs 1..``epochs`` of the training run in ``src`` into ``out`` and compare; returns
    ``{"source", "out", "epochs", "defaults_used", "comparisons"}`` (also written to ``out/reproduce.json``).
    ValueError for a folder that is not a finished-or-started run, a bad ``epochs``, or an ``out`` in ``src``."""
    from . import report as R
    from .config import Config
    from .device import check_device
    from .extras import check_requirements
    from .results_dir import check_new_out, read_run
    from .train import run_benchmark
    from .train_options import training_requirements

    src = Path(src)
    cfg, orig = read_run(src, "reproduce", prefix="reproduce: ", empty="has no finished epoch",
                         then="; nothing to compare")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= cfg.epochs:
        raise ValueError(f"--epochs {epochs}: must be an integer from 1 to the run's {cfg.epochs} epochs")
    if backends:
        unknown = [b for b in backends if b not in cfg.backends]
        if unknown:
            raise ValueError(f"--backends: {', '.join(unknown)} not in the run (it trained {', '.join(cfg.backends)})")
        cfg = dataclasses.replace(cfg, backends=list(backends))
    out = Path(out) if out is not None else _default_out(src)
    if _inside(out, src):
        raise ValueError(f"--out {out} is {src} or inside it; reproduce never writes into the run it checks; "
                         "give a new folder")
    check_new_out(out, overwrite=overwrite, resume=None)
    check_device(cfg.device)
    check_requirements(training_requirements(cfg, quiet))
    saved = json.loads((src / "config.json").read_text(encoding="utf-8"))
    defaults_used = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config) if f.name not in saved}
    run_benchmark(cfg, out, quiet=quiet, stop_after_epochs=epochs, overwrite=overwrite)
    new = R.read_jsonl(out / "results.jsonl")
    pairs = [(b, s) for b in cfg.backends for s in cfg.seed_list()]
    result = {"source": str(src.resolve()), "out": str(out.resolve()), "epochs": epochs,
              "tolerance": {"relative": REL_TOL, "absolute": ABS_TOL, "compared": list(COMPARED)},
              "defaults_used": defaults_used, "comparisons": compare_runs(orig, new, pairs, epochs)}
    R.atomic_write_json(out / "reproduce.json", result)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench reproduce``; returns the exit status (0 all equal or within noise, 1 something
    different, 2 error)."""
    from .backends import BackendUnavailable
    from .data import DataError
    from .extras import MissingExtras
    from .machine import code_text

    args = build_parser().parse_args(list(argv or []))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    try:
        result = reproduce(Path(args.results_dir), args.epochs, Path(args.out) if args.out else None,
                           backends=backends, overwrite=args.overwrite, quiet=args.quiet)
    except KeyboardInterrupt:
        print("tssl-bench reproduce: interrupted; the original run is untouched", file=sys.stderr)
        return 130
    except (ValueError, BackendUnavailable, DataError, MissingExtras) as err:
        print(f"tssl-bench reproduce: error: {err}", file=sys.stderr)
        return 2
    from . import report as R

    new = R.read_jsonl(Path(result["out"]) / "results.jsonl")
    print(f"re-ran epochs 1..{result['epochs']} of {args.results_dir} into {result['out']} "
          f"(code: {code_text(new[0].get('code') if new else None)})")
    if result["defaults_used"]:
        print("settings absent from the original config.json, taken from today's defaults: "
              + ", ".join(f"{k}={v!r}" for k, v in result["defaults_used"].items()))
    for c in result["comparisons"]:
        print(c["line"])
    print(f"(compared: {', '.join(COMPARED)}; within float noise = relative difference <= {REL_TOL:g}; "
          f"saved in {Path(result['out']) / 'reproduce.json'})")
    return 1 if any(c["verdict"] == "different" for c in result["comparisons"]) else 0
