"""snnTorch StateLeaky and LinearLeaky under convert: snnTorch's forward bit for bit, the core op's gradient
(``reset="none"``, ``1/tau_m = 1 - exp(-1/tau)``), snnTorch's membrane gradient, learn_beta, refusals, state."""
import copy
import io
import pickle
import warnings

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
if not hasattr(snn, "StateLeaky"):
    pytest.skip("this snnTorch has no StateLeaky (added in 1.0)", allow_module_level=True)

from tssl_plugin.adapters._convert import ADAPTER_WARMUP_FLOOR  # noqa: E402
from tssl_plugin.adapters.snntorch import TSSLLinearLeaky, TSSLStateLeaky, convert, revert  # noqa: E402
from tssl_plugin.functional import tssl_lif  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py

T, B, C = 12, 3, 5


def pair(make, dtype=torch.float32):
    """(host layer, converted twin with the host's weights)."""
    torch.manual_seed(3)
    ref = make().to(dtype)
    tst = copy.deepcopy(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these classes convert silently
        convert(nn.Sequential(tst))
    return ref, tst


def drive(dtype=torch.float64, seed=0, features=C, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, features, generator=g, dtype=dtype) * scale


def float32_grad(shape, seed=1):
    """An upstream gradient exact in float32: snnTorch's spikes are float32, so ``dL/dspk`` passes a float32 cast."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).double()


def core_grad(x, tau, gy, **kw):
    """``dL/dx`` of the core op on the recurrence the layer's convolution computes."""
    d = torch.exp(-1.0 / tau.detach().double())
    xc = x.detach().clone().requires_grad_()
    out = tssl_lif(xc, 1 / (1 - d), 3.0, 1.0, output="spike", reset="none", warmup_floor=ADAPTER_WARMUP_FLOOR, **kw)
    (g,) = torch.autograd.grad(out, xc, gy)
    return out, g


STATE = {
    "scalar-beta": lambda: snn.StateLeaky(beta=0.9, channels=1),
    "per-channel-beta": lambda: snn.StateLeaky(beta=torch.linspace(0.5, 0.95, C), channels=C),
    "threshold": lambda: snn.StateLeaky(beta=0.8, channels=1, threshold=0.7),
}


@pytest.mark.parametrize("row", sorted(STATE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_leaky_forward_is_snntorchs_bit_for_bit(row, dtype):
    ref, tst = pair(STATE[row], dtype)
    assert type(tst) is TSSLStateLeaky
    x = drive(dtype).requires_grad_()
    (s_ref, m_ref), (s_tst, m_tst) = ref(x), tst(x)
    assert s_ref.dtype == s_tst.dtype and m_ref.dtype == m_tst.dtype
    assert torch.equal(s_ref, s_tst) and torch.equal(m_ref, m_tst)
    assert 0 < s_tst.sum() < s_tst.numel()  # fires and stays silent somewhere
    assert torch.equal(tst.spk, s_tst)


@pytest.mark.parametrize("warmup", [True, False, "silent", "auto"])
@pytest.mark.parametrize("row", ["scalar-beta", "per-channel-beta"])
def test_state_leaky_spike_gradient_is_the_core_ops(row, warmup):
    _, tst = pair(STATE[row], torch.float64)
    tst.warmup = warmup
    x = drive().requires_grad_()
    spk, _ = tst(x)
    gy = float32_grad(spk.shape)
    (g,) = torch.autograd.grad(spk, x, gy)
    out, g_core = core_grad(x, tst.tau, gy, warmup="silent" if warmup == "auto" else warmup)
    assert torch.equal(out, spk.double())
    torch.testing.assert_close(g, g_core, rtol=1e-12, atol=1e-12)
    assert g.abs().max() > 0


def test_a_loss_on_the_membrane_gets_snntorchs_own_gradient():
    """Tutorial 8's loss is on the membrane alone: the converted layer's gradient is snnTorch's, exactly; a loss on
    both adds the TSSL-BP spike gradient to it."""
    ref, tst = pair(STATE["scalar-beta"], torch.float64)
    x = drive().requires_grad_()
    gm = float32_grad((T, B, C), seed=2)
    (g_ref,) = torch.autograd.grad(ref(x)[1], x, gm)
    spk, mem = tst(x)
    (g_tst,) = torch.autograd.grad(mem, x, gm)
    assert torch.equal(g_ref, g_tst)
    gy = float32_grad(spk.shape)
    spk, mem = tst(x)
    (g_both,) = torch.autograd.grad((spk, mem), x, (gy.float(), gm))
    _, g_core = core_grad(x, tst.tau, gy, warmup="silent")
    torch.testing.assert_close(g_both, g_ref + g_core, rtol=1e-12, atol=1e-12)


def test_learn_beta_gets_the_leak_currents_rule_gradient():
    """``tau`` learns through the leak current ``d mem[t-1]`` (``d = exp(-1/tau)``): ``dL/dtau = sum_t dL/dI[t]
    mem[t-1] dd/dtau`` with the rule's ``dL/dI``, as TSSLLeaky's ``learn_beta``; the input's gradient is unchanged."""
    make = lambda: snn.StateLeaky(beta=torch.full((C,), 0.85), channels=C, learn_beta=True)  # noqa: E731
    _, tst = pair(make, torch.float64)
    x = drive().requires_grad_()
    spk, mem = tst(x)
    gy = float32_grad(spk.shape)
    g_x, g_tau = torch.autograd.grad(spk, (x, tst.tau), gy)
    _, g_core = core_grad(x, tst.tau, gy, warmup="silent")
    torch.testing.assert_close(g_x, g_core, rtol=1e-12, atol=1e-12)
    tau = tst.tau.detach()
    previous = torch.cat((torch.zeros_like(mem[:1]), mem[:-1])).detach()
    expected = (g_core * previous).sum((0, 1)) * torch.exp(-1 / tau) / tau ** 2
    torch.testing.assert_close(g_tau, expected, rtol=1e-12, atol=1e-12)
    assert g_tau.abs().min() > 0


def test_linear_leaky_forward_and_gradients():
    """LinearLeaky: snnTorch's forward (its ``linear`` included) and the core op's gradient on the linear layer's
    output current, reaching the weights through autograd."""
    make = lambda: snn.LinearLeaky(beta=0.9, in_features=7, out_features=C)  # noqa: E731
    ref, tst = pair(make, torch.float64)
    assert type(tst) is TSSLLinearLeaky and set(tst.state_dict()) == set(ref.state_dict())
    x = drive(features=7, scale=4.0).requires_grad_()
    (s_ref, m_ref), (s_tst, m_tst) = ref(x), tst(x)
    assert torch.equal(s_ref, s_tst) and torch.equal(m_ref, m_tst) and torch.equal(tst.mem, m_tst)
    assert 0 < s_tst.sum() < s_tst.numel()
    gy = float32_grad(s_tst.shape)
    g_x, g_w = torch.autograd.grad(s_tst, (x, tst.linear.weight), gy)
    current = tst.linear(x.detach()).detach().requires_grad_()
    _, g_cur = core_grad(current, tst.tau, gy, warmup="silent")
    torch.testing.assert_close(g_x, g_cur @ tst.linear.weight.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_w, torch.einsum("tbo,tbi->oi", g_cur, x.detach()), rtol=1e-12, atol=1e-12)


def test_output_false_is_snntorchs_membrane_alone():
    """No spikes: the layer is snnTorch's, and the spike options snnTorch calls inert (it warns) are accepted until
    the layer is switched to emit spikes."""
    ref, tst = pair(lambda: snn.StateLeaky(beta=0.9, channels=1, output=False))
    x = drive(torch.float32).requires_grad_()
    assert torch.equal(ref(x), tst(x))
    with pytest.warns(UserWarning, match="unused when output=False"):
        inert = TSSLStateLeaky(beta=0.9, channels=1, output=False, surrogate_disable=True)
    assert torch.equal(inert(x), ref(x))
    inert.output = True
    with pytest.raises(ValueError, match="surrogate_disable"):
        inert(x)


def test_tutorial_8s_network_converts_with_one_line_and_trains():
    """snnTorch tutorial 8's network (784-1000-10 in the tutorial; smaller here), its membrane loss, one Adam
    step: the converted network's loss is the host's at the start, and its hidden layer gets TSSL-BP's gradient."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(20, 30), snn.StateLeaky(beta=0.95, channels=1)
            self.fc2, self.lif2 = nn.Linear(30, 4), snn.StateLeaky(beta=0.95, channels=1)

        def forward(self, x):
            spk1, _ = self.lif1(self.fc1(x))
            return self.lif2(self.fc2(spk1))

    host = Net()
    net = convert(copy.deepcopy(host))
    x = torch.rand(5, 8, 20).expand(5, 8, 20) * 2
    y = torch.randint(0, 4, (8,))
    loss = lambda m: sum(nn.functional.cross_entropy(m(x)[1][t], y) for t in range(5))  # noqa: E731
    l_host, l_net = loss(host), loss(net)
    assert torch.equal(l_host, l_net)
    l_host.backward()
    l_net.backward()
    assert torch.equal(host.fc2.weight.grad, net.fc2.weight.grad)  # the output membrane's gradient: snnTorch's
    assert not torch.equal(host.fc1.weight.grad, net.fc1.weight.grad)  # through the hidden spikes: TSSL-BP's
    assert net.fc1.weight.grad.abs().max() > 0


def test_refusals_name_the_option_and_the_fix():
    with pytest.raises(ValueError, match="graded_spikes_factor"):
        convert(nn.Sequential(snn.StateLeaky(beta=0.9, channels=1, graded_spikes_factor=2.0)))
    with pytest.raises(ValueError, match="learn_threshold"):
        convert(nn.Sequential(snn.StateLeaky(beta=0.9, channels=1, learn_threshold=True)))
    layer = convert(nn.Sequential(snn.StateLeaky(beta=0.9, channels=1, kernel_truncation_steps=4)))[0]
    with pytest.raises(ValueError, match=r"kernel_truncation_steps=4 < T=12.*kernel_truncation_steps=None"):
        layer(drive(torch.float32))
    short = torch.rand(4, B, C)
    ref = snn.StateLeaky(beta=0.9, channels=1, kernel_truncation_steps=4)
    assert all(torch.equal(a, b) for a, b in zip(ref(short), layer(short)))  # truncating nothing: accepted
    with pytest.raises(ValueError, match="beta > 1"):
        convert(nn.Sequential(snn.StateLeaky(beta=1.5, channels=1)))[0](short)
    with pytest.raises(ValueError, match="surrogate_disable"):
        TSSLStateLeaky(beta=0.9, channels=1, surrogate_disable=True)


def test_spike_grad_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="spike_grad is ignored"):
        TSSLStateLeaky(beta=0.9, channels=1, spike_grad=snn.surrogate.fast_sigmoid())


def test_revert_checkpoints_and_pickling():
    ref, tst = pair(STATE["per-channel-beta"])
    assert set(tst.state_dict()) == set(ref.state_dict())
    twin = snn.StateLeaky(beta=torch.full((C,), 0.5), channels=C)
    twin.load_state_dict(tst.state_dict())
    assert torch.equal(twin.tau, ref.tau)
    x = drive(torch.float32)
    loaded = pickle.loads(pickle.dumps(tst))
    buf = io.BytesIO()
    torch.save(tst, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    for other in (loaded, saved, copy.deepcopy(tst)):
        assert type(other) is TSSLStateLeaky and other.warmup == tst.warmup
        assert all(torch.equal(a, b) for a, b in zip(other(x), ref(x)))
    revert(nn.Sequential(tst))
    assert type(tst) is snn.StateLeaky and "warmup" not in tst.__dict__


def test_no_gradient_needed_returns_the_hosts_spikes():
    ref, tst = pair(STATE["scalar-beta"])
    x = drive(torch.float32)
    with torch.no_grad():
        s, m = tst(x)
    assert not s.requires_grad and torch.equal(s, ref(x)[0])
