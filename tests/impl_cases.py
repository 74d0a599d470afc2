"""Shared checks of an implementation against reference.py (helpers, no tests): used by the implementations'
test modules (test_impl_*.py) and by tools/gpu_check.sh."""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from tssl_plugin.functional import lif_constants, tssl_lif
from tssl_plugin._impl import _ReferenceImpl
from tssl_plugin._impl.reference import HostTrace, forward_sequence
from tssl_plugin.rule import OUTPUTS, RESETS

DATA = Path(__file__).parent / "data" / "tssl_reference_public.pt"
#: how far an implementation's output and gradient may be from the reference's, per input dtype (relative and
#: absolute, the same number): the fused kernels repeat the reference's operations, the exp of the warm-up
#: surrogate (libm, libdevice, Triton) excepted, and half precision rounds coarser. Also gpu_check.sh's.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def tol(dtype):
    """``assert_close`` keyword arguments for comparing with the reference in ``dtype`` (:data:`TOL`)."""
    return dict(rtol=TOL[dtype], atol=TOL[dtype])


def saved_for_backward(impl, x):
    """The tensors autograd keeps from ``tssl_lif(x, impl=impl)`` for the backward."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tssl_lif(x.detach().requires_grad_(), impl=impl)
    return saved


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


F64, F32 = torch.float64, torch.float32
#: every output mode of a layer: (reset, warm-up, output).
MODES = list(itertools.product(RESETS, (True, False), OUTPUTS))


def case_id(*parts) -> str:
    """A test id naming each part of a case: dtypes by name, warm-up as warmup/no-warmup."""
    names = []
    for p in parts:
        if isinstance(p, torch.dtype):
            names.append(str(p).replace("torch.", ""))
        elif isinstance(p, bool):
            names.append("warmup" if p else "no-warmup")
        else:
            names.append(str(p))
    return "-".join(names)


def params(cases) -> dict:
    """``pytest.mark.parametrize`` keyword arguments for ``cases`` (tuples), each named by its parts (:func:`case_id`)
    without its seed (the leading int)."""
    return dict(argvalues=cases, ids=[case_id(*(p for p in c if type(p) is not int)) for c in cases])


def mode_cases(dtypes=(F64, F32)):
    """``(seed, dtype, reset, warmup, output)`` for every mode in each dtype (the seed: the case's index)."""
    return [(i, d, *m) for i, (d, m) in enumerate(itertools.product(dtypes, MODES))]


def mode_case(impl, seed, dtype, reset, warmup, output, T=12, shape=(3, 40), device="cpu"):
    x, g = random_case(T, shape, dtype, seed, device)
    check_against_reference(impl, x, g, reset=reset, warmup=warmup, output=output)


def all_modes(impl, T=12, shape=(3, 40), dtypes=(F64, F32), device="cpu"):
    for case in mode_cases(dtypes):
        mode_case(impl, *case, T=T, shape=shape, device=device)


#: a few per-neuron modes (the interpreter): every reset once.
FEW_MODES = [(r, r != "none", "psc" if r in ("zero", "none") else "spike") for r in RESETS]


def _per_neuron_data(T, device):
    """Input, gradient and per-neuron tau_m (an IF neuron first), tau_s (per row) and threshold."""
    x, g = random_case(T, (4, 6), F64, 100, device)
    gen = torch.Generator().manual_seed(1)
    tau_m = (2.0 + 6 * torch.rand(6, generator=gen, dtype=F64)).to(device)
    tau_m[0] = float("inf")  # an IF neuron
    tau_s = (1.5 + 3 * torch.rand(4, 1, generator=gen, dtype=F64)).to(device)
    theta = (0.3 + torch.rand(4, 6, generator=gen, dtype=F64)).to(device)
    return x, g, tau_m, tau_s, theta


def per_neuron_case(impl, reset, warmup, output, T=10, device="cpu"):
    x, g, tau_m, tau_s, theta = _per_neuron_data(T, device)
    check_against_reference(impl, x, g, tau_m=tau_m, tau_s=tau_s, threshold=theta, reset=reset, warmup=warmup,
                            output=output)


def per_neuron_mixed(impl, T=10, device="cpu"):
    """Only the threshold per neuron, float32."""
    x, g, _, _, theta = _per_neuron_data(T, device)
    check_against_reference(impl, x.float(), g.float(), threshold=theta[0].float(), reset="subtract")


def per_neuron_params(impl, device="cpu", full=True):
    T = 10 if full else 4
    for mode in (MODES if full else FEW_MODES):
        per_neuron_case(impl, *mode, T=T, device=device)
    per_neuron_mixed(impl, T=T, device=device)


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


def _reference_trace(x, k):
    """``(u, du, o)`` of the reference forward."""
    tr = forward_sequence(x, k)
    return tr.u, tr.du, tr.o


def check_from_trace(impl_obj, g, u, du, o, k, warmup=True):
    """``impl_obj.backward_from_trace`` equals the reference's on the trace ``(u, du, o)``."""
    want = _ReferenceImpl.backward_from_trace(g, u, du, o, k, warmup)
    torch.testing.assert_close(impl_obj.backward_from_trace(g, u, du, o, k, warmup), want, rtol=1e-12, atol=1e-12)


#: ``(seed, reset, warmup)`` of the from-trace checks.
TRACE_CASES = [(200 + i, r, w) for i, (r, w) in enumerate(itertools.product(RESETS, (True, False)))]


def from_trace_case(impl_obj, seed, reset, warmup, T=11, device="cpu"):
    x, g = random_case(T, (2, 30), F64, seed, device)
    k = lif_constants(x, reset=reset)
    check_from_trace(impl_obj, g, *_reference_trace(x, k), k, warmup)


def from_trace(impl_obj, device="cpu", full=True):
    cases = TRACE_CASES if full else [(200 + i, r, True) for i, r in enumerate(RESETS)]
    for case in cases:
        from_trace_case(impl_obj, *case, T=11 if full else 4, device=device)


def _changes_reference(x, g, **kw):
    """The option in ``kw`` changes the reference's gradient (else a kernel that ignored it would pass)."""
    option = {k: v for k, v in kw.items() if k not in ("reset", "warmup", "output")}
    rest = {k: v for k, v in kw.items() if k not in option}
    assert not torch.equal(run("reference", x, g, **kw)[1], run("reference", x, g, **rest)[1]), option


#: ``(seed, dtype, reset, output)`` of the warm-up width checks.
WIDTH_CASES = [(400 + i, d, r, o) for i, (d, r, o) in enumerate(itertools.product((F64, F32), RESETS, OUTPUTS))]


def warmup_width_case(impl, seed, dtype, reset, output, width=0.7, T=8, shape=(3, 20), device="cpu"):
    """A warm-up width other than the reference's 0.2 (a run-time value in every kernel)."""
    x, g = random_case(T, shape, dtype, seed, device)
    check_against_reference(impl, x, g, reset=reset, output=output, warmup_width=width)
    _changes_reference(x, g, reset=reset, output=output, warmup_width=width)


def warmup_width_per_neuron(impl, width=0.7, T=8, shape=(3, 20), device="cpu"):
    x, g = random_case(T, shape, F64, 420, device)
    theta = (0.5 + torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=F64)).to(device)
    check_against_reference(impl, x, g, threshold=theta, reset="subtract", output="spike", warmup_width=width)


def warmup_width_from_trace(impl_obj, reset, width=0.7, T=8, shape=(3, 20), device="cpu"):
    x, g = random_case(T, shape, F64, 420, device)
    k = lif_constants(x, reset=reset, warmup_width=width)
    check_from_trace(impl_obj, g, *_reference_trace(x, k), k)


#: ``(seed, reset, output)`` of the warm-up gate checks.
GATE_CASES = [(450 + i, r, o) for i, (r, o) in enumerate(itertools.product(RESETS, OUTPUTS))]


def warmup_gate_case(impl, seed, reset, output, T=8, shape=(3, 20), device="cpu"):
    """``warmup="silent"`` through the whole-sequence op, where it changes the reference's gradient."""
    x, g = random_case(T, shape, F64, seed, device)
    x = 1.5 * x
    check_against_reference(impl, x, g, reset=reset, output=output, warmup="silent")
    assert not torch.equal(run("reference", x, g, reset=reset, output=output, warmup="silent")[1],
                           run("reference", x, g, reset=reset, output=output)[1])


def warmup_gate_from_trace(impl_obj, reset, T=8, shape=(3, 20), device="cpu"):
    """The warm-up gate ``"silent"`` (every step without a spike) through the from-trace entry point, on input that
    makes neurons fire and then stay silent, where it changes the reference's gradient."""
    x, g = random_case(T, shape, F64, 440, device)
    x = 1.5 * x
    k = lif_constants(x, reset=reset, warmup_gate="silent")
    u, du, o = _reference_trace(x, k)
    check_from_trace(impl_obj, g, u, du, o, k)
    trace_gate = _ReferenceImpl.backward_from_trace(g, u, du, o, lif_constants(x, reset=reset), True)
    assert not torch.equal(_ReferenceImpl.backward_from_trace(g, u, du, o, k, True), trace_gate), reset


#: ``(seed, reset, output)`` of the warm-up floor checks.
FLOOR_CASES = [(470 + i, r, o) for i, (r, o) in enumerate(itertools.product(RESETS, OUTPUTS))]


def _far_below(x):
    """``x`` shifted so that many neurons stay far (more than 8 warm-up widths) below the threshold while others
    fire."""
    return 2.0 * x - 0.9


def warmup_floor_case(impl, seed, reset, output, T=8, shape=(3, 20), device="cpu"):
    """``warmup_floor=False`` (the gate ``"silent"`` too) through the whole-sequence op, where it changes the
    reference's gradient: a neuron far below the threshold gets nothing instead of ``G sigma'(8)/w``."""
    x, g = random_case(T, shape, F64, seed, device)
    x = _far_below(x)
    for gate in ("trace", "silent"):
        check_against_reference(impl, x, g, reset=reset, output=output, warmup=gate, warmup_floor=False)
        assert not torch.equal(run("reference", x, g, reset=reset, output=output, warmup=gate, warmup_floor=False)[1],
                               run("reference", x, g, reset=reset, output=output, warmup=gate)[1])


def warmup_floor_from_trace(impl_obj, reset, T=8, shape=(3, 20), device="cpu"):
    """``warmup_floor=False`` through the from-trace entry point, where it changes the reference's gradient."""
    x, g = random_case(T, shape, F64, 460, device)
    x = _far_below(x)
    k = lif_constants(x, reset=reset, warmup_floor=False)
    u, du, o = _reference_trace(x, k)
    check_from_trace(impl_obj, g, u, du, o, k)
    floor = _ReferenceImpl.backward_from_trace(g, u, du, o, lif_constants(x, reset=reset), True)
    assert not torch.equal(_ReferenceImpl.backward_from_trace(g, u, du, o, k, True), floor), reset


#: ``(seed, reset, output)`` of the interpolated crossing checks.
CROSSING_CASES = [(480 + i, r, o) for i, (r, o) in enumerate(itertools.product(RESETS, OUTPUTS))]


def crossing_case(impl, seed, reset, output, T=8, shape=(3, 20), device="cpu"):
    """``crossing="interpolated"`` through the whole-sequence op (with and without the warm-up), on inputs strong
    enough for spikes far above the threshold, where it changes the reference's gradient."""
    x, g = random_case(T, shape, F64, seed, device)
    x = 2.0 * x
    for warmup in ("silent", False):
        check_against_reference(impl, x, g, reset=reset, output=output, warmup=warmup, crossing="interpolated")
        _changes_reference(x, g, reset=reset, output=output, warmup=warmup, crossing="interpolated")


def crossing_from_trace(impl_obj, reset, T=8, shape=(3, 20), device="cpu"):
    """``crossing="interpolated"`` with a per-neuron threshold through the from-trace entry point."""
    x, g = random_case(T, shape, F64, 490, device)
    x = 2.0 * x
    theta = (0.5 + torch.rand(shape, generator=torch.Generator().manual_seed(4), dtype=F64)).to(device)
    k = lif_constants(x, threshold=theta, reset=reset, crossing="interpolated")
    u, du, o = _reference_trace(x, k)
    check_from_trace(impl_obj, g, u, du, o, k)
    step = _ReferenceImpl.backward_from_trace(g, u, du, o, k._replace(crossing="step"), True)
    assert not torch.equal(_ReferenceImpl.backward_from_trace(g, u, du, o, k, True), step), reset


def rule_options(impl, impl_obj, T=8, shape=(3, 20), device="cpu"):
    """The warm-up gate "silent", no warm-up floor and the interpolated crossing, each with every reset and output
    through the whole-sequence op and with every reset from the trace (for a device run of all of them at once)."""
    for cases_, case, from_trace in ((GATE_CASES, warmup_gate_case, warmup_gate_from_trace),
                                     (FLOOR_CASES, warmup_floor_case, warmup_floor_from_trace),
                                     (CROSSING_CASES, crossing_case, crossing_from_trace)):
        for seed, reset, output in cases_:
            case(impl, seed, reset, output, T=T, shape=shape, device=device)
        for reset in RESETS:
            from_trace(impl_obj, reset, T=T, shape=shape, device=device)


def warmup_widths(impl, impl_obj, width=0.7, T=8, shape=(3, 20), device="cpu"):
    """Every reset and output, float64 and float32, scalar and per-neuron parameters, and the from-trace entry
    point, with ``width``."""
    kw = dict(width=width, T=T, shape=shape, device=device)
    for case in WIDTH_CASES:
        warmup_width_case(impl, *case, **kw)
    warmup_width_per_neuron(impl, **kw)
    for reset in RESETS:
        warmup_width_from_trace(impl_obj, reset, **kw)


#: ``(seed, reset, output)`` of the sensitivity cap checks.
CAP_CASES = [(500 + i, r, o) for i, (r, o) in enumerate(itertools.product(RESETS, OUTPUTS))]


def sensitivity_cap_case(impl, seed, reset, output, cap=0.3, T=10, shape=(3, 20), device="cpu"):
    """A sensitivity cap other than the reference's 8 (a run-time table row), on inputs strong enough that
    subtraction resets start steps above the threshold (spikes with c = 0)."""
    x, g = random_case(T, shape, F64, seed, device)
    x = 2.5 * x
    check_against_reference(impl, x, g, reset=reset, output=output, sensitivity_cap=cap)
    _changes_reference(x, g, reset=reset, output=output, sensitivity_cap=cap)


def sensitivity_cap_from_trace(impl_obj, reset, T=10, shape=(3, 20), device="cpu"):
    """A per-neuron cap (1/threshold, as the snnTorch adapter gives) through the from-trace entry point."""
    x, g = random_case(T, shape, F64, 520, device)
    x = 2.5 * x
    theta = (0.5 + torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=F64)).to(device)
    k = lif_constants(x, threshold=theta, reset=reset)._replace(sensitivity_cap=1.0 / theta)
    u, du, o = _reference_trace(x, k)
    if reset != "zero":
        assert bool((o & (u - du > k.threshold)).any())  # some spikes start above the threshold
    check_from_trace(impl_obj, g, u, du, o, k)


def sensitivity_caps(impl, impl_obj, cap=0.3, T=10, shape=(3, 20), device="cpu"):
    """Every reset and output, float64, per layer and per neuron (from the trace)."""
    for case in CAP_CASES:
        sensitivity_cap_case(impl, *case, cap=cap, T=T, shape=shape, device=device)
    for reset in RESETS:
        sensitivity_cap_from_trace(impl_obj, reset, T=T, shape=shape, device=device)


#: ``(seed, ablation, reset, warmup, output, dtype)``: each ablation (tssl_plugin.rule.ablation_gains) with
#: every reset and warm-up it applies to.
ABLATION_CASES = [
    (600 + i, a, r, w, o, d) for i, ((a, r, w), o, d) in enumerate(itertools.product(
        [(a, r, w) for a in ("no_intra", "no_spike_timing") for r in RESETS for w in (True, False)
         if not (a == "no_intra" and r == "none") and not (a == "no_spike_timing" and not w)],
        OUTPUTS, (F64, F32)))
]


def ablation_case(impl, seed, ablation, reset, warmup, output, dtype, T=10, shape=(3, 20), device="cpu"):
    x, g = random_case(T, shape, dtype, seed, device)
    x = 2.0 * x  # neurons that fire several times: the intra-neuron term is not 0
    kw = dict(reset=reset, warmup=warmup, output=output)
    check_against_reference(impl, x, g, ablation=ablation, **kw)
    _changes_reference(x, g, ablation=ablation, **kw)


def ablation_per_neuron_and_trace(impl, impl_obj, ablation, T=10, shape=(3, 20), device="cpu"):
    """``ablation`` with per-neuron thresholds, and through the from-trace entry point."""
    x, g = random_case(T, shape, F64, 640, device)
    theta = (0.3 + torch.rand(shape, generator=torch.Generator().manual_seed(4), dtype=F64)).to(device)
    check_against_reference(impl, x, g, threshold=theta, reset="subtract", ablation=ablation)
    for reset in ("zero", "subtract_after_leak"):
        k = lif_constants(x, reset=reset, ablation=ablation)
        check_from_trace(impl_obj, g, *_reference_trace(2.0 * x, k), k)


def ablations(impl, impl_obj, T=10, shape=(3, 20), device="cpu"):
    for case in ABLATION_CASES:
        ablation_case(impl, *case, T=T, shape=shape, device=device)
    for ablation in ("no_intra", "no_spike_timing"):
        ablation_per_neuron_and_trace(impl, impl_obj, ablation, T=T, shape=shape, device=device)


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


def half_precision_case(impl, dtype, output, device="cpu", bf16_rounding_exact=True):
    """float16/bfloat16 input: same dtype out, and equal to the float32 computation on the rounded input.

    ``bf16_rounding_exact=False`` allows one bfloat16 unit in the last place: Triton's interpreter (3.8)
    truncates float32 -> bfloat16 stores where compiled kernels (and torch) round to nearest even.
    """
    x, g = random_case(8, (3, 20), F32, 300, device)
    xh, gh = x.to(dtype), g.to(dtype)
    y, gx = run(impl, xh, gh, output=output)
    assert y.dtype == dtype and gx.dtype == dtype
    y32, gx32 = run("reference", xh.float(), gh.float(), output=output)
    ulp = 0 if bf16_rounding_exact or dtype != torch.bfloat16 else 2.0 ** -7
    torch.testing.assert_close(y.float(), y32.to(dtype).float(), rtol=ulp, atol=0)
    torch.testing.assert_close(gx.float(), gx32.to(dtype).float(), rtol=1e-2, atol=1e-2)


#: ``(dtype, output)`` of the half-precision checks.
HALF_CASES = list(itertools.product((torch.float16, torch.bfloat16), OUTPUTS))


def half_precision(impl, device="cpu", bf16_rounding_exact=True):
    for case in HALF_CASES:
        half_precision_case(impl, *case, device=device, bf16_rounding_exact=bf16_rounding_exact)


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
    """``step_forward`` and ``step_backward`` of ``impl_obj`` equal reference.trace_step, reference.step_flags and
    reference.carry_step:
    float64 and float32, every reset, warm-up on and off, with and without the carry and a membrane loss, no
    spike gradient, an input scale, each ablation, and constants as numbers, one-element and per-neuron tensors. The carry
    ``delta`` is equal bit for bit (the same operations); ``grad_x`` too where no warm-up applies, and within
    tol() where the warm-up's exp (a polynomial in C) enters."""
    from tssl_plugin._impl.reference import carry_step, step_flags, trace_flags, trace_step, unpack_flags, warm_steps

    fused = impl_obj is not _ReferenceImpl

    def check_flags(flags, o, s_next, level, mode):
        """The fused kernels write reference.step_flags (one byte), the reference trace_flags; both unpack to the
        spikes and the warm-up's test."""
        assert torch.equal(flags, step_flags(o, s_next, level) if fused else trace_flags(o, s_next)), mode
        got_o, got_warm = unpack_flags(flags, level)
        assert torch.equal(got_o, o) and torch.equal(got_warm, warm_steps(s_next, o, level)), mode

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
        if i % 5 == 2:  # the warm-up gate "silent": every step without a spike
            k = k._replace(warmup_gate="silent")
        if i % 4 == 1:  # no floor under the warm-up surrogate (its clamp at 40 widths instead of 8)
            k = k._replace(warmup_floor=False)
            u = torch.where(o, u, u - 4.5)  # silent neurons from within to beyond 8 widths (4.8) below the threshold
        if i % 3 == 2:  # the interpolated crossing: c times max(0, 1 - (u - theta)/du) at a crossing
            k = k._replace(crossing="interpolated")
        oc, start = o.cpu(), (u - du).cpu()
        assert bool((oc & (start > 1.2)).any()) and bool((oc & (start <= 0.8)).any()) and bool((oc & (du.cpu() < 0)).any())
        h = h if has_h else None
        extra = extra if has_extra else None
        G = None if i % 7 == 3 else G  # no gradient reached the spike
        scale = 0.4 if i % 3 == 1 else 1.0
        want_gx, want_delta = carry_step(torch.zeros_like(u) if G is None else G, h, u, du, o,
                                         warm_steps(s, o, k.warmup_level), k, warmup, extra=extra)
        want_gx = want_gx * scale
        flags = step_flags(o, s, k.warmup_level)
        gx, delta, finite = impl_obj.step_backward(G, h, u, du, flags, k, warmup, extra, scale)
        if not fused:  # the reference's own flags give the same
            gx2, delta2, _ = impl_obj.step_backward(G, h, u, du, trace_flags(o, s), k, warmup, extra, scale)
            assert torch.equal(gx2, gx) and torch.equal(delta2, delta)
        mode = (dtype, reset, warmup, has_h, has_extra, kind, G is None, scale, ablation, k.warmup_gate, k.warmup_floor,
                k.crossing)
        assert gx.dtype == dtype and delta.dtype == dtype, mode
        assert torch.equal(delta, want_delta), mode
        # where the warm-up's exp enters: its steps, and with the gate "silent" every step without a spike
        warm = (((s < k.warmup_level) | (k.warmup_gate == "silent")) & ~o) if warmup else torch.zeros_like(o)
        assert torch.equal(gx[~warm], want_gx[~warm]), mode
        torch.testing.assert_close(gx, want_gx, **tol(dtype), msg=lambda m: f"{mode}: {m}")
        assert finite in (None, True), mode
        # the forward bookkeeping: the trace's step, the spikes in the dtype asked for, the flags when asked for
        its = k.inv_tau_s
        for spike_dtype, level in ((None, None), (dtype, k.warmup_level), (torch.float16, None),
                                   (None, k.warmup_level)):
            spike, s_next, flags = impl_obj.step_forward(o, s, its, level, spike_dtype)
            # the same from the spikes as 0/1 in the state's dtype (a compiled graph's), bit for bit
            from_numbers = impl_obj.step_forward(o.to(dtype), s, its, level, spike_dtype)
            assert all(a is b is None or torch.equal(a, b) for a, b in zip(from_numbers, (spike, s_next, flags))), mode
            assert torch.equal(s_next, trace_step(s, o, its)), mode
            assert (spike is None) if spike_dtype is None else (spike.dtype == spike_dtype
                                                                 and torch.equal(spike, o.to(spike_dtype))), mode
            if level is None:
                assert flags is None, mode
            else:
                check_flags(flags, o, s_next, level, mode)
    # du from the membrane each step started from (reference.Increment), every delayed reset and parameter kind
    from tssl_plugin._impl.reference import DELAYED_RESETS, Increment, increment

    for i, (dtype, delayed, kind) in enumerate(itertools.product((torch.float64, torch.float32), DELAYED_RESETS,
                                                                  ("numbers", "0-d", "neurons"))):
        G, h, extra, u, du, o, s = _step_inputs(shape, dtype, 800 + i, device)
        k = _step_constants(kind, "subtract_after_leak", shape, dtype, device)
        inc = Increment(u - du - 0.3, delayed)  # membranes on both sides of the threshold
        du_inc = increment(u, inc, k.threshold)
        assert bool((inc.prev > 1.2).any()) and bool((inc.prev < 0.8).any()) and not torch.equal(du_inc, du)
        want_gx, want_delta = carry_step(G, h, u, du_inc, o, warm_steps(s, o, k.warmup_level), k, True, extra=extra)
        gx, delta, _ = impl_obj.step_backward(G, h, u, inc, step_flags(o, s, k.warmup_level), k, True, extra, 1.0)
        assert torch.equal(delta, want_delta), (dtype, delayed, kind)
        torch.testing.assert_close(gx, want_gx, **tol(dtype))
    # inv_tau_s one number, the warm-up level one per neuron (and the other way round)
    G, h, extra, u, du, o, s = _step_inputs(shape, torch.float64, 650, device)
    levels = 0.05 + 0.2 * torch.rand(shape[-1], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for its, level in ((1 / 3, levels.to(device)), (1 / (1.5 + 10 * levels.to(device)), 0.1)):
        _, s_next, flags = impl_obj.step_forward(o, s, its, level, None)
        assert torch.equal(s_next, trace_step(s, o, its))
        check_flags(flags, o, s_next, level, "mixed")
        assert 0 < int(unpack_flags(flags, level)[1].sum()) < flags.numel()
    # a NaN in the membrane: the implementations that check grad_x while writing it say so
    G, h, extra, u, du, o, s = _step_inputs(shape, torch.float32, 700, device)
    u[1, 2] = float("nan")
    k = _step_constants("numbers", "zero", shape, torch.float32, device)
    gx, _, finite = impl_obj.step_backward(G, h, u, du, step_flags(o, s, k.warmup_level), k, True, None, 1.0)
    assert finite in (None, False) and bool(torch.isnan(gx[1, 2]))


def host_case(T, shape, dtype, seed, shift=-0.2, threshold=1.0):
    """A hard-reset IF forward as a host runs it: h = v_prev + x, spikes h >= V_th, v = V_r where fired."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(T, *shape, generator=gen, dtype=torch.float64).to(dtype) * 0.9 - 0.1
    v = torch.full(shape, shift, dtype=dtype) + torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype) * 0.3
    v0, hs, spikes, v_seq = v, [], [], []
    for t in range(T):
        h = v + x[t]
        s = (h >= threshold + shift).to(dtype)
        v = torch.where(s != 0, torch.full_like(h, shift), h)
        hs.append(h), spikes.append(s), v_seq.append(v)
    g = torch.randn(T, *shape, generator=gen, dtype=torch.float64).to(dtype)
    return HostTrace(torch.stack(hs), v0, torch.stack(v_seq), torch.stack(spikes), shift), g
