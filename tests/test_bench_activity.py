"""Synaptic operations and activation sparsity (NeuroBench's definitions) in the harness."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tssl_plugin.benchmarks import backends as B
from tssl_plugin.benchmarks import cli
from tssl_plugin.benchmarks import models as M
from tssl_plugin.benchmarks.activity import ActivityMeter, fanout
from tssl_plugin.benchmarks.encoding import encode

SMALL_CNN = "4C3p1-P2-6C3-P2-12"  # conv with padding, pooling, conv at the border, fc, output


def _arch() -> M.Arch:
    layers = M._conv_stack(SMALL_CNN)
    return M.Arch("small-cnn", tuple(layers + [M.Layer("fc", out=5)]))


def _binary_ops(x: torch.Tensor, layer: M.Layer, w: torch.Tensor) -> float:
    """NeuroBench's count for one call: the layer with non-zero weights set to 1 applied to the input with
    non-zero entries set to 1, summed (no bias)."""
    xb, wb = (x != 0).double(), (w != 0).double()
    y = F.linear(xb, wb) if layer.kind == "fc" else F.conv2d(xb, wb, padding=layer.padding)
    return float(y.sum())


@pytest.mark.parametrize("padding,k", [(0, 3), (1, 3), (2, 5)])
def test_conv_fanout_counts_border_effects(padding, k):
    layer = M.Layer("conv", out=3, k=k, padding=padding)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, k, k, generator=g)
    w[0, 1, 0, 0] = 0.0  # a zero weight carries nothing
    fan = fanout(layer, w, (2, 7, 9))
    assert fan.shape == (2, 7, 9)
    x = (torch.rand(4, 2, 7, 9, generator=g) < 0.3).double()
    assert float((x * fan.double()).sum()) == _binary_ops(x, layer, w)
    # a corner input reaches fewer outputs than a central one
    assert fan[1, 0, 0] < fan[1, 3, 4]


@pytest.mark.parametrize("backend", ["snntorch:atan", "native:tssl"])
def test_meter_matches_the_definition_layer_by_layer(backend):
    """ActivityMeter == NeuroBench's rule applied by hand to every layer and step, on the layers' spikes
    (the native network's own spikes, although it passes their PSC to the next layer)."""
    arch = _arch()
    in_shape = (1, 12, 12)
    w = M.initial_weights(arch, in_shape, seed=2, gain=3.0)
    net = B.BACKENDS[backend].build(arch, in_shape, w, M.NeuronCfg())
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    seq = encode(x, 5, "psc", 3.0, False)
    with torch.no_grad():
        _, spikes = net(seq)
    meter = ActivityMeter(arch, in_shape, [s.weight for s in net.synapses()])
    meter.add(seq, spikes)
    res = meter.result()
    # by hand: inputs of each weighted layer, per step
    pool = M.SumPool(2)
    syn = [(layer, s.weight) for layer, s in zip([l for l in arch.layers if l.kind in ("fc", "conv")], net.synapses())]
    inputs = [seq, pool(spikes[0].flatten(0, 1)).unflatten(0, (5, 6)),
              pool(spikes[1].flatten(0, 1)).unflatten(0, (5, 6)).flatten(2), spikes[2]]
    acs = macs = 0.0
    for (layer, weight), inp in zip(syn, inputs):
        for t in range(5):
            ops = _binary_ops(inp[t].double(), layer, weight.detach())
            binary = bool(((inp[t] == 0) | (inp[t] == 1) | (inp[t] == -1)).all())
            acs, macs = (acs + ops, macs) if binary else (acs, macs + ops)
    assert res["acs_per_sample"] == pytest.approx(acs / 6) and res["macs_per_sample"] == pytest.approx(macs / 6)
    assert macs > 0 and acs > 0  # analog first layer and pooled spikes: MACs; the fc layers: ACs
    assert res["synops_per_sample"] == pytest.approx((acs + macs) / 6)
    for i, s in enumerate(spikes):
        assert res["activation_sparsity"][i] == pytest.approx(1 - float(s.sum()) / s.numel())
    dense = sum(_binary_ops(torch.ones_like(inp[0]).double(), layer, torch.ones_like(weight)) * 5
                for (layer, weight), inp in zip(syn, inputs)) / 6
    assert res["dense_synops_per_sample"] == pytest.approx(dense)


def test_same_network_same_counts_in_both_libraries():
    """Same weights and input -> same spikes in snnTorch and SpikingJelly -> same counts; the native network
    (PSC between layers) shares the first layer's input, so its first-layer MACs."""
    arch = _arch()
    in_shape = (1, 12, 12)
    w = M.initial_weights(arch, in_shape, seed=4, gain=3.0)
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    seq = encode(x, 5, "psc", 3.0, False)
    results = []
    for name in ("native:tssl", "snntorch:atan", "spikingjelly:sigmoid"):
        net = B.BACKENDS[name].build(arch, in_shape, w, M.NeuronCfg())
        with torch.no_grad():
            _, spikes = net(seq)
        meter = ActivityMeter(arch, in_shape, [s.weight for s in net.synapses()])
        meter.add(seq, spikes)
        results.append(meter.result())
    assert results[1]["synops_per_sample"] > 0 and results[1] == results[2]
    assert results[0]["synops_per_layer"][0] == results[1]["synops_per_layer"][0]


def test_summary_reports_activity_and_plots_it(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["--backends", "native:tssl,snntorch:atan", "--limit-train", "64", "--limit-test", "40",
                     "--hidden", "16", "--epochs", "2", "--seeds", "2", "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    for r in s["runs"]:
        assert r["synops_per_sample"] > 0 and r["synops_per_sample"] == pytest.approx(
            r["acs_per_sample"] + r["macs_per_sample"])
        assert r["macs_per_sample"] > 0  # the analog first layer
        assert len(r["activation_sparsity"]) == 2 and all(0 <= a <= 1 for a in r["activation_sparsity"])
        assert r["dense_synops_per_sample"] == pytest.approx(5 * (64 * 16 + 16 * 10))
        assert r["curve"]["epoch"] == [1, 2] and len(r["curve"]["test_accuracy_std"]) == 2
        assert r["eval_seconds_per_epoch"] > 0
    assert (out / "accuracy_vs_synops.png").stat().st_size > 0
    md = (out / "summary.md").read_text()
    assert "synaptic ops / sample" in md and "activation sparsity per layer" in md
    head = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"synops_per_sample", "acs_per_sample", "macs_per_sample", "activation_sparsity"} <= set(head)


def test_cross_check_with_neurobench():
    """The harness's counts on an snnTorch model equal NeuroBench's own SynapticOperations and
    ActivationSparsityByLayer (needs the optional neurobench package: pip install 'tssl-plugin[neurobench]')."""
    pytest.importorskip("neurobench", reason="optional package neurobench not installed "
                                             "(pip install 'tssl-plugin[neurobench]' to run this cross-check)")
    import snntorch as snn
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import ActivationSparsityByLayer, SynapticOperations
    from neurobench.models import SNNTorchModel
    from torch import nn

    arch = _arch()
    in_shape = (1, 12, 12)
    w = M.initial_weights(arch, in_shape, seed=7, gain=3.0)
    cfg = M.NeuronCfg()
    harness_net = B.BACKENDS["snntorch:atan"].build(arch, in_shape, w, cfg)
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(4))
    seq = encode(x, 5, "psc", 3.0, False)
    with torch.no_grad():
        _, spikes = harness_net(seq)
    meter = ActivityMeter(arch, in_shape, [s.weight for s in harness_net.synapses()])
    meter.add(seq, spikes)
    ours = meter.result()

    # the same network written the way NeuroBench's SNNTorchModel expects: stateful neurons, one call per step
    beta = 1 - 1 / cfg.tau_m
    leaky = lambda out=False: snn.Leaky(beta=beta, threshold=cfg.threshold, reset_mechanism="zero",  # noqa: E731
                                        init_hidden=True, output=out)
    conv1, conv2 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Conv2d(4, 6, 3, bias=False)
    fc1, fc2 = nn.Linear(6 * 2 * 2, 12, bias=False), nn.Linear(12, 5, bias=False)
    for mod, weight in zip((conv1, conv2, fc1, fc2), w):
        mod.weight.data.copy_(weight)
    net = nn.Sequential(conv1, leaky(), M.SumPool(2), conv2, leaky(), M.SumPool(2), nn.Flatten(), fc1, leaky(),
                        fc2, leaky(True))
    loader = torch.utils.data.DataLoader(list(zip(seq.transpose(0, 1), y)), batch_size=4)
    bench = Benchmark(SNNTorchModel(net), loader, [], [], [[], [SynapticOperations, ActivationSparsityByLayer]])
    res = bench.run(quiet=True)
    synops = res["SynapticOperations"]
    assert synops["Effective_ACs"] == pytest.approx(ours["acs_per_sample"])
    assert synops["Effective_MACs"] == pytest.approx(ours["macs_per_sample"])
    assert synops["Dense"] == pytest.approx(ours["dense_synops_per_sample"])
    by_layer = list(res["ActivationSparsityByLayer"].values())
    assert by_layer == pytest.approx(ours["activation_sparsity"])


@pytest.mark.parametrize("backend", ["snntorch:atan", "spikingjelly:atan"])
def test_hook_meter_of_compare_equals_the_harness_meter(backend):
    """ModuleActivityMeter (compare: forward hooks on any model's Linear/Conv layers) counts exactly what
    ActivityMeter counts from the harness's architecture, on the library networks (ACs, MACs, dense)."""
    from tssl_plugin.benchmarks.activity import ModuleActivityMeter

    try:
        B.BACKENDS[backend].check_available()
    except B.BackendUnavailable as err:
        pytest.skip(str(err))
    arch, in_shape = _arch(), (1, 12, 12)
    net = B.BACKENDS[backend].build(arch, in_shape, M.initial_weights(arch, in_shape, seed=2, gain=3.0),
                                    M.NeuronCfg())
    seq = encode(torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(1)), 5, "psc", 3.0, False)
    with torch.no_grad(), ModuleActivityMeter(net, []) as hooks:
        _, spikes = net(seq)
    hooks.samples += 6
    meter = ActivityMeter(arch, in_shape, [s.weight for s in net.synapses()])
    meter.add(seq, spikes)
    want, got = meter.result(), hooks.result()
    assert len(hooks.weighted) == 4 and want["acs_per_sample"] > 0
    for key in ("synops_per_sample", "acs_per_sample", "macs_per_sample", "dense_synops_per_sample",
                "synops_per_layer"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
