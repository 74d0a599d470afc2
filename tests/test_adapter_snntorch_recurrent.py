"""snnTorch RLeaky, RSynaptic, Lapicque, Alpha and user subclasses under convert: bit-identical forward, the
core op's gradients (the recurrent path carrying TSSL-BP's spike gradient), state, refusals."""
import copy
import io
import warnings

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")

from tssl_plugin.adapters._convert import sensitivity_cap_for  # noqa: E402
from tssl_plugin.adapters._convert import ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, crossing_for
from tssl_plugin.adapters._snntorch_forward import core_reset  # noqa: E402
from tssl_plugin.adapters.snntorch import (TSSLLapicque, TSSLLeaky, TSSLRLeaky, TSSLRSynaptic, convert,  # noqa: E402
                                           revert)
from tssl_plugin.functional import tssl_lif  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py

T = 16


def run(layer, x):
    """snnTorch's explicit-state step loop for any of the three classes: stacked (spk, [syn,] mem)."""
    state = layer.reset_mem()
    state = state if isinstance(state, tuple) else (state,)
    out = []
    for t in range(x.shape[0]):
        res = layer(x[t], *state)
        state = res if isinstance(layer, (snn.RLeaky, snn.RSynaptic)) else res[1:]  # they take spk back
        out.append(res)
    return tuple(torch.stack(z) for z in zip(*out))


def pair(make, dtype=torch.float32):
    """(host layer, converted twin with the host's weights)."""
    torch.manual_seed(3)
    ref = make().to(dtype)
    torch.manual_seed(3)
    tst = make().to(dtype)
    tst.load_state_dict(ref.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # supported rows convert silently
        convert(nn.Sequential(tst))
    return ref, tst


ROWS = {
    "rleaky-linear": (lambda: snn.RLeaky(beta=0.8, linear_features=5), TSSLRLeaky),
    "rleaky-linear-nodelay": (lambda: snn.RLeaky(beta=0.8, linear_features=5, reset_delay=False), TSSLRLeaky),
    "rleaky-one-to-one": (lambda: snn.RLeaky(beta=0.8, all_to_all=False, V=torch.full((5,), 0.3)), TSSLRLeaky),
    "rleaky-zero-nodelay": (lambda: snn.RLeaky(beta=0.8, linear_features=5, reset_mechanism="zero",
                                               reset_delay=False), TSSLRLeaky),
    "rleaky-none": (lambda: snn.RLeaky(beta=0.8, linear_features=5, reset_mechanism="none"), TSSLRLeaky),
    "rsynaptic-linear": (lambda: snn.RSynaptic(alpha=0.6, beta=0.8, linear_features=5), TSSLRSynaptic),
    "rsynaptic-one-to-one": (lambda: snn.RSynaptic(alpha=0.6, beta=0.8, all_to_all=False, V=0.4), TSSLRSynaptic),
    "rsynaptic-none": (lambda: snn.RSynaptic(alpha=0.6, beta=0.8, linear_features=5, reset_mechanism="none"),
                       TSSLRSynaptic),
    "lapicque-beta": (lambda: snn.Lapicque(beta=0.9), TSSLLapicque),
    "lapicque-rc": (lambda: snn.Lapicque(R=2.0, C=3.0, time_step=0.5), TSSLLapicque),
    "lapicque-none": (lambda: snn.Lapicque(R=2.0, C=3.0, time_step=0.5, reset_mechanism="none"), TSSLLapicque),
}
INPUT_SCALE = {"lapicque": 6.0, "rsynaptic": 0.6, "rleaky": 0.9}


def _x(row, shape=(3, 5), dtype=torch.float32):
    torch.manual_seed(5)
    return torch.randn(T, *shape, dtype=dtype) * INPUT_SCALE[row.split("-")[0]]


@pytest.mark.parametrize("row", list(ROWS))
def test_forward_bit_identical_state_dict_and_revert(row):
    make, cls = ROWS[row]
    ref, tst = pair(make)
    assert type(tst) is cls
    assert list(tst.state_dict()) == list(ref.state_dict())
    x = _x(row)
    expected, got = run(ref, x), run(tst, x.clone().requires_grad_())
    for e, g in zip(expected, got):
        assert e.dtype == g.dtype and torch.equal(e, g.detach())
    assert 0 < float(expected[0].detach().mean()) < 1
    assert torch.equal(ref.reset, tst.reset)
    got[0].sum().backward()  # the gradient path exists
    revert(tst)
    assert type(tst) is type(ref) and "warmup" not in tst.__dict__
    assert torch.equal(run(tst, x)[0], expected[0])


def _core(x_leaf, layer, inv_tau_m, inv_tau_s, threshold=1.0):
    mode, reset_val = layer._mode()
    reset = core_reset(mode, layer.reset_delay, reset_val)
    return tssl_lif(x_leaf, 1 / inv_tau_m, 1 / inv_tau_s, threshold, output="spike", reset=reset, warmup=ADAPTER_WARMUP,
                    warmup_floor=ADAPTER_WARMUP_FLOOR, crossing=crossing_for(reset, None),
                    sensitivity_cap=sensitivity_cap_for(reset, None) / threshold)


def _dyadic(layer, x):
    """Weights and inputs on a 1/16 grid and beta = 0.5: the host's and the core op's float32 arithmetic are
    then exact, so both give the same spikes and the gradients can be compared."""
    with torch.no_grad():
        for p in layer.recurrent.parameters():
            p.copy_((p * 16).round() / 16)
    return (x * 16).round() / 16


RLEAKY_GRAD_ROWS = {
    "linear": dict(linear_features=5),
    "linear-nodelay": dict(linear_features=5, reset_delay=False),
    "one-to-one": dict(all_to_all=False, V=torch.tensor([0.25, -0.5, 0.75, 0.5, 1.0])),
    "zero-nodelay": dict(linear_features=5, reset_mechanism="zero", reset_delay=False),
    "none": dict(linear_features=5, reset_mechanism="none"),
    "conv": dict(conv2d_channels=2, kernel_size=3),
}


@pytest.mark.parametrize("row", list(RLEAKY_GRAD_ROWS))
def test_rleaky_gradients_are_the_core_ops_with_the_recurrent_spike_gradient(row):
    """The step loop's dL/dx equals the whole-sequence op's on the same input currents x + V(spk[t-1])
    given the same spike gradients G[t] = dL/dspk[t], which include V^T dL/dx[t+1] from the recurrent path;
    and V's weights get sum_t dL/dx[t+1] spk[t]^T."""
    torch.manual_seed(3)
    layer = TSSLRLeaky(beta=0.5, **RLEAKY_GRAD_ROWS[row])
    shape = (3, 2, 4, 4) if row == "conv" else (3, 5)
    # reset_delay=False, subtract: a membrane still above threshold after the subtraction is subtracted again
    # on the next step by snnTorch, not by the core's "subtract" (TSSLLeaky's mapping has the same limit);
    # a smaller input keeps this row's membranes below 2 thresholds
    x = _dyadic(layer, _x("rleaky", shape) * (0.6 if row == "linear-nodelay" else 1.5)).requires_grad_()
    spk, mem = layer.reset_mem()
    spikes = []
    for t in range(T):
        spk, mem = layer(x[t], spk, mem)
        spk.retain_grad()
        spikes.append(spk)
    g = torch.randn(T, *x.shape[1:], generator=torch.Generator().manual_seed(7))
    (torch.stack(spikes) * g).sum().backward()
    G = torch.stack([s.grad for s in spikes])
    assert not torch.equal(G, g)  # the recurrent path added to the spike gradient
    with torch.no_grad():
        prev = torch.cat([torch.zeros_like(spikes[0])[None], torch.stack(spikes[:-1])])
        current = x.detach() + torch.stack([layer.recurrent(p) for p in prev])
    leaf = current.clone().requires_grad_()
    out = _core(leaf, layer, 0.5, 1 / 3.0)
    assert torch.equal(out.detach(), torch.stack(spikes).detach()) and 0 < float(out.mean()) < 1
    (out * G).sum().backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, leaf.grad, rtol=1e-5, atol=1e-6)
    if row == "conv":
        return
    w = layer.recurrent.V if row == "one-to-one" else layer.recurrent.weight
    expect = (leaf.grad[1:].unsqueeze(-1) * prev[1:].unsqueeze(-2)).sum((0, 1))  # sum_t dL/dx[t] spk[t-1]^T
    if row == "one-to-one":
        expect = torch.diagonal(expect)
    torch.testing.assert_close(w.grad, expect, rtol=1e-5, atol=1e-6)


def test_rleaky_without_recurrence_is_leaky_learn_beta_included():
    """V = 0: an RLeaky is a Leaky; with learn_beta both give the same dL/dx and dL/dbeta (the leak-current
    rule), and the step loop equals TSSLLeaky.forward_sequence (the whole-sequence op)."""
    x = _x("rleaky", dtype=torch.float64)
    rl = TSSLRLeaky(beta=torch.tensor(0.8, dtype=torch.float64), all_to_all=False, V=0.0, learn_beta=True,
                    learn_recurrent=False)
    lk = TSSLLeaky(beta=torch.tensor(0.8, dtype=torch.float64), learn_beta=True)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    run(rl, xa)[0].pow(2).sum().backward()
    lk.forward_sequence(xb)[0].pow(2).sum().backward()
    assert xa.grad.abs().sum() > 0 and float(rl.beta.grad) != 0
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rl.beta.grad, lk.beta.grad, rtol=1e-10, atol=1e-12)


def test_rsynaptic_gradient_is_the_core_op_on_the_synaptic_current():
    """dL/dsyn from the core op given G; the filter (recurrent current inside it) is autograd."""
    _, layer = pair(ROWS["rsynaptic-linear"][0])  # float32: snnTorch's float32 spikes feed the recurrence
    x = _x("rsynaptic").requires_grad_()
    spk, syn, mem = layer.reset_mem()
    spikes, syns = [], []
    for t in range(T):
        spk, syn, mem = layer(x[t], spk, syn, mem)
        spk.retain_grad()
        spikes.append(spk)
        syns.append(syn)
    torch.stack(spikes).pow(2).sum().backward()
    G = torch.stack([s.grad for s in spikes])
    leaf = torch.stack(syns).detach().clone().requires_grad_()
    out = _core(leaf, layer, 1 - 0.8, 1 - 0.6)
    assert torch.equal(out.detach(), torch.stack(spikes).detach())
    (out * G).sum().backward()
    expect, carry = torch.zeros_like(x), torch.zeros_like(x[0])
    for t in reversed(range(T)):  # syn[t] = alpha syn[t-1] + x[t] + V(spk[t-1])  =>  dL/dx[t] = sum_k alpha^k dL/dsyn[t+k]
        carry = leaf.grad[t] + 0.6 * carry
        expect[t] = carry
    assert expect.abs().sum() > 0
    torch.testing.assert_close(x.grad, expect, rtol=1e-5, atol=1e-6)
    assert float(layer.tau_s) == pytest.approx(1 / 0.4)


@pytest.mark.parametrize("row", ["lapicque-rc", "lapicque-none"])
def test_lapicque_gradient_is_the_leaky_mapping(row):
    """Lapicque = Leaky with 1/tau_m = dt/(RC) on the current x dt/C: dL/dx = (dt/C) times the core op's."""
    _, layer = pair(ROWS[row][0], torch.float64)
    x = _x("lapicque", dtype=torch.float64).requires_grad_()
    spk = run(layer, x)[0]
    spk.double().pow(2).sum().backward()
    dt, R, C = 0.5, 2.0, 3.0
    leaf = (x.detach() * R * (1 / (R * C)) * dt).clone().requires_grad_()
    out = _core(leaf, layer, dt / (R * C), 1 / 3.0)
    assert torch.equal(out.detach().float(), spk.detach())
    (out * 2 * out.detach()).sum().backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, leaf.grad * dt / C, rtol=1e-10, atol=1e-12)


def test_init_hidden_output_and_host_errors():
    for make in (lambda: snn.RLeaky(beta=0.8, linear_features=4, init_hidden=True),
                 lambda: snn.RSynaptic(alpha=0.5, beta=0.8, linear_features=4, init_hidden=True, output=True),
                 lambda: snn.Lapicque(beta=0.9, init_hidden=True)):
        ref, tst = pair(make)
        x = torch.randn(6, 2, 4) * 3
        for t in range(6):
            a, b = ref(x[t]), tst(x[t])
            for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                assert torch.equal(u, v)
        with pytest.raises(TypeError):
            tst(x[0], torch.zeros(2, 4), torch.zeros(2, 4))


def test_copies_pickling_and_exclude():
    net = nn.Sequential(nn.Linear(5, 4), snn.RLeaky(beta=0.8, linear_features=4), nn.Linear(4, 4),
                        snn.RSynaptic(alpha=0.5, beta=0.8, linear_features=4), snn.Lapicque(beta=0.9))
    keys = list(net.state_dict())
    with pytest.raises(ValueError, match="no module named 'lif'"):
        convert(net, exclude="lif")
    convert(net, exclude=[net[3]])
    assert [type(m) for m in net] == [nn.Linear, TSSLRLeaky, nn.Linear, snn.RSynaptic, TSSLLapicque]
    convert(net)
    assert [type(m) for m in net][3:] == [TSSLRSynaptic, TSSLLapicque]
    assert list(net.state_dict()) == keys
    x = torch.randn(4, 3, 5) * 2
    spk, mem = net[1].reset_mem()
    for t in range(4):
        spk, mem = net[1](net[0](x[t]), spk, mem)  # spk and mem carry graphs
    twin = copy.deepcopy(net)
    buf = io.BytesIO()
    torch.save(net, buf)  # whole-model pickling (a plain snnTorch model fails here: its atan closure)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    for other in (twin, loaded):
        assert [type(m) for m in other] == [type(m) for m in net]
        assert torch.equal(run(other[1], x[..., :4])[0], run(net[1], x[..., :4])[0])
    revert(net)
    assert [type(m) for m in net][1:] == [snn.RLeaky, nn.Linear, snn.RSynaptic, snn.Lapicque]


def test_refusals_name_the_option_and_the_fix():
    with pytest.raises(ValueError, match=r"snn.RLeaky.*reset_mechanism='zero' with reset_delay=True.*"
                                         r"use reset_delay=False"):
        convert(nn.Sequential(snn.RLeaky(beta=0.8, linear_features=3, reset_mechanism="zero")))
    with pytest.raises(ValueError, match=r"snn.RSynaptic.*reset_mechanism='zero'.*use reset_mechanism='subtract' "
                                         r"or 'none'"):
        convert(nn.Sequential(snn.RSynaptic(alpha=0.5, beta=0.8, linear_features=3, reset_mechanism="zero")))
    with pytest.raises(ValueError, match="RSynaptic computes that correction on the forward's arguments"):
        convert(nn.Sequential(snn.RSynaptic(alpha=0.5, beta=0.8, linear_features=3, reset_delay=False)))
    with pytest.raises(ValueError, match=r"snn.Lapicque.*reset_mechanism='zero':"):
        TSSLLapicque(beta=0.9, reset_mechanism="zero")
    with pytest.raises(ValueError, match=r"time_step/\(R\*C\) = 2 is outside \(0, 1\]"):
        convert(nn.Sequential(snn.Lapicque(R=1.0, C=1.0, time_step=2.0)))
    with pytest.raises(ValueError, match="surrogate_disable"):
        TSSLRLeaky(beta=0.5, all_to_all=False, surrogate_disable=True)
    layer = TSSLRLeaky(beta=0.8, linear_features=3, reset_mechanism="zero", reset_delay=False)
    layer.reset_delay = True  # switched after construction: refused at the next step
    with pytest.raises(ValueError, match="TSSLRLeaky: reset_mechanism='zero' with reset_delay=True"):
        layer(torch.ones(2, 3))


def test_alpha_and_other_neurons_are_left_with_their_reason():
    net = nn.Sequential(snn.Leaky(beta=0.9), snn.Alpha(alpha=0.9, beta=0.8), snn.SLSTM(4, 4))
    with pytest.warns(UserWarning) as rec:
        convert(net)
    msg = next(str(w.message) for w in rec if "left unchanged" in str(w.message))
    assert "1 (Alpha: refused: its membrane is the difference of two exponentially filtered currents" in msg
    assert "2 (SLSTM: refused:" in msg and type(net[1]) is snn.Alpha
    with pytest.raises(TypeError, match="Alpha: refused"):
        convert(nn.Sequential(snn.Alpha(alpha=0.9, beta=0.8)), strict=True)


class PlainSubclass(snn.Leaky):
    """A user's subclass that adds a method only: converts."""

    def describe(self):
        return "mine"


class OwnForward(snn.Leaky):
    def forward(self, input_, mem=None):
        return super().forward(input_ * 2, mem)


class OwnState(snn.RLeaky):
    def _base_sub(self, input_):
        return super()._base_sub(input_) * 0.5


@pytest.fixture
def host_instances():
    """Restore snnTorch's global neuron list afterwards: snnTorch's DeltaLeaky keeps ``mem = None``, which breaks
    ``snntorch.utils.reset`` (``Leaky.reset_hidden``) for every later test in the process."""
    saved = list(snn.SpikingNeuron.instances)
    yield
    snn.SpikingNeuron.instances[:] = saved


def test_subclasses_convert_unless_they_override_the_forward(host_instances):
    net = nn.Sequential(PlainSubclass(beta=0.8), OwnForward(beta=0.8), OwnState(beta=0.8, linear_features=3),
                        snn.DeltaLeaky(beta=0.8))
    with pytest.warns(UserWarning) as rec:
        convert(net)
    msg = next(str(w.message) for w in rec if "left unchanged" in str(w.message))
    assert "OwnForward: a subclass of Leaky that overrides forward() (OwnForward.forward)" in msg
    assert "OwnState: a subclass of RLeaky that overrides _base_sub() (OwnState._base_sub)" in msg
    assert "DeltaLeaky: refused: it fires where the membrane's change" in msg  # snnTorch's own: the reason in its terms
    layer = net[0]
    assert isinstance(layer, TSSLLeaky) and isinstance(layer, PlainSubclass) and layer.describe() == "mine"
    assert type(net[1]) is OwnForward
    ref = PlainSubclass(beta=0.8)
    x = torch.randn(T, 2, 3) * 2
    xs = x.clone().requires_grad_()
    assert torch.equal(run(ref, x)[0], run(layer, xs)[0])
    run(layer, xs)[0].pow(2).sum().backward()
    xq = x.clone().requires_grad_()
    TSSLLeaky(beta=0.8).forward_sequence(xq)[0].pow(2).sum().backward()
    torch.testing.assert_close(xs.grad, xq.grad, rtol=1e-5, atol=1e-6)  # the Leaky rule
    assert type(copy.deepcopy(net)[0]) is type(layer)
    buf = io.BytesIO()
    torch.save(net[:1], buf)  # (the unconverted snnTorch layers cannot be pickled: their atan closure)
    buf.seek(0)
    assert type(torch.load(buf, weights_only=False)[0]) is type(layer)
    convert(net[:1])  # again: new options, no warning
    revert(net)
    assert type(net[0]) is PlainSubclass
    with pytest.raises(TypeError, match="overrides forward"):
        convert(nn.Sequential(OwnForward(beta=0.8)), strict=True)
