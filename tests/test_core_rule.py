"""tssl_plugin.rule is the public home of the rule; the old import paths name the same objects."""
import re
from pathlib import Path

import pytest
import torch

import tssl_plugin
from tssl_plugin import functional, rule
from tssl_plugin._impl import _params, reference


def test_subtracted_next_is_what_a_spike_removes_from_the_next_membrane():
    """beta theta for subtract (removed, then leaked), theta for subtract_after_leak, 0 otherwise: the value the
    kernels' row threshold_x_membrane_decay holds for subtract."""
    import torch

    x = torch.zeros(2, 3, dtype=torch.float64)
    theta = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    const = lambda reset: rule.lif_constants(x, tau_m=4.0, threshold=theta, reset=reset)  # noqa: E731
    assert torch.equal(rule.subtracted_next(const("subtract")), (1 - 1 / 4.0) * theta)
    assert torch.equal(rule.subtracted_next(const("subtract_after_leak")), theta)
    assert rule.subtracted_next(const("zero")) == 0.0 and rule.subtracted_next(const("none")) == 0.0
    k = rule.lif_constants(x, tau_m=4.0, threshold=theta, reset="subtract")
    table, _ = _params.pack_params(k, x)
    assert torch.equal(table[_params.ROW["threshold_x_membrane_decay"]], rule.subtracted_next(k))


def test_names_stay_importable_where_they_were():
    for name in ("LIFConstants", "RESETS", "SENSITIVITY_CAP", "WARMUP_WIDTH", "Param"):
        assert getattr(reference, name) is getattr(rule, name), name
    for name in ("LIFConstants", "lif_constants", "RESETS", "OUTPUTS"):
        assert getattr(functional, name) is getattr(rule, name), name
    for name in ("carry_step", "trace_step", "spike_trace", "forward_step"):
        assert callable(getattr(reference, name))
    assert callable(functional.spikes_with_tssl_grad)
    assert tssl_plugin.rule is rule


def test_warmup_level_is_one_over_four_tau_s():
    assert rule.warmup_level(3.0) == 1.0 / 12.0
    import torch

    k = rule.lif_constants(torch.zeros(2, 3), tau_s=torch.tensor([2.0, 3.0, 4.0]))
    torch.testing.assert_close(k.warmup_level, torch.tensor([1 / 8, 1 / 12, 1 / 16]))


def _row_names_used(text):
    return set(re.findall(r"\bROW_([A-Z][A-Z_]*[A-Z])\b", text))


def test_the_c_kernels_read_every_row_of_the_table_by_its_one_name():
    """The rows the C kernels name are exactly _params.ROWS (a row added to ROWS and forgotten in the kernels, or
    a kernel naming a row ROWS lacks, fails), and each comes as a build flag; the width and the cap are rows,
    never compile-time constants."""
    csrc = Path(_params.__file__).parent / "csrc"
    c_text = "".join(p.read_text() for p in sorted(csrc.glob("*.[ch]")))
    assert _row_names_used(c_text) == {name.upper() for name in _params.ROWS}
    flags = _params.c_defines()
    assert {f.split("=")[0] for f in flags if f.startswith("-DROW_")} == {f"-DROW_{n.upper()}" for n in _params.ROWS}
    assert not any(f.startswith(("-DWARMUP_WIDTH", "-DSENSITIVITY_CAP")) for f in flags)


def test_the_triton_kernels_read_every_row_of_the_table_by_its_one_name():
    """The same for the Triton kernels, whose constexpr row numbers must be those of _params.ROW."""
    pytest.importorskip("triton")
    from tssl_plugin._impl import triton_impl

    kernels = Path(triton_impl.__file__).read_text().split("@triton.jit", 1)[1]
    assert _row_names_used(kernels) == {name.upper() for name in _params.ROWS}
    for name in _params.ROWS:
        assert getattr(triton_impl, f"ROW_{name.upper()}").value == _params.ROW[name], name


def test_warmup_width_is_a_constant_of_the_layer_and_a_row_of_the_table():
    import torch

    x = torch.zeros(2, 3, dtype=torch.float64)
    k = rule.lif_constants(x)
    assert k.warmup_width == rule.WARMUP_WIDTH == 0.2
    assert rule.LIFConstants(0.2, 1 / 3, 1.0, 1 / 12, "zero").warmup_width == 0.2  # positional, as before
    k = rule.lif_constants(x, threshold=torch.tensor([1.0, 0.5, 2.0]), warmup_width=0.7)
    assert k.warmup_width == 0.7
    table, per_neuron = _params.pack_params(k, x)
    assert per_neuron and table[_params.ROW["warmup_width"]].tolist() == [0.7, 0.7, 0.7]
    table, per_neuron = _params.pack_params(rule.lif_constants(x, warmup_width=3), x)
    assert not per_neuron and table[_params.ROW["warmup_width"]].item() == 3.0


def _fires_once_then_stays_silent(warmup):
    """Input gradient of one neuron (tau_m 5, tau_s 3, T 5, reset to zero, spike output) that fires at step 1 and
    stays below the threshold at steps 2-4, under an error asking for a spike at every step (dL/do = -1)."""
    x = torch.tensor([0.6, 0.6, 0.3, 0.3, 0.3], dtype=torch.float64).view(5, 1).requires_grad_()
    o = functional.tssl_lif(x, 5.0, 3.0, 1.0, output="spike", warmup=warmup, impl="reference")
    assert o.flatten().tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    (g,) = torch.autograd.grad(o, x, -torch.ones_like(o))
    return g.flatten()


def test_the_trace_gate_leaves_the_steps_after_a_spike_without_gradient():
    """The cause of the converted SpikingJelly CNN's drift (docs/algorithm.md, "The warm-up gate"): under the
    reference's gate the trace stays above 1/(4 tau_s) for the rest of a T = 5 window after a spike, so the error at
    the steps where a spike is missing reaches the input only at and before the spike it already has."""
    g = _fires_once_then_stays_silent(True)
    assert g[2:].abs().max() == 0 and g[1] < 0


def test_the_silent_gate_gives_every_step_without_a_spike_the_warm_up_surrogate():
    """``warmup="silent"``: the same spike-step gradient, and the warm-up surrogate (asking for more input: the error
    is negative) at the silent steps after the spike; False and True keep their meaning."""
    trace, silent, off = (_fires_once_then_stays_silent(w) for w in ("trace", "silent", False))
    assert torch.equal(trace, _fires_once_then_stays_silent(True))
    assert silent[1] == trace[1] and (silent[2:] < 0).all()
    assert off[2:].abs().max() == 0 and off[0] != silent[0]  # step 0: the warm-up under both gates, none without
    k = rule.lif_constants(torch.zeros(1, 1), warmup_gate="silent")
    assert k.warmup_gate == "silent" and k.warmup_level == rule.warmup_level(3.0)
    assert rule.warmup_gate("silent") == "silent" and rule.warmup_gate(True) == "trace"
    assert rule.warmup_gate(False) is None


def test_the_auto_gate_is_silent_where_the_neurons_leak():
    """``"auto"`` (the adapters' default): ``"silent"`` for leaky neurons, the reference's ``"trace"`` for
    integrate-and-fire ones (no leak anywhere in the layer), resolved when the constants are built."""
    x = torch.zeros(2, 3)
    assert rule.lif_constants(x, tau_m=5.0, warmup_gate="auto").warmup_gate == "silent"
    assert rule.lif_constants(x, tau_m=float("inf"), warmup_gate="auto").warmup_gate == "trace"
    assert rule.lif_constants(x, tau_m=torch.tensor([float("inf"), 4.0, float("inf")]), warmup_gate="auto").warmup_gate == "silent"
    assert rule.lif_constants(x, tau_m=float("inf"), warmup_gate="silent").warmup_gate == "silent"
    if_neuron = _fires_once_then_stays_silent  # the same neuron as above with tau_m 5: "auto" is "silent" there
    assert torch.equal(if_neuron("auto"), if_neuron("silent"))


X_FAR = [-4.0, 0.0, 0.0, 0.0, 2.5]


def _far_below_gradient(**kw):
    """dL/dx of one silent neuron whose membrane is 0.14 to 5 below the threshold (1) at steps 0-4, upstream 1."""
    x = torch.tensor(X_FAR, dtype=torch.float64).reshape(5, 1).requires_grad_()
    o = functional.tssl_lif(x, output="spike", **kw)
    assert o.sum() == 0
    (g,) = torch.autograd.grad(o, x, torch.ones_like(o))
    return g.flatten()


@pytest.mark.parametrize("width", [0.2, 0.05])
def test_the_reference_warm_up_has_a_floor_far_below_the_threshold(width):
    """Issue 19 item 3, the cause of the converted SpikingJelly CNN's drift (docs/algorithm.md, "The warm-up
    floor"): the reference clamps the sigmoid's argument at 8 widths, so a neuron however far below the threshold
    passes ``sigma'(8)/w`` of its error to its input (the narrower the surrogate, the larger). Summed over a layer's
    silent neurons that is a straight-through gradient. ``warmup_floor=False`` clamps at 40 widths instead: the
    surrogate decays to zero (``sigma'(40) ~ 4e-18``), and near the threshold nothing changes."""
    e = torch.exp(torch.tensor(-8.0, dtype=torch.float64))
    floor = e / (1 + e) ** 2 / width  # sigma'(8) / w
    with_floor = _far_below_gradient(warmup_width=width)
    without = _far_below_gradient(warmup_width=width, warmup_floor=False)
    u, v = [], 0.0
    for x in X_FAR:  # the membrane, beta 0.8, never reset
        v = 0.8 * v + x
        u.append(v)
    u = torch.tensor(u, dtype=torch.float64)
    far = (1.0 - u) / width > 8
    assert far.any() and (~far).any()
    torch.testing.assert_close(with_floor[far], floor.expand(int(far.sum())), rtol=1e-12, atol=0)
    z = torch.exp(-((1.0 - u[far]) / width).clamp(max=rule.WARMUP_BOUND_NO_FLOOR))  # decays with the distance
    torch.testing.assert_close(without[far], z / (1 + z) ** 2 / width, rtol=1e-9, atol=0)
    assert (without[far] < floor / 1000).all()
    torch.testing.assert_close(without[~far], with_floor[~far], rtol=1e-12, atol=0)  # unchanged near it
    k = rule.lif_constants(torch.zeros(1, 1), warmup_floor=False)
    assert rule.warmup_bound(k) == rule.WARMUP_BOUND_NO_FLOOR and rule.warmup_bound(k._replace(warmup_floor=True)) == 8


def test_warmup_floor_must_be_a_bool():
    with pytest.raises(TypeError, match="warmup_floor"):
        functional.tssl_lif(torch.zeros(2, 3), warmup_floor="no")
    with pytest.raises(TypeError, match="warmup_floor"):
        tssl_plugin.TSSLNeuron(warmup_floor=1)
    assert "warmup_floor=False" in repr(tssl_plugin.TSSLNeuron(warmup_floor=False))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_the_interpolated_crossing_by_hand(reset):
    """One neuron, tau_m 4 (beta 0.75), x = (0.6, 0.9), dL/do = (0, 1), no warm-up: it fires at step 1 only, with
    du = 0.9 - 0.6/4 = 0.75 and u = 1.35. The reference's sensitivity is c = 1/du; ``crossing="interpolated"``
    multiplies it by the fraction of the rise spent below the threshold, phi = (1 - 0.6)/0.75 = 1 - 0.35/0.75. Step 0
    has no spike, so it gets the carry beta c (docs/algorithm.md, "The interpolated crossing")."""
    x = torch.tensor([[0.6], [0.9]], dtype=torch.float64, requires_grad=True)
    g_out = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    du, u = 0.9 - 0.6 / 4, 0.6 * 0.75 + 0.9
    phi = (1.0 - (u - du)) / du
    assert abs(phi - (1 - 0.35 / 0.75)) < 1e-12
    for crossing, c in (("step", 1 / du), ("interpolated", phi / du)):
        o = functional.tssl_lif(x, 4.0, reset=reset, output="spike", warmup=False, crossing=crossing)
        assert o.flatten().tolist() == [0.0, 1.0]
        (gx,) = torch.autograd.grad(o, x, g_out)
        torch.testing.assert_close(gx.flatten(), torch.tensor([0.75 * c, c], dtype=torch.float64), rtol=1e-14, atol=0)
    assert functional.tssl_lif(x, crossing="step").equal(functional.tssl_lif(x))  # the default is the reference's


def test_the_interpolated_crossing_never_raises_a_sensitivity():
    """phi is in [0, 1] at every crossing: on random sequences the interpolated gradient at a spike step is at most
    the reference's, equal where a spike barely crossed, and the two agree wherever no spike is involved."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(30, 200, generator=gen, dtype=torch.float64) * 2.0).requires_grad_()
    grads = {}
    for crossing in rule.CROSSINGS:
        o = functional.tssl_lif(x, output="spike", warmup=False, crossing=crossing)
        gy = torch.zeros_like(o)
        gy[-1] = 1.0  # the last step only: no carry from later spikes, dL/dx[T-1] = c[T-1]
        (grads[crossing],) = torch.autograd.grad(o, x, gy)
    step, interp = grads["step"][-1], grads["interpolated"][-1]
    assert (interp <= step).all() and (interp >= 0).all() and (interp < step).any() and (step > 0).any()
    assert torch.equal(grads["step"][-1][step == 0], interp[step == 0])


def test_crossing_must_be_a_known_name():
    with pytest.raises(ValueError, match="crossing"):
        functional.tssl_lif(torch.zeros(2, 3), crossing="linear")
    with pytest.raises(ValueError, match="crossing"):
        tssl_plugin.TSSLNeuron(crossing=None)
    assert "crossing='interpolated'" in repr(tssl_plugin.TSSLNeuron(crossing="interpolated"))
    assert "crossing" not in repr(tssl_plugin.TSSLNeuron())
