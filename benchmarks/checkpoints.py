"""Checkpoints of a training run: one file per backend and seed under ``DIR/checkpoints/``, written after every
epoch (atomically), holding the model, the optimiser, the epochs done and their records; ``--resume`` reads
them back. A damaged or foreign file is named with what to do."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch

from . import report as R

__all__ = ["checkpoint_path", "load_checkpoint", "save_checkpoint"]


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
