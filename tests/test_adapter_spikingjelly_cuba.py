"""SpikingJelly CUBALIFNode -> TSSLCUBALIFNode: bit-identical forward, the paper's network, state, errors."""
import copy
import io

import pytest
import torch

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402

from tssl_plugin import psp  # noqa: E402
from tssl_plugin.adapters._convert import ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, crossing_for
from tssl_plugin.adapters import spikingjelly as adapter  # noqa: E402
from tssl_plugin.adapters.spikingjelly import SPIKINGJELLY_API, convert, revert  # noqa: E402
from tssl_plugin.adapters._convert import sensitivity_cap_for  # noqa: E402
from tssl_plugin.functional import tssl_lif  # noqa: E402
from tssl_plugin.loss import kernel_loss  # noqa: E402

V2 = SPIKINGJELLY_API == "2"
needs_v2 = pytest.mark.skipif(not V2, reason="CUBALIFNode exists in SpikingJelly 2.x only")
from paper_network import TAU_M, TAU_S, THETA, T, native, paper_pair  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


from sj_run import run  # noqa: E402


def test_no_cuba_message_names_the_version():
    with pytest.raises(ImportError, match="needs SpikingJelly 2.x"):
        adapter.__getattr__("TSSLCUBALIFNode")
    with pytest.raises(AttributeError):
        adapter.__getattr__("NoSuchNode")
    if not V2:
        with pytest.raises(ImportError, match="0.0.0.0.14 has no current-based LIF"):
            from tssl_plugin.adapters.spikingjelly import TSSLCUBALIFNode  # noqa: F401


@needs_v2
@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.2], ids=["hard0", "soft", "hard-0.2"])
def test_forward_bit_identical_and_step_modes_agree(mode, v_reset):
    torch.manual_seed(0)
    x = torch.randn(12, 3, 5) * 0.8
    kw = dict(c_decay=0.6, v_decay=0.8, v_threshold=1.0, v_reset=v_reset)
    ref, tst = neuron.CUBALIFNode(**kw), neuron.CUBALIFNode(**kw)
    ref.step_mode = tst.step_mode = mode
    ref.store_v_seq = tst.store_v_seq = True
    convert(torch.nn.Sequential(tst))
    assert type(tst) is adapter.TSSLCUBALIFNode
    xt = x.clone().requires_grad_()
    expected, got = run(ref, x, mode), run(tst, xt, mode)
    assert torch.equal(expected, got) and 0 < float(expected.mean()) < 1
    assert torch.equal(ref.v, tst.v.detach()) and torch.equal(ref.c, tst.c.detach())
    assert torch.equal(ref.v_seq, tst.v_seq.detach())
    got.sum().backward()
    other = neuron.CUBALIFNode(**kw)
    other.step_mode = "m" if mode == "s" else "s"
    convert(torch.nn.Sequential(other))
    xo = x.clone().requires_grad_()
    run(other, xo, other.step_mode).sum().backward()
    assert xt.grad.abs().sum() > 0
    torch.testing.assert_close(xt.grad, xo.grad, rtol=1e-5, atol=1e-6)


@needs_v2
@pytest.mark.parametrize("v_reset", [0.0, None, -0.2], ids=["hard0", "soft", "hard-0.2"])
def test_membrane_part_is_the_core_op_on_the_synaptic_current(v_reset):
    """dL/dc is the core op's gradient for input c (threshold v_threshold - V_r, 1/tau_m = 1 - v_decay,
    tau_s = 1/(1 - c_decay)); dL/dx follows through the filter c[t] = c_decay c[t-1] + x[t]."""
    torch.manual_seed(1)
    c_decay, v_decay = 0.7, 0.8
    x = (torch.randn(T, 4, 5, dtype=torch.float64) * 0.9).requires_grad_()
    node = convert(torch.nn.Sequential(neuron.CUBALIFNode(c_decay, v_decay, 1.0, v_reset)))[0]
    node.step_mode = "m"
    spk = run(node, x, "m")
    g = torch.randn_like(spk)
    (spk * g).sum().backward()
    c = torch.zeros_like(x)
    for t in range(T):
        c[t] = (c[t - 1] if t else 0) * c_decay + x.detach()[t]
    vr = 0.0 if v_reset is None else v_reset
    c_leaf = c.clone().requires_grad_()
    reset = "subtract" if v_reset is None else "zero"
    out = tssl_lif(c_leaf - vr * (1 - v_decay), 1 / (1 - v_decay), 1 / (1 - c_decay), 1.0 - vr, output="spike",
                   warmup=ADAPTER_WARMUP, warmup_floor=ADAPTER_WARMUP_FLOOR, crossing=crossing_for(reset, None),
                   warmup_width=0.2 * (1.0 - vr),  # in units of the threshold
                   reset=reset, sensitivity_cap=sensitivity_cap_for(reset, None) / (1.0 - vr))
    assert torch.equal(out.detach(), spk)
    (out * g).sum().backward()
    expect, carry = torch.zeros_like(x), torch.zeros_like(x[0])
    for t in reversed(range(T)):
        carry = c_leaf.grad[t] + c_decay * carry
        expect[t] = carry
    assert expect.abs().sum() > 0
    torch.testing.assert_close(x.grad, expect, rtol=1e-10, atol=1e-12)


@needs_v2
@pytest.mark.parametrize("mode", ["s", "m"])
def test_converted_cuba_network_is_the_papers_network(mode):
    """CUBALIFNode(c_decay=1-1/tau_s, v_decay=1-1/tau_m, v_reset=0) with weights W/tau_s on the raw image is
    TSSL-BP's network with weights W on psp(image): the same spikes and dL/d(W/tau_s) = tau_s dL/dW
    (float64; SpikingJelly's spikes keep the input dtype, so the gradients agree to float64 rounding)."""
    img, w1, w2, labels = paper_pair()
    a1, a2, g1, g2 = native(img, w1, w2, labels)

    kw = dict(c_decay=1 - 1 / TAU_S, v_decay=1 - 1 / TAU_M, v_threshold=THETA, v_reset=0.0)
    net = torch.nn.Sequential(layer.Linear(10, 14, bias=False), neuron.CUBALIFNode(**kw),
                              layer.Linear(14, 4, bias=False), neuron.CUBALIFNode(**kw)).double()
    with torch.no_grad():
        net[0].weight.copy_(w1 / TAU_S)
        net[2].weight.copy_(w2 / TAU_S)
    functional.set_step_mode(net, mode)
    convert(net)
    x = img.expand(T, *img.shape).contiguous()
    if mode == "m":
        o1 = net[1](net[0](x))
        o2 = net[3](net[2](o1))
    else:
        o1 = torch.stack([net[1](net[0](x[t])) for t in range(T)])
        o2 = torch.stack([net[3](net[2](o1[t])) for t in range(T)])
    a2_host = psp(o2, TAU_S)
    kernel_loss(a2_host, labels, tau_s=TAU_S).backward()
    torch.testing.assert_close(psp(o1, TAU_S).detach(), a1.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(a2_host.detach(), a2.detach(), rtol=0, atol=1e-12)
    assert 0.05 < float(o1.detach().mean()) < 0.6 and 0.02 < float(o2.detach().mean()) < 0.8
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0
    torch.testing.assert_close(net[0].weight.grad, TAU_S * g1, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(net[2].weight.grad, TAU_S * g2, rtol=1e-9, atol=1e-12)


@needs_v2
def test_trace_constant_state_and_revert():
    node = neuron.CUBALIFNode(c_decay=0.75, v_decay=0.9)
    net = torch.nn.Sequential(layer.Linear(5, 4), node)
    keys = list(net.state_dict())
    convert(net, tau_s=7.0)
    assert node.tau_s == pytest.approx(4.0)  # 1/(1 - c_decay), not convert's 7
    assert list(net.state_dict()) == keys and "tau_s=4" in repr(node)
    x = torch.randn(3, 5)
    node(net[0](x))
    assert node.c.requires_grad  # the synaptic current carries its graph, as SpikingJelly's does
    twin = copy.deepcopy(net)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    for other in (twin, loaded):
        functional.reset_net(other)
        functional.reset_net(net)
        assert torch.equal(other(x), net(x))
    functional.reset_net(net)
    assert node.c == 0.0 and node._tssl_state is None
    revert(net)
    assert type(node) is neuron.CUBALIFNode and "warmup" not in node.__dict__


@needs_v2
def test_refused_options():
    with pytest.raises(ValueError, match=r"c_decay=1.0 must be in \[0, 1\)"):
        convert(torch.nn.Sequential(neuron.CUBALIFNode(c_decay=1.0)))
    with pytest.raises(ValueError, match=r"v_decay=0.0 must be in \(0, 1\]"):
        convert(torch.nn.Sequential(neuron.CUBALIFNode(v_decay=0.0)))
    with pytest.raises(ValueError, match="v_threshold=0.0 must be above v_reset"):
        adapter.TSSLCUBALIFNode(v_threshold=0.0)
    node = adapter.TSSLCUBALIFNode()
    node.c_decay = 1.5  # changed after construction: refused at the next step, naming c_decay
    with pytest.raises(ValueError, match="c_decay=1.5"):
        node(torch.ones(2, 3))
    with pytest.warns(UserWarning, match="surrogate_function is ignored"):
        adapter.TSSLCUBALIFNode(surrogate_function=sj.surrogate.ATan())


@needs_v2
def test_converted_cuba_network_learns_digits():
    """scikit-learn digits: a converted Linear-CUBALIF-Linear-CUBALIF network (the paper's constants,
    weights W/tau_s) reaches >= 75% test accuracy in 6 epochs with rate cross-entropy (chance 10%)."""
    pytest.importorskip("sklearn")
    from digits import digits_split

    X, y, train, test = digits_split()
    torch.manual_seed(0)
    kw = dict(c_decay=1 - 1 / TAU_S, v_decay=1 - 1 / TAU_M, v_threshold=1.0, v_reset=0.0)
    net = torch.nn.Sequential(layer.Linear(64, 64, bias=False), neuron.CUBALIFNode(**kw),
                              layer.Linear(64, 10, bias=False), neuron.CUBALIFNode(**kw))
    with torch.no_grad():
        for fc in (net[0], net[2]):
            fc.weight.normal_(0, (2 / fc.in_features) ** 0.5).div_(TAU_S)
    functional.set_step_mode(net, "m")
    convert(net)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(6):
        p = train[torch.randperm(len(train))]
        for i in range(0, len(p), 64):
            b = p[i:i + 64]
            functional.reset_net(net)
            out = net(X[b].expand(12, -1, -1))
            loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), y[b].repeat(12))
            opt.zero_grad()
            loss.backward()
            opt.step()
    functional.reset_net(net)
    with torch.no_grad():
        acc = float((net(X[test].expand(12, -1, -1)).sum(0).argmax(-1) == y[test]).float().mean())
    assert acc >= 0.75, acc
