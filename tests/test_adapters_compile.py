"""torch.compile of converted host models: one graph (as the unconverted host model gives), eager results.

A researcher's compiled snnTorch step loop or SpikingJelly network must stay one graph after
``convert(net)``: no value read (``.item()``, ``bool(tensor)``) and no kernel call may reach Dynamo.
The adapters' backward runs as the registered op ``tssl_plugin::trace_backward``; SpikingJelly's membrane
guard checks through ``tssl_plugin::membrane_grad_check``.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn

snn = pytest.importorskip("snntorch")


def _graphs(fn, *args):
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*args)
    return explained.graph_count, explained.graph_break_count, explained.break_reasons


def _eager_and_compiled(module, x, params, reset=lambda: None):
    """Output and parameter gradients of ``module(x)`` eagerly and under ``torch.compile(fullgraph=True)``."""
    out = []
    for run in (module, torch.compile(module, fullgraph=True, backend="aot_eager")):
        reset()
        for p in params:
            p.grad = None
        y = run(x)
        (y.sum(0) - 2.0).pow(2).sum().backward()
        out.append((y.detach(), [p.grad.clone() for p in params]))
    return out


def _one_graph_with_the_eager_results(net, x):
    """Assert that ``net(x)`` compiles to one graph with no break and that the compiled run gives the eager
    output and parameter gradients (output nonzero); returns the eager gradients."""
    graphs, breaks, reasons = _graphs(net, x)
    assert (graphs, breaks) == (1, 0), reasons
    (y, g), (yc, gc) = _eager_and_compiled(net, x, list(net.parameters()))
    assert torch.equal(y, yc) and y.sum() > 0
    for a, b in zip(g, gc):
        torch.testing.assert_close(a, b)
    return g


class SnnTorchLoop(nn.Module):
    """snnTorch's tutorial network in its step loop (the host's defaults: reset by subtraction)."""

    def __init__(self, **leaky):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.lif1 = nn.Linear(12, 16), snn.Leaky(beta=0.9, **leaky)
        self.fc2, self.lif2 = nn.Linear(16, 5), snn.Leaky(beta=0.9, **leaky)
        with torch.no_grad():
            self.fc2.weight.mul_(4.0)  # so that the output layer fires

    def forward(self, x):
        m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = []
        for t in range(x.shape[0]):
            s1, m1 = self.lif1(self.fc1(x[t]), m1)
            s2, m2 = self.lif2(self.fc2(s1), m2)
            out.append(s2)
        return torch.stack(out)


@pytest.mark.parametrize("leaky", [{}, {"reset_mechanism": "zero"}], ids=["subtract", "zero"])
def test_converted_snntorch_loop_compiles_to_one_graph(leaky):
    from tssl_plugin.adapters import snntorch as adapter

    x = torch.rand(8, 4, 12, generator=torch.Generator().manual_seed(1)) * 6
    host = SnnTorchLoop(**leaky)
    assert _graphs(host, x)[:2] == (1, 0)  # what the unconverted model gives
    net = adapter.convert(SnnTorchLoop(**leaky))
    g = _one_graph_with_the_eager_results(net, x)
    assert any(a.abs().sum() > 0 for a in g)


class SnnTorchRecurrentLoop(nn.Module):
    """A recurrent hidden layer (RLeaky or RSynaptic) and a Lapicque output, in snnTorch's step loop."""

    def __init__(self, hidden: str):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(12, 16), nn.Linear(16, 5)
        self.lif1 = (snn.RLeaky(beta=0.9, linear_features=16) if hidden == "rleaky"
                     else snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=16))
        self.lif2 = snn.Lapicque(R=1.0, C=2.0)
        with torch.no_grad():
            self.fc2.weight.mul_(8.0)  # so that the output layer fires

    def forward(self, x):
        state = self.lif1.reset_mem()
        m2 = self.lif2.reset_mem()
        out = []
        for t in range(x.shape[0]):
            res = self.lif1(self.fc1(x[t]), *state)
            state = res
            s2, m2 = self.lif2(self.fc2(res[0]), m2)
            out.append(s2)
        return torch.stack(out)


@pytest.mark.parametrize("hidden", ["rleaky", "rsynaptic"])
def test_converted_recurrent_snntorch_loop_compiles_to_one_graph(hidden):
    from tssl_plugin.adapters import snntorch as adapter

    x = torch.rand(8, 4, 12, generator=torch.Generator().manual_seed(1)) * 6
    assert _graphs(SnnTorchRecurrentLoop(hidden), x)[:2] == (1, 0)  # what the unconverted model gives
    net = adapter.convert(SnnTorchRecurrentLoop(hidden))
    _one_graph_with_the_eager_results(net, x)
    assert net.lif1.recurrent.weight.grad.abs().sum() > 0


class StateLeakyNet(nn.Module):
    """snnTorch tutorial 8's network (whole-sequence StateLeaky layers), small."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(12, 16), snn.StateLeaky(beta=0.9, channels=1)
        self.fc2, self.lif2 = nn.Linear(16, 5), snn.StateLeaky(beta=0.9, channels=1)

    def forward(self, x):
        spk1, _ = self.lif1(self.fc1(x))
        return self.lif2(self.fc2(spk1))[0]


def test_converted_stateleaky_net_compiles_to_one_graph():
    if not hasattr(snn, "StateLeaky"):
        pytest.skip("this snnTorch has no StateLeaky (added in 1.0)")
    from tssl_plugin.adapters import snntorch as adapter

    x = torch.rand(8, 4, 12, generator=torch.Generator().manual_seed(1)) * 3
    torch.manual_seed(0)
    net = adapter.convert(StateLeakyNet())
    with torch.no_grad():
        net.fc2.weight.mul_(4.0)  # so that the output layer fires
    _one_graph_with_the_eager_results(net, x)
    assert net.fc1.weight.grad.abs().sum() > 0


#: SpikingJelly nodes the adapter converts, as a researcher builds them.
SJ_NODES = {
    "lif": lambda neuron: neuron.LIFNode(tau=2.0),
    "lif-soft-reset": lambda neuron: neuron.LIFNode(tau=2.0, v_reset=None, detach_reset=True),
    "if": lambda neuron: neuron.IFNode(),
    "plif": lambda neuron: neuron.ParametricLIFNode(),
    "simple-lif": lambda neuron: neuron.SimpleLIFNode(tau=2.0, decay_input=True),
    "simple-if": lambda neuron: neuron.SimpleIFNode(),
}


def _sj_net(mode, node="lif"):
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, layer, neuron

    if node.startswith("simple") and not hasattr(neuron, "SimpleLIFNode"):
        pytest.skip("SimpleLIFNode / SimpleIFNode exist in SpikingJelly 2.x only")
    torch.manual_seed(0)
    make = SJ_NODES[node]
    net = nn.Sequential(layer.Linear(12, 16), make(neuron), layer.Linear(16, 5), make(neuron))
    with torch.no_grad():
        net[2].weight.mul_(6.0)  # so that the output layer fires
    functional.set_step_mode(net, mode)
    return net, functional


class StepLoop(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.stack([self.net(x[t]) for t in range(x.shape[0])])


@pytest.mark.parametrize("node", list(SJ_NODES))
@pytest.mark.parametrize("mode", ["m", "s"])
def test_converted_spikingjelly_net_compiles_to_one_graph(mode, node):
    """Every node kind in both step modes (a PLIF node's learnable leak too: its gradient is the eager one)."""
    from tssl_plugin.adapters import spikingjelly as adapter

    x = torch.rand(8, 4, 12, generator=torch.Generator().manual_seed(1)) * 6
    host, functional = _sj_net(mode, node)
    functional.reset_net(host)
    assert _graphs(host if mode == "m" else StepLoop(host), x)[:2] == (1, 0)
    net, _ = _sj_net(mode, node)
    adapter.convert(net)
    module = net if mode == "m" else StepLoop(net)
    functional.reset_net(net)
    graphs, breaks, reasons = _graphs(module, x)
    assert (graphs, breaks) == (1, 0), reasons
    (y, g), (yc, gc) = _eager_and_compiled(module, x, list(net.parameters()), lambda: functional.reset_net(net))
    assert torch.equal(y, yc) and y.sum() > 0
    for a, b in zip(g, gc):
        torch.testing.assert_close(a, b)
    assert any(a.abs().sum() > 0 for a in g)


def test_compiled_membrane_loss_still_raises_the_clear_error():
    """The membrane guard holds compiled too: a loss on node.v_seq raises the adapter's one-line error."""
    from tssl_plugin.adapters import spikingjelly as adapter

    net, functional = _sj_net("m")
    net[3].store_v_seq = True
    adapter.convert(net)

    def loss_on_membrane(x):
        functional.reset_net(net)
        net(x)
        return net[3].v_seq.pow(2).sum()

    x = torch.rand(8, 4, 12, generator=torch.Generator().manual_seed(1)) * 6
    loss = torch.compile(loss_on_membrane, backend="aot_eager")(x)
    with pytest.raises(RuntimeError, match="a loss reached the membrane potential"):
        loss.backward()
