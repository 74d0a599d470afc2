"""The losses a benchmark network trains with, and which one each backend uses.

Losses (``y`` = output spikes, or the PSC for the native network; ``a_out`` the output PSC):

* ``kernel``: ``tssl_plugin.kernel_loss(a_out, labels)`` (summed over batch, as the paper);
* ``count``: ``tssl_plugin.count_loss`` with desired/undesired counts T/2 and T/10;
* ``ce_rate``: ``mean_t CrossEntropy(y[t], label)`` (the formula of ``snntorch.functional.ce_rate_loss``);
* ``mse_rate``: ``MSE(mean_t y[t], onehot(label))`` (SpikingJelly's tutorial loss).

``natural`` is each backend's own: TSSL-BP the kernel loss (the count loss on event data),
snnTorch surrogates ``ce_rate``, SpikingJelly surrogates ``mse_rate``.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "SUMMED_LOSSES", "compute_loss", "loss_for"]

LOSSES = ("natural", "kernel", "count", "ce_rate", "mse_rate")
#: losses summed over the batch (the others are means over it).
SUMMED_LOSSES = ("kernel", "count")


def compute_loss(name: str, out: Tensor, a_out: Tensor, labels: Tensor, tau_s: float) -> Tensor:
    """The loss ``name`` (see the module docstring) on output ``out`` / output PSC ``a_out`` ``[T, N, C]``."""
    from tssl_plugin import count_loss, kernel_loss

    T = out.shape[0]
    if name == "kernel":
        return kernel_loss(a_out, labels, tau_s=tau_s)
    if name == "count":
        return count_loss(a_out, labels, desired_count=T / 2, undesired_count=T / 10)
    if name == "ce_rate":
        return F.cross_entropy(out.flatten(0, 1), labels.repeat(T))
    if name == "mse_rate":
        return F.mse_loss(out.mean(0), F.one_hot(labels, out.shape[-1]).to(out.dtype))
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


def loss_for(loss: str, backend: Any, temporal: bool) -> str:
    """The loss a backend uses: ``loss`` unless ``natural`` (TSSL-BP: kernel, count on event data)."""
    if loss != "natural":
        return loss
    if backend.natural_loss == "kernel" and temporal:
        return "count"
    return backend.natural_loss
