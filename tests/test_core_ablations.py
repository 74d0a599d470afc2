"""Ablations of TSSL-BP's parts (``ablation=``, tssl_plugin.rule): each gradient equals its definition,
written out here independently of the implementations (float64, small cases), and each is refused where it
makes no sense. The kernels are checked against the reference in test_impl_cpu.py / test_impl_triton.py."""
import math

import pytest
import torch

from tssl_plugin import TSSLNeuron
from tssl_plugin._impl.reference import forward_sequence, psc_error_explicit
from tssl_plugin.functional import spikes_with_tssl_grad, tssl_lif
from tssl_plugin.rule import ABLATIONS, ablation_gains, check_ablation, lif_constants
from tssl_plugin.stepwise import initial_state, tssl_step

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py

TAU_M, TAU_S, THETA = 4.0, 3.0, 1.0


def case(seed, T=9, n=12, scale=1.6):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(T, n, generator=gen, dtype=torch.float64) * scale - 0.2
    g = torch.randn(T, n, generator=gen, dtype=torch.float64)
    return x, g


def grad(x, g, impl="reference", **kw):
    xx = x.clone().requires_grad_()
    tssl_lif(xx, TAU_M, TAU_S, THETA, impl=impl, **kw).backward(g)
    return xx.grad


def by_definition(x, g, reset, warmup, keep_timing, keep_intra):
    """dL/dx of the PSC output, neuron by neuron and step by step in plain Python floats: the rule of
    tssl_plugin.rule with the spike-time sensitivity c (keep_timing) and the intra-neuron term J
    (keep_intra) kept or set to 0."""
    T, n = x.shape
    im, its = 1 / TAU_M, 1 / TAU_S
    beta = 1 - im
    out = torch.zeros_like(x)
    for j in range(n):
        v = s = 0.0
        fired_before = False
        u_, du_, o_, s_ = [], [], [], []
        for t in range(T):  # forward
            du = float(x[t, j]) - v * im
            u = v + du - (THETA if reset == "subtract_after_leak" and fired_before else 0.0)
            o = u > THETA
            v = 0.0 if (reset == "zero" and o) else (u - THETA if (reset == "subtract" and o) else u)
            s = s + (float(o) - s) * its
            fired_before = o
            u_.append(u), du_.append(du), o_.append(o), s_.append(s)
        G = [sum(its * (1 - its) ** (tp - t) * float(g[tp, j]) for tp in range(t, T)) for t in range(T)]
        h = 0.0
        for t in reversed(range(T)):  # backward
            crossed = o_[t] and (reset == "zero" or u_[t] - du_[t] <= THETA)
            c = min(1 / du_[t], 8.0) if (crossed and du_[t] > 0 and keep_timing) else 0.0
            J = {"zero": h * u_[t] * im, "subtract": -beta * THETA * h, "subtract_after_leak": -THETA * h,
                 "none": 0.0}[reset] if keep_intra else 0.0
            leak = (0.0 if o_[t] else beta * h) if reset == "zero" else beta * h
            h = c * (G[t] + J) + leak
            z = math.exp(min(max((THETA - u_[t]) / 0.2, -8.0), 8.0))
            surrogate = G[t] * z / ((1 + z) ** 2 * 0.2)
            out[t, j] = surrogate if (warmup and s_[t] < 1 / (4 * TAU_S)) else h
    return out


#: every combination that is not refused (test_refused_where_meaningless)
COMBINATIONS = [(r, a, w) for r in ("zero", "subtract", "subtract_after_leak", "none") for a in ABLATIONS
                for w in (True, False) if not (a == "no_intra" and r == "none") and not (a == "no_spike_timing" and not w)]


@pytest.mark.parametrize("reset,ablation,warmup", COMBINATIONS)
def test_gradient_equals_its_definition(reset, ablation, warmup):
    x, g = case(1)
    keep_timing, keep_intra = (ablation != "no_spike_timing"), (ablation != "no_intra")
    want = by_definition(x, g, reset, warmup, keep_timing, keep_intra)
    for impl in ("reference", "cpu"):
        torch.testing.assert_close(grad(x, g, impl, reset=reset, warmup=warmup, ablation=ablation), want,
                                   rtol=1e-12, atol=1e-12)
    assert want.abs().sum() > 0


def test_the_ablations_differ_and_agree_where_the_rule_says():
    x, g = case(2)
    x = x * torch.linspace(0.5, 1.3, x.shape[1], dtype=x.dtype)  # from neurons that fire once to busy ones
    full, no_intra, only_surrogate = (grad(x, g, ablation=a) for a in ABLATIONS)
    assert not torch.equal(full, no_intra) and not torch.equal(full, only_surrogate)
    # warm-up surrogate only: the surrogate where the trace is low, exactly 0 elsewhere
    k = lif_constants(x, TAU_M, TAU_S, THETA)
    tr = forward_sequence(x, k)
    warm = tr.s < k.warmup_level
    assert bool((only_surrogate[~warm] == 0).all()) and bool(warm.any()) and bool((~warm).any())
    torch.testing.assert_close(only_surrogate[warm], full[warm], rtol=0, atol=0)
    # a neuron that fires at most once has no later spike for the reset to move: no_intra changes nothing there
    once = tr.o.sum(0) <= 1
    assert bool(once.any()) and bool((~once).any())
    torch.testing.assert_close(no_intra[:, once], full[:, once], rtol=0, atol=0)
    # silent neurons: every variant is the warm-up surrogate
    x0 = 0.1 * x
    assert not forward_sequence(x0, k).o.any()
    g0 = grad(x0, g)
    for a in ABLATIONS:
        assert torch.equal(grad(x0, g, ablation=a), g0)
    torch.testing.assert_close(g0[0], (psc_error_explicit(g, 1 / TAU_S)[0] * torch.sigmoid((x0[0] - 1) / 0.2)
                                       * torch.sigmoid((1 - x0[0]) / 0.2) / 0.2), rtol=1e-12, atol=1e-12)


def test_gains_and_defaults():
    assert ablation_gains("none") == (1.0, 1.0)
    assert ablation_gains("no_intra") == (1.0, 0.0)
    assert ablation_gains("no_spike_timing") == (0.0, 1.0)
    x, g = case(3)
    assert torch.equal(grad(x, g), grad(x, g, ablation="none"))  # the default is the rule, bit for bit
    assert TSSLNeuron().ablation == "none" and "ablation" not in repr(TSSLNeuron())
    assert "ablation='no_intra'" in repr(TSSLNeuron(ablation="no_intra"))


@pytest.mark.parametrize("ablation", ["no_intra", "no_spike_timing"])
def test_step_loop_equals_whole_sequence(ablation):
    x, g = case(4)
    k = lif_constants(x, TAU_M, TAU_S, THETA, reset="subtract", ablation=ablation)
    tr = forward_sequence(x, k)
    xs = x.clone().requires_grad_()
    state, spikes = initial_state(x[0]), []
    for t in range(x.shape[0]):
        (spike, _), state = tssl_step(xs[t], state, tr.u[t], tr.du[t], tr.o[t], None, k)
        spikes.append(spike)
    torch.stack(spikes).backward(g)
    xq = x.clone().requires_grad_()
    spikes_with_tssl_grad(xq, tr.u, tr.du, tr.o, k).backward(g)
    want = grad(x, g, reset="subtract", output="spike", ablation=ablation)
    torch.testing.assert_close(xs.grad, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xq.grad, want, rtol=1e-12, atol=1e-12)


REFUSED = [
    (dict(ablation="no_spike_timing", warmup=False), "warmup=False turns off"),
    (dict(ablation="no_intra", reset="none"), "reset='none' does not have"),
    (dict(ablation="no_warmup"), "its own option, warmup=False"),
    (dict(ablation=None), "unknown ablation None; expected one of 'none', 'no_intra'"),
]


@pytest.mark.parametrize("kw,msg", REFUSED, ids=["surrogate-only-without-warmup", "no-intra-without-reset",
                                                  "no-warmup-named-as-ablation", "none-object"])
def test_refused_where_meaningless(kw, msg):
    x, _ = case(5, T=3, n=2)
    k_kw = {key: v for key, v in kw.items() if key != "warmup"}
    for call in (lambda: tssl_lif(x, **kw), lambda: TSSLNeuron(**kw)):
        with pytest.raises(ValueError) as err:
            call()
        assert msg in str(err.value) and "\n" not in str(err.value)
    if "warmup" in kw:  # the constants alone are fine; the pair is refused where the warm-up is known
        k = lif_constants(x, **k_kw)
        o = forward_sequence(x, k)
        with pytest.raises(ValueError, match=msg):
            spikes_with_tssl_grad(x.clone().requires_grad_(), o.u, o.du, o.o, k, warmup=False)
        with pytest.raises(ValueError, match=msg):
            tssl_step(x[0], initial_state(x[0]), o.u[0], o.du[0], o.o[0], None, k, warmup=False)
    else:
        with pytest.raises(ValueError, match=msg):
            lif_constants(x, **k_kw)
    with pytest.raises(ValueError, match=msg):
        check_ablation(kw["ablation"], kw.get("reset", "zero"), kw.get("warmup", True))


def test_harness_option_and_refusal():
    from tssl_plugin.benchmarks.config import Config, config_problems
    from tssl_plugin.benchmarks import backends, models

    assert config_problems(Config(ablation="no_intra")) == []
    assert any("--ablation" in p for p in config_problems(Config(ablation="no_spike_timing", warmup=False)))
    assert any("--ablation" in p for p in config_problems(Config(ablation="bogus")))
    arch = models.make_arch("mlp", 3, [8])
    weights = models.initial_weights(arch, (16,), 0, 1.0)
    for name in ("native:tssl", "snntorch:tssl", "spikingjelly:tssl"):
        net = backends.BACKENDS[name].build(arch, (16,), weights, models.NeuronCfg(), ablation="no_spike_timing")
        assert {n.ablation for n in net.neurons()} == {"no_spike_timing"}, name
