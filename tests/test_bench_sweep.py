"""tssl-bench sweep: accuracy against time steps (tiny runs on digits), its options, bad input and resume."""
import json

import pytest
import torch
from torch import nn

pytest.importorskip("sklearn")
pytest.importorskip("snntorch")
pytest.importorskip("spikingjelly.activation_based")
pytest.importorskip("matplotlib")

from tssl_plugin.benchmarks import activity, hosts, sweep  # noqa: E402
from tssl_plugin.benchmarks import models as M  # noqa: E402
from tssl_plugin.benchmarks.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTS = ["sweep", "hosts", "--steps", "2,3", "--losses", "mse_count", "--variants", "host,tssl", "--seeds", "2",
         "--epochs", "1", "--hidden", "16"]
NATIVE = ["sweep", "native", "--steps", "3,2", "--backends", "native:tssl,snntorch:tssl,snntorch:atan", "--limit-train", "64",
          "--limit-test", "32", "--hidden", "16", "--epochs", "1", "--seeds", "2", "--quiet"]
OUTPUTS = {"sweep_config.json", "sweep.json", "sweep.md", "sweep.csv", "accuracy_vs_steps.png",
           "accuracy_vs_synops.png", "cells"}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_hosts_sweep_writes_every_curve_at_every_T(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(HOSTS + ["--out", str(out)]) == 0
    assert OUTPUTS <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["T2", "T3"]
    data = json.loads((out / "sweep.json").read_text())
    assert data["pending"] == [] and data["config"]["steps"] == [2, 3]
    rows = data["rows"]
    assert {(r["variant"], r["steps"]) for r in rows} == {(v, t) for v in ("host", "tssl") for t in (2, 3)}
    for r in rows:
        assert r["seeds"] == [0, 1] and 0 <= r["accuracy"] <= 1 and r["synops_per_sample"] > 0
        acc = r["accuracy_per_seed"]
        assert r["accuracy"] == pytest.approx(sum(acc) / 2)
        assert r["accuracy_std"] == pytest.approx(abs(acc[0] - acc[1]) / 2 ** 0.5)  # sample std
    # the points of one curve are the cells' own records, T by T
    for t in (2, 3):
        cell = [json.loads(x) for x in (out / "cells" / f"T{t}" / "results.jsonl").read_text().splitlines()]
        assert {c["steps"] for c in cell} == {t}
        tssl = sorted((c["seed"], c["test_accuracy"]) for c in cell if c["variant"] == "tssl")
        row = next(r for r in rows if r["variant"] == "tssl" and r["steps"] == t)
        assert [a for _, a in tssl] == row["accuracy_per_seed"]
    # synops grow with T
    host = {r["steps"]: r["synops_per_sample"] for r in rows if r["variant"] == "host"}
    assert host[3] > host[2] > 0
    assert [(c["tssl"], c["baseline"]) for c in data["comparisons"]] == [("tssl", "host")] * 2
    assert all(c["verdict"] in ("leads", "level", "trails") for c in data["comparisons"])
    md = (out / "sweep.md").read_text()
    assert "T=2" in md and "T=3" in md and "`tssl`" in md and "tssl-bench sweep hosts --steps 2,3" in md
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("network,gradient,steps,seeds,test_accuracy")
    assert (out / "accuracy_vs_steps.png").read_bytes()[:4] == b"\x89PNG"


def test_same_initial_weights_at_every_T_and_in_both_variants(monkeypatch, tmp_path):
    """Every run of a seed starts from the same weights, whatever its T and variant."""
    seen = {}
    real = hosts.build_net

    def spy(library, variant, reset, args):
        net = real(library, variant, reset, args)
        seen.setdefault(torch.initial_seed(), []).append(torch.cat([p.detach().flatten() for p in net.parameters()]))
        return net

    monkeypatch.setattr(hosts, "build_net", spy)
    assert main(HOSTS + ["--out", str(tmp_path / "s")]) == 0
    assert sorted(seen) == [0, 1] and all(len(v) == 4 for v in seen.values())  # 2 variants x 2 T
    for weights in seen.values():
        assert all(torch.equal(w, weights[0]) for w in weights)
    assert not torch.equal(seen[0][0], seen[1][0])


def test_native_sweep_covers_every_backend_and_compares_tssl_with_the_surrogate(tmp_path):
    out = tmp_path / "n"
    assert main(NATIVE + ["--out", str(out)]) == 0
    data = json.loads((out / "sweep.json").read_text())
    assert data["config"]["steps"] == [2, 3]
    curves = ["mlp on digits native:tssl (kernel)", "mlp on digits snntorch:tssl (kernel)",
              "mlp on digits snntorch:atan (ce_rate)"]
    assert [(r["curve"], r["steps"]) for r in data["rows"]] == [(c, t) for c in curves for t in (2, 3)]
    assert all(r["seeds"] == [0, 1] for r in data["rows"])
    assert json.loads((out / "cells" / "T2" / "config.json").read_text())["steps"] == 2
    # every TSSL-BP backend against the surrogate backend, at each T (same arch, same initial weights)
    assert [(c["tssl"], c["baseline"], c["steps"]) for c in data["comparisons"]] == [
        ("native:tssl (kernel)", "snntorch:atan (ce_rate)", 2), ("native:tssl (kernel)", "snntorch:atan (ce_rate)", 3),
        ("snntorch:tssl (kernel)", "snntorch:atan (ce_rate)", 2), ("snntorch:tssl (kernel)", "snntorch:atan (ce_rate)", 3)]


def test_resume_finishes_an_interrupted_sweep_like_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    full = tmp_path / "full"
    assert main(HOSTS + ["--out", str(full)]) == 0
    real, calls = hosts.run_one, []

    def interrupted(library, loss, reset, variant, seed, args, data):
        calls.append(args.steps)
        if args.steps == 3 and variant == "tssl":
            raise KeyboardInterrupt
        return real(library, loss, reset, variant, seed, args, data)

    monkeypatch.setattr(hosts, "run_one", interrupted)
    out = tmp_path / "cut"
    capsys.readouterr()
    assert main(HOSTS + ["--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"tssl-bench hosts --resume {out / 'cells' / 'T3'}" in err  # the cell's own line ...
    assert json.loads((out / "sweep.json").read_text())["pending"] == [3]
    monkeypatch.setattr(hosts, "run_one", real)
    assert main(["sweep", "--resume", str(out), "--seeds", "9"]) == 0
    assert "ignoring --seeds" in capsys.readouterr().err
    assert len((out / "cells" / "T3" / "results.jsonl").read_text().splitlines()) == 4  # no duplicates
    a = json.loads((full / "sweep.json").read_text())["rows"]
    b = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["curve"], r["steps"], r["accuracy_per_seed"]) for r in a] == \
           [(r["curve"], r["steps"], r["accuracy_per_seed"]) for r in b]
    capsys.readouterr()
    assert main(HOSTS + ["--out", str(out)]) == 2  # a finished sweep is never overwritten silently
    err = _one_line_error(capsys)
    assert "already holds a tssl-bench sweep" in err and f"tssl-bench sweep --resume {out}" in err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--steps", "2,3"], "name what to sweep"),
    (["sweep", "bogus"], "cannot sweep 'bogus'"),
    (["sweep", "hosts", "--steps", "0,2"], "positive integers"),
    (["sweep", "hosts", "--steps", "2,x"], "comma-separated integers"),
    (["sweep", "hosts", "--losses", "nope"], "unknown loss nope"),
    (["sweep", "hosts", "--seeds", "0"], "--seeds must be >= 1"),
    (["sweep", "tutorials", "--setups", "nope"], "unknown setup nope"),
    (["sweep", "tutorials", "--dataset", "cifar"], "invalid choice"),
    (["sweep", "native", "--backends", "nope:tssl"], "nope"),
    (["sweep", "native", "--epochs", "0"], "--epochs"),
    (["sweep", "native", "--list-backends"], "unrecognized arguments: --list-backends"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    try:
        rc = main(argv + ["--out", str(tmp_path / "x")])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "x").exists()  # nothing written


def test_resume_of_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "no sweep_config.json" in _one_line_error(capsys)
    (tmp_path / "sweep_config.json").write_text("{not json")
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "damaged" in _one_line_error(capsys)


def test_tables_and_verdicts():
    recs = [{"group": "g", "variant": v, "curve": f"g {v}", "steps": t, "seed": s, "test_accuracy": a,
             "synops_per_sample": 10.0 * t} for v, t, s, a in [
        ("host", 2, 0, 0.50), ("host", 2, 1, 0.52), ("tssl", 2, 0, 0.70), ("tssl", 2, 1, 0.71),
        ("host", 4, 0, 0.80), ("host", 4, 1, 0.80), ("tssl", 4, 0, 0.79), ("tssl", 4, 1, 0.81),
        ("host", 8, 0, 0.90), ("host", 8, 1, 0.90), ("tssl", 8, 0, 0.70), ("tssl", 8, 1, 0.70)]]
    rows = sweep.curve_rows(recs)
    assert [(r["curve"], r["steps"]) for r in rows][:3] == [("g host", 2), ("g host", 4), ("g host", 8)]
    verdicts = {c["steps"]: c["verdict"] for c in sweep.comparisons(rows)}
    assert verdicts == {2: "leads", 4: "level", 8: "trails"}
    t = sweep.sweep_tables(rows, [2, 4, 8])
    assert "+0.195 leads" in t["compare"] and "-0.200 trails" in t["compare"]
    assert "0.510 ± 0.014" in t["accuracy"]


def test_module_meter_counts_synops_by_the_definition():
    """Hooked host layers count sum_i [x_i != 0] * fanout_i (activity.fanout), ACs for spikes, MACs otherwise
    (the meter hosts and tutorials records use)."""
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(12, 5)
    with torch.no_grad():
        conv.weight[0, 0] = 0.0
        fc.weight[1, :4] = 0.0
    net = nn.Sequential(conv, nn.Flatten(), nn.Identity())
    x = (torch.rand(4, 2, 6, 6) < 0.3).float()
    with activity.ModuleActivityMeter(net, []) as ops:
        net(x)
    fan = activity.fanout(M.Layer("conv", 3, 3, padding=1), conv.weight, (2, 6, 6))
    assert float(ops.acs.sum()) == pytest.approx(float((x * fan).sum())) and float(ops.macs.sum()) == 0
    s = torch.rand(3, 7, 12) * (torch.rand(3, 7, 12) < 0.5)  # analog, with a leading time axis
    with activity.ModuleActivityMeter(fc, []) as ops2:
        fc(s)
    assert float(ops2.macs.sum()) == pytest.approx(float(((s != 0).float() * (fc.weight != 0).float().sum(0)).sum()))
    ops2.samples = 7
    assert ops2.result()["synops_per_sample"] == pytest.approx(float(ops2.macs.sum()) / 7)
    assert not conv._forward_hooks and not fc._forward_hooks  # removed on exit


@pytest.mark.parametrize("family, option", [("hosts", "--losses"), ("tutorials", "--setups"), ("native", "--backends")])
def test_family_help_lists_the_family_options(family, option, capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", family, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"tssl-bench sweep {family}" in out and option in out and "--steps T1,T2" in out
