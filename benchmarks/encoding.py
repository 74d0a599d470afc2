r"""How a sample enters the network and how its class is read from the output.

Input: a static image is repeated over T steps; with ``encoding="psc"`` (the paper's) it is filtered by
the PSC kernel, ``p = psp(img)``; event data (``temporal``) already has its T frames.
Output: the output layer's PSC ``a_out`` (for spiking outputs ``a_out = psp(spikes)``), and the
prediction :math:`\arg\max_c \sum_t a_{out}[t, c]`, the same for every backend.
"""
from __future__ import annotations

from torch import Tensor

__all__ = ["encode", "output_psc", "predict"]


def encode(x: Tensor, steps: int, encoding: str, tau_s: float, temporal: bool) -> Tensor:
    """Input sequence ``[T, N, ...]``: static images repeated over T (PSC-filtered for ``psc``)."""
    from tssl_plugin import psp

    seq = x.transpose(0, 1) if temporal else x.unsqueeze(0).expand(steps, *x.shape)
    return psp(seq.contiguous(), tau_s) if encoding == "psc" else seq.contiguous()


def output_psc(out: Tensor, kind: str, tau_s: float) -> Tensor:
    """The output layer's PSC ``a_out`` (``psp`` of the spikes for spiking outputs)."""
    from tssl_plugin import psp

    return out if kind == "psc" else psp(out, tau_s)


def predict(a_out: Tensor) -> Tensor:
    """The predicted class of each sample: the argmax over classes of the output PSC summed over time."""
    return a_out.sum(0).argmax(-1)
