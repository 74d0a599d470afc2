"""The one timer behind every ``tssl-bench speed`` measurement.

:func:`time_calls` times several calls side by side: in rounds, each round running every call once in
the given order, so a change of load or clock speed during the measurement hits all of them alike. The
first ``untimed`` rounds warm up (caches, lazy compilation, allocator) and are not recorded; the next
``repeats`` rounds are. Report medians (:meth:`Timing.median`), which a few slow rounds do not move.

A call is a callable, or a sequence of callables (its stages, e.g. prepare, forward, backward) run in
order and timed separately; stages share state through the caller's closures.

Clock: ``time.perf_counter`` wall time. On CUDA the device is synchronised before each call and after each
stage, so a stage's time includes its GPU work; with ``cuda_events`` CUDA events recorded between the
stages time them on the GPU's stream instead, and the host waits only at the end of each call.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch

__all__ = ["Call", "Timing", "time_calls"]

#: a callable, or the stages of one call, timed separately.
Call = Union[Callable[[], object], Sequence[Callable[[], object]]]


@dataclass
class Timing:
    """Seconds of each stage of one call, per timed round (``rounds[i][s]``: round ``i``, stage ``s``)."""

    rounds: List[List[float]] = field(default_factory=list)

    def seconds(self, *stages: int) -> List[float]:
        """Per round, the seconds of ``stages`` together (every stage when none is named)."""
        return [sum(r[s] for s in stages) if stages else sum(r) for r in self.rounds]

    def median(self, *stages: int) -> float:
        """Median over the rounds of the seconds of ``stages`` together (every stage when none is named)."""
        return statistics.median(self.seconds(*stages))


def _stages(call: Call) -> Sequence[Callable[[], object]]:
    return (call,) if callable(call) else tuple(call)


def _wall(stages: Sequence[Callable[[], object]], device: Optional[torch.device]) -> List[float]:
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    out, t = [], time.perf_counter()
    for stage in stages:
        stage()
        if cuda:
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        out.append(now - t)
        t = now
    return out


def _events(stages: Sequence[Callable[[], object]]) -> List[float]:
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(len(stages) + 1)]
    marks[0].record()
    for stage, mark in zip(stages, marks[1:]):
        stage()
        mark.record()
    marks[-1].synchronize()
    return [a.elapsed_time(b) / 1e3 for a, b in zip(marks, marks[1:])]


def time_calls(calls: Mapping[str, Call], *, repeats: int, untimed: int = 0, device: Optional[torch.device] = None,
               cuda_events: bool = False) -> Dict[str, Timing]:
    """Time every call of ``calls`` in ``untimed + repeats`` rounds (see the module docstring); returns the
    :class:`Timing` of each name, with its ``repeats`` timed rounds."""
    if repeats < 1 or untimed < 0:
        raise ValueError(f"need repeats >= 1 and untimed >= 0, got {repeats} and {untimed}")
    if cuda_events and not torch.cuda.is_available():
        raise ValueError("cuda_events needs CUDA")
    staged = {name: _stages(call) for name, call in calls.items()}
    out = {name: Timing() for name in staged}
    for i in range(untimed + repeats):
        for name, stages in staged.items():
            seconds = _events(stages) if cuda_events else _wall(stages, device)
            if i >= untimed:
                out[name].rounds.append(seconds)
    return out
