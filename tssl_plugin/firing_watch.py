r"""A run-time watch on a converted layer's firing: one warning when a layer trains silent or saturated.

TSSL-BP's gradient reaches a neuron through its spikes (the sensitivity
:math:`c = \min(1/\Delta u, \text{cap})` at each spike) and, while the neuron is
silent, through the warm-up surrogate alone. A layer that stops firing during
training gets only the warm-up's gradient and may never fire again; a layer in
which every neuron fires at every step carries no timing and its spike count
cannot grow, while the rule still credits each spike (docs/algorithm.md). Either
way a network can train to chance, or to a dead network, without an error.

:class:`FiringWatch` counts the spikes a layer emits while it learns (one
``count_nonzero`` of bool spikes or one sum of 0/1 float spikes, and one in-place add per call, no host
synchronisation) and
looks at the count every :data:`WINDOW_STEPS` time steps (one synchronisation).
:data:`WINDOWS` windows in a row with no spike at all, or with at least
:data:`SATURATED` of the layer's neuron-steps spiking, give one
:class:`FiringWarning` that names the layer and what to do. Each watch warns at
most once. It does nothing while ``torch.compile`` traces (the compiled graph is
not watched). Silence it with
``warnings.filterwarnings("ignore", category=tssl_plugin.FiringWarning)``.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

__all__ = ["FiringWarning", "FiringWatch", "SATURATED", "WINDOWS", "WINDOW_STEPS"]

#: time steps per look at the count (a step-mode call is one step, a sequence of T steps is T).
WINDOW_STEPS = 500
#: windows in a row that must be silent (or saturated) before the warning.
WINDOWS = 2
#: the fraction of a layer's neuron-steps that must spike for the layer to count as saturated.
SATURATED = 0.99


class FiringWarning(UserWarning):
    """A converted layer has trained silent, or saturated, for :data:`WINDOWS` x :data:`WINDOW_STEPS` steps."""


class FiringWatch:
    """Counts one layer's spikes while it learns; warns once if the layer stays silent or saturated.

    Example::

        watch = FiringWatch("fc1")
        for t in range(T):
            spikes = ...               # the layer's bool (or 0/1) spikes at step t
            watch.observe(spikes)      # or watch.observe(spike_seq, steps=T) for a whole sequence
    """

    __slots__ = ("name", "_count", "_slots", "_steps", "_silent", "_saturated", "warned")

    def __init__(self, name: str) -> None:
        self.name = name
        self.warned = False
        self._silent = 0
        self._saturated = 0
        self._clear()

    def _clear(self) -> None:
        self._count: Optional[Tensor] = None
        self._slots = 0
        self._steps = 0

    def observe(self, spikes: Tensor, steps: int = 1) -> None:
        """Add a call's ``spikes`` (``steps`` time steps of the layer); look at the count once a window is full."""
        if self.warned or torch.compiler.is_compiling():
            return
        s = spikes.detach()
        # 0/1 floats: their sum is the count, and one pass (count_nonzero on floats costs about 20 sums)
        if s.is_floating_point():
            fired = s.sum(dtype=torch.float64 if s.dtype == torch.float64 else torch.float32)
        else:
            fired = torch.count_nonzero(s)
        self._count = fired.double() if self._count is None else self._count.add_(fired)
        self._slots += spikes.numel()
        self._steps += steps
        if self._steps >= WINDOW_STEPS:
            self._look()

    def _look(self) -> None:
        fired, slots = int(self._count), self._slots
        self._clear()
        self._silent = self._silent + 1 if fired == 0 else 0
        self._saturated = self._saturated + 1 if slots and fired >= SATURATED * slots else 0
        steps = WINDOWS * WINDOW_STEPS
        if self._silent >= WINDOWS:
            self._warn(f"has fired no spike in its last {steps} training time steps: TSSL-BP reaches a silent "
                       "layer only through its warm-up surrogate, so it may never fire again; widen the "
                       "warm-up (convert(model, warmup_width=1.0)), lower the learning rate, or keep this "
                       "layer on its surrogate (convert(model, exclude=[...]))")
        elif self._saturated >= WINDOWS:
            self._warn(f"has fired at {SATURATED:.0%} or more of its neuron-steps for its last {steps} training "
                       "time steps: a saturated layer carries no spike timing and TSSL-BP overstates its "
                       "count's slope; lower the learning rate or the input scale, or keep this layer on its "
                       "surrogate (convert(model, exclude=[...]))")

    def _warn(self, what: str) -> None:
        self.warned = True
        warnings.warn(f"TSSL-BP layer '{self.name}' {what}.", FiringWarning, stacklevel=4)

    def __repr__(self) -> str:
        return f"FiringWatch({self.name!r}, warned={self.warned})"
