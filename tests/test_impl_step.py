"""One step of the step-wise node as one fused kernel each way: the C kernels equal the reference's
carry_step and trace_step (the Triton kernels: test_impl_triton.py, test_impl_triton_compile.py), and the
node dispatches to them in eager mode."""
import pytest
import torch

import impl_cases as cases
from tssl_plugin import _impl
from tssl_plugin.rule import lif_constants
from tssl_plugin.stepwise import initial_state, tssl_step


def _cpu():
    try:
        return _impl.select("cpu", torch.zeros(1))
    except ImportError as err:
        pytest.skip(f"no C kernel here: {err}")


def test_cpu_step_kernels_equal_the_reference():
    cases.step_cases(_cpu())


def test_reference_step_is_carry_step():
    cases.step_cases(_impl._ReferenceImpl, full=False)


def test_cpu_step_kernels_threads_and_sizes(monkeypatch):
    """Several threads, and sizes around the kernels' block of 512 elements (the last block partial)."""
    from tssl_plugin._impl import cpu
    from tssl_plugin._impl.reference import carry_step, step_flags, warm_steps

    impl = _cpu()
    monkeypatch.setattr(cpu, "_MIN_PER_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    for n in (1, 511, 513, 2000):
        G, h, extra, u, du, o, s = cases._step_inputs((n,) if n > 600 else (n, 4), torch.float64, n, "cpu")
        k = lif_constants(u.unsqueeze(0), reset="subtract")
        gx, delta, finite = impl.step_backward(G, h, u, du, step_flags(o, s, k.warmup_level), k, True, extra, 1.0)
        want_gx, want_delta = carry_step(G, h, u, du, o, warm_steps(s, o, k.warmup_level), k, True, extra=extra)
        assert torch.equal(delta, want_delta) and finite
        torch.testing.assert_close(gx, want_gx, rtol=1e-12, atol=1e-12)


def test_cpu_step_kernels_read_non_contiguous_inputs_they_had_to_copy():
    """``du``, the flags and ``o`` laid out column-major: the kernels read the contiguous copies they make, kept
    alive through the call (copies made inside the argument list were freed before the kernel ran)."""
    from tssl_plugin._impl.reference import step_flags

    impl = _cpu()
    G, h, extra, u, du, o, s = cases._step_inputs((64, 130), torch.float64, 5, "cpu")
    k = lif_constants(u.unsqueeze(0), reset="zero", warmup_gate="silent")
    flags = step_flags(o, s, k.warmup_level)
    column_major = lambda t: t.t().contiguous().t()  # noqa: E731
    want = impl.step_backward(G, h, u, du, flags, k, True, extra, 1.0)
    want_fwd = impl.step_forward(o, s, 1 / 3, k.warmup_level, torch.float64)
    for _ in range(3):
        got = impl.step_backward(G, h, u, column_major(du), column_major(flags), k, True, extra, 1.0)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        got_fwd = impl.step_forward(column_major(o), s, 1 / 3, k.warmup_level, torch.float64)
        assert all(torch.equal(a, b) for a, b in zip(got_fwd, want_fwd))


def test_step_node_dispatches_to_the_fused_kernel():
    _cpu()
    x = torch.rand(4, 6, dtype=torch.float64, requires_grad=True)
    k = lif_constants(x.unsqueeze(0))
    u = x.detach() * 2
    (spk, _), state = tssl_step(x, initial_state(x.detach()), u, u, u > 1.0, None, k)
    _impl._reset_for_tests()
    spk.sum().backward()
    assert _impl.last_used("cpu", torch.float64) == "cpu"
    assert x.grad is not None and state.trace.grad_fn is not None


def test_non_finite_membrane_is_still_reported():
    """The fused kernel's own finiteness check leads to the same error as before (a NaN reached the layer)."""
    _cpu()
    x = torch.rand(4, 6, requires_grad=True)
    k = lif_constants(x.unsqueeze(0))
    u = x.detach().clone()
    u[1, 1] = float("nan")
    (spk, _), _ = tssl_step(x, initial_state(x.detach()), u, u, u > 0.5, None, k, warmup=False)
    with pytest.raises(ValueError, match="NaN reached this layer's input"):
        spk.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_table_follows_the_constants_values(dtype):
    """The step table (cached by value) equals the packed table of the same constants, value after value,
    float32 constant tensors in a float64 step included (their derived rows rounded in float32)."""
    from tssl_plugin._impl._params import pack_params, step_table
    from tssl_plugin.rule import LIFConstants

    u = torch.zeros(2, 3, dtype=dtype)
    for th, beta in ((1.0, 0.9), (0.5, 0.9), (1.0, 0.7), (1.0, 0.9)):
        for pdt in (torch.float32, dtype):
            tth = torch.tensor(th, dtype=pdt)
            k = LIFConstants(1 - torch.tensor(beta, dtype=pdt), 1 / 3, tth, 1 / 12, "subtract", 0.2, 1 / tth)
            table, per_neuron = step_table(k, u)
            assert not per_neuron and torch.equal(table, pack_params(k, u.unsqueeze(0))[0][:, 0]), (th, beta, pdt)
