"""What ran a benchmark (platform, versions, cores, threads, device), recorded in ``summary.json``."""
from __future__ import annotations

import os
import platform
from typing import Any, Dict

import torch

__all__ = ["machine_info"]


def machine_info(device: torch.device, world: int) -> Dict[str, Any]:
    """What ran the benchmark: platform, Python, torch, CPU cores, torch threads, device, world size, the GPU's
    name on CUDA, and the host libraries' versions when installed."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
            "world_size": world}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for mod in ("snntorch", "spikingjelly"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            pass
    return info
