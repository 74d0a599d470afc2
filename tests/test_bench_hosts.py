"""tssl-bench hosts: tutorial-style host models, unconverted / converted / output excluded (tiny runs)."""
import json

import pytest

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
    step = hosts.build_parser().parse_args(["--hidden", "8", "--crossing", "step", "--warmup-floor", "on"])
    net = hosts.build_net("spikingjelly", "tssl", None, step)  # --crossing and --warmup-floor reach convert
    assert net.lif1.crossing == net.lif2.crossing == "step" and net.lif1.warmup_floor is True
    assert hosts.build_net("spikingjelly", "tssl", None, args).lif1.crossing is None  # the adapters' default


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


TINY_HOSTS = ["hosts", "--losses", "mse_count", "--variants", "host,tssl", "--seeds", "2", "--epochs", "1",
              "--steps", "3", "--hidden", "16"]


def test_hosts_ctrl_c_keeps_finished_runs_and_resume_finishes_the_rest(tmp_path, capsys, monkeypatch):
    """Ctrl-C after two of four runs: one line naming the resume command, the two runs kept; --resume runs
    only the other two and ends with the same accuracies as an uninterrupted run."""
    real, calls = hosts.run_one, []

    def interrupted(*a, **kw):
        calls.append(a[:5])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(hosts, "run_one", interrupted)
    out = tmp_path / "h"
    assert main(TINY_HOSTS + ["--out", str(out)]) == 130
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "2 finished runs" in err[0] and f"tssl-bench hosts --resume {out}" in err[0]
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert main(TINY_HOSTS + ["--out", str(out)]) == 2  # refused, pointing to --resume
    assert f"tssl-bench hosts --resume {out}" in capsys.readouterr().err

    calls.clear()
    monkeypatch.setattr(hosts, "run_one", lambda *a, **kw: (calls.append(a[:5]), real(*a, **kw))[1])
    assert main(["hosts", "--resume", str(out)]) == 0
    assert [c[3:5] for c in calls] == [("tssl", 0), ("tssl", 1)]
    full = tmp_path / "full"
    assert main(TINY_HOSTS + ["--out", str(full)]) == 0

    def accs(d):
        return [(r["variant"], r["seed"], r["test_accuracy"])
                for r in map(json.loads, (d / "results.jsonl").read_text().splitlines())]

    assert accs(out) == accs(full)
    assert json.loads((out / "summary.json").read_text())["rows"][0]["seeds"] == 2


def test_hosts_resume_errors_are_one_line(tmp_path, capsys):
    assert main(["hosts", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "config.json" in err


def test_hosts_prints_one_line_per_finished_run(tmp_path, capsys):
    assert main(TINY_HOSTS) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("hosts: run ")]
    assert [ln.split(":")[1].split()[1] for ln in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("test accuracy" in ln for ln in lines)
