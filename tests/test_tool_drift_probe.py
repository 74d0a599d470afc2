"""tools/drift_probe.py: continuing a tssl-bench run from its checkpoint with one change (docs/benchmarks.md)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("spikingjelly")

from tssl_plugin.benchmarks import train as train_mod  # noqa: E402
from tssl_plugin.benchmarks.config import Config  # noqa: E402

TOOL = Path(__file__).resolve().parents[1] / "tools" / "drift_probe.py"


def _probe(run: Path, *args: str) -> subprocess.CompletedProcess:
    ck = run / "checkpoints" / "spikingjelly_tssl-seed0.pt"
    return subprocess.run([sys.executable, str(TOOL), "--run", str(run), "--checkpoint", str(ck), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("drift") / "run"
    cfg = Config(backends=["spikingjelly:tssl"], limit_train=64, limit_test=32, hidden=[16], epochs=1, seeds=1)
    train_mod.run_benchmark(cfg, out, quiet=True)
    return out


@pytest.mark.parametrize("variant, epochs", [("default", 2), ("sigmoid", 1)])
def test_continues_the_run_one_epoch_per_line(run, variant, epochs):
    r = _probe(run, "--variant", variant, "--epochs", str(epochs))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"{variant}, warm-up gate default, floor default, crossing default, surrogate at neuron "
                               "layers [], set [], offset 0 "
                               "on synapse 1, from epoch 1")
    assert [ln.split(":")[0] for ln in lines[1:]] == [f"{variant} epoch {e}" for e in range(2, 2 + epochs)]
    assert all("firing rates" in ln for ln in lines[1:])


def test_an_offset_changes_what_the_layer_fires(run):
    rates = {}
    for offset in ("0", "0.5"):
        r = _probe(run, "--offset", offset, "--layer", "0", "--lr", "0")
        assert r.returncode == 0, r.stderr
        rates[offset] = float(r.stdout.split("firing rates ")[1].split(" / ")[0])
    assert rates["0.5"] > rates["0"] + 0.1  # lr 0: the offset alone moved the first layer's rate


def test_warmup_gate_and_surrogate_layers_are_applied(run):
    """--warmup-gate silent, --warmup-floor on, --crossing interpolated and --sigmoid-at 1 (the second layer on the
    surrogate) are named and run."""
    r = _probe(run, "--warmup-gate", "silent", "--warmup-floor", "on", "--crossing", "interpolated", "--sigmoid-at",
               "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("default, warm-up gate silent, floor on, crossing interpolated, surrogate at neuron "
                               "layers [1],")
    r = _probe(run, "--variant", "sigmoid", "--sigmoid-at", "1")
    assert r.returncode != 0 and "--sigmoid-at" in r.stderr


def test_set_at_changes_one_layers_rule(run):
    """--set-at K:OPTION=VALUE sets an option on one converted layer: a wrong option value fails in that layer's
    checks, a malformed item is a usage error, and a valid one runs."""
    r = _probe(run, "--set-at", '1:ablation="no_intra"', "--set-at", "1:sensitivity_cap=1.0")
    assert r.returncode == 0, r.stderr
    assert "set ['1:ablation=\"no_intra\"', '1:sensitivity_cap=1.0']" in r.stdout
    r = _probe(run, "--set-at", "1:sensitivity_cap=-1")
    assert r.returncode != 0 and "sensitivity_cap" in r.stderr
    r = _probe(run, "--set-at", "nonsense")
    assert r.returncode == 2 and "--set-at" in r.stderr



def test_gradient_sum_prints_the_synapse_gradient_without_training(run):
    """--gradient-sum N: one line, the summed weight gradient of synapse --layer over N batches, and no epoch."""
    r = _probe(run, "--gradient-sum", "2", "--layer", "0", "--warmup-floor", "off")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("default, warm-up gate default, floor off, crossing default,")
    assert len(lines) == 2 and lines[1].startswith("default gradient sum of synapse 0 over 2 batches: ")
    float(lines[1].rsplit(": ", 1)[1])
