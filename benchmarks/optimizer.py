r"""The optimiser and learning-rate schedule every backend of a run trains with.

AdamW or Adam (PyTorch's default betas) with the run's weight decay; the learning rate of epoch
:math:`e` of :math:`E` is constant or cosine, :math:`\mathrm{lr}\,(1 + \cos(\pi e / E)) / 2`. The
schedule depends only on the epoch, so a resumed run sets the same rate.
"""
from __future__ import annotations

import math

import torch

from .config import Config

__all__ = ["make_optimizer", "lr_at"]


def lr_at(cfg: Config, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): constant, or cosine ``lr (1 + cos(pi e / E)) / 2``."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (adamw | adam, PyTorch's default betas) with ``cfg.lr`` and the resolved weight decay."""
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cfg.optimizer]
    return cls(params, lr=cfg.lr, weight_decay=cfg.resolved_weight_decay())
