"""Synaptic host networks in the harness: snn.Synaptic / CUBALIFNode networks are the paper's network."""
from __future__ import annotations

import pytest
import torch

from tssl_plugin import psp
from tssl_plugin.adapters._convert import ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, crossing_for
from tssl_plugin.benchmarks import backends as B
from tssl_plugin.benchmarks import cli, report
from tssl_plugin.benchmarks import models as M
from tssl_plugin.benchmarks.encoding import encode

SYNAPTIC = ["snntorch-synaptic:tssl", "snntorch-synaptic:atan", "spikingjelly-cuba:tssl", "spikingjelly-cuba:sigmoid"]


def _available(name: str) -> bool:
    try:
        B.BACKENDS[name].check_available()
    except B.BackendUnavailable:  # the library, or (spikingjelly-cuba) SpikingJelly 2.x, missing
        return False
    return True


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


def test_unfilter_inverts_the_psc():
    x = torch.rand(9, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(psp(M.unfilter(x, 3.0), 3.0), x, rtol=0, atol=1e-14)
    img = torch.rand(3, 4, dtype=torch.float64)  # the paper's encoding: unfilter(psp(image)) is the image
    torch.testing.assert_close(M.unfilter(psp(img.expand(9, 3, 4).contiguous(), 3.0), 3.0), img.expand(9, 3, 4))


ARCHS = {
    "mlp": M.make_arch("mlp", 10, [16, 12]),
    "conv-pool": M.Arch("conv-pool", (M.Layer("conv", out=4, k=3, padding=1), M.Layer("pool", k=2),
                                      M.Layer("flatten"), M.Layer("fc", out=10))),
}


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("name", ["snntorch-synaptic:tssl", "spikingjelly-cuba:tssl"])
def test_synaptic_host_network_is_the_native_network(name, arch):
    """Same weights and encoded input: the same spikes in every layer, output PSC = psp(host output
    spikes), and the same weight gradients of the kernel loss (float32, to rounding)."""
    if not _available(name):
        pytest.skip(f"{name} needs its library (CUBALIFNode: SpikingJelly 2.x)")
    from tssl_plugin.loss import kernel_loss

    a = ARCHS[arch]
    # the same cap and crossing on both sides (each has its own default)
    cfg = M.NeuronCfg(sensitivity_cap=1.0, crossing=crossing_for("zero", None))
    w = M.initial_weights(a, (1, 8, 8), seed=2, gain=4.0)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6) % 10
    seq = encode(x, 12, "psc", cfg.tau_s, False)
    native = B.BACKENDS["native:tssl"].build(a, (1, 8, 8), w, cfg, warmup_gate=ADAPTER_WARMUP,  # the adapters' gate
                                             warmup_floor=ADAPTER_WARMUP_FLOOR)
    host = B.BACKENDS[name].build(a, (1, 8, 8), w, cfg)
    assert [p.shape for p in native.parameters()] == [p.shape for p in host.parameters()]
    out_n, spk_n = native(seq)
    out_h, spk_h = host(seq)
    assert len(spk_n) == len(spk_h) and all(s.sum() > 0 for s in spk_n)
    assert all(torch.equal(s_n, s_h) for s_n, s_h in zip(spk_n, spk_h))
    a_h = psp(out_h, cfg.tau_s)
    torch.testing.assert_close(a_h, out_n, rtol=1e-5, atol=1e-6)
    kernel_loss(out_n, labels, tau_s=cfg.tau_s).backward()
    kernel_loss(a_h, labels, tau_s=cfg.tau_s).backward()
    for s_n, s_h in zip(native.synapses(), host.synapses()):
        assert s_n.weight.grad.abs().sum() > 0
        torch.testing.assert_close(s_h.weight.grad, s_n.weight.grad, rtol=1e-4, atol=1e-6)


def test_synaptic_backends_are_listed_and_train_on_digits(tmp_path):
    names = ["native:tssl"] + [n for n in SYNAPTIC if _available(n)]
    assert len(names) > 1
    for n in SYNAPTIC:
        assert B.BACKENDS[n].neuron == "synaptic"
    out = tmp_path / "run"
    assert cli.main(["--backends", ",".join(names), "--out", str(out), "--limit-train", "160", "--limit-test",
                     "60", "--hidden", "32", "--epochs", "1", "--seeds", "1", "--batch-size", "16", "--lr", "1e-2",
                     "--warmup-gate", ADAPTER_WARMUP, "--crossing", "interpolated",  # one rule for every backend
                     "--quiet"]) == 0
    recs = report.read_jsonl(out / "results.jsonl")
    runs = {r["backend"]: r for r in recs}
    assert set(runs) == set(names)
    assert runs["native:tssl"]["loss"] == "kernel"
    for n in names[1:]:
        assert runs[n]["loss"] == B.BACKENDS[n].natural_loss
        assert runs[n]["library"] == B.BACKENDS[n].library
        assert len(runs[n]["firing_rates"]) == 2 and 0 < runs[n]["firing_rates"][0] < 1
    if "snntorch-synaptic:tssl" in runs:  # the same network and gradient as native:tssl: the same numbers
        assert runs["snntorch-synaptic:tssl"]["test_accuracy"] == pytest.approx(
            runs["native:tssl"]["test_accuracy"], abs=0.05)
