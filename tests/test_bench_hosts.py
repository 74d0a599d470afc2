"""tssl-bench hosts: tutorial-style host models, unconverted / converted / output excluded (tiny runs)."""
import json

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("snntorch")
pytest.importorskip("spikingjelly.activation_based")

from tssl_plugin.benchmarks import hosts  # noqa: E402
from tssl_plugin.benchmarks.cli import main  # noqa: E402


def test_hosts_runs_every_variant_and_writes_a_summary(tmp_path, capsys):
    out = tmp_path / "h"
    assert main(["hosts", "--losses", "mse_count,kernel", "--seeds", "2", "--epochs", "1", "--steps", "3",
                 "--hidden", "16", "--warmup-width", "0.5", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert summary["config"]["warmup_width"] == 0.5
    assert {(r["loss"], r["variant"]) for r in rows} == {(l, v) for l in ("mse_count", "kernel")
                                                        for v in ("host", "tssl", "tssl+host")}
    assert all(r["seeds"] == 2 and 0.0 <= r["mean"] <= 1.0 for r in rows)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 12
    assert {r["variant"]: r["warmup_width"] for r in records} == {"host": None, "tssl": 0.5, "tssl+host": 0.5}
    assert "tssl+host" in (out / "summary.md").read_text()
    capsys.readouterr()
    assert main(["hosts", "--out", str(out)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_hosts_variants_build_what_they_say():
    import snntorch as snn
    from spikingjelly.activation_based import neuron

    from tssl_plugin.adapters.snntorch import TSSLLeaky
    from tssl_plugin.adapters.spikingjelly import TSSLLIFNode

    args = hosts.build_parser().parse_args(["--hidden", "8"])
    net = hosts.build_net("snntorch", "tssl+host", None, args)
    assert type(net.lif1) is TSSLLeaky and type(net.lif2) is snn.Leaky
    assert net.lif1.reset_mechanism == "subtract"  # the host's default
    assert net.lif1.warmup_width == 0.2  # convert's default, the reference's
    net = hosts.build_net("spikingjelly", "tssl", "subtract", args)
    assert type(net.lif1) is TSSLLIFNode and type(net.lif2) is TSSLLIFNode and net.lif1.v_reset is None
    wide = hosts.build_parser().parse_args(["--hidden", "8", "--warmup-width", "0.9"])
    net = hosts.build_net("spikingjelly", "tssl+host", None, wide)
    assert net.lif1.warmup_width == 0.9 and type(net.lif2) is neuron.LIFNode
    net = hosts.build_net("snntorch", "tssl", None, wide)
    assert net.lif1.warmup_width == net.lif2.warmup_width == 0.9
    net = hosts.build_net("spikingjelly", "host", None, args)
    assert type(net.lif2) is neuron.LIFNode and net.lif2.v_reset == 0.0


def test_hosts_refuses_unknown_names(capsys):
    with pytest.raises(SystemExit):
        main(["hosts", "--library", "spikingjelly", "--losses", "mem_ce"])
    assert "unknown loss mem_ce" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["hosts", "--variants", "tssl,all"])
    assert "unknown variant all" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["hosts", "--warmup-width", "-0.2"])
    assert "--warmup-width must be a finite number > 0" in capsys.readouterr().err
