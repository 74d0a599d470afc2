"""The Triton kernels (impl="triton") against reference.py.

Without a GPU they run in Triton's interpreter, which needs TRITON_INTERPRET=1
before triton is first imported, so those checks run in a fresh subprocess.
On a CUDA machine the same checks also run in-process on the GPU.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import impl_cases as cases

HAVE_TRITON = importlib.util.find_spec("triton") is not None
ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    assert os.environ["TRITON_INTERPRET"] == "1"
    sys.path.insert(0, {tests!r})
    import impl_cases as cases
    from tssl_plugin import _impl
    from tssl_plugin._impl import reference, triton_impl
    from tssl_plugin.functional import lif_constants, tssl_lif
    x, g = cases.random_case(4, (2, 5), torch.float32, 0)
    assert _impl.select("triton", x).name == "triton"
    # both backward kernels: one pass with the trace in registers (T <= ONE_PASS_MAX_T), and two passes
    for one_pass_max_t in (triton_impl.ONE_PASS_MAX_T, 0):
        triton_impl.ONE_PASS_MAX_T = one_pass_max_t
        cases.all_modes("triton", T=4, shape=(2, 9), dtypes=(torch.float64,))
        xf, gf = cases.random_case(4, (3, 7), torch.float32, 1)
        cases.check_against_reference("triton", xf, gf)
        cases.check_against_reference("triton", xf, gf, output="spike", reset="subtract_after_leak")
        cases.per_neuron_params("triton", full=False)
        cases.layout_edge_cases("triton")
        cases.from_trace(triton_impl.TritonImpl, full=False)
        cases.warmup_widths("triton", triton_impl.TritonImpl, T=4, shape=(2, 5))
        cases.sensitivity_caps("triton", triton_impl.TritonImpl, T=4, shape=(2, 5))
        cases.ablations("triton", triton_impl.TritonImpl, T=4, shape=(2, 5))
        cases.half_precision("triton", bf16_rounding_exact=False)
    triton_impl.ONE_PASS_MAX_T = 32
    # one step of the step-wise node: one launch each way, equal to reference.carry_step and trace_step
    cases.step_cases(triton_impl.TritonImpl, full=False)
    cases.reference_vectors("triton")  # float64, T = 5 (one pass) and 30 (two passes)
    # T above the one-pass limit takes the two-pass kernel by itself
    xl, gl = cases.random_case(40, (2, 3), torch.float64, 2)
    cases.check_against_reference("triton", xl, gl, reset="subtract")
    # half input straight into the kernels: state in float32, gradient in the input dtype
    xh, gh = x.half(), g.half()
    k = lif_constants(x)
    o, s, saved = triton_impl.TritonImpl.forward(xh, k, True)
    o32, s32, saved32 = triton_impl.TritonImpl.forward(xh.float(), k, True)
    assert s.dtype == torch.float32 and torch.equal(o, o32) and torch.equal(s, s32)
    gx = triton_impl.TritonImpl.backward(gh, saved, k, True, True)
    assert gx.dtype == torch.float16
    torch.testing.assert_close(gx.float(), triton_impl.TritonImpl.backward(gh.float(), saved32, k, True, True),
                               rtol=1e-3, atol=1e-3)
    # the forward keeps only x; the backward's recomputed trace (one pass and two passes) is bit-identical
    # to the reference forward's, and both kernels give bit-identical gradients
    for dt in (torch.float64, torch.float32):
        xr, gr = cases.random_case(9, (2, 300), dt, 5)  # 600 neurons: several programs, the last one partial
        for reset in cases.RESETS:
            k = lif_constants(xr, reset=reset)
            _, _, saved = triton_impl.TritonImpl.forward(xr, k, True)
            assert len(saved) == 1 and saved[0].data_ptr() == xr.data_ptr()
            tr = reference.forward_sequence(xr, k)
            for warm, psc in ((True, True), (False, False)):
                got = {{}}
                for one_pass_max_t in (32, 0):
                    triton_impl.ONE_PASS_MAX_T = one_pass_max_t
                    recomputed = triton_impl.TritonImpl.backward(gr, saved, k, warm, psc)
                    if not psc:  # the given trace's entry point takes the gradient of the spikes
                        given = triton_impl.TritonImpl.backward_from_trace(gr, tr.u, tr.du, tr.o, k, warm)
                        assert torch.equal(recomputed, given), (dt, reset, warm, psc, one_pass_max_t)
                    got[one_pass_max_t] = recomputed
                assert torch.equal(got[32], got[0]), (dt, reset, warm, psc)
    triton_impl.ONE_PASS_MAX_T = 32
    # NaN/inf in x: found by the forward kernel (the flag is read at once under the interpreter)
    for bad, word in ((float("nan"), "NaN"), (float("inf"), "inf")):
        xb = x.clone()
        xb[2, 1, 3] = bad
        try:
            tssl_lif(xb, impl="triton")
        except ValueError as err:
            assert f"x contains {{word}}" in str(err) and "(2, 1, 3)" in str(err), err
        else:
            raise AssertionError("no error for " + word)
    tssl_lif(x, impl="triton")  # the flag was cleared
    # the registered operator with the Triton kernels behind it
    from torch.library import opcheck
    th = torch.full((5,), 0.7)
    opcheck(torch.ops.tssl_plugin.lif.default, (x.clone().requires_grad_(), None, None, th, [5.0, 3.0, 0.0],
                                                "subtract", True, True, "triton"))
    opcheck(torch.ops.tssl_plugin.lif.default, (x.half().requires_grad_(), None, None, None, [5.0, 3.0, 1.0],
                                                "zero", False, False, "triton"))
    opcheck(torch.ops.tssl_plugin.lif.default, (x.clone().requires_grad_(), None, None, None, [5.0, 3.0, 1.0],
                                                "zero", True, False, "triton", 0.6))
    print("TRITON-INTERPRETER-OK")
    """
)


@pytest.mark.skipif(not HAVE_TRITON, reason="triton not installed")
def test_triton_kernels_in_interpreter_match_reference():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = _SCRIPT.format(tests=str(ROOT / "tests"))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "TRITON-INTERPRETER-OK" in res.stdout


def test_triton_unavailable_on_cpu_without_interpreter():
    if not HAVE_TRITON or os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("needs triton, without the interpreter")
    from tssl_plugin import _impl

    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="cannot run"):
        _impl.select("triton", x)
    assert _impl.select("auto", x).name in ("cpu", "reference")


needs_cuda = pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")


@needs_cuda
def test_triton_on_cuda_matches_reference():
    from tssl_plugin import _impl

    x, _ = cases.random_case(4, (2, 5), torch.float32, 0, "cuda")
    assert _impl.select("auto", x).name == "triton"
    cases.all_modes("triton", device="cuda")
    cases.warmup_widths("triton", _impl.select("triton", x), device="cuda")
    cases.sensitivity_caps("triton", _impl.select("triton", x), device="cuda")
    cases.ablations("triton", _impl.select("triton", x), device="cuda")
    cases.per_neuron_params("triton", device="cuda")
    cases.layout_edge_cases("triton", device="cuda")
    cases.reference_vectors("triton", device="cuda")
    cases.half_precision("triton", device="cuda")


@needs_cuda
def test_triton_on_cuda_both_backward_kernels(monkeypatch):
    """The one-pass (trace in registers) and two-pass backward give bit-identical gradients on the GPU,
    T = 1 included (Triton turns an integer argument equal to 1 into a constant)."""
    from tssl_plugin._impl import triton_impl

    for T in (1, 8, 16):
        for dtype in (torch.float32, torch.float64):
            x, g = cases.random_case(T, (3, 700), dtype, T, "cuda")
            got = []
            for limit in (32, 0):
                monkeypatch.setattr(triton_impl, "ONE_PASS_MAX_T", limit)
                got.append(cases.run("triton", x, g)[1])
                cases.check_against_reference("triton", x, g, reset="subtract_after_leak", output="spike")
            assert torch.equal(got[0], got[1]), (T, dtype)


@needs_cuda
def test_triton_forward_is_operation_for_operation_the_reference():
    """Compiled without FMA contraction, the kernel's trace equals the reference's (torch ops) bit for bit."""
    from tssl_plugin._impl import reference
    from tssl_plugin._impl.triton_impl import TritonImpl
    from tssl_plugin.functional import lif_constants

    for dtype in (torch.float32, torch.float64):
        for reset in cases.RESETS:
            x, _ = cases.random_case(12, (64, 513), dtype, 5, "cuda")
            k = lif_constants(x, tau_m=7.0, reset=reset)
            o, s, _ = TritonImpl.forward(x, k, False)
            tr = reference.forward_sequence(x, k)
            assert torch.equal(o, tr.o) and torch.equal(s, tr.s), (dtype, reset)


@needs_cuda
def test_triton_non_finite_input_is_reported_without_a_sync():
    from tssl_plugin._impl.triton_impl import raise_pending_input_errors
    from tssl_plugin.functional import tssl_lif

    x, _ = cases.random_case(4, (2, 50), torch.float32, 1, "cuda")
    bad = x.clone()
    bad[1, 1, 7] = float("nan")
    tssl_lif(bad, impl="triton")  # the flag is set on the device, nothing waits for it
    with pytest.raises(ValueError, match="x contains NaN or inf: an earlier tssl_lif call on cuda"):
        raise_pending_input_errors("cuda")
    tssl_lif(x, impl="triton")
    raise_pending_input_errors("cuda")  # cleared
    tssl_lif(bad, impl="triton")
    torch.cuda.synchronize()
    with pytest.raises(ValueError, match="earlier tssl_lif call"):
        tssl_lif(x, impl="triton")  # the next call reports it


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.device_count() >= 2), reason="needs two CUDA devices")
def test_triton_on_second_device_while_first_is_current():
    x, g = cases.random_case(6, (3, 300), torch.float32, 2, "cuda:1")
    with torch.cuda.device(0):
        cases.check_against_reference("triton", x, g)
        cases.check_against_reference("triton", x, g, threshold=torch.full((300,), 0.8, device="cuda:1"))


@needs_cuda
def test_triton_compiled_network_on_cuda():
    import torch._dynamo
    from torch import nn

    from test_core_compile import compiled_and_eager
    from tssl_plugin import TSSLNeuron

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), TSSLNeuron(), nn.Linear(64, 10),
                        TSSLNeuron(threshold=torch.full((10,), 0.8), output="spike")).cuda()
    x = torch.rand(8, 16, 32, device="cuda")
    torch._dynamo.reset()
    explained = torch._dynamo.explain(net)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    y, y_eager, grads, grads_eager = compiled_and_eager(net, x)
    assert torch.equal(y, y_eager)
    for a, b in zip(grads, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 reductions reordered by inductor
