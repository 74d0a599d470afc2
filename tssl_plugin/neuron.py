"""Stateful wrapper: :class:`TSSLNeuron`, a module holding one layer's TSSL-BP parameters."""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

from . import _impl
from ._validation import (
    check_bool, check_choice, check_param, check_param_values, check_sensitivity_cap, check_warmup_width,
)
from .functional import tssl_lif
from ._types import Warmup
from .rule import CROSSINGS, OUTPUTS, RESETS, SENSITIVITY_CAP, WARMUP_WIDTH, Param, check_ablation, check_warmup

__all__ = ["TSSLNeuron"]


class TSSLNeuron(nn.Module):
    r"""A layer of TSSL-BP leaky integrate-and-fire neurons over a whole sequence.

    Runs :func:`tssl_plugin.functional.tssl_lif`; the rule (forward recursion
    and TSSL-BP gradients) is stated in :mod:`tssl_plugin.rule`. Every argument
    is checked here, at construction (``warmup="no"`` or ``impl="nonsense"``
    raise now, not at the first forward).

    Args:
        tau_m, tau_s, threshold: numbers, or per-neuron tensors broadcastable
            to the input's ``x.shape[1:]`` (stored as buffers, so they follow
            ``.to()`` and appear in the state_dict).
        warmup, output, reset, impl, warmup_width, sensitivity_cap, ablation, warmup_floor, crossing: see
            :func:`~tssl_plugin.functional.tssl_lif`.

    Shape: input ``[T, N, ...]`` (time-first), output the same.
    """

    #: the class default, so a module pickled before the option existed loads with the reference's width.
    warmup_width: float = WARMUP_WIDTH
    sensitivity_cap: float = SENSITIVITY_CAP
    ablation: str = "none"
    warmup_floor: bool = True
    crossing: str = "step"

    def __init__(
        self,
        tau_m: Param = 5.0,
        tau_s: Param = 3.0,
        threshold: Param = 1.0,
        *,
        warmup: Warmup = True,
        output: str = "psc",
        reset: str = "zero",
        impl: str = "auto",
        warmup_width: float = WARMUP_WIDTH,
        sensitivity_cap: float = SENSITIVITY_CAP,
        ablation: str = "none",
        warmup_floor: bool = True,
        crossing: str = "step",
    ) -> None:
        super().__init__()
        check_choice(output, "output", OUTPUTS)
        check_choice(reset, "reset", RESETS)
        check_warmup(warmup)
        _impl.check_impl(impl)
        warmup_width = check_warmup_width(warmup_width)
        sensitivity_cap = check_sensitivity_cap(sensitivity_cap)
        check_ablation(ablation, reset, warmup)
        warmup_floor = check_bool(warmup_floor, "warmup_floor")
        check_choice(crossing, "crossing", CROSSINGS)
        params = {"tau_m": tau_m, "tau_s": tau_s, "threshold": threshold}
        for name, value in params.items():
            if isinstance(value, Tensor):
                # values now; the shape against the input's neuron shape at call time
                value = value.detach()
                check_param(value, name, value.shape)
                check_param_values(value, name)
                self.register_buffer(name, value.clone())
            else:
                setattr(self, name, check_param(value, name, torch.Size()))
        self.warmup = warmup
        self.warmup_width = warmup_width
        self.sensitivity_cap = sensitivity_cap
        self.ablation = ablation
        self.warmup_floor = warmup_floor
        self.crossing = crossing
        self.output = output
        self.reset = reset
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        return tssl_lif(
            x, self.tau_m, self.tau_s, self.threshold,
            warmup=self.warmup, output=self.output, reset=self.reset, impl=self.impl,
            warmup_width=self.warmup_width, sensitivity_cap=self.sensitivity_cap, ablation=self.ablation,
            warmup_floor=self.warmup_floor, crossing=self.crossing,
        )

    def extra_repr(self) -> str:
        def show(v: Union[float, Tensor]) -> str:
            return f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else f"{v:g}"

        return (
            f"tau_m={show(self.tau_m)}, tau_s={show(self.tau_s)}, threshold={show(self.threshold)}, "
            f"warmup={self.warmup}, warmup_width={self.warmup_width:g}, sensitivity_cap={self.sensitivity_cap:g}, "
            f"output={self.output!r}, "
            f"reset={self.reset!r}"
            + (f", ablation={self.ablation!r}" if self.ablation != "none" else "")
            + ("" if self.warmup_floor else ", warmup_floor=False")
            + (f", crossing={self.crossing!r}" if self.crossing != "step" else "")
        )
