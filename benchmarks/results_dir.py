"""The results folder of a training run: which files it holds, when it may be written, checkpoints.

A folder that already holds tssl-bench results is never written into silently: a new run refuses it
(pointing to ``--resume`` and ``--overwrite``); ``--overwrite`` deletes exactly the files a run
writes (so no old checkpoint can mix with the new run) and leaves anything else in the folder alone.
Every file error names the file and what to do.
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any, Dict, List

import torch

from . import report as R
from .config import Config, config_from_json

__all__ = ["RESULT_FILES", "existing_results", "check_new_out", "clear_results", "read_config",
           "checkpoint_path", "load_checkpoint", "save_checkpoint", "resume_command"]

#: what a run (training or ``speed``) writes into its folder, as glob patterns (``checkpoints`` is a folder).
RESULT_FILES = ("config.json", "results.jsonl", "summary.json", "summary.csv", "summary.md",
                "accuracy_vs_epoch.png", "accuracy_vs_synops.png", "time_memory.png", "speed_vs_T_size*.png",
                "checkpoints")


def resume_command(out: Path) -> str:
    """The exact command that continues the run in ``out``."""
    return f"tssl-bench --resume {shlex.quote(str(out))}"


def existing_results(out: Path) -> List[str]:
    """Names of the :data:`RESULT_FILES` present in ``out``."""
    return sorted({p.name for pattern in RESULT_FILES for p in out.glob(pattern)})


def check_new_out(out: Path, *, overwrite: bool) -> None:
    """ValueError unless ``out`` can take a new run: absent, or a folder without results (or ``overwrite``)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a new folder name")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out {out}: {parent} is a file, not a folder; give another path")
    if out.is_dir() and not overwrite:
        found = existing_results(out)
        if found:
            raise ValueError(f"--out {out} already holds tssl-bench results ({', '.join(found)}); continue that run "
                             f"with: {resume_command(out)}, or add --overwrite to delete them and start again")


def clear_results(out: Path) -> None:
    """Delete the files a previous run wrote into ``out`` (only :data:`RESULT_FILES`)."""
    for name in existing_results(out):
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def read_config(out: Path) -> Config:
    """The saved config of the run in ``out``; ValueError naming the file if it is missing or unreadable."""
    if not out.is_dir():
        raise ValueError(f"--resume {out}: no such folder")
    path = out / "config.json"
    if not path.exists():
        raise ValueError(f"--resume {out}: no config.json there (not a tssl-bench output folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--resume: cannot read {path} ({type(err).__name__}: {err}); it is damaged. Restore it, "
                         f"or start a new run with --out") from err
    return config_from_json(data, str(path))


def checkpoint_path(out: Path, backend: str, seed: int) -> Path:
    """Where the checkpoint of ``backend`` with ``seed`` lives."""
    return out / "checkpoints" / f"{backend.replace(':', '_')}-seed{seed}.pt"


def load_checkpoint(path: Path, device: torch.device) -> Dict[str, Any]:
    """A checkpoint's contents; ValueError naming the file if it is truncated or not a checkpoint."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # truncated zip, pickle errors, wrong file: torch raises many types
        raise ValueError(f"checkpoint {path} is damaged ({type(err).__name__}: {' '.join(str(err).split())[:160]}); "
                         f"delete it to retrain that backend and seed from the start, then resume again") from err
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "records"} <= set(state):
        raise ValueError(f"checkpoint {path} is not a tssl-bench checkpoint; delete it to retrain that backend "
                         f"and seed from the start, then resume again")
    return state


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    R.atomic_torch_save(path, state)
