"""Side-by-side timing with each call in a process of its own.

:func:`time_isolated` times several calls as :func:`~tssl_plugin.benchmarks.timer.time_calls` does (rounds,
each running every call once, in order; the first ``untimed`` rounds not recorded), but each call is built and
run in its own worker process. The parent only coordinates: a worker runs its call when told and sends back
what :func:`~tssl_plugin.benchmarks.timer.time_calls` measured in it, so a change of load still hits all calls
alike, while nothing one call leaves behind reaches another. A user trains one network per process, and
in one process two networks do not time as they do alone (measured, docs/performance.md):

* snnTorch keeps every neuron ever built in a class-level list (``SpikingNeuron.instances``), and
  ``utils.reset(net)`` resets and detaches all of them, not only ``net``'s;
* ``torch.compile``'s caches are per code object: two networks of the same classes share their frames'
  compiled variants and their recompile limit, so which network gets compiled code depends on the order;
* two multi-GB networks alternating in one process fault their memory in again at every step.

A call is built in the worker by ``build(*args)``, a module-level (picklable) function returning
``(call, info)``: the callable to time and anything picklable to hand back once (e.g. its memory). Workers
start with the ``spawn`` method (safe with CUDA), one at a time, and run with ``threads`` torch threads.
"""
from __future__ import annotations

import multiprocessing as mp
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from .timer import Timing, time_calls

__all__ = ["Build", "time_isolated"]

#: a module-level function and its arguments; in the worker ``build(*args) -> (call, info)``.
Build = Tuple[Callable[..., Tuple[Callable[[], object], Any]], Tuple[Any, ...]]


def _worker(conn: Any, build: Build, threads: int, device: Optional[str]) -> None:
    """A worker's life: build the call, send ``("ready", info)``, then time one round per ``"run"`` message
    (``("seconds", [...])``) until ``"stop"``; any exception is sent as ``("error", text)``."""
    try:
        torch.set_num_threads(threads)
        fn, args = build
        call, info = fn(*args)
        conn.send(("ready", info))
        dev = None if device is None else torch.device(device)
        while conn.recv() == "run":
            conn.send(("seconds", time_calls({"call": call}, repeats=1, device=dev)["call"].rounds[0]))
    except Exception:  # handed to the parent, which names the call and stops
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _reply(conn: Any, name: str, expected: str) -> Any:
    try:
        kind, value = conn.recv()
    except EOFError:
        raise RuntimeError(f"the worker timing {name!r} ended without an answer (killed, or out of memory?)") \
            from None
    if kind == "error":
        raise RuntimeError(f"the worker timing {name!r} failed:\n{value}")
    if kind != expected:
        raise RuntimeError(f"the worker timing {name!r} answered {kind!r}, expected {expected!r}")
    return value


def time_isolated(builds: Mapping[str, Build], *, repeats: int, untimed: int = 0, threads: Optional[int] = None,
                  device: Optional[torch.device] = None) -> Tuple[Dict[str, Timing], Dict[str, Any]]:
    """Build every call of ``builds`` in a worker process of its own and time them in ``untimed + repeats``
    interleaved rounds (see the module docstring). Returns each name's :class:`Timing` (its ``repeats``
    timed rounds) and the ``info`` its build returned. ``threads``: torch threads in the workers (default:
    this process's)."""
    if repeats < 1 or untimed < 0:
        raise ValueError(f"need repeats >= 1 and untimed >= 0, got {repeats} and {untimed}")
    ctx = mp.get_context("spawn")
    threads = torch.get_num_threads() if threads is None else threads
    dev = None if device is None else str(device)
    conns: Dict[str, Any] = {}
    procs: List[Any] = []
    try:
        info = {}
        for name, build in builds.items():  # one at a time: a build (and its compilation) is not timed
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, build, threads, dev), daemon=True)
            proc.start()
            child.close()
            procs.append(proc)
            conns[name] = parent
            info[name] = _reply(parent, name, "ready")
        out = {name: Timing() for name in builds}
        for i in range(untimed + repeats):
            for name, conn in conns.items():
                conn.send("run")
                seconds = _reply(conn, name, "seconds")
                if i >= untimed:
                    out[name].rounds.append(seconds)
        return out, info
    finally:
        for conn in conns.values():
            try:
                conn.send("stop")
            except (BrokenPipeError, OSError):
                pass
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
