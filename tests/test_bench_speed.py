"""tssl-bench speed and its sub-commands (layer, mlp-step, scaling, gpu-layer, host-step), and the one timer they share."""
from __future__ import annotations

import time

import pytest
import torch

from tssl_plugin.benchmarks import cli
from tssl_plugin.benchmarks.timer import Timing, time_calls


def _rc(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as ex:  # argparse's own errors
        return ex.code


def test_timer_rounds_are_interleaved_after_the_untimed_ones():
    calls = []
    timings = time_calls({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, untimed=2)
    assert calls == ["a", "b"] * 5  # every round calls every entry once, in order
    assert [len(t.rounds) for t in timings.values()] == [3, 3]  # only the timed rounds are kept
    assert all(len(r) == 1 and r[0] >= 0 for t in timings.values() for r in t.rounds)


def test_timer_times_each_stage_of_a_call():
    order = []
    stages = (lambda: order.append("prepare"), lambda: (order.append("slow"), time.sleep(0.02)),
              lambda: order.append("fast"))
    t = time_calls({"staged": stages}, repeats=2, untimed=1)["staged"]
    assert order == ["prepare", "slow", "fast"] * 3
    assert all(len(r) == 3 for r in t.rounds)
    assert t.median(1) >= 0.02 and t.median(1, 2) >= t.median(1) and t.median() >= t.median(1, 2)
    with pytest.raises(ValueError, match="repeats"):
        time_calls({"a": lambda: None}, repeats=0)


def test_timing_medians_sum_the_named_stages():
    t = Timing(rounds=[[1.0, 2.0, 4.0], [1.0, 3.0, 1.0], [0.0, 5.0, 5.0]])
    assert t.seconds(1, 2) == [6.0, 4.0, 10.0]
    assert t.median(1, 2) == 6.0 and t.median(1) == 3.0 and t.median() == 7.0


@pytest.mark.parametrize("sub", [[], ["layer"], ["mlp-step"], ["scaling"], ["gpu-layer"], ["host-step"]])
def test_old_warmup_option_names_its_new_name(sub, capsys):
    assert _rc(["speed", *sub, "--warmup", "2"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--warmup" in err[0] and "--untimed" in err[0] and "--no-warmup" in err[0]


def test_mlp_step_prints_its_ratios(capsys):
    assert cli.main(["speed", "mlp-step", "--impls", "reference", "-T", "2", "--batch-size", "4", "--repeats", "1",
                     "--untimed", "0"]) == 0
    out = capsys.readouterr().out
    assert "MLP 784-400-400-10, T=2, batch 4" in out and "median of 1" in out
    assert "tssl[reference]" in out and "relu" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("tssl[reference]: ") and "x ReLU (goal <= 1.5)" in last


def test_scaling_prints_its_ratios(capsys):
    assert cli.main(["speed", "scaling", "--shape", "4", "--steps", "10,100", "--repeats", "1", "--untimed", "0"]) == 0
    out = capsys.readouterr().out
    assert "forward+backward, float32 [T, 4], device cpu, impl auto" in out
    assert "op time(T=100)/time(T=10) = " in out and "O(T^2)/op at T=100        = " in out


def test_scaling_quadratic_evaluation_has_the_op_gradient():
    """The O(T^2) column evaluates the same rule: its input gradient is the op's."""
    from tssl_plugin.benchmarks.speed_scaling import quadratic_lif
    from tssl_plugin.functional import tssl_lif

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 5, generator=gen, dtype=torch.float64) * 1.5
    g = torch.randn(12, 3, 5, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (quadratic_lif, lambda z: tssl_lif(z, impl="reference")):
        xx = x.clone().requires_grad_()
        fn(xx).backward(g)
        grads.append(xx.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_scaling_refuses_a_bad_device_in_one_line(capsys):
    assert _rc(["speed", "scaling", "--device", "foo"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--device" in err[0]


def test_gpu_layer_without_cuda_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli.main(["speed", "gpu-layer"]) == 0
    assert "CUDA is not available" in capsys.readouterr().out



@pytest.mark.parametrize("library", ["snntorch", "spikingjelly"])
def test_host_step_prints_every_variant_and_its_ratio(library, capsys):
    pytest.importorskip(library)
    assert cli.main(["speed", "host-step", "--library", library, "-T", "3", "--hidden", "8", "--batch-size", "4",
                     "--repeats", "1", "--untimed", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{library} tutorial network 64-8-10, T=3, batch 4" in out and "median of 1" in out
    rows = {ln.split("  ")[0]: ln.split()[-1] for ln in out.splitlines()[2:] if ln.strip()}
    assert set(rows) == {"unconverted", "convert(net)"} and rows["unconverted"] == "1.00"


def test_host_step_converted_network_trains_with_tssl():
    """The timed 'convert(net)' step is the converted tutorial network: every neuron is a TSSL-BP class."""
    pytest.importorskip("snntorch")
    from tssl_plugin.adapters.snntorch import TSSLLeaky
    from tssl_plugin.benchmarks import speed_host_step as H

    x = torch.rand(3, 4, 64)
    step = H.make_step("snntorch", "tssl", x, torch.randint(0, 10, (4,)), 8, compiled=False)
    assert isinstance(step(), float)
    assert isinstance(step.net.lif1, TSSLLeaky) and isinstance(step.net.lif2, TSSLLeaky)
    host = H.make_step("snntorch", "host", x, torch.randint(0, 10, (4,)), 8, compiled=False)
    assert not isinstance(host.net.lif1, TSSLLeaky)


def test_host_step_grid_prints_a_row_per_point(capsys):
    """--grid: one markdown row per (network, T, batch), with the converted ratio and the memory ratio."""
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")
    from tssl_plugin.benchmarks.speed_host_grid import NETS

    assert cli.main(["speed", "host-step", "--grid", "--grid-steps", "2", "--batch-sizes", "2,3", "--hidden", "8",
                     "--channels", "2", "--repeats", "1", "--untimed", "0", "--processes", "one"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in out.splitlines()
            if ln.startswith("| ") and not ln.startswith("| network")]
    assert [(r[0], r[1], r[2]) for r in rows] == [(n, "2", b) for n in NETS for b in ("2", "3")]
    for r in rows:
        assert float(r[4]) > 0 and r[5] == "nan" and r[7] == "-" and float(r[9]) > 0
    assert _rc(["speed", "host-step", "--grid", "--nets", "snntorch-rnn"]) != 0


@pytest.mark.parametrize("net", ["snntorch-cnn", "snntorch-stateleaky", "spikingjelly-fc"])
def test_host_step_grid_converts_only_the_converted_variant(net):
    import argparse

    pytest.importorskip("snntorch" if net.startswith("snntorch") else "spikingjelly")
    from tssl_plugin.benchmarks.speed_host_grid import NETS, make_grid_step

    args = argparse.Namespace(hidden=8, channels=2)
    x = torch.rand(2, *NETS[net].image)
    y = torch.randint(0, 10, (2,))
    kinds = {}
    for variant in ("host", "tssl"):
        step = make_grid_step(net, variant, x, y, 2, args, compiled=False)
        assert isinstance(step(), float)
        kinds[variant] = {type(m).__name__.startswith("TSSL") for m in step.net.modules()}
    assert True not in kinds["host"] and True in kinds["tssl"]


def _pid_build(tag):
    """A worker's build for the tests below: a call that does nothing, and the worker's process id."""
    import os

    return (lambda: None), (tag, os.getpid())


def _failing_build():
    raise ValueError("no network named 'nope'")


def test_isolated_timing_runs_each_call_in_a_process_of_its_own():
    import os

    from tssl_plugin.benchmarks.isolated import time_isolated

    timings, info = time_isolated({"a": (_pid_build, ("a",)), "b": (_pid_build, ("b",))}, repeats=3, untimed=1,
                                  threads=1)
    assert [len(t.rounds) for t in timings.values()] == [3, 3]
    assert all(len(r) == 1 and r[0] >= 0 for t in timings.values() for r in t.rounds)
    (ta, pa), (tb, pb) = info["a"], info["b"]
    assert (ta, tb) == ("a", "b") and len({pa, pb, os.getpid()}) == 3


def test_isolated_timing_names_the_call_whose_worker_failed():
    from tssl_plugin.benchmarks.isolated import time_isolated

    with pytest.raises(RuntimeError, match=r"(?s)worker timing 'broken' failed.*no network named 'nope'"):
        time_isolated({"fine": (_pid_build, ("fine",)), "broken": (_failing_build, ())}, repeats=1)
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_isolated({}, repeats=0)


def test_host_step_grid_times_each_variant_in_its_own_process(capsys):
    """--processes each (the default): the same row, from worker processes (isolated.py)."""
    pytest.importorskip("spikingjelly")
    assert cli.main(["speed", "host-step", "--grid", "--nets", "spikingjelly-fc", "--grid-steps", "2",
                     "--batch-sizes", "2", "--hidden", "8", "--repeats", "1", "--untimed", "0"]) == 0
    out = capsys.readouterr().out
    assert "each variant in a process of its own" in out
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in out.splitlines() if ln.startswith("| spikingjelly-fc")]
    assert len(rows) == 1 and float(rows[0][4]) > 0 and float(rows[0][9]) > 0
