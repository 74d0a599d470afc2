"""``tssl-bench speed``: the timing benchmarks, one sub-command each, all timed by timer.py.

* ``tssl-bench speed [layer]`` (speed_layer.py): one spiking layer per backend, forward, backward and
  memory, into a results folder;
* ``tssl-bench speed mlp-step`` (speed_mlp_step.py): one training step of the paper's MLP, TSSL-BP
  against SpikingJelly and a ReLU network;
* ``tssl-bench speed scaling`` (speed_scaling.py): the core op's time in T, against the O(T^2) evaluation;
* ``tssl-bench speed gpu-layer`` (speed_gpu_layer.py): one layer on CUDA, TSSL-BP against each of
  SpikingJelly's LIF implementations;
* ``tssl-bench speed host-step`` (speed_host_step.py): a host's tutorial model per training step,
  unconverted against ``convert(net)``, eager and (``--compile``) under ``torch.compile``.

Without a sub-command name, ``tssl-bench speed`` is ``tssl-bench speed layer``.
"""
from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["main", "SUBCOMMANDS"]

SUBCOMMANDS = ("layer", "mlp-step", "scaling", "gpu-layer", "host-step")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tssl-bench speed [SUB-COMMAND] [options]``; returns the exit status."""
    argv = list(argv or [])
    name = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "layer"
    if name == "mlp-step":
        from .speed_mlp_step import main as run
    elif name == "scaling":
        from .speed_scaling import main as run
    elif name == "gpu-layer":
        from .speed_gpu_layer import main as run
    elif name == "host-step":
        from .speed_host_step import main as run
    else:
        from .speed_layer import main as run
    return run(argv)
