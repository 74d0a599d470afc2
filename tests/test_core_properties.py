"""Properties the TSSL-BP rule implies (a step function admits no gradcheck), precision and modes."""
import pytest
import torch

from conftest import load_cases
from tssl_plugin import TSSLNeuron, psp, tssl_lif
from tssl_plugin._impl.reference import forward_sequence, psc_error, psc_error_explicit
from tssl_plugin.functional import lif_constants

LAYER_CASES = [c for c in load_cases() if c.values[0]["kind"] == "layer"]


def _rand(T, *shape, scale=0.9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, *shape, generator=g, dtype=dtype) * scale


def _grad(x, g, **kw):
    x = x.clone().requires_grad_()
    y = tssl_lif(x, **kw)
    (gx,) = torch.autograd.grad(y, x, g)
    return y.detach(), gx


def test_psc_error_recursion_equals_explicit_sum():
    g = torch.randn(17, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(psc_error(g, 1 / 3), psc_error_explicit(g, 1 / 3), rtol=1e-12, atol=1e-12)


def test_spike_output_with_psc_filtered_error_equals_psc_mode():
    x = _rand(20, 6, 8, scale=0.8)
    g = torch.randn(20, 6, 8, dtype=torch.float64)
    _, g_psc = _grad(x, g, output="psc")
    G = psc_error(g, 1 / 3.0)
    _, g_spk = _grad(x, G, output="spike")
    torch.testing.assert_close(g_spk, g_psc, rtol=1e-12, atol=1e-12)


def test_silent_neurons_get_zero_gradient_without_warmup():
    x = _rand(15, 4, 10, scale=0.9)
    x[:, :, :3] = 0.05  # these never reach the threshold
    o, gx = _grad(x, torch.randn(15, 4, 10, dtype=torch.float64), warmup=False, output="spike")
    assert not o[:, :, :3].any()
    assert torch.count_nonzero(gx[:, :, :3]) == 0
    _, gx_w = _grad(x, torch.randn(15, 4, 10, dtype=torch.float64), warmup=True, output="spike")
    assert torch.count_nonzero(gx_w[:, :, :3]) > 0  # the warm-up surrogate is what feeds them


def test_gradient_lives_on_spikes_and_the_leak_path_between_them():
    T, tau_m = 25, 5.0
    x = _rand(T, 8, 16, scale=0.7, seed=1)
    o, gx = _grad(x, torch.randn(T, 8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2)),
                  warmup=False, output="spike", tau_m=tau_m)
    o = o.bool()
    beta = 1 - 1 / tau_m
    for n in range(8):
        for f in range(16):
            spikes = o[:, n, f].nonzero().flatten().tolist()
            col = gx[:, n, f]
            last = spikes[-1] if spikes else -1
            assert torch.count_nonzero(col[last + 1:]) == 0  # nothing after the last spike
            for t in range(last):
                if not o[t, n, f]:  # between spikes: pure leak of the next step's delta
                    torch.testing.assert_close(col[t], beta * col[t + 1], rtol=1e-12, atol=1e-15)


def test_sensitivity_cap_of_eight():
    # one neuron crossing the threshold with a tiny increment at its only spike, at the last step
    x = torch.zeros(3, 1, 1, dtype=torch.float64)
    x[0] = 0.999
    x[1] = 0.999 / 5 + 0.01  # u[1] = 0.999 + 0.0102 > 1, du = 0.0102 -> 1/du ~ 98, capped to 8
    g = torch.ones(3, 1, 1, dtype=torch.float64)
    o, gx = _grad(x[:2], g[:2], warmup=False, output="spike")
    assert o[:, 0, 0].tolist() == [0.0, 1.0]
    assert gx[1, 0, 0].item() == pytest.approx(8.0, abs=1e-12)
    # and without the cap it would be 1/du
    x2 = x[:2].clone()
    x2[1] = 0.999 / 5 + 0.5
    _, gx2 = _grad(x2, g[:2], warmup=False, output="spike")
    du = x2[1, 0, 0] - 0.999 / 5
    assert gx2[1, 0, 0].item() == pytest.approx(1 / du.item(), rel=1e-12)


def test_warmup_only_where_trace_is_below_level():
    x = _rand(30, 6, 12, scale=0.8, seed=3)
    g = torch.randn(30, 6, 12, dtype=torch.float64)
    _, on = _grad(x, g, warmup=True)
    _, off = _grad(x, g, warmup=False)
    s = forward_sequence(x, lif_constants(x)).s
    below = s < 1 / (4 * 3.0)
    assert torch.equal(on[~below], off[~below])
    assert (on[below] != off[below]).any()


def _cpu_impls():
    from tssl_plugin._impl import cpu

    try:
        cpu.load()
        return ("reference", "cpu")
    except ImportError:  # no C compiler here
        return ("reference",)


@pytest.mark.parametrize("impl", _cpu_impls())
def test_warmup_width_sets_the_surrogate_and_defaults_to_the_reference(impl):
    """``warmup_width = w`` changes dL/dx only where the warm-up applies, to G sigma'((u - theta)/w)/w (the
    argument clamped to [-8, 8]); an explicit 0.2 is the default call bit for bit."""
    x = _rand(30, 6, 12, scale=0.8, seed=3)
    g = torch.randn(30, 6, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    _, default = _grad(x, g, impl=impl)
    _, explicit = _grad(x, g, impl=impl, warmup_width=0.2)
    assert torch.equal(default, explicit)
    tr = forward_sequence(x, lif_constants(x))
    below = tr.s < 1 / (4 * 3.0)
    G = psc_error(g, 1 / 3.0)
    for w in (0.05, 0.8, 3.0):
        _, wide = _grad(x, g, impl=impl, warmup_width=w)
        assert torch.equal(wide[~below], default[~below])
        sig = torch.sigmoid(torch.clamp((tr.u - 1.0) / w, -8.0, 8.0))
        torch.testing.assert_close(wide[below], (G * sig * (1 - sig) / w)[below], rtol=1e-10, atol=1e-12)
        assert not torch.equal(wide[below], default[below])


@pytest.mark.parametrize("case", LAYER_CASES)
def test_float32_agrees_with_float64(case):
    """float32 vs the float64 vectors: spikes flip only within float32 rounding of the threshold;
    outputs to 1e-6 (a PSC in [0, 1] accumulates ~T roundings of 6e-8); gradients to rtol = atol = 1e-4:
    each step multiplies by factors with relative error <= ~20 eps32 (1/du is capped at 8, |u| <= ~2),
    over <= 30 steps that is <= ~4e-5; the measured worst is ~1e-5."""
    p = case["params"]
    kw = dict(tau_m=p["tau_m"], tau_s=p["tau_s"], threshold=p["threshold"], warmup=p["warmup"])
    x32 = case["x"].float().requires_grad_()
    a32 = tssl_lif(x32, **kw)
    a32.backward(case["g"].float())
    o32 = tssl_lif(case["x"].float(), **kw, output="spike").double()
    flip = o32 != case["o"]
    if flip.any():
        margin = (case["u"][flip] - p["threshold"]).abs().max()
        assert margin <= 4 * torch.finfo(torch.float32).eps * 2
    same = ~flip.any(0)
    torch.testing.assert_close(a32.double()[:, same], case["a"][:, same], rtol=0, atol=1e-6)
    torch.testing.assert_close(x32.grad.double()[:, same], case["grad_x"][:, same], rtol=1e-4, atol=1e-4)


def test_per_neuron_parameters_match_scalar_runs():
    x = _rand(12, 5, 3, scale=1.2, seed=4)
    g = torch.randn(12, 5, 3, dtype=torch.float64)
    tau_m = torch.tensor([3.0, 5.0, 9.0], dtype=torch.float64)
    tau_s = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    thr = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    y, gx = _grad(x, g, tau_m=tau_m, tau_s=tau_s, threshold=thr)
    for f in range(3):
        yf, gf = _grad(x[:, :, f:f + 1], g[:, :, f:f + 1], tau_m=float(tau_m[f]), tau_s=float(tau_s[f]),
                       threshold=float(thr[f]))
        torch.testing.assert_close(y[:, :, f:f + 1], yf, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gx[:, :, f:f + 1], gf, rtol=1e-12, atol=1e-12)
    # a per-sample, per-neuron tensor [N, F] broadcasts too
    thr2 = torch.full((5, 3), 1.0, dtype=torch.float64)
    y2, _ = _grad(x, g, threshold=thr2)
    torch.testing.assert_close(y2, _grad(x, g)[0])


def test_no_grad_and_requires_grad_false():
    x = _rand(6, 2, 4)
    with torch.no_grad():
        y = tssl_lif(x.clone().requires_grad_())
    assert y.grad_fn is None and not y.requires_grad
    y2 = tssl_lif(x)
    assert y2.grad_fn is None
    torch.testing.assert_close(y, y2)


def test_dtype_device_and_layout_follow_input():
    x = _rand(7, 3, 4, 5, dtype=torch.float32)
    g = torch.randn(7, 3, 4, 5)
    y, gx = _grad(x, g)
    assert y.dtype == torch.float32 and gx.dtype == torch.float32
    xt = x.transpose(2, 3)  # non-contiguous
    yt, gxt = _grad(xt, g.transpose(2, 3))
    torch.testing.assert_close(yt, y.transpose(2, 3))
    torch.testing.assert_close(gxt, gx.transpose(2, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype):
    x = _rand(8, 4, 16, dtype=torch.float32).to(dtype)
    g = torch.randn(8, 4, 16).to(dtype)
    y, gx = _grad(x, g)
    assert y.dtype == dtype and gx.dtype == dtype
    y32, gx32 = _grad(x.float(), g.float())
    torch.testing.assert_close(y, y32.to(dtype))
    torch.testing.assert_close(gx, gx32.to(dtype))


def test_module_wrapper():
    m = TSSLNeuron(tau_m=8.0, tau_s=4.0, threshold=0.8, warmup=False, output="spike", reset="subtract")
    r = repr(m)
    for part in ("tau_m=8", "tau_s=4", "threshold=0.8", "warmup=False", "warmup_width=0.2", "output='spike'",
                 "reset='subtract'"):
        assert part in r
    x = _rand(9, 2, 5)
    torch.testing.assert_close(m(x), tssl_lif(x, 8.0, 4.0, 0.8, warmup=False, output="spike", reset="subtract"))
    wide = TSSLNeuron(output="spike", warmup_width=0.5)
    assert "warmup_width=0.5" in repr(wide)
    g = torch.randn(9, 2, 5, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    (got,) = torch.autograd.grad(wide(xr), xr, g)
    assert torch.equal(got, _grad(x, g, output="spike", warmup_width=0.5)[1])
    mt = TSSLNeuron(threshold=torch.full((5,), 0.7))
    assert "threshold" in mt.state_dict()
    torch.testing.assert_close(mt.double()(x), tssl_lif(x, threshold=0.7))


def test_psp_encoding():
    img = torch.rand(3, 4, dtype=torch.float64)
    p = psp(img.expand(6, 3, 4), 3.0)
    q = torch.zeros(3, 4, dtype=torch.float64)
    for t in range(6):
        q = q - q / 3.0 + img
        torch.testing.assert_close(p[t], q / 3.0, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("reset", ["subtract", "subtract_after_leak", "none"])
def test_reset_extensions_run_and_differ(reset):
    x = _rand(20, 4, 8, scale=1.5, seed=6)
    g = torch.randn(20, 4, 8, dtype=torch.float64)
    y, gx = _grad(x, g, reset=reset, output="spike")
    y0, gx0 = _grad(x, g, reset="zero", output="spike")
    assert torch.isfinite(gx).all()
    assert not torch.equal(y, y0)  # strong input: the reset rule matters


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = _rand(10, 4, 32, scale=0.8)
    g = torch.randn(10, 4, 32, dtype=torch.float64)
    y, gx = _grad(x, g)
    yc, gxc = _grad(x.cuda(), g.cuda())
    assert yc.is_cuda and gxc.is_cuda
    torch.testing.assert_close(yc.cpu(), y, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gxc.cpu(), gx, rtol=1e-9, atol=1e-9)


def test_works_inside_torch_compile():
    """Dynamo traces through the op (eager backend keeps the test fast; inductor was checked by hand)."""
    lin = torch.nn.Linear(8, 8).double()

    def f(x):
        return tssl_lif(lin(x)).sum()

    x = _rand(5, 3, 8)
    compiled = torch.compile(f, backend="eager")
    y = compiled(x)
    y.backward()
    g_compiled = lin.weight.grad.clone()
    lin.weight.grad = None
    f(x).backward()
    torch.testing.assert_close(y, f(x))
    torch.testing.assert_close(g_compiled, lin.weight.grad)


def test_subtract_after_leak_increment_is_measured_from_the_subtracted_membrane():
    """snnTorch's delayed subtraction: u[t] = beta u[t-1] + x[t] - theta o[t-1]. The spike-time sensitivity
    uses du[t] = x[t] - (1 - beta) u[t-1], the increment from the subtracted membrane, so a neuron that keeps
    firing under strong input has du > 0 (c > 0) at every spike, also right after a spike."""
    x = torch.full((12, 1), 0.9, dtype=torch.float64)
    k = lif_constants(x, tau_m=4.0, reset="subtract_after_leak")
    tr = forward_sequence(x, k)
    u_prev = torch.cat([torch.zeros_like(tr.u[:1]), tr.u[:-1]])
    o_prev = torch.cat([torch.zeros_like(tr.o[:1]), tr.o[:-1]]).double()
    torch.testing.assert_close(tr.du, x - 0.25 * u_prev, rtol=0, atol=1e-15)
    torch.testing.assert_close(tr.u, 0.75 * u_prev + x - o_prev, rtol=0, atol=1e-15)
    fired_twice = tr.o[1:] & tr.o[:-1]
    assert fired_twice.any(), "the case must have spikes on consecutive steps"
    assert (tr.du[tr.o] > 0).all()
    g = torch.ones_like(x)
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(tssl_lif(xr, 4.0, reset="subtract_after_leak", output="spike", warmup=False), xr, g)
    assert (gx[tr.o] != 0).all()


@pytest.mark.parametrize("reset", ["subtract", "subtract_after_leak"])
def test_subtraction_rule_by_hand(reset):
    """Two spikes of one neuron, dL/do on the second only. The first spike's subtraction removes beta theta
    ("subtract": removed, then leaked) or theta ("subtract_after_leak") from the second step's membrane, and
    the membrane keeps its leak path: dL/dx[0] = c[0] (0 - removed delta[1]) + beta delta[1], delta[1] = c[1]."""
    itm, beta = 0.25, 0.75
    x = torch.tensor([[1.5], [0.9]], dtype=torch.float64, requires_grad=True)
    o = tssl_lif(x, 4.0, reset=reset, output="spike", warmup=False)
    assert o.flatten().tolist() == [1.0, 1.0]
    (gx,) = torch.autograd.grad(o, x, torch.tensor([[0.0], [1.0]], dtype=torch.float64))
    v = 1.5 if reset == "subtract_after_leak" else 0.5  # the membrane the leak acts on at t = 1
    c0, c1 = 1 / 1.5, 1 / (0.9 - itm * v)  # du[1] is measured from the membrane after the subtraction
    removed = beta * 1.0 if reset == "subtract" else 1.0
    torch.testing.assert_close(gx.flatten(), torch.tensor([-c0 * removed * c1 + beta * c1, c1], dtype=torch.float64),
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize("reset", ["subtract_after_leak", "subtract"])
@pytest.mark.parametrize("beta", [0.5, 0.95])
def test_subtraction_rule_tracks_the_spike_counts_slope(reset, beta):
    """On noisy neurons (x = drive + 0.5 n, T = 50) the rule's d(spike count)/d(drive) with the adapters' cap
    1/threshold stays within a factor 3 of the finite difference while the neuron can still fire more, and
    near 0 when it fires at every step (tools/count_sensitivity.py prints the whole table). The previous
    subtraction rule was 10-40000 times too high here, and tutorial networks drifted to saturation."""
    from tssl_plugin._impl.reference import forward_sequence
    from tssl_plugin.rule import lif_constants

    tau_m = 1.0 / (1.0 - beta)
    gen = torch.Generator().manual_seed(0)
    for drive in (0.6, 1.0, 2.5):
        x = drive + 0.5 * torch.randn(50, 2000, generator=gen, dtype=torch.float64)
        xx = x.clone().requires_grad_()
        o = tssl_lif(xx, tau_m, 3.0, 1.0, output="spike", reset=reset, warmup=False, sensitivity_cap=1.0)
        (g,) = torch.autograd.grad(o.sum(), xx)
        rule = float(g.sum(0).mean())
        k = lif_constants(x, tau_m, 3.0, 1.0, reset)
        count = lambda z: forward_sequence(z, k).o.double().sum(0)  # noqa: E731
        fd = float(((count(x + 0.05) - count(x - 0.05)) / 0.1).mean())
        if fd > 5:
            assert fd / 3 < rule < fd * 3, (drive, rule, fd)
        else:  # firing at every step: the count cannot grow
            assert rule < 5, (drive, rule, fd)


@pytest.mark.parametrize("beta", [0.5, 0.8, 0.95])
def test_the_interpolated_crossing_tracks_the_spike_counts_slope_after_a_reset_to_zero(beta):
    """After a reset to zero the reference's c = 1/du treats a spike far above the threshold as movable as one that
    barely crossed: on noisy neurons (x = drive + 0.5 n, T = 50) its d(spike count)/d(drive) is 1.8 to 2.8 times the
    finite difference somewhere in firing rates 0.3-0.9. ``crossing="interpolated"`` (the adapters' default for this
    reset) stays within 40 % of it there (docs/algorithm.md, "The interpolated crossing";
    tools/count_sensitivity.py prints the whole table)."""
    from tssl_plugin._impl.reference import forward_sequence
    from tssl_plugin.rule import lif_constants

    tau_m = 1.0 / (1.0 - beta)
    gen = torch.Generator().manual_seed(0)
    worst_step = 0.0
    for drive in (0.6, 1.0, 1.5):
        x = drive + 0.5 * torch.randn(50, 2000, generator=gen, dtype=torch.float64)
        k = lif_constants(x, tau_m, 3.0, 1.0, "zero")
        count = lambda z: forward_sequence(z, k).o.double().sum(0)  # noqa: E731
        fd = float(((count(x + 0.05) - count(x - 0.05)) / 0.1).mean())
        est = {}
        for crossing in ("step", "interpolated"):
            xx = x.clone().requires_grad_()
            o = tssl_lif(xx, tau_m, 3.0, 1.0, output="spike", reset="zero", warmup=False, crossing=crossing)
            (g,) = torch.autograd.grad(o.sum(), xx)
            est[crossing] = float(g.sum(0).mean())
        assert fd > 15, (drive, fd)
        assert fd / 1.4 < est["interpolated"] < fd * 1.4, (drive, est, fd)
        worst_step = max(worst_step, est["step"] / fd)
    assert worst_step > 1.8, worst_step  # what the interpolation corrects
