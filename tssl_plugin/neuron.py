"""Stateful wrapper: :class:`TSSLNeuron`, a module holding one layer's TSSL-BP parameters."""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

from .functional import OUTPUTS, RESETS, Param, lif_constants, tssl_lif
from ._validation import check_choice

__all__ = ["TSSLNeuron"]


class TSSLNeuron(nn.Module):
    r"""A layer of TSSL-BP leaky integrate-and-fire neurons over a whole sequence.

    .. math::

        u[t] = v + x[t] - v/\tau_m,\quad o[t] = [u[t] > \vartheta],\quad
        v = u[t](1 - o[t]),\quad a[t] = a[t-1] + (o[t] - a[t-1])/\tau_s

    Gradients follow TSSL-BP (:func:`tssl_plugin.functional.tssl_lif`).

    Args:
        tau_m, tau_s, threshold: numbers, or per-neuron tensors broadcastable
            to the input's ``x.shape[1:]`` (stored as buffers, so they follow
            ``.to()`` and appear in the state_dict).
        warmup, output, reset, impl: see :func:`~tssl_plugin.functional.tssl_lif`.

    Shape: input ``[T, N, ...]`` (time-first), output the same.
    """

    def __init__(
        self,
        tau_m: Param = 5.0,
        tau_s: Param = 3.0,
        threshold: Param = 1.0,
        *,
        warmup: bool = True,
        output: str = "psc",
        reset: str = "zero",
        impl: str = "auto",
    ) -> None:
        super().__init__()
        check_choice(output, "output", OUTPUTS)
        check_choice(reset, "reset", RESETS)
        params = {"tau_m": tau_m, "tau_s": tau_s, "threshold": threshold}
        # numbers are checked now; tensors are checked against the input's shape at call time
        scalars = {n: (5.0 if isinstance(v, Tensor) else v) for n, v in params.items()}
        lif_constants(torch.zeros(1, 1, dtype=torch.float64), reset=reset, **scalars)
        for name, value in params.items():
            if isinstance(value, Tensor):
                self.register_buffer(name, value.detach().clone())
            else:
                setattr(self, name, float(value))
        self.warmup = bool(warmup)
        self.output = output
        self.reset = reset
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        return tssl_lif(
            x, self.tau_m, self.tau_s, self.threshold,
            warmup=self.warmup, output=self.output, reset=self.reset, impl=self.impl,
        )

    def extra_repr(self) -> str:
        def show(v: Union[float, Tensor]) -> str:
            return f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else f"{v:g}"

        return (
            f"tau_m={show(self.tau_m)}, tau_s={show(self.tau_s)}, threshold={show(self.threshold)}, "
            f"warmup={self.warmup}, output={self.output!r}, reset={self.reset!r}"
        )
