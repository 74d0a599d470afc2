"""The Triton kernels (impl="triton") against reference.py.

Two markers (registered in pyproject.toml):

* ``triton``: the kernels in Triton's interpreter on the CPU, ``TRITON_INTERPRET=1 pytest -m triton``. The
  variable must be set before triton is first imported, so in a run without it these tests skip; the
  default run covers them with :func:`test_interpreter_checks_pass`, which runs that command on this file.
* ``cuda``: the kernels compiled for the GPU of a CUDA machine, ``pytest -m cuda`` (tools/gpu_check.sh).
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import impl_cases as cases
from tssl_plugin import _impl
from tssl_plugin.functional import lif_constants, tssl_lif
from tssl_plugin.rule import RESETS, LIFParameters

HAVE_TRITON = importlib.util.find_spec("triton") is not None
ROOT = Path(__file__).resolve().parents[1]
F64, F32 = torch.float64, torch.float32

needs_interpreter = pytest.mark.skipif(
    not (HAVE_TRITON and _impl.TRITON_INTERPRET),
    reason="runs in Triton's interpreter: TRITON_INTERPRET=1 pytest -m triton (test_interpreter_checks_pass runs it)")


#: the interpreter runs masked-off lanes too (numpy): 1/du there divides by zero, and the lane is discarded.
_MASKED_LANES = pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning:triton.runtime.interpreter")


def interpreter(fn):
    """Marker ``triton``, the interpreter's skip condition, and its warning about masked-off lanes ignored."""
    return pytest.mark.triton(needs_interpreter(_MASKED_LANES(fn)))


@pytest.fixture(params=["one-pass", "two-pass"])
def kernel(request, monkeypatch):
    """Each backward kernel: the one-pass kernel (trace in registers, T <= ONE_PASS_MAX_T) and the two-pass one."""
    from tssl_plugin._impl import triton_impl

    if request.param == "two-pass":
        monkeypatch.setattr(triton_impl, "ONE_PASS_MAX_T", 0)
    return request.param


@pytest.fixture
def impl_obj():
    from tssl_plugin._impl.triton_impl import TritonImpl

    return TritonImpl


#: the interpreter's sizes: short sequences, few neurons.
SMALL = dict(T=4, shape=(2, 5))


@pytest.mark.skipif(not HAVE_TRITON or _impl.TRITON_INTERPRET, reason="needs triton; runs the interpreter itself")
def test_interpreter_checks_pass():
    """``TRITON_INTERPRET=1 pytest -m triton`` on this file, in a fresh process: every check passes, none skips."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "triton", "-p", "no:cacheprovider", str(Path(__file__))]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = res.stdout[-4000:] + res.stderr[-2000:]
    assert res.returncode == 0, tail
    passed = re.search(r"(\d+) passed", res.stdout)
    assert passed and int(passed.group(1)) >= 100 and " skipped" not in res.stdout, tail


@interpreter
def test_select_names_triton():
    x, _ = cases.random_case(4, (2, 5), F32, 0)
    assert _impl.select("triton", x).name == "triton"


@interpreter
@pytest.mark.parametrize("seed, dtype, reset, warmup, output", **cases.params(cases.mode_cases(dtypes=(F64,))))
def test_matches_reference(kernel, seed, dtype, reset, warmup, output):
    cases.mode_case("triton", seed, dtype, reset, warmup, output, T=4, shape=(2, 9))


@interpreter
def test_float32_matches_reference(kernel):
    xf, gf = cases.random_case(4, (3, 7), F32, 1)
    cases.check_against_reference("triton", xf, gf)
    cases.check_against_reference("triton", xf, gf, output="spike", reset="subtract_after_leak")


@interpreter
@pytest.mark.parametrize("reset, warmup, output", **cases.params(cases.FEW_MODES))
def test_per_neuron_params_match_reference(kernel, reset, warmup, output):
    cases.per_neuron_case("triton", reset, warmup, output, T=4)


@interpreter
def test_per_neuron_threshold_only_float32_matches_reference(kernel):
    cases.per_neuron_mixed("triton", T=4)


@interpreter
def test_noncontiguous_t1_and_empty(kernel):
    cases.layout_edge_cases("triton")


@interpreter
@pytest.mark.parametrize("reset", RESETS)
def test_backward_from_trace_matches_reference(kernel, impl_obj, reset):
    cases.from_trace_case(impl_obj, 200 + RESETS.index(reset), reset, True, T=4)


@interpreter
@pytest.mark.parametrize("reset", RESETS)
def test_backward_from_host_matches_reference(kernel, impl_obj, reset):
    """A SpikingJelly multi-step node's backward on CUDA: the host's forward, the trace built from it."""
    from tssl_plugin._impl import _ReferenceImpl

    host, g = cases.host_case(4, (3, 40), F64, 300 + RESETS.index(reset))
    k = lif_constants(host.h, 4.0, 3.0, 1.0, reset)
    got, _ = impl_obj.backward_from_host(g, host, k, True, 0.5)
    want, _ = _ReferenceImpl.backward_from_host(g, host, k, True, 0.5)
    torch.testing.assert_close(got, want, **cases.tol(F64))


@interpreter
@pytest.mark.parametrize("seed, dtype, reset, output", **cases.params(cases.WIDTH_CASES))
def test_warmup_width_matches_reference(kernel, seed, dtype, reset, output):
    cases.warmup_width_case("triton", seed, dtype, reset, output, **SMALL)


@interpreter
def test_warmup_width_per_neuron_and_from_trace_match_reference(kernel, impl_obj):
    cases.warmup_width_per_neuron("triton", **SMALL)
    for reset in RESETS:
        cases.warmup_width_from_trace(impl_obj, reset, **SMALL)


@interpreter
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.GATE_CASES))
def test_warmup_gate_silent_matches_reference(kernel, seed, reset, output):
    cases.warmup_gate_case("triton", seed, reset, output, **SMALL)


@interpreter
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.FLOOR_CASES))
def test_warmup_without_floor_matches_reference(kernel, seed, reset, output):
    cases.warmup_floor_case("triton", seed, reset, output, **SMALL)


@interpreter
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.CROSSING_CASES))
def test_interpolated_crossing_matches_reference(kernel, seed, reset, output):
    cases.crossing_case("triton", seed, reset, output, **SMALL)


@interpreter
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.CAP_CASES))
def test_sensitivity_cap_matches_reference(kernel, seed, reset, output):
    cases.sensitivity_cap_case("triton", seed, reset, output, **SMALL)


@interpreter
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("check", [cases.sensitivity_cap_from_trace, cases.warmup_gate_from_trace,
                                   cases.warmup_floor_from_trace, cases.crossing_from_trace],
                         ids=["per-neuron-sensitivity-cap-and-crossing", "warmup-gate-silent", "warmup-without-floor",
                              "interpolated-crossing"])
def test_option_from_trace_matches_reference(kernel, impl_obj, check, reset):
    check(impl_obj, reset, **SMALL)


@interpreter
@pytest.mark.parametrize("seed, ablation, reset, warmup, output, dtype", **cases.params(cases.ABLATION_CASES))
def test_ablation_matches_reference(kernel, seed, ablation, reset, warmup, output, dtype):
    cases.ablation_case("triton", seed, ablation, reset, warmup, output, dtype, **SMALL)


@interpreter
@pytest.mark.parametrize("ablation", ["no_intra", "no_spike_timing"])
def test_ablation_per_neuron_and_from_trace_match_reference(kernel, impl_obj, ablation):
    cases.ablation_per_neuron_and_trace("triton", impl_obj, ablation, **SMALL)


@interpreter
@pytest.mark.parametrize("dtype, output", **cases.params(cases.HALF_CASES))
def test_half_precision(kernel, dtype, output):
    cases.half_precision_case("triton", dtype, output, bf16_rounding_exact=False)


@interpreter
def test_step_kernels_equal_the_reference(impl_obj):
    """One step of the step-wise node: one launch each way, equal to reference.carry_step and trace_step."""
    cases.step_cases(impl_obj, full=False)


@interpreter
def test_reference_vectors():
    cases.reference_vectors("triton")  # float64, T = 5 (one pass) and 30 (two passes)


@interpreter
def test_long_sequence_takes_the_two_pass_kernel_by_itself():
    xl, gl = cases.random_case(40, (2, 3), F64, 2)
    cases.check_against_reference("triton", xl, gl, reset="subtract")


@interpreter
def test_half_input_goes_straight_into_the_kernels(impl_obj):
    """State in float32, outputs and gradient in the input dtype (no cast copies)."""
    x, g = cases.random_case(4, (2, 5), F32, 0)
    xh, gh = x.half(), g.half()
    p = LIFParameters()
    for psc in (True, False):
        y = impl_obj.forward_op(xh, p, psc)
        assert y.dtype == torch.float16 and torch.equal(y, impl_obj.forward_op(xh.float(), p, psc).half())
    gx = impl_obj.backward_op(gh, xh, p, True, True)
    assert gx.dtype == torch.float16
    torch.testing.assert_close(gx.float(), impl_obj.backward_op(gh.float(), xh.float(), p, True, True),
                               rtol=1e-3, atol=1e-3)


@interpreter
def test_forward_saves_only_the_input():
    x, _ = cases.random_case(6, (2, 9), F64, 4)
    saved = cases.saved_for_backward("triton", x)
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr()


@interpreter
@pytest.mark.parametrize("dtype, reset", **cases.params([(d, r) for d in (F64, F32) for r in RESETS]))
def test_recomputed_trace_is_the_reference_forward_in_both_kernels(impl_obj, monkeypatch, dtype, reset):
    """The backward's recomputed trace (one pass and two passes) is bit-identical to the reference forward's
    (the gradient from the given reference trace is equal bit for bit), and both kernels give bit-identical
    gradients."""
    from tssl_plugin._impl import reference, triton_impl

    xr, gr = cases.random_case(9, (2, 300), dtype, 5)  # 600 neurons: several programs, the last one partial
    k = lif_constants(xr, reset=reset)
    p = LIFParameters(reset=reset)
    tr = reference.forward_sequence(xr, k)
    for warm, psc in ((True, True), (False, False)):
        got = {}
        for one_pass_max_t in (32, 0):
            monkeypatch.setattr(triton_impl, "ONE_PASS_MAX_T", one_pass_max_t)
            got[one_pass_max_t] = impl_obj.backward_op(gr, xr, p, warm, psc)
            if not psc:  # the given trace's entry point takes the gradient of the spikes
                given = impl_obj.backward_from_trace(gr, tr.u, tr.du, tr.o, k, warm)
                assert torch.equal(got[one_pass_max_t], given), (warm, psc, one_pass_max_t)
        assert torch.equal(got[32], got[0]), (warm, psc)


@interpreter
@pytest.mark.parametrize("bad, word", [(float("nan"), "NaN"), (float("inf"), "inf")])
def test_non_finite_input_is_found_by_the_forward_kernel(bad, word):
    """Under the interpreter the kernel's flag is read at once; the next call finds it cleared."""
    x, _ = cases.random_case(4, (2, 5), F32, 0)
    xb = x.clone()
    xb[2, 1, 3] = bad
    with pytest.raises(ValueError, match=rf"x contains {word}.*\(2, 1, 3\)"):
        tssl_lif(xb, impl="triton")
    tssl_lif(x, impl="triton")


@interpreter
@pytest.mark.parametrize("dtype, per_neuron, reset, warmup, psc, width", [
    (F32, True, "subtract", True, True, 0.2),
    (torch.float16, False, "zero", False, False, 0.2),
    (F32, False, "zero", True, False, 0.6),
], ids=["per-neuron-threshold", "float16", "warmup-width"])
def test_registered_operator_passes_opcheck(dtype, per_neuron, reset, warmup, psc, width):
    """The registered operator with the Triton kernels behind it."""
    from torch.library import opcheck
    from tssl_plugin._impl._op import encode

    x, _ = cases.random_case(4, (2, 5), F32, 0)
    th = torch.full((5,), 0.7) if per_neuron else 1.0
    p = LIFParameters(threshold=th, reset=reset, warmup_width=width)
    opcheck(torch.ops.tssl_plugin.lif.default, (x.to(dtype).requires_grad_(), *encode(p), warmup, psc, "triton"))


@pytest.mark.skipif(not HAVE_TRITON or _impl.TRITON_INTERPRET, reason="needs triton, without the interpreter")
def test_triton_unavailable_on_cpu_without_interpreter():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="cannot run"):
        _impl.select("triton", x)
    assert _impl.select("auto", x).name in ("cpu", "reference")


def needs_cuda(fn):
    """Marker ``cuda`` and its skip condition."""
    return pytest.mark.cuda(pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()),
                                               reason="needs CUDA and triton")(fn))


@needs_cuda
def test_triton_on_cuda_matches_reference():
    from tssl_plugin import _impl

    x, _ = cases.random_case(4, (2, 5), torch.float32, 0, "cuda")
    assert _impl.select("auto", x).name == "triton"
    cases.all_modes("triton", device="cuda")
    cases.warmup_widths("triton", _impl.select("triton", x), device="cuda")
    cases.sensitivity_caps("triton", _impl.select("triton", x), device="cuda")
    cases.ablations("triton", _impl.select("triton", x), device="cuda")
    cases.rule_options("triton", _impl.select("triton", x), device="cuda")
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
            p = LIFParameters(tau_m=7.0, reset=reset)
            o, s = TritonImpl.forward_op(x, p, False), TritonImpl.forward_op(x, p, True)
            tr = reference.forward_sequence(x, k)
            assert torch.equal(o, tr.o.to(dtype)) and torch.equal(s, tr.s), (dtype, reset)


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


@pytest.mark.cuda
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
