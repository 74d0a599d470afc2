"""Which device a command runs on: ``--device auto|cpu|cuda|cuda:N`` checked, chosen, and waited for."""
from __future__ import annotations

import torch

from .distributed import dist_info

__all__ = ["check_device", "pick_device", "synchronize"]


def check_device(name: str) -> None:
    """ValueError saying what to use if ``name`` (auto, cpu, cuda, cuda:N) cannot run here."""
    if name == "auto":
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: only auto, cpu, cuda and cuda:N are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")


def pick_device(name: str) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ValueError for a device that cannot run."""
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", dist_info()[2])
        torch.cuda.set_device(dev)
    return dev


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
