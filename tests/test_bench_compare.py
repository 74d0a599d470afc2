"""tssl_plugin.benchmarks.compare on small host models and the digits (seconds each): the variants start from
the same weights and see the same batches, the reports are tssl-bench's, resume equals an uninterrupted run,
bad input gets one line."""
import json
import math

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.usefixtures("one_thread")
snn = pytest.importorskip("snntorch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from digits import digits_split  # noqa: E402
from tssl_plugin.benchmarks import compare  # noqa: E402
from tssl_plugin.benchmarks.comparison import default_predict  # noqa: E402

T = 8


class StepNet(nn.Module):
    """snnTorch's tutorial network (step loop with explicit membranes), small."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 32), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = []
        for _ in range(T):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


def make_sequential():
    """init_hidden network driven by a step function, as snnTorch's CNN tutorial does."""
    return nn.Sequential(nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(32, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))


def step_loop(net, x):
    return torch.stack([net(x)[0] for _ in range(T)])


def loaders(n_train=256, n_test=128, batch=64):
    X, y, tr, te = digits_split()
    ds = torch.utils.data.TensorDataset
    train = torch.utils.data.DataLoader(ds(X[tr[:n_train]], y[tr[:n_train]]), batch_size=batch, shuffle=True)
    test = torch.utils.data.DataLoader(ds(X[te[:n_test]], y[te[:n_test]]), batch_size=128)
    return train, test


def mse_count(spk, y):
    import snntorch.functional as SF

    return SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, y)


def _run(tmp_path, name="run", **kw):
    train, test = loaders()
    args = dict(library="snntorch", epochs=2, seeds=[0], out=tmp_path / name, lr=5e-3, quiet=True)
    args.update(kw)
    return compare(StepNet, train, test, mse_count, **args)


def test_writes_tssl_bench_reports_for_every_variant(tmp_path):
    s = _run(tmp_path, exclude=["lif2"])
    out = tmp_path / "run"
    for f in ("config.json", "results.jsonl", "summary.md", "summary.csv", "summary.json", "accuracy_vs_epoch.png",
              "accuracy_vs_synops.png", "time_memory.png"):
        assert (out / f).exists(), f
    runs = {r["backend"]: r for r in s["runs"]}
    assert list(runs) == ["host", "tssl", "tssl+host"]
    for r in runs.values():
        assert r["epochs"] == 2 and 0.1 < r["test_accuracy"] <= 1
        assert len(r["firing_rates"]) == 2 and all(0 <= f <= 1 for f in r["firing_rates"])
        assert r["synops_per_sample"] > 0 and r["dense_synops_per_sample"] >= r["synops_per_sample"]
        assert r["peak_memory_mb"] > 0 and r["seconds_per_epoch"] > 0
        assert len(r["synops_per_layer"]) == 2 and len(r["activation_sparsity"]) == 2
    md = (out / "summary.md").read_text()
    assert "`tssl+host` = the same with `exclude=['lif2']`" in md and "synaptic ops / sample" in md
    assert len((out / "results.jsonl").read_text().splitlines()) == 6


def test_synaptic_operations_count_the_layers_inputs(tmp_path):
    """Dense ops of the step-loop network: per sample and step 64*32 (fc1) + 32*10 (fc2); the first layer's
    analog input counts as MACs, its spiking input as ACs bounded by the dense count."""
    s = _run(tmp_path, epochs=1)
    r = s["runs"][0]
    assert r["dense_synops_per_sample"] == pytest.approx(T * (64 * 32 + 32 * 10))
    fc1, fc2 = r["synops_per_layer"]
    assert r["macs_per_sample"] == pytest.approx(fc1) and r["acs_per_sample"] == pytest.approx(fc2)
    assert 0 < fc2 <= T * 32 * 10


def test_variants_start_from_the_same_weights_and_batches(tmp_path, monkeypatch):
    """A 'conversion' that changes the neurons' class but not their gradient must give the host's numbers
    exactly: same weights, same batches."""
    from tssl_plugin.benchmarks import comparison

    class SameLeaky(snn.Leaky):
        pass

    class Identity:
        @staticmethod
        def convert(model, **kw):
            for m in model.modules():
                if type(m) is snn.Leaky:
                    m.__class__ = SameLeaky
            return model

    monkeypatch.setattr(comparison, "adapter_for", lambda library: Identity)
    s = _run(tmp_path)
    host, tssl = s["runs"]
    for key in ("test_accuracy", "train_loss", "train_accuracy", "synops_per_sample", "firing_rates"):
        assert host[key] == tssl[key], key


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from tssl_plugin.benchmarks import comparison

    full = _run(tmp_path, "full")
    real, calls = comparison._train_epoch, []

    def stop_in_the_second_variant(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(comparison, "_train_epoch", stop_in_the_second_variant)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "part")
    monkeypatch.setattr(comparison, "_train_epoch", real)
    with pytest.raises(ValueError, match="resume=True"):
        _run(tmp_path, "part")  # a new run refuses the folder and names resume
    resumed = _run(tmp_path, "part", resume=True)
    for a, b in zip(full["runs"], resumed["runs"]):
        assert a["curve"]["test_accuracy"] == b["curve"]["test_accuracy"]
        assert a["curve"]["train_loss"] == b["curve"]["train_loss"]
    lines = (tmp_path / "part" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4  # no duplicate records
    more = _run(tmp_path, "part", resume=True, epochs=3)  # epochs may grow
    assert [r["epochs"] for r in more["runs"]] == [3, 3]


def test_step_function_and_init_hidden_models(tmp_path):
    train, test = loaders()
    s = compare(make_sequential, train, test, mse_count, library="snntorch", epochs=1, seeds=[0, 1],
                out=tmp_path / "seq", step_fn=step_loop, lr=5e-3, quiet=True)
    assert [r["backend"] for r in s["runs"]] == ["host", "tssl"]
    assert all(r["seeds"] == [0, 1] and math.isfinite(r["test_accuracy_std"]) for r in s["runs"])
    cfg = json.loads((tmp_path / "seq" / "config.json").read_text())
    assert cfg["step_fn"].endswith("step_loop") and cfg["seeds"] == [0, 1]


def test_spikingjelly_multistep_model(tmp_path):
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, layer, neuron

    from tssl_plugin.loss import CountLoss

    def make():
        net = nn.Sequential(layer.Linear(64, 128), neuron.LIFNode(tau=2.0), layer.Linear(128, 10),
                            neuron.LIFNode(tau=2.0))
        functional.set_step_mode(net, "m")
        return net

    train, test = loaders(n_train=1400, batch=128)
    with pytest.raises(ValueError, match="converted nothing.*check library="):  # the other adapter
        compare(make, train, test, CountLoss(), library="snntorch", out=tmp_path / "wrong")
    s = compare(make, train, test, CountLoss(), library="spikingjelly", epochs=2, out=tmp_path / "sj",
                step_fn=lambda net, x: net(x.expand(T, -1, -1)), lr=1e-2, quiet=True, exclude=lambda net: [net[3]])
    assert [r["backend"] for r in s["runs"]] == ["host", "tssl", "tssl+host"]
    assert all(r["test_accuracy"] > 0.5 and r["synops_per_sample"] > 0 for r in s["runs"])


def test_default_predict():
    spk = torch.zeros(3, 2, 4)
    spk[:, 0, 2] = 1
    spk[0, 1, 1] = 1
    assert default_predict(spk).tolist() == [2, 1]
    assert default_predict((spk, None)).tolist() == [2, 1]
    assert default_predict(spk.sum(0)).tolist() == [2, 1]


def _one_line(err):
    text = str(err.value)
    assert "\n" not in text and text.startswith("compare: ")
    return text


@pytest.mark.parametrize("kwargs,needle", [
    (dict(library="torch"), "library must be one of snntorch, spikingjelly"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(seeds=[]), "seeds must be"),
    (dict(seeds=[0, 0]), "seed twice"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(convert_options={"exclude": "lif2"}), "pass exclude= to compare itself"),
    (dict(convert_options=["warmup_width=1"]), "convert_options must be a dict"),
    (dict(exclude=["nope"]), "no module named 'nope'"),
    (dict(convert_options={"warmup_width": -1.0}), "warmup_width"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, kwargs, needle):
    with pytest.raises((ValueError, TypeError)) as err:
        _run(tmp_path, **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "results.jsonl").exists()  # refused before anything is written


def test_bad_callables_loaders_and_outputs_are_one_line_errors(tmp_path):
    train, test = loaders()
    with pytest.raises(TypeError) as err:
        compare(StepNet(), train, test, mse_count, library="snntorch", out=tmp_path / "a")
    assert "make_model must build a new model on each call" in _one_line(err)
    with pytest.raises(TypeError) as err:
        compare(StepNet, torch.zeros(3), test, mse_count, library="snntorch", out=tmp_path / "b")
    assert "train_loader must be an iterable of (input, target) batches" in _one_line(err)
    with pytest.raises(ValueError) as err:
        compare(StepNet, [(torch.zeros(2, 64),)], test, mse_count, library="snntorch", out=tmp_path / "c", quiet=True)
    assert "must yield (input, target) pairs" in _one_line(err)
    with pytest.raises(ValueError) as err:
        compare(StepNet, train, test, lambda out, y: out.sum(1), library="snntorch", out=tmp_path / "d", quiet=True)
    assert "must return a scalar tensor" in _one_line(err)
    with pytest.raises(ValueError) as err:
        compare(lambda: nn.Sequential(nn.Linear(64, 10)), train, test, mse_count, library="snntorch",
                out=tmp_path / "e")
    assert "converted nothing" in _one_line(err) and "check library=" in str(err.value)
    with pytest.raises(ValueError) as err:
        compare(StepNet, train, test, mse_count, library="snntorch", out=tmp_path / "g", exclude=["lif1", "lif2"])
    assert "converted nothing" in _one_line(err) and "outside exclude" in str(err.value)
    with pytest.raises(ValueError) as err:
        compare(StepNet, train, test, mse_count, library="snntorch", out=tmp_path / "f", quiet=True,
                step_fn=lambda net, x: net(x)[0, :, 0])
    assert "pass predict=" in _one_line(err)


def test_resume_with_other_arguments_is_refused(tmp_path):
    _run(tmp_path, epochs=1)
    with pytest.raises(ValueError) as err:
        _run(tmp_path, epochs=1, resume=True, lr=1e-2)
    assert "optimizer differ" in _one_line(err)
    with pytest.raises(ValueError) as err:
        _run(tmp_path, "other", resume=True)
    assert "does not exist" in _one_line(err)


# ------------------------------------------------------------------ tssl-bench compare
MODULE = '''
import torch
from torch import nn
import snntorch as snn
import snntorch.functional as SF
from digits import digits_split


def make_model():
    return nn.Sequential(nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(32, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))


def step(net, x):
    return torch.stack([net(x)[0] for _ in range(8)])


def loaders():
    X, y, tr, te = digits_split()
    ds = torch.utils.data.TensorDataset
    return (torch.utils.data.DataLoader(ds(X[tr[:256]], y[tr[:256]]), batch_size=64, shuffle=True),
            torch.utils.data.DataLoader(ds(X[te[:128]], y[te[:128]]), batch_size=128))


def not_loaders():
    return 3


def loss():
    return SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_snn.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _cli(*extra):
    return ["compare", "--model", "user_snn:make_model", "--data", "user_snn:loaders", "--loss", "user_snn:loss",
            "--step", "user_snn:step", "--library", "snntorch", "--lr", "5e-3", "--out", "cmp", "--quiet", *extra]


def test_cli_runs_the_comparison_and_resumes(user_module):
    from tssl_plugin.benchmarks.cli import main

    assert main(_cli("--exclude", "3")) == 0
    s = json.loads((user_module / "cmp" / "summary.json").read_text())
    assert [r["backend"] for r in s["runs"]] == ["host", "tssl", "tssl+host"]
    assert s["config"]["exclude"] == ["3"] and s["config"]["loss"].endswith("mse_count_loss")
    assert main(_cli("--exclude", "3", "--resume", "--epochs", "2")) == 0
    s = json.loads((user_module / "cmp" / "summary.json").read_text())
    assert [r["epochs"] for r in s["runs"]] == [2, 2, 2]


@pytest.mark.parametrize("change,needle", [
    (("--model", "user_snn"), "expected module:attribute"),
    (("--model", "nope_module:make_model"), "cannot import nope_module"),
    (("--model", "user_snn:nope"), "user_snn has no attribute 'nope'"),
    (("--data", "user_snn:not_loaders"), "must return (train_loader, test_loader)"),
    (("--seeds", "0,a"), "expected comma-separated integers"),
    (("--epochs", "0"), "epochs must be an integer >= 1"),
    (("--exclude", "99"), "no module named '99'"),
])
def test_cli_errors_are_one_line(user_module, capsys, change, needle):
    from tssl_plugin.benchmarks.cli import main

    argv = _cli()
    if change[0] in argv:
        argv[argv.index(change[0]) + 1] = change[1]
    else:
        argv += list(change)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("tssl-bench compare: error: ") and needle in err, err


def test_cli_ctrl_c_is_one_line(user_module, capsys, monkeypatch):
    from tssl_plugin.benchmarks import comparison
    from tssl_plugin.benchmarks.cli import main

    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison, "_train_epoch", interrupt)
    assert main(_cli()) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "interrupted" in err and "--resume" in err
