"""The backward from a host's own forward (reference.HostTrace, functional.spikes_with_host_grad).

The fused CPU kernel builds ``u``, ``du``, ``o`` of :func:`reference.host_trace` inside its backward; it must
give what the materialised trace gives (bit for bit on the CPU kernel, and the reference's values).
"""
from __future__ import annotations

import itertools

import pytest
import torch

from tssl_plugin import _impl
from tssl_plugin._impl import _ReferenceImpl, cpu
from tssl_plugin._impl.reference import HostTrace, host_trace
from tssl_plugin.functional import lif_constants, spikes_with_host_grad, spikes_with_tssl_grad
from tssl_plugin.rule import RESETS

from impl_cases import host_case

try:
    cpu.load()
    HAVE_CPU = True
except ImportError:
    HAVE_CPU = False
needs_cpu = pytest.mark.skipif(not HAVE_CPU, reason="C kernel could not be built here")


def test_host_trace_is_the_definition():
    host, _ = host_case(4, (3,), torch.float64, 0)
    u, du, o = host_trace(host, torch.float64)
    v_prev = torch.cat((host.v0[None], host.v_seq[:-1]))
    assert torch.equal(u, host.h - host.shift) and torch.equal(du, host.h - v_prev)
    assert o.dtype == torch.bool and torch.equal(o, host.spikes != 0) and o.any()


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_kernel_equals_the_materialised_trace(dtype):
    for i, (reset, warmup, scale) in enumerate(itertools.product(RESETS, (True, False), (1.0, 0.5))):
        host, g = host_case(9, (5, 130), dtype, i)
        k = lif_constants(host.h, 4.0 if i % 2 else float("inf"), 3.0, 1.0, reset, warmup_width=0.3,
                          warmup_gate="silent" if i % 4 == 1 else "trace")
        u, du, o = host_trace(host, dtype)
        got, finite = cpu.CpuImpl.backward_from_host(g, host, k, warmup, scale)
        assert finite is True and got.dtype == dtype
        assert torch.equal(got, cpu.CpuImpl.backward_from_trace(g, u, du, o, k, warmup) * scale)
        want = _ReferenceImpl.backward_from_trace(g, u, du, o, k, warmup) * scale
        tol = 1e-12 if dtype == torch.float64 else 2e-5
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        ref, ref_finite = _ReferenceImpl.backward_from_host(g, host, k, warmup, scale)
        assert ref_finite is None and torch.equal(ref, want)


@needs_cpu
def test_cpu_kernel_per_neuron_params_t1_and_noncontiguous():
    host, g = host_case(6, (4, 6), torch.float64, 7)
    gen = torch.Generator().manual_seed(1)
    tau_m = 2.0 + 6 * torch.rand(6, generator=gen, dtype=torch.float64)
    theta = 0.3 + torch.rand(4, 6, generator=gen, dtype=torch.float64)
    k = lif_constants(host.h, tau_m, 3.0, theta, "subtract")
    cases = [(host, g), (HostTrace(host.h[:1], host.v0, host.v_seq[:1], host.spikes[:1], host.shift), g[:1]),
             (HostTrace(host.h.transpose(1, 2).contiguous().transpose(1, 2), host.v0, host.v_seq,
                        host.spikes, host.shift), g.transpose(1, 2).contiguous().transpose(1, 2))]
    for h_case, g_case in cases:
        got, _ = cpu.CpuImpl.backward_from_host(g_case, h_case, k, True, 1.0)
        want = cpu.CpuImpl.backward_from_trace(g_case, *host_trace(h_case, torch.float64), k, True)
        assert torch.equal(got, want)


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_kernel_reads_non_contiguous_inputs_it_had_to_copy(dtype):
    """Every input laid out time-last (as snnTorch's StateLeaky returns its membrane, ``permute(2, 0, 1)``): the
    kernel reads the contiguous copies it makes, kept alive through the call (copies made inside the argument
    list were freed before the kernel ran, and it read another tensor's memory)."""
    host, g = host_case(7, (16, 130), dtype, 3)
    k = lif_constants(host.h, 4.0, 3.0, 1.0, "zero", warmup_gate="silent")
    time_last = lambda t: t.permute(*range(1, t.dim()), 0).contiguous().permute(-1, *range(t.dim() - 1))  # noqa
    strided = HostTrace(time_last(host.h), host.v0.t().contiguous().t(), time_last(host.v_seq),
                        time_last(host.spikes), host.shift)
    assert not strided.v_seq.is_contiguous() and not strided.spikes.is_contiguous()
    want, _ = cpu.CpuImpl.backward_from_host(g, host, k, True, 1.0)
    for _ in range(3):
        got, _ = cpu.CpuImpl.backward_from_host(time_last(g), strided, k, True, 1.0)
        assert torch.equal(got, want)


@needs_cpu
def test_cpu_kernel_other_dtypes_materialise_the_trace():
    """Spikes or membranes in another dtype than h (a host's float16 spikes): the materialised trace's result."""
    host, g = host_case(5, (3, 7), torch.float32, 3)
    k = lif_constants(host.h, 4.0, 3.0, 1.0, "zero")
    mixed = host._replace(spikes=host.spikes.half(), v0=host.v0.double())
    got, finite = cpu.CpuImpl.backward_from_host(g, mixed, k, True, 0.5)
    assert finite is None
    assert torch.equal(got, cpu.CpuImpl.backward_from_trace(g, *host_trace(mixed, torch.float32), k, True) * 0.5)


@needs_cpu
def test_cpu_kernel_reports_a_non_finite_gradient():
    host, g = host_case(5, (3, 7), torch.float32, 4)
    k = lif_constants(host.h, 4.0, 3.0, 1.0, "zero")
    _, finite = cpu.CpuImpl.backward_from_host(g, host, k, True, 1.0)
    assert finite is True
    g = g.clone()
    g[2, 1, 3] = float("nan")
    _, finite = cpu.CpuImpl.backward_from_host(g, host, k, True, 1.0)
    assert finite is False


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_spikes_with_host_grad_equals_spikes_with_tssl_grad(impl):
    if impl == "cpu" and not HAVE_CPU:
        pytest.skip("C kernel could not be built here")
    for reset in RESETS:
        host, g = host_case(8, (4, 9), torch.float64, 11)
        x = torch.rand(host.h.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        x.requires_grad_()
        k = lif_constants(host.h, 3.0, 3.0, 1.0, reset)
        out = spikes_with_host_grad(x, host, k, warmup=True, input_scale=0.25, impl=impl)
        assert out is host.spikes or torch.equal(out, host.spikes)
        (got,) = torch.autograd.grad(out, x, g)
        u, du, o = host_trace(host, torch.float64)
        (want,) = torch.autograd.grad(spikes_with_tssl_grad(x, u, du, o, k, input_scale=0.25, impl=impl), x, g)
        assert torch.equal(got, want)
        assert _impl.last_used("cpu", torch.float64) == impl


def test_spikes_with_host_grad_without_grad_and_in_another_dtype():
    host, _ = host_case(3, (2, 5), torch.float32, 5)
    k = lif_constants(host.h, 3.0, 3.0, 1.0, "zero")
    assert spikes_with_host_grad(torch.zeros(host.h.shape), host, k) is host.spikes
    x = torch.zeros(host.h.shape, dtype=torch.float64, requires_grad=True)
    out = spikes_with_host_grad(x, host, k)  # h float32 under a float64 input: the materialised trace
    assert out.dtype == torch.float64 and torch.equal(out, host.spikes.double())
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@needs_cpu
def test_nan_in_the_membrane_names_the_layer_input():
    host, g = host_case(4, (2, 5), torch.float32, 6)
    h = host.h.clone()
    h[1, 0, 2] = float("nan")
    host = host._replace(h=h)
    x = torch.zeros(h.shape, requires_grad=True)
    out = spikes_with_host_grad(x, host, lif_constants(h, 3.0, 3.0, 1.0, "zero"), impl="cpu")
    with pytest.raises(ValueError, match="NaN reached this layer's input"):
        out.backward(g)


@pytest.mark.parametrize("gate", ["trace", "silent"])
def test_spikingjelly_multi_step_node_gradient_is_the_materialised_traces(gate):
    """A converted multi-step node: the same input gradient as the core op on the trace built in Python, for
    each warm-up gate."""
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    from tssl_plugin.adapters._convert import crossing_for, sensitivity_cap_for, warmup_width_for
    from tssl_plugin.adapters._spikingjelly_common import _leaky
    from tssl_plugin.adapters.spikingjelly import convert

    charges = (lambda x, v: v + x, lambda x, v: v + (x - (v - 0.0)) / 2.0)  # SpikingJelly 2.x's, by hand
    for make, charge in zip((lambda: sj_neuron.IFNode(step_mode="m"),
                             lambda: sj_neuron.LIFNode(tau=2.0, v_reset=None, v_threshold=0.7, step_mode="m")),
                            charges):
        host_node = make()
        node = convert(torch.nn.Sequential(make()), warmup=gate)[0]
        gen = torch.Generator().manual_seed(8)
        x = (torch.rand(7, 3, 11, generator=gen) * 1.2).requires_grad_()
        g = torch.randn(7, 3, 11, generator=gen)
        y = node(x)
        (got,) = torch.autograd.grad(y, x, g)
        # the materialised route, by hand: the host's forward, its charge, host_trace, spikes_with_tssl_grad
        y_host = host_node(x.detach())
        assert torch.equal(y.detach(), y_host)
        tau_m, scale, thr, reset, vr = node._tssl_mapping()
        node.reset()
        spikes, v0, v_post = node._lib_run(x.detach(), single=False)
        assert torch.equal(v0, torch.zeros(x.shape[1:])) and torch.equal(spikes, y_host)
        h = charge(x.detach(), torch.cat((v0[None], v_post[:-1])))
        assert torch.equal(h, node._lib_charge(x.detach(), v0, v_post))
        u, du, o = host_trace(HostTrace(h, v0, v_post, spikes, vr), torch.float32)
        cap = sensitivity_cap_for(reset, node.sensitivity_cap, _leaky(tau_m)) / thr
        k = lif_constants(u, tau_m, node.tau_s, thr, reset, warmup_width_for(node.warmup_width, thr), cap,
                          warmup_gate=gate, crossing=crossing_for(reset, node.crossing, _leaky(tau_m)))
        (want,) = torch.autograd.grad(spikes_with_tssl_grad(x, u, du, o, k, input_scale=scale), x, g)
        assert torch.equal(got, want)
