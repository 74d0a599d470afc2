"""SpikingJelly's LIF family beyond LIFNode: SimpleLIFNode / SimpleIFNode (2.x) convert bit for bit with the core
op's gradients; exotic charges are left with a one-line reason; subclasses convert unless they override the forward."""
import copy
import io
import math
import warnings

import pytest
import torch
from torch import nn

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, neuron  # noqa: E402

from tssl_plugin.adapters import spikingjelly as adapter  # noqa: E402
from tssl_plugin.adapters._convert import ADAPTER_WARMUP
from tssl_plugin.adapters._convert import crossing_for, sensitivity_cap_for  # noqa: E402
from tssl_plugin.adapters.spikingjelly import SPIKINGJELLY_API, TSSLLIFNode, convert, revert  # noqa: E402
from tssl_plugin.functional import tssl_lif  # noqa: E402
import sj_run  # noqa: E402

V2 = SPIKINGJELLY_API == "2"
needs_v2 = pytest.mark.skipif(not V2, reason="SimpleLIFNode / SimpleIFNode exist in SpikingJelly 2.x only")

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


def run(node, x, mode):
    node.step_mode = mode
    return sj_run.run(node, x, mode)


SIMPLE = {  # (make, tau or None for IF, decay_input, v_reset)
    "lif-decay": (lambda: neuron.SimpleLIFNode(tau=2.5, decay_input=True), 2.5, True, 0.0),
    "lif-nodecay": (lambda: neuron.SimpleLIFNode(tau=2.5, decay_input=False), 2.5, False, 0.0),
    "lif-reset-0.2": (lambda: neuron.SimpleLIFNode(tau=2.5, decay_input=True, v_reset=-0.2), 2.5, True, -0.2),
    "if-hard": (lambda: neuron.SimpleIFNode(), None, False, 0.0),
    "if-soft": (lambda: neuron.SimpleIFNode(v_reset=None), None, False, None),
}


@needs_v2
@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("row", list(SIMPLE))
def test_simple_nodes_forward_bit_identical_gradient_is_the_core_ops(row, mode):
    """Spikes and v bit for bit the node's own (float32); float64: dL/dx equals tssl_lif on the same (scaled)
    currents, the mapping of LIFNode / IFNode (its charge is theirs in another order of operations)."""
    make, tau, decay_input, v_reset = SIMPLE[row]
    ref, tst = make(), make()
    keys = list(tst.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(nn.Sequential(tst))
    assert type(tst).__name__ == "TSSL" + type(ref).__name__ and list(tst.state_dict()) == keys
    gen = torch.Generator().manual_seed(7)
    vr = 0.0 if v_reset is None else v_reset
    amp = (0.7 if tau is None else 1.6) * (1.0 - vr)
    x = torch.rand(16, 4, 9, generator=gen) * amp - 0.1
    xt = x.clone().requires_grad_()
    expected, got = run(ref, x, mode), run(tst, xt, mode)
    assert torch.equal(expected, got.detach()) and torch.equal(ref.v, tst.v.detach())
    assert 0 < float(expected.mean()) < 0.7
    x64 = x.double().requires_grad_()
    gy = torch.randn(16, 4, 9, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad(run(tst, x64, mode), x64, gy)
    if vr != 0:  # Simple* nodes start at v = 0, not at v_reset: a start the core op (u[0] = 0) does not have
        assert g.abs().sum() > 0 and bool(torch.isfinite(g).all())
        return
    scale = 1.0 / tau if (tau is not None and decay_input) else 1.0
    reset = "subtract" if v_reset is None else "zero"
    o_core = tssl_lif(x64 * scale, tau or math.inf, 3.0, 1.0 - vr, output="spike", reset=reset, warmup=ADAPTER_WARMUP,
                      sensitivity_cap=sensitivity_cap_for(reset, None, leaky=tau is not None) / (1.0 - vr),
                      crossing=crossing_for(reset, None, leaky=tau is not None))
    (g_core,) = torch.autograd.grad(o_core, x64, gy)
    assert torch.equal(run(ref, x64, mode), o_core.detach())
    assert g.abs().sum() > 0
    torch.testing.assert_close(g, g_core, rtol=1e-10, atol=1e-12)
    revert(tst)
    assert type(tst) is type(ref) and "warmup" not in tst.__dict__
    assert torch.equal(run(tst, x, mode), expected)


@needs_v2
def test_simple_nodes_copies_pickling_exclude_and_membrane_guard():
    net = nn.Sequential(nn.Linear(5, 4), neuron.SimpleLIFNode(tau=2.0, decay_input=True), nn.Linear(4, 3),
                        neuron.SimpleIFNode())
    convert(net, exclude="3")
    assert type(net[1]) is adapter.TSSLSimpleLIFNode and type(net[3]) is neuron.SimpleIFNode
    convert(net)
    x = torch.randn(6, 2, 5) * 2
    functional.reset_net(net)
    for t in range(6):
        net(x[t])
    twin = copy.deepcopy(net)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    for other in (twin, loaded):
        assert [type(m) for m in other] == [type(m) for m in net]
        assert torch.equal(run(other, x, "s"), run(net, x, "s"))
    xs = x.clone().requires_grad_()
    run(net[1], xs, "s")
    with pytest.raises(RuntimeError, match="a loss reached the membrane potential"):
        net[1].v.sum().backward()
    revert(net)
    assert type(net[1]) is neuron.SimpleLIFNode and type(net[3]) is neuron.SimpleIFNode


def test_exotic_charges_are_left_with_a_one_line_reason():
    nodes = {"QIFNode": "quadratic charge", "EIFNode": "exponential charge", "IzhikevichNode": "adaptation current",
             "KLIFNode": "ReLU(k h)"}
    net = nn.Sequential(neuron.LIFNode(), *[getattr(neuron, name)() for name in nodes])
    with pytest.warns(UserWarning) as rec:
        convert(net)
    msg = next(str(w.message) for w in rec if "left unchanged" in str(w.message))
    assert "\n" not in msg
    for i, (name, why) in enumerate(nodes.items(), start=1):
        assert f"{i} ({name}: refused: " in msg and why in msg
        assert type(net[i]) is getattr(neuron, name)
    assert type(net[0]) is TSSLLIFNode
    with pytest.raises(TypeError, match="QIFNode: refused: quadratic charge"):
        convert(nn.Sequential(neuron.QIFNode()), strict=True)


def test_spiking_rnn_cells_are_left_with_one_reason_each():
    """SpikingJelly's ``rnn.SpikingLSTM`` (its ``spiking_lstm_sequential_mnist.py`` example): its spikes are gates,
    not LIF neurons; listed once (not again for the cells inside it), and a cell used on its own is listed too."""
    rnn = pytest.importorskip("spikingjelly.activation_based.rnn")
    net = nn.Sequential(rnn.SpikingLSTM(6, 4, 1), nn.Linear(4, 3), rnn.SpikingGRUCell(3, 3), neuron.LIFNode())
    with pytest.warns(UserWarning) as rec:
        convert(net)
    msg = next(str(w.message) for w in rec if "left unchanged" in str(w.message))
    assert "0 (SpikingLSTM: refused: a spiking recurrent cell" in msg and "2 (SpikingGRUCell: refused" in msg
    assert "0.cells" not in msg and type(net[3]) is TSSLLIFNode


class PlainLIF(neuron.LIFNode):
    """A user's subclass that adds an attribute and a method: converts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.note = "mine"

    def describe(self):
        return self.note


class OwnCharge(neuron.LIFNode):
    def neuronal_charge(self, x):
        self.v = self.v + x


def test_subclasses_convert_unless_they_override_the_forward():
    net = nn.Sequential(PlainLIF(tau=2.0), OwnCharge(tau=2.0))
    with pytest.warns(UserWarning) as rec:
        convert(net)
    msg = next(str(w.message) for w in rec if "left unchanged" in str(w.message))
    assert "OwnCharge: a subclass of LIFNode that overrides neuronal_charge() (OwnCharge.neuronal_charge)" in msg
    node = net[0]
    assert isinstance(node, TSSLLIFNode) and isinstance(node, PlainLIF) and node.describe() == "mine"
    assert type(net[1]) is OwnCharge
    x = torch.rand(12, 3, 6, generator=torch.Generator().manual_seed(2)) * 1.5
    for mode in ("s", "m"):
        xs, xq = x.clone().requires_grad_(), x.clone().requires_grad_()
        assert torch.equal(run(PlainLIF(tau=2.0), x, mode), run(node, xs, mode).detach())
        run(node, xs, mode).pow(2).sum().backward()
        run(convert(nn.Sequential(neuron.LIFNode(tau=2.0)))[0], xq, mode).pow(2).sum().backward()
        assert xs.grad.abs().sum() > 0 and torch.equal(xs.grad, xq.grad)  # the LIFNode rule
    assert type(copy.deepcopy(node)) is type(node)
    buf = io.BytesIO()
    torch.save(node, buf)
    buf.seek(0)
    assert type(torch.load(buf, weights_only=False)) is type(node)
    revert(net)
    assert type(net[0]) is PlainLIF
    with pytest.raises(TypeError, match="overrides neuronal_charge"):
        convert(nn.Sequential(OwnCharge()), strict=True)


@needs_v2
def test_library_subclasses_that_change_the_forward_name_the_method():
    """SpikingJelly's own LIFNode subclasses with another forward (LIAF's analog output, ILIF, the online-learning
    nodes), and a SimpleLIFNode customised the documented way (its charge), are left alone, naming the method."""
    class MySimple(neuron.SimpleLIFNode):
        def neuronal_charge(self, x):
            self.v = self.v * 0.5 + x

    net = nn.Sequential(neuron.LIAFNode(act=torch.relu, threshold_related=True), neuron.ILIFNode(),
                        neuron.OTTTLIFNode(), MySimple(tau=2.0, decay_input=True))
    with pytest.warns(UserWarning) as rec:
        convert(net)
    msg = next(str(w.message) for w in rec if "left unchanged" in str(w.message))
    assert "LIAFNode: a subclass of LIFNode that overrides single_step_functional_forward()" in msg
    assert "ILIFNode: a subclass of LIFNode that overrides" in msg
    assert "OTTTLIFNode: a subclass of LIFNode that overrides" in msg
    assert "MySimple: a subclass of SimpleLIFNode that overrides neuronal_charge()" in msg
    assert [type(m) for m in net] == [neuron.LIAFNode, neuron.ILIFNode, neuron.OTTTLIFNode, MySimple]
