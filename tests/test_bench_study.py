"""The hidden-layers recipe as backends (snntorch:tssl+atan, spikingjelly:tssl+sigmoid) and
tssl-bench study (backend x loss x reset over seeds, one table).

These need the adapters' ``convert(model, exclude=...)`` (merged from main in commit 2427e78)."""
from __future__ import annotations

import json

import pytest
import torch

from tssl_plugin.benchmarks import backends as B
from tssl_plugin.benchmarks import cli
from tssl_plugin.benchmarks import models as M


@pytest.mark.parametrize("hybrid,full,surrogate,host_class", [
    ("snntorch:tssl+atan", "snntorch:tssl", "snntorch:atan", "Leaky"),
    ("spikingjelly:tssl+sigmoid", "spikingjelly:tssl", "spikingjelly:sigmoid", "LIFNode"),
])
def test_hidden_layers_recipe_backend(hybrid, full, surrogate, host_class):
    arch = M.make_arch("mlp", 10, [16, 16])
    w = M.initial_weights(arch, (1, 8, 8), seed=1, gain=2.0)
    nets = {n: B.BACKENDS[n].build(arch, (1, 8, 8), w, M.NeuronCfg()) for n in (hybrid, full, surrogate)}
    kinds = [type(m).__name__ for m in nets[hybrid].neurons()]
    assert kinds[-1] == host_class and all(k.startswith("TSSL") for k in kinds[:-1])
    x = torch.rand(5, 6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.5
    g = torch.randn(5, 6, 10, generator=torch.Generator().manual_seed(1))
    outs, grads = {}, {}
    for name, net in nets.items():
        out, spikes = net(x)
        (out * g).sum().backward()
        outs[name] = (out.detach(), [s.clone() for s in spikes])
        grads[name] = [s.weight.grad.clone() for s in net.synapses()]
    for name in (full, surrogate):  # the forward is the host's, bit for bit
        assert torch.equal(outs[hybrid][0], outs[name][0])
        assert all(torch.equal(a, b) for a, b in zip(outs[hybrid][1], outs[name][1]))
    assert torch.equal(grads[hybrid][-1], grads[surrogate][-1])  # output layer: the host's surrogate
    assert grads[hybrid][-1].abs().sum() > 0
    assert not torch.equal(grads[hybrid][0], grads[surrogate][0])  # hidden layers: TSSL-BP
    assert B.BACKENDS[hybrid].natural_loss == B.BACKENDS[surrogate].natural_loss


def test_hybrids_are_listed(capsys):
    assert cli.main(["--list-backends"]) == 0
    out = capsys.readouterr().out
    assert "snntorch:tssl+atan" in out and "spikingjelly:tssl+sigmoid" in out and "unavailable" not in out


STUDY = ["study", "--backends", "snntorch:tssl+atan,snntorch:atan", "--losses", "ce_rate,kernel",
         "--resets", "zero,subtract", "--seeds", "2", "--limit-train", "64", "--limit-test", "40", "--hidden", "16",
         "--epochs", "2", "--quiet"]


def test_study_writes_one_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    assert cli.main(STUDY + ["--out", str(out)]) == 0
    s = json.loads((out / "study.json").read_text())
    assert [(c["loss"], c["reset"]) for c in s["cells"]] == [("ce_rate", "zero"), ("ce_rate", "subtract"),
                                                           ("kernel", "zero"), ("kernel", "subtract")]
    for c in s["cells"]:
        assert [r["backend"] for r in c["runs"]] == ["snntorch:tssl+atan", "snntorch:atan"]
        for r in c["runs"]:
            assert r["loss"] == c["loss"] and len(r["seeds"]) == 2 and len(r["firing_rates"]) == 2
        cfg = json.loads((out / "cells" / f"{c['loss']}-{c['reset']}" / "config.json").read_text())
        assert cfg["reset"] == c["reset"] and cfg["loss"] == c["loss"]
    md = (out / "study.md").read_text()
    assert "| backend | ce_rate / zero | ce_rate / subtract | kernel / zero | kernel / subtract |" in md
    assert "firing rate per layer" in md and "±" in md
    csv = (out / "study.csv").read_text().splitlines()
    assert len(csv) == 1 + 8 and csv[0].startswith("backend,cell_loss,loss,reset,test_accuracy")
    capsys.readouterr()
    # an existing study is refused; an interrupted one resumes to the same numbers
    assert cli.main(STUDY + ["--out", str(out)]) == 2
    assert "tssl-bench study --resume" in capsys.readouterr().err
    before = (out / "study.csv").read_text()
    last = out / "cells" / "kernel-subtract"
    for f in last.iterdir():
        if f.is_file() and f.name != "config.json":  # killed in the cell's last run: no summary yet
            f.unlink()
    (last / "checkpoints" / "snntorch_atan-seed1.pt").unlink()
    (out / "study.json").unlink()
    assert cli.main(["study", "--resume", str(out), "--epochs", "9", "--quiet"]) == 0
    assert "ignoring --epochs 9" in capsys.readouterr().err
    assert (out / "study.csv").read_text() == before


def test_study_refuses_bad_options_in_one_line(tmp_path, capsys):
    for bad in (["--losses", "kernel,nope"], ["--resets", "sideways"], ["--threshold", "0"]):
        with pytest.raises(SystemExit) if bad[0] != "--threshold" else _nothing():
            rc = cli.main(["study", "--out", str(tmp_path / "s")] + bad)
            assert rc == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and bad[0] in err[0]
        assert not (tmp_path / "s").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
