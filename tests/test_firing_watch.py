"""The run-time firing watch: one warning, naming the layer, when a converted layer trains silent or saturated."""
import warnings

import pytest
import torch
from torch import nn

from tssl_plugin import FiringWarning
from tssl_plugin.firing_watch import SATURATED, WINDOW_STEPS, WINDOWS, FiringWatch

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py

STEPS = WINDOWS * WINDOW_STEPS


def _firing_warnings(record):
    return [w for w in record if issubclass(w.category, FiringWarning)]


def _observe(watch, spikes, calls, steps=1):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(calls):
            watch.observe(spikes, steps)
    return _firing_warnings(record)


def test_a_silent_layer_warns_once_after_the_windows_and_not_before():
    watch = FiringWatch("net.lif2")
    silent = torch.zeros(4, 8, dtype=torch.bool)
    assert _observe(watch, silent, STEPS - 1) == []
    (w,) = _observe(watch, silent, 1)
    msg = str(w.message)
    assert "'net.lif2'" in msg and "no spike" in msg and "warmup_width" in msg and "exclude" in msg
    assert "\n" not in msg
    assert _observe(watch, silent, 3 * STEPS) == []  # once per layer


def test_one_spike_per_window_is_not_silence():
    watch = FiringWatch("lif")
    silent = torch.zeros(4, 8, dtype=torch.bool)
    one = silent.clone()
    one[0, 0] = True
    for _ in range(3):
        assert _observe(watch, silent, WINDOW_STEPS - 1) == []
        assert _observe(watch, one, 1) == []


def test_sequences_count_their_time_steps():
    watch = FiringWatch("lif")
    seq = torch.zeros(25, 4, 8)
    calls = -(-STEPS // 25)
    assert _observe(watch, seq, calls - 1, steps=25) == []
    assert len(_observe(watch, seq, 1, steps=25)) == 1


def test_a_saturated_layer_warns_and_a_busy_one_does_not():
    full = torch.ones(10, 10)
    (w,) = _observe(FiringWatch("conv2"), full, STEPS)
    assert "'conv2'" in str(w.message) and "saturated" in str(w.message)
    busy = full.clone()
    busy[0, :2] = 0  # 98 % of the neuron-steps: below the mark
    assert 0.98 < SATURATED
    assert _observe(FiringWatch("conv2"), busy, 3 * STEPS) == []


def test_nothing_is_counted_while_compiling(monkeypatch):
    watch = FiringWatch("lif")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _observe(watch, torch.zeros(3), 3 * STEPS) == []


# -- in the adapters -----------------------------------------------------------------------------------------
def _train(net, forward, steps_per_call, calls, grad=True):
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # weights fixed: the layer stays as it is
    x = torch.rand(8, 6)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(calls):
            with torch.set_grad_enabled(grad):
                out = forward(x)
            if grad:
                opt.zero_grad()
                out.sum().backward()
    return _firing_warnings(record)


def test_snntorch_converted_layer_that_never_fires_is_named_once():
    snn = pytest.importorskip("snntorch")
    from tssl_plugin.adapters.snntorch import convert

    net = nn.Sequential(nn.Linear(6, 5), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(5, 3),
                        snn.Leaky(beta=0.9, init_hidden=True))
    with torch.no_grad():
        net[0].weight.fill_(0.2)  # the hidden layer fires (not at every step) ...
        net[0].bias.zero_()
        net[2].weight.fill_(-1.0)  # ... and the output layer never does
        net[2].bias.fill_(-1.0)
    convert(net)

    def forward(x):
        from snntorch import utils
        utils.reset(net)
        return torch.stack([net(x) for _ in range(25)])

    ws = _train(net, forward, 25, STEPS // 25)
    assert len(ws) == 1 and "'3'" in str(ws[0].message)
    assert _train(net, forward, 25, STEPS // 25) == []  # warned once
    convert(net)  # a new convert starts a new watch; evaluation is not watched
    assert _train(net, forward, 25, STEPS // 25, grad=False) == []


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_spikingjelly_converted_node_that_never_fires_is_named_once(step_mode):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional, layer, neuron

    from tssl_plugin.adapters.spikingjelly import convert

    net = nn.Sequential(layer.Linear(6, 5), neuron.LIFNode(), layer.Linear(5, 3), neuron.LIFNode())
    functional.set_step_mode(net, step_mode)
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[2].weight.fill_(-1.0)
        net[2].bias.fill_(-1.0)
    convert(net)

    def forward(x):
        functional.reset_net(net)
        seq = x.expand(10, *x.shape)
        if step_mode == "m":
            return net(seq)
        return torch.stack([net(seq[t]) for t in range(10)])

    ws = _train(net, forward, 10, STEPS // 10)
    assert len(ws) == 1 and "'3'" in str(ws[0].message)


def test_a_network_that_fires_without_saturating_gets_no_warning():
    snn = pytest.importorskip("snntorch")
    from tssl_plugin.adapters.snntorch import convert

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(16, 3),
                        snn.Leaky(beta=0.9, init_hidden=True))
    with torch.no_grad():
        net[0].weight.uniform_(0.0, 0.3)
        net[2].weight.uniform_(0.0, 0.3)
    convert(net)

    def forward(x):
        from snntorch import utils
        utils.reset(net)
        return torch.stack([net(x) for _ in range(25)])

    assert _train(net, forward, 25, STEPS // 25 + 1) == []
