"""A CPU-only install (the PyTorch CPU wheel: no CUDA libraries, no Triton) has everything the package needs.

The CPU wheel ships neither ``triton`` nor the ``nvidia-*`` CUDA library packages (nor ``cuda-bindings``), so this runs the package
in a fresh interpreter where those are absent (``sys.modules[name] = None``), with no GPU visible, and checks that the core op, both
adapters and the benchmark CLI import and run, and that nothing initialised CUDA.
"""
import os
import subprocess
import sys

import pytest

SCRIPT = r'''
import sys

# As on the CPU wheel: `import triton` / `import nvidia` fail and importlib.util.find_spec says "absent".
for name in ("triton", "nvidia", "cuda"):  # cuda: NVIDIA's cuda-python bindings, a dependency of the CUDA build
    sys.modules[name] = None
import warnings
import torch
import tssl_plugin
from tssl_plugin.functional import last_impl, tssl_lif
from tssl_plugin.benchmarks import cli
imported = ["tssl_plugin", "tssl_plugin.benchmarks.cli"]
for name in ("snntorch", "spikingjelly"):
    try:
        __import__(f"tssl_plugin.adapters.{name}")
        imported.append(name)
    except ImportError as err:
        if name.split(".")[0] not in str(err):
            raise
x = torch.rand(6, 3, 4, requires_grad=True)
with warnings.catch_warnings():
    warnings.simplefilter("error")  # no fallback warning: the CPU kernel needs nothing from CUDA
    tssl_lif(x, output="spike").sum().backward()
assert torch.isfinite(x.grad).all()
assert not torch.cuda.is_initialized(), "something initialised CUDA"
loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in ("triton", "nvidia", "cuda"))
assert not loaded, loaded
print("ok", last_impl("cpu", torch.float32), *imported)
'''


def test_package_needs_nothing_from_the_cuda_build():
    from tssl_plugin._impl import cpu

    try:
        cpu.load()
    except ImportError:
        pytest.skip("no C compiler here: the CPU kernel cannot be built")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    words = res.stdout.split()
    assert words[:2] == ["ok", "cpu"] and "tssl_plugin.benchmarks.cli" in words, res.stdout
