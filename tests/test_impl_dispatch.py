"""impl="auto": which implementation it picks, and that falling back to the reference is never silent."""
from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import pytest
import torch

from tssl_plugin import _impl
from tssl_plugin._impl import _op
from tssl_plugin.rule import LIFParameters


@pytest.fixture
def fresh_dispatch(monkeypatch):
    _impl._reset_for_tests()
    yield monkeypatch
    _impl._reset_for_tests()


def _replace_loader(monkeypatch, name, load):
    """The implementation table with ``name``'s loader replaced (restored by ``monkeypatch``)."""
    monkeypatch.setattr(_impl, "BACKENDS", tuple(b._replace(load=load) if b.name == name else b
                                                  for b in _impl.BACKENDS))


def _cuda_like(dtype=torch.float32):
    """What the dispatch looks at: a device type and a dtype (no GPU needed)."""
    return SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype, is_cuda=True)


def test_no_triton_on_cuda_warns_once_and_names_the_extra(fresh_dispatch):
    def no_triton():
        raise ImportError("triton is required for this feature; install it with: pip install 'tssl-plugin[triton]'")

    _replace_loader(fresh_dispatch, "triton", no_triton)
    with pytest.warns(RuntimeWarning, match=r"on cuda runs the plain-PyTorch 'reference'.*'triton' is not "
                                            r"available \(triton is required.*tssl-plugin\[triton\]"):
        assert _impl.select("auto", _cuda_like()).name == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _impl.select("auto", _cuda_like()).name == "reference"  # decided once per device and dtype
        assert _impl.select("auto", _cuda_like(torch.float64)).name == "reference"  # same reason: no new warning


def test_a_broken_triton_install_is_a_fallback_not_a_crash(fresh_dispatch):
    def broken():
        raise RuntimeError("libcuda.so cannot be loaded")

    _replace_loader(fresh_dispatch, "triton", broken)
    with pytest.warns(RuntimeWarning, match=r"'triton' is not available \(libcuda.so cannot be loaded\)"):
        assert _impl.select("auto", _cuda_like()).name == "reference"


def test_auto_picks_triton_for_cuda_when_it_loads(fresh_dispatch):
    pytest.importorskip("triton")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            assert _impl.select("auto", _cuda_like(dtype)).name == "triton"


def test_a_device_without_a_fused_kernel_warns(fresh_dispatch):
    x = torch.empty(3, 4, device="meta")
    with pytest.warns(RuntimeWarning, match="no fused implementation runs torch.float32 on meta"):
        assert _impl.select("auto", x).name == "reference"


def test_named_impl_errors_are_not_fallbacks(fresh_dispatch):
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        _impl.select("fast", x)
    if "TRITON_INTERPRET" not in os.environ:
        pytest.importorskip("triton")
        with pytest.raises(ValueError, match="impl 'triton' cannot run on this input"):
            _impl.select("triton", x)


def test_parameters_are_packed_once_not_per_call(monkeypatch):
    """The kernels' parameter table is built once per parameter set (a per-neuron tensor: per tensor and
    version), not in every forward and backward."""
    from tssl_plugin import TSSLNeuron
    from tssl_plugin._impl import _params, cpu

    try:
        cpu.load()
    except ImportError:
        pytest.skip("C kernel could not be built here (the reference packs no table)")
    _params.clear_cache()
    packed = []
    real = _params.pack_params
    monkeypatch.setattr(_params, "pack_params", lambda k, like: packed.append(1) or real(k, like))
    layer = TSSLNeuron(threshold=torch.full((4,), 0.8))
    x = torch.rand(6, 3, 4, requires_grad=True)
    for _ in range(3):
        layer(x).sum().backward()
        torch.ops.tssl_plugin.lif(x, *_op.encode(LIFParameters(threshold=layer.threshold)), True, True, "auto")
    assert len(packed) == 1
    with torch.no_grad():
        layer.threshold.fill_(0.9)  # an in-place change is seen
    layer(x)
    assert len(packed) == 2
