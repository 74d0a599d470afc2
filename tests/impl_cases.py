"""Shared checks of an implementation against reference.py (helpers, no tests): used by the implementations'
test modules (test_impl_*.py) and by tools/gpu_check.sh."""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from tssl_plugin.functional import lif_constants, tssl_lif
from tssl_plugin._impl import _ReferenceImpl
from tssl_plugin.rule import RESETS

DATA = Path(__file__).parent / "data" / "tssl_reference_public.pt"
#: how far an implementation's output and gradient may be from the reference's, per input dtype (relative and
#: absolute, the same number): the fused kernels repeat the reference's operations, the exp of the warm-up
#: surrogate (libm, libdevice, Triton) excepted, and half precision rounds coarser. Also gpu_check.sh's.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def tol(dtype):
    """``assert_close`` keyword arguments for comparing with the reference in ``dtype`` (:data:`TOL`)."""
    return dict(rtol=TOL[dtype], atol=TOL[dtype])


def run(impl, x, g, **kw):
    """Output and input gradient of tssl_lif(x, impl=impl, **kw) for upstream gradient g."""
    xx = x.detach().clone().requires_grad_()
    y = tssl_lif(xx, impl=impl, **kw)
    y.backward(g)
    return y.detach(), xx.grad


def check_against_reference(impl, x, g, **kw):
    y_ref, gx_ref = run("reference", x, g, **kw)
    y, gx = run(impl, x, g, **kw)
    assert y.dtype == x.dtype and gx.dtype == x.dtype
    if kw.get("output") == "spike":
        assert torch.equal(y, y_ref)
    else:
        torch.testing.assert_close(y, y_ref, **tol(x.dtype))
    torch.testing.assert_close(gx, gx_ref, **tol(x.dtype))


def random_case(T, shape, dtype, seed, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, *shape, generator=gen, dtype=torch.float64) * 1.0 - 0.15).to(dtype)
    g = torch.randn(T, *shape, generator=gen, dtype=torch.float64).to(dtype)
    return x.to(device), g.to(device)


def all_modes(impl, T=12, shape=(3, 40), dtypes=(torch.float64, torch.float32), device="cpu"):
    for i, (dtype, reset, warmup, output) in enumerate(
        itertools.product(dtypes, RESETS, (True, False), ("psc", "spike"))
    ):
        x, g = random_case(T, shape, dtype, i, device)
        check_against_reference(impl, x, g, reset=reset, warmup=warmup, output=output)


def per_neuron_params(impl, device="cpu", full=True):
    x, g = random_case(10 if full else 4, (4, 6), torch.float64, 100, device)
    gen = torch.Generator().manual_seed(1)
    tau_m = (2.0 + 6 * torch.rand(6, generator=gen, dtype=torch.float64)).to(device)
    tau_m[0] = float("inf")  # an IF neuron
    tau_s = (1.5 + 3 * torch.rand(4, 1, generator=gen, dtype=torch.float64)).to(device)
    theta = (0.3 + torch.rand(4, 6, generator=gen, dtype=torch.float64)).to(device)
    modes = itertools.product(RESETS, (True, False), ("psc", "spike")) if full else [
        (r, r != "none", "psc" if r in ("zero", "none") else "spike") for r in RESETS]
    for reset, warmup, output in modes:
        check_against_reference(impl, x, g, tau_m=tau_m, tau_s=tau_s, threshold=theta, reset=reset,
                                warmup=warmup, output=output)
    # mixed: only the threshold per neuron, float32
    x32, g32 = x.float(), g.float()
    check_against_reference(impl, x32, g32, threshold=theta[0].float(), reset="subtract")


def layout_edge_cases(impl, device="cpu"):
    x, g = random_case(9, (5, 7), torch.float64, 7, device)
    xt, gt = x.transpose(1, 2), g.transpose(1, 2)  # non-contiguous
    assert not xt.is_contiguous()
    check_against_reference(impl, xt, gt)
    check_against_reference(impl, xt, gt, output="spike", reset="subtract")
    x1, g1 = random_case(1, (3, 5), torch.float64, 8, device)  # T = 1
    x1 = x1 * 3  # some neurons fire at t = 0
    for output in ("psc", "spike"):
        check_against_reference(impl, x1, g1, output=output)
    x0, g0 = random_case(4, (0,), torch.float64, 9, device)  # no neurons
    check_against_reference(impl, x0, g0)


def from_trace(impl_obj, device="cpu", full=True):
    modes = itertools.product(RESETS, (True, False)) if full else [(r, True) for r in RESETS]
    for i, (reset, warmup) in enumerate(modes):
        x, g = random_case(11 if full else 4, (2, 30), torch.float64, 200 + i, device)
        k = lif_constants(x, reset=reset)
        o, _, (u, du, o2) = _ReferenceImpl.forward(x, k, True)
        want = _ReferenceImpl.backward_from_trace(g, u, du, o, k, warmup)
        got = impl_obj.backward_from_trace(g, u, du, o, k, warmup)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def warmup_widths(impl, impl_obj, width=0.7, T=8, shape=(3, 20), device="cpu"):
    """A warm-up width other than the reference's 0.2 (a run-time value in every kernel): every reset and
    output, float64 and float32, scalar and per-neuron parameters, and the from-trace entry point."""
    changed = 0
    for i, (dtype, reset, output) in enumerate(itertools.product((torch.float64, torch.float32), RESETS,
                                                                  ("psc", "spike"))):
        x, g = random_case(T, shape, dtype, 400 + i, device)
        check_against_reference(impl, x, g, reset=reset, output=output, warmup_width=width)
        changed += not torch.equal(run("reference", x, g, reset=reset, output=output, warmup_width=width)[1],
                                   run("reference", x, g, reset=reset, output=output)[1])
    assert changed == 16  # the width reaches every case: a kernel that ignored it would fail above
    x, g = random_case(T, shape, torch.float64, 420, device)
    theta = (0.5 + torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).to(device)
    check_against_reference(impl, x, g, threshold=theta, reset="subtract", output="spike", warmup_width=width)
    for reset in RESETS:
        k = lif_constants(x, reset=reset, warmup_width=width)
        o, _, (u, du, _) = _ReferenceImpl.forward(x, k, True)
        want = _ReferenceImpl.backward_from_trace(g, u, du, o, k, True)
        torch.testing.assert_close(impl_obj.backward_from_trace(g, u, du, o, k, True), want,
                                   rtol=1e-12, atol=1e-12)


def sensitivity_caps(impl, impl_obj, cap=0.3, T=10, shape=(3, 20), device="cpu"):
    """A sensitivity cap other than the reference's 8 (a run-time table row), per layer and per neuron, on
    inputs strong enough that subtraction resets start steps above the threshold (spikes with c = 0):
    every reset and output, float64, and the from-trace entry point."""
    changed = 0
    for i, (reset, output) in enumerate(itertools.product(RESETS, ("psc", "spike"))):
        x, g = random_case(T, shape, torch.float64, 500 + i, device)
        x = 2.5 * x
        check_against_reference(impl, x, g, reset=reset, output=output, sensitivity_cap=cap)
        changed += not torch.equal(run("reference", x, g, reset=reset, output=output, sensitivity_cap=cap)[1],
                                   run("reference", x, g, reset=reset, output=output)[1])
    assert changed == 8  # the cap reaches every case: a kernel that ignored it would fail above
    x, g = random_case(T, shape, torch.float64, 520, device)
    x = 2.5 * x
    theta = (0.5 + torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).to(device)
    for reset in RESETS:
        k = lif_constants(x, threshold=theta, reset=reset)._replace(sensitivity_cap=1.0 / theta)
        o, _, (u, du, _) = _ReferenceImpl.forward(x, k, True)
        if reset != "zero":
            assert bool((o & (u - du > k.threshold)).any())  # some spikes start above the threshold
        want = _ReferenceImpl.backward_from_trace(g, u, du, o, k, True)
        torch.testing.assert_close(impl_obj.backward_from_trace(g, u, du, o, k, True), want,
                                   rtol=1e-12, atol=1e-12)


def ablations(impl, impl_obj, T=10, shape=(3, 20), device="cpu"):
    """Each ablation (two run-time table rows, tssl_plugin.rule.ablation_gains) against the reference: every
    reset it applies to, both outputs, float64 and float32, per-neuron parameters, the from-trace entry point;
    and each changes the gradient of every case (a kernel that ignored it would fail)."""
    cases = [(a, r, w) for a in ("no_intra", "no_spike_timing") for r in RESETS for w in (True, False)
             if not (a == "no_intra" and r == "none") and not (a == "no_spike_timing" and not w)]
    changed = 0
    for i, ((ablation, reset, warmup), output, dtype) in enumerate(
            itertools.product(cases, ("psc", "spike"), (torch.float64, torch.float32))):
        x, g = random_case(T, shape, dtype, 600 + i, device)
        x = 2.0 * x  # neurons that fire several times: the intra-neuron term is not 0
        kw = dict(reset=reset, warmup=warmup, output=output)
        check_against_reference(impl, x, g, ablation=ablation, **kw)
        changed += not torch.equal(run("reference", x, g, ablation=ablation, **kw)[1], run("reference", x, g, **kw)[1])
    assert changed == len(cases) * 4
    x, g = random_case(T, shape, torch.float64, 640, device)
    theta = (0.3 + torch.rand(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)).to(device)
    for ablation in ("no_intra", "no_spike_timing"):
        check_against_reference(impl, x, g, threshold=theta, reset="subtract", ablation=ablation)
        for reset in ("zero", "subtract_after_leak"):
            k = lif_constants(x, reset=reset, ablation=ablation)
            o, _, (u, du, _) = _ReferenceImpl.forward(2.0 * x, k, True)
            want = _ReferenceImpl.backward_from_trace(g, u, du, o, k, True)
            torch.testing.assert_close(impl_obj.backward_from_trace(g, u, du, o, k, True), want,
                                       rtol=1e-12, atol=1e-12)


def reference_vectors(impl, device="cpu"):
    """Every layer of the public reference file (layer cases and the layers inside the network cases)."""
    data = torch.load(DATA, weights_only=True)
    n = 0
    for case in data["cases"]:
        p = case["params"]
        layers = [case] if case["kind"] == "layer" else [l for l in case["layers"] if "o" in l]
        for layer in layers:
            x = layer["x"].to(device)
            xx = x.clone().requires_grad_()
            a = tssl_lif(xx, p["tau_m"], p["tau_s"], layer.get("threshold", p["threshold"]),
                         warmup=p["warmup"], impl=impl)
            a.backward(layer["g"].to(device))
            o = tssl_lif(x, p["tau_m"], p["tau_s"], layer.get("threshold", p["threshold"]), output="spike",
                         impl=impl)
            assert torch.equal(o.cpu(), layer["o"].to(o.dtype)), case["name"]
            torch.testing.assert_close(a.detach().cpu(), layer["a"], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(xx.grad.cpu(), layer["grad_x"], rtol=1e-9, atol=1e-9)
            n += 1
    assert n >= 8
    return n


def half_precision(impl, device="cpu", bf16_rounding_exact=True):
    """float16/bfloat16 inputs: same dtype out, and equal to the float32 computation on the rounded input.

    ``bf16_rounding_exact=False`` allows one bfloat16 unit in the last place: Triton's interpreter (3.8)
    truncates float32 -> bfloat16 stores where compiled kernels (and torch) round to nearest even.
    """
    for dtype in (torch.float16, torch.bfloat16):
        x, g = random_case(8, (3, 20), torch.float32, 300, device)
        xh, gh = x.to(dtype), g.to(dtype)
        for output in ("psc", "spike"):
            y, gx = run(impl, xh, gh, output=output)
            assert y.dtype == dtype and gx.dtype == dtype
            y32, gx32 = run("reference", xh.float(), gh.float(), output=output)
            ulp = 0 if bf16_rounding_exact or dtype != torch.bfloat16 else 2.0 ** -7
            torch.testing.assert_close(y.float(), y32.to(dtype).float(), rtol=ulp, atol=0)
            torch.testing.assert_close(gx.float(), gx32.to(dtype).float(), rtol=1e-2, atol=1e-2)


def _step_constants(kind, reset, shape, dtype, device):
    """The constants of one step: numbers (``lif_constants``), one-element tensors (as the snnTorch adapter
    builds them, cap 1/threshold) or per-neuron tensors over the last dimension (an IF neuron among them)."""
    from tssl_plugin.rule import LIFConstants, warmup_level

    if kind == "numbers":
        return lif_constants(torch.empty((1,) + shape, dtype=dtype), 5.0, 3.0, 1.0, reset)
    if kind == "0-d":
        th = torch.tensor(1.0, dtype=dtype, device=device)
        return LIFConstants(torch.tensor(0.05, dtype=dtype, device=device), 1 / 3.0, th, warmup_level(3.0), reset,
                            0.2, 1.0 / th)
    gen = torch.Generator().manual_seed(11)
    n = shape[-1]
    r = lambda lo, hi: (lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)).to(dtype).to(device)  # noqa: E731
    tau_s = r(1.5, 4.0)
    th = r(0.8, 1.2)
    itm = r(0.1, 0.4)
    itm[0] = 0.0  # an IF neuron
    return LIFConstants(itm, 1 / tau_s, th, warmup_level(tau_s), reset, 0.6, 1.0 / th)


def _step_inputs(shape, dtype, seed, device):
    """One step's (G, h, extra, u, du, o, s): some spikes crossed the threshold during the step, some started
    above it (u - du > threshold), some increments are negative; traces on both sides of the warm-up level."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(shape, generator=gen, dtype=torch.float64)  # noqa: E731
    n = lambda: torch.randn(shape, generator=gen, dtype=torch.float64)  # noqa: E731
    u = 2.0 * r() - 0.3
    du = 1.6 * r() - 0.4
    s = 0.25 * r()
    G, h, extra = n(), n(), n()
    o = (u > 1.0).to(device)
    return [t.to(dtype).to(device) for t in (G, h, extra, u, du)] + [o, s.to(dtype).to(device)]


def step_cases(impl_obj, device="cpu", full=True):
    """``step_forward`` and ``step_backward`` of ``impl_obj`` equal reference.trace_step and reference.carry_step:
    float64 and float32, every reset, warm-up on and off, with and without the carry and a membrane loss, no
    spike gradient, an input scale, each ablation, and constants as numbers, one-element and per-neuron tensors. The carry
    ``delta`` is equal bit for bit (the same operations); ``grad_x`` too where no warm-up applies, and within
    tol() where the warm-up's exp (a polynomial in C) enters."""
    from tssl_plugin._impl.reference import carry_step, trace_step

    shape = (3, 70)
    modes = list(itertools.product((torch.float64, torch.float32), RESETS, (True, False), (True, False),
                                   (True, False), ("numbers", "0-d", "neurons")))
    if not full:  # the interpreter: every reset, dtype, warm-up and parameter kind, carry and loss alternating
        modes = [m for i, m in enumerate(modes) if (i // 6) % 4 in (0, 3)]
    for i, (dtype, reset, warmup, has_h, has_extra, kind) in enumerate(modes):
        G, h, extra, u, du, o, s = _step_inputs(shape, dtype, 600 + i, device)
        k = _step_constants(kind, reset, shape, dtype, device)
        ablation = ("none", "no_intra", "no_spike_timing")[i % 3]  # each ablation in turn, where it applies
        if (ablation == "no_intra" and reset == "none") or (ablation == "no_spike_timing" and not warmup):
            ablation = "none"
        k = k._replace(ablation=ablation)
        oc, start = o.cpu(), (u - du).cpu()
        assert bool((oc & (start > 1.2)).any()) and bool((oc & (start <= 0.8)).any()) and bool((oc & (du.cpu() < 0)).any())
        h = h if has_h else None
        extra = extra if has_extra else None
        G = None if i % 7 == 3 else G  # no gradient reached the spike
        scale = 0.4 if i % 3 == 1 else 1.0
        want_gx, want_delta = carry_step(torch.zeros_like(u) if G is None else G, h, u, du, o, s, k, warmup,
                                         extra=extra)
        want_gx = want_gx * scale
        gx, delta, finite = impl_obj.step_backward(G, h, u, du, o, s, k, warmup, extra, scale)
        mode = (dtype, reset, warmup, has_h, has_extra, kind, G is None, scale, ablation)
        assert gx.dtype == dtype and delta.dtype == dtype, mode
        assert torch.equal(delta, want_delta), mode
        warm = (s < k.warmup_level) if warmup else torch.zeros_like(o)
        assert torch.equal(gx[~warm], want_gx[~warm]), mode
        torch.testing.assert_close(gx, want_gx, **tol(dtype), msg=lambda m: f"{mode}: {m}")
        assert finite in (None, True), mode
        # the forward bookkeeping: the trace's step, and the spikes in the dtype asked for
        its = k.inv_tau_s
        for spike_dtype in (None, dtype, torch.float16):
            spike, s_next = impl_obj.step_forward(o, s, its, spike_dtype)
            assert torch.equal(s_next, trace_step(s, o, its)), mode
            assert (spike is None) if spike_dtype is None else (spike.dtype == spike_dtype
                                                                 and torch.equal(spike, o.to(spike_dtype))), mode
    # a NaN in the membrane: the implementations that check grad_x while writing it say so
    G, h, extra, u, du, o, s = _step_inputs(shape, torch.float32, 700, device)
    u[1, 2] = float("nan")
    k = _step_constants("numbers", "zero", shape, torch.float32, device)
    gx, _, finite = impl_obj.step_backward(G, h, u, du, o, s, k, True, None, 1.0)
    assert finite in (None, False) and bool(torch.isnan(gx[1, 2]))
