"""``tssl-bench merge RUN_DIR... --out DIR``: one side-by-side summary of runs trained as separate processes.

A machine with several cores (or several machines) trains faster with one process per backend, each into
its own folder, than with every backend in one process. ``merge`` reads those folders and writes the
summary a single run would have written (``summary.md``/``.json``/``.csv``, the plots, and every epoch's
record in ``results.jsonl``) into a new folder, with ``merged_from.json`` naming the sources.

The runs must share every setting except the backends, the seeds, the thread count, the device and where
the data was read from (``MERGE_MAY_DIFFER``); otherwise they are not side by side, and ``merge`` says
which setting differs. Every record names the code that made it (machine.code_info: tssl-plugin's version
and commit, torch, snnTorch, SpikingJelly); runs made by different code are refused, naming the difference,
unless ``--allow-different-code`` (the summary then says the code differs). A backend and seed present
in two folders is refused (which one counts?). A run still in progress or stopped early is merged with
the epochs it has, and the summary says how many of how many it has, and how to continue it. The source
folders are only read; the merged folder holds no ``config.json`` and no checkpoints, so it cannot be
mistaken for a run to resume.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "merge_runs", "MERGE_FILES", "MERGE_MAY_DIFFER"]

#: what ``merge`` writes into its folder (the files a new merge refuses to overwrite without --overwrite).
MERGE_FILES = ("merged_from.json", "results.jsonl", "summary.json", "summary.csv", "summary.md",
               "accuracy_vs_epoch.png", "accuracy_vs_synops.png", "time_memory.png")
#: config fields that may differ between merged runs (they do not change what is compared).
MERGE_MAY_DIFFER = ("backends", "seeds", "seed", "threads", "device", "data_root", "download")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tssl-bench merge",
        description="Merge training runs of the same settings, trained as separate processes (one per "
                    "backend, say), into one side-by-side summary. The source folders are only read.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by tssl-bench training runs")
    p.add_argument("--out", required=True, help="a new folder for the merged summary")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier merge's files in --out (nothing else in the folder is touched)")
    p.add_argument("--allow-different-code", action="store_true",
                   help="merge runs whose records name different code (tssl-plugin version or git commit, "
                        "a modified checkout, torch, snnTorch or SpikingJelly versions); refused otherwise")
    return p


def _check_same_settings(folders: Sequence[Path], cfgs: Sequence[Any]) -> None:
    from .config import as_dict

    first = as_dict(cfgs[0])
    for folder, cfg in zip(folders[1:], cfgs[1:]):
        other = as_dict(cfg)
        for key in first:
            if key not in MERGE_MAY_DIFFER and first[key] != other.get(key):
                raise ValueError(
                    f"cannot merge {folders[0]} and {folder}: they differ in {key} ({first[key]!r} vs "
                    f"{other.get(key)!r}); a side-by-side summary needs the same settings (only "
                    f"{', '.join(MERGE_MAY_DIFFER)} may differ)")


def _unfinished(folders: Sequence[Path], cfgs: Sequence[Any], per_folder: Sequence[List[Dict[str, Any]]]) -> List[str]:
    """One line per backend and seed that has fewer epochs than its run's ``epochs``."""
    from .results_dir import resume_command

    notes = []
    for folder, cfg, records in zip(folders, cfgs, per_folder):
        last: Dict[Tuple[str, int], int] = {}
        for r in records:
            key = (r["backend"], r["seed"])
            last[key] = max(last.get(key, 0), int(r["epoch"]))
        for (backend, seed), epoch in last.items():
            if epoch < cfg.epochs:
                notes.append(f"`{backend}` seed {seed} has {epoch} of {cfg.epochs} epochs; continue it with "
                             f"`{resume_command(folder)}` and merge again")
    return notes


def _code_differences(folders: Sequence[Path], per_folder: Sequence[List[Dict[str, Any]]]) -> Optional[str]:
    """None when every record names the same code (or none does); else what differs, between which records."""
    from .machine import code_differences

    first: Optional[Tuple[str, Any]] = None
    for folder, records in zip(folders, per_folder):
        for r in records:
            where = f"{folder} ({r['backend']} seed {r['seed']} epoch {r['epoch']})"
            if first is None:
                first = (where, r.get("code"))
                continue
            diff = code_differences(first[1], r.get("code"), names=(first[0], where))
            if diff:
                return f"{first[0]} and {where} were made by different code: {'; '.join(diff)}"
    return None


def merge_runs(folders: Sequence[Path], out: Path, *, overwrite: bool = False,
               allow_different_code: bool = False) -> Dict[str, Any]:
    """Merge the training runs in ``folders`` into ``out``; returns the summary. ValueError if they do not
    merge (different settings; different code unless ``allow_different_code``)."""
    import dataclasses

    from . import data as D
    from . import models as M
    from . import report as R
    from .results_dir import check_new_out, clear_results
    from .summary import shared, shared_code, write_summary

    folders = [Path(f) for f in folders]
    out = Path(out)
    for f in folders:
        if f.resolve() == out.resolve():
            raise ValueError(f"--out {out} is one of the runs to merge; give a new folder")
    if len({f.resolve() for f in folders}) != len(folders):
        raise ValueError("the same run folder is given twice; name each run once")
    if (out / "config.json").exists() or (out / "checkpoints").exists():
        raise ValueError(f"--out {out} holds a training run (config.json, checkpoints); a merge never writes "
                         "into one, even with --overwrite; give a new folder")
    check_new_out(out, overwrite=overwrite, resume=None, files=MERGE_FILES, holding="a merged summary")
    from .results_dir import read_run

    runs = [read_run(f, "merge", prefix="", empty="has no finished epoch yet",
                     then="; merge it once its first epoch is done") for f in folders]
    cfgs, per_folder = [c for c, _ in runs], [r for _, r in runs]
    _check_same_settings(folders, cfgs)
    code_diff = _code_differences(folders, per_folder)
    if code_diff and not allow_different_code:
        raise ValueError(f"cannot merge: {code_diff}; numbers side by side should come from the same code "
                         "(re-run one of them), or add --allow-different-code to merge them anyway")
    owner: Dict[Tuple[str, int], Path] = {}
    for folder, records in zip(folders, per_folder):
        for key in {(r["backend"], r["seed"]) for r in records}:
            if key in owner:
                raise ValueError(f"{key[0]} seed {key[1]} is in both {owner[key]} and {folder}; merge one of them")
            owner[key] = folder
    backends = list(dict.fromkeys(r["backend"] for records in per_folder for r in records))
    seeds = sorted({r["seed"] for records in per_folder for r in records})
    cfg = dataclasses.replace(cfgs[0], backends=backends, seed=seeds[0], seeds=len(seeds))
    notes = _unfinished(folders, cfgs, per_folder)
    ds = D.load_dataset(cfg.dataset, cfg.data_root, n_steps=cfg.steps, download=False,
                        limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                        nmnist_window_us=cfg.nmnist_window_us, normalize=cfg.normalize)
    arch = M.make_arch(cfg.arch, ds.n_class, cfg.hidden)
    records = [r for recs in per_folder for r in recs]
    if overwrite:
        clear_results(out, MERGE_FILES)
    out.mkdir(parents=True, exist_ok=True)
    R.atomic_write_json(out / "merged_from.json", {
        "folders": [str(f.resolve()) for f in folders], "backends": backends, "seeds": seeds,
        "unfinished": notes})
    R.JsonlWriter(out / "results.jsonl").rewrite(records)
    return write_summary(out, cfg, records, ds, arch, shared(records, "machine"), records[0]["memory_measure"],
                         notes=[f"Merged from {len(folders)} run{'' if len(folders) == 1 else 's'} "
                                f"({', '.join(f'`{f}`' for f in folders)}) by `tssl-bench merge`."]
                               + [f"Unfinished: {n}." for n in notes]
                               + ([f"Different code (merged with --allow-different-code): {code_diff}."]
                                  if code_diff else []),
                         code=shared_code(records))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench merge``; returns the exit status."""
    from .data import DataError
    from .extras import MissingExtras, check_requirements
    from .summary import console_table

    args = build_parser().parse_args(list(argv or []))
    try:
        check_requirements([("matplotlib", "bench")])
        summary = merge_runs([Path(f) for f in args.runs], Path(args.out), overwrite=args.overwrite,
                             allow_different_code=args.allow_different_code)
    except (ValueError, DataError, MissingExtras) as err:
        print(f"tssl-bench merge: error: {err}", file=sys.stderr)
        return 2
    print(console_table(summary["runs"]))
    for note in summary["notes"][1:]:
        print(f"tssl-bench merge: note: {note.replace('`', '')}", file=sys.stderr)
    print(f"\nmerged {len(args.runs)} run{'' if len(args.runs) == 1 else 's'} into {args.out} (summary.md, summary.json, summary.csv, results.jsonl, *.png)")
    return 0
