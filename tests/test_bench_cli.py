"""tssl-bench as a new user meets it: bad values, folders, interrupts and missing extras each end in one
clear line, before anything is written; nothing a user saved is overwritten without being asked."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tssl_plugin.benchmarks import cli, extras, report
from tssl_plugin.benchmarks import train as train_mod
from tssl_plugin.benchmarks.config import Config

TINY = ["--backends", "native:tssl", "--limit-train", "64", "--limit-test", "32", "--hidden", "16",
        "--epochs", "2", "--seeds", "1", "--quiet"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _rc(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as ex:  # argparse's own errors
        return ex.code


@pytest.mark.parametrize("argv,needle", [
    (["--threshold", "-1"], "--threshold"),
    (["--threshold", "0"], "--threshold"),
    (["--limit-train", "-5"], "--limit-train"),
    (["--limit-test", "-1"], "--limit-test"),
    (["--threads", "-1"], "--threads"),
    (["--tau-m", "1"], "--tau-m"),
    (["--tau-s", "0.5"], "--tau-s"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--weight-clip", "-1"], "--weight-clip"),
    (["--grad-clip", "-0.1"], "--grad-clip"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--init-gain", "0"], "--init-gain"),
    (["--warmup-width", "0"], "--warmup-width"),
    (["--warmup-width", "inf"], "--warmup-width"),
    (["--epochs", "0"], "--epochs"),
    (["--seed", "-3"], "--seed"),
    (["--device", "foo"], "--device"),
    (["--device", "cuda:99"], "--device"),
    (["--preset", "nope"], "--preset"),
])
def test_bad_values_refused_in_one_line_before_any_folder(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    assert _rc(TINY + argv + ["--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert needle in line and "error" in line
    assert not out.exists()


def test_device_cuda_without_cuda(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _rc(TINY + ["--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "CUDA is not available" in _one_line_error(capsys) and not (tmp_path / "o").exists()


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert _rc(TINY + ["--out", str(f)]) == 2
    assert "is a file" in _one_line_error(capsys) and f.read_text() == "mine"
    assert _rc(TINY + ["--out", str(f / "sub")]) == 2
    assert "is a file" in _one_line_error(capsys)


def test_existing_results_refused_then_overwrite_removes_only_old_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(TINY[:1] + ["native:tssl,snntorch:atan"] + TINY[2:] + ["--out", str(out)]) == 0
    capsys.readouterr()
    (out / "my-notes.txt").write_text("keep me")
    before = (out / "results.jsonl").read_text()
    assert _rc(TINY + ["--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert f"tssl-bench --resume {out}" in line and "--overwrite" in line
    assert (out / "results.jsonl").read_text() == before  # untouched
    assert cli.main(TINY + ["--epochs", "1", "--out", str(out), "--overwrite"]) == 0
    assert (out / "my-notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["native_tssl-seed0.pt"]  # no old atan
    recs = report.read_jsonl(out / "results.jsonl")
    assert [(r["backend"], r["epoch"]) for r in recs] == [("native:tssl", 1)]
    assert json.loads((out / "config.json").read_text())["epochs"] == 1


def test_resume_says_which_options_it_ignores(tmp_path, capsys, monkeypatch):
    """Also: --warmup-width is recorded in config.json and the summary, and --resume builds with the saved one."""
    from tssl_plugin.benchmarks import backends as B

    widths = []
    real = B.Backend.build
    monkeypatch.setattr(B.Backend, "build", lambda self, *a, **kw: widths.append(kw["warmup_width"]) or
                        real(self, *a, **kw))
    out = tmp_path / "run"
    assert cli.main(TINY + ["--warmup-width", "0.6", "--out", str(out)]) == 0
    assert widths == [0.6] and "TSSL-BP warm-up width 0.6" in (out / "summary.md").read_text()
    capsys.readouterr()
    assert cli.main(["--resume", str(out), "--epochs", "5", "--lr", "0.1", "--warmup-width", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "ignoring --epochs 5, --lr 0.1, --warmup-width 1" in err and "config.json" in err
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["warmup_width"] == 0.6 and widths == [0.6, 0.6]
    assert max(r["epoch"] for r in report.read_jsonl(out / "results.jsonl")) == 2


def test_ablation_option_reaches_the_layers_config_and_summary(tmp_path, capsys, monkeypatch):
    """--ablation is recorded in config.json and the summary and reaches Backend.build; with --no-warmup the
    warm-up-only ablation is refused in one line naming both options."""
    from tssl_plugin.benchmarks import backends as B

    seen = []
    real = B.Backend.build
    monkeypatch.setattr(B.Backend, "build", lambda self, *a, **kw: seen.append(kw["ablation"]) or
                        real(self, *a, **kw))
    out = tmp_path / "run"
    assert cli.main(TINY + ["--ablation", "no_intra", "--out", str(out)]) == 0
    assert seen == ["no_intra"] and "TSSL-BP ablation no_intra" in (out / "summary.md").read_text()
    assert json.loads((out / "config.json").read_text())["ablation"] == "no_intra"
    capsys.readouterr()
    assert cli.main(TINY + ["--ablation", "no_spike_timing", "--no-warmup", "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err.strip()
    assert "--ablation" in err and "--no-warmup" in err and len(err.splitlines()) == 1


def _tssl_networks(cfg):
    """``(name, network)`` of each available TSSL-BP backend built from ``cfg`` (the native one and the converted)."""
    from tssl_plugin.benchmarks import backends as B, data as D, models as M
    from tssl_plugin.benchmarks.train import build_network

    ds = D.load_dataset(cfg.dataset, cfg.data_root, n_steps=cfg.steps, limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test, normalize=cfg.normalize)
    arch = M.make_arch(cfg.arch, ds.n_class, cfg.hidden)
    for name in ("native:tssl", "snntorch:tssl", "spikingjelly:tssl"):
        backend = B.resolve([name])[0]
        try:
            backend.check_available()
        except B.BackendUnavailable:
            continue
        yield name, build_network(backend, 0, ds, arch, cfg, torch.device("cpu"))[0]


def test_warmup_gate_option_reaches_the_layers_config_and_summary(tmp_path, capsys):
    """--warmup-gate silent reaches every TSSL-BP layer (the native network's and the converted ones), is recorded
    in config.json and the summary, and is refused in one line with --no-warmup."""
    from tssl_plugin.benchmarks.config import config_from_json

    out = tmp_path / "run"
    assert cli.main(TINY + ["--warmup-gate", "silent", "--out", str(out)]) == 0
    assert "gate silent" in (out / "summary.md").read_text()
    cfg = config_from_json(json.loads((out / "config.json").read_text()), "config.json")
    assert cfg.warmup_gate == "silent"
    for name, net in _tssl_networks(cfg):
        assert [n.warmup for n in net.neurons()] == ["silent"] * len(net.neurons()), name
    capsys.readouterr()
    assert cli.main(TINY + ["--warmup-gate", "silent", "--no-warmup", "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err.strip()
    assert "--warmup-gate" in err and "--no-warmup" in err and len(err.splitlines()) == 1
    old = dict(json.loads((out / "config.json").read_text()))
    del old["warmup_gate"]  # written before the option existed: those runs used the reference's gate
    assert config_from_json(old, "old/config.json").warmup_gate == "trace"


def test_crossing_option_reaches_the_layers_config_and_summary(tmp_path):
    """--crossing interpolated reaches every TSSL-BP layer (the native network's and the converted ones) and the
    summary; a config.json written before the option existed resumes with the reference's "step", what it ran."""
    from tssl_plugin.benchmarks.config import config_from_json

    out = tmp_path / "run"
    assert cli.main(TINY + ["--crossing", "interpolated", "--out", str(out)]) == 0
    assert "crossing interpolated" in (out / "summary.md").read_text()
    cfg = config_from_json(json.loads((out / "config.json").read_text()), "config.json")
    assert cfg.crossing == "interpolated"
    for name, net in _tssl_networks(cfg):
        assert [n.crossing for n in net.neurons()] == ["interpolated"] * len(net.neurons()), name
    old = dict(json.loads((out / "config.json").read_text()))
    del old["crossing"]
    assert config_from_json(old, "old/config.json").crossing == "step"
    default = dict(old, crossing=None)
    assert config_from_json(default, "config.json").crossing is None


def test_config_json_without_warmup_width_loads_with_the_default():
    """config.json files written before --warmup-width existed resume with the reference's width."""
    from tssl_plugin.benchmarks.config import as_dict, config_from_json

    old = as_dict(Config())
    del old["warmup_width"]
    assert config_from_json(old, "old/config.json").warmup_width == 0.2


def test_damaged_config_and_checkpoint_are_named(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(TINY + ["--out", str(out)]) == 0
    capsys.readouterr()
    ck = out / "checkpoints" / "native_tssl-seed0.pt"
    good = ck.read_bytes()
    ck.write_bytes(good[: len(good) // 2])  # truncated
    assert cli.main(["--resume", str(out), "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert str(ck) in line and "delete it" in line
    ck.write_bytes(good)
    cfg = out / "config.json"
    cfg.write_text(cfg.read_text()[:40])
    assert cli.main(["--resume", str(out), "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert str(cfg) in line and "damaged" in line
    cfg.write_text(json.dumps({"epochs": 2, "colour": "blue"}))
    assert cli.main(["--resume", str(out), "--quiet"]) == 2
    assert "colour" in _one_line_error(capsys)
    cfg.write_text(json.dumps({"epochs": 2, "threshold": -1}))
    assert cli.main(["--resume", str(out), "--quiet"]) == 2
    assert "--threshold" in _one_line_error(capsys)


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, so that Python installs its KeyboardInterrupt handler
    (a process started in the background by a non-interactive shell inherits SIGINT ignored, and so would the
    tssl-bench child: the signal would be lost and the run would go on)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path):
    out = tmp_path / "run"
    # 5000 epochs: the run is still going when this (polling) process sees the first checkpoint
    cmd = [sys.executable, "-m", "tssl_plugin.benchmarks", "--backends", "native:tssl,snntorch:atan",
           "--limit-train", "512", "--limit-test", "64", "--hidden", "32", "--epochs", "5000", "--seeds", "1",
           "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), preexec_fn=_default_sigint)
    try:
        first = out / "checkpoints" / "native_tssl-seed0.pt"
        deadline = time.time() + 120
        while not first.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"tssl-bench: interrupted; the finished epochs are saved in {out}; continue with: "
                     f"tssl-bench --resume {out}"]


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        report.atomic_write_text(tmp_path / "a.md", "x")
        report.atomic_torch_save(tmp_path / "c.pt", {"a": 1})
        assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644
        os.umask(0o077)
        report.atomic_write_json(tmp_path / "b.json", {})
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
        os.chmod(tmp_path / "a.md", 0o640)  # an existing file keeps its mode, as with open(path, "w")
        report.atomic_write_text(tmp_path / "a.md", "y")
        assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_resumed_progress_bars_start_where_the_run_stopped(tmp_path, monkeypatch):
    out = tmp_path / "run"
    both = Config(backends=["native:tssl", "snntorch:atan"], limit_train=64, limit_test=32, hidden=[16],
                            epochs=3, seeds=1)
    train_mod.run_benchmark(both, out, quiet=True, stop_after_epochs=1)
    native = Config(**{**both.__dict__, "backends": ["native:tssl"]})
    train_mod.run_benchmark(native, out, resume=True, quiet=True)  # native:tssl finished, snntorch:atan at 1 of 3
    seen = []
    real = train_mod.progress

    def spy(iterable, total, desc, quiet, leave=False, initial=0):
        items = list(iterable)
        seen.append((desc, total, initial, len(items)))
        return real(items, total, desc, quiet, leave, initial)

    monkeypatch.setattr(train_mod, "progress", spy)
    train_mod.run_benchmark(both, out, resume=True, quiet=True)
    epoch_bars = [s for s in seen if "seed" in s[0]]
    assert epoch_bars == [("native:tssl seed 0", 3, 3, 0),  # finished: a full bar, nothing left
                          ("snntorch:atan seed 0", 3, 1, 2)]  # half done: 1 of 3 done, 2 to go


def test_help_is_plain_text_with_flags_off_by_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "`" not in text
    flat = " ".join(text.split())
    assert "default: True" not in flat and "default: False" not in flat
    assert "--no-warmup turn off TSSL-BP's warm-up surrogate for silent neurons (the pure rule) (default: off)" in flat
    for name in ("mnist-cnn", "fmnist-mlp", "fmnist-cnn", "nmnist-cnn-t30", "nmnist-cnn-t100", "cifar10-cnn1"):
        assert name in flat
    with pytest.raises(SystemExit):
        cli.main(["speed", "--help"])
    assert "`" not in capsys.readouterr().out


def test_speed_refuses_bad_counts_before_writing(tmp_path, capsys):
    out = tmp_path / "speed"
    for bad in (["--repeats", "0"], ["--untimed", "-1"], ["--batch-size", "0"], ["--threshold", "0"],
                ["--device", "foo"]):
        assert _rc(["speed", "--backends", "native:tssl", "--steps", "4", "--sizes", "8", "--out", str(out)]
                   + bad) == 2
        line = _one_line_error(capsys)
        assert bad[0] in line
        assert not out.exists()


def test_missing_extras_reported_together_before_any_work(tmp_path, capsys, monkeypatch):
    gone = {"matplotlib", "tqdm", "snntorch", "sklearn"}
    real = extras._installed
    monkeypatch.setattr(extras, "_installed", lambda m: m.split(".")[0] not in gone and real(m))
    out = tmp_path / "o"
    assert cli.main(["--backends", "native:tssl,snntorch:atan", "--out", str(out), "--quiet"]) == 2
    line = _one_line_error(capsys)
    for name in ("matplotlib", "sklearn", "snntorch"):
        assert name in line
    assert "pip install 'tssl-plugin[bench,snntorch]'" in line and not out.exists()
    # speed: checked before the sweep, not at plotting time
    assert cli.main(["speed", "--backends", "native:tssl", "--steps", "4", "--sizes", "8", "--out", str(out),
                     "--quiet"]) == 2
    assert "matplotlib" in _one_line_error(capsys) and not out.exists()


def test_time_memory_plot_labels_do_not_overlap(tmp_path):
    from tssl_plugin.benchmarks.memory import MEASURE_LABELS

    fig = report.bars_figure(["native:tssl", "snntorch:tssl", "spikingjelly:tssl", "snntorch:atan"],
                             [("seconds per epoch", [1, 2, 3, 4], [0.1] * 4, "training wall time"),
                              ("peak memory MB", [5, 6, 7, 8], None,
                               MEASURE_LABELS["cpu_autograd_saved_tensors_plus_params_grads_optimizer"])],
                             "digits: training time and memory per backend")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [fig._suptitle] + [t for ax in fig.axes for t in (ax.yaxis.label, ax.title)]
    boxes = [t.get_window_extent(r) for t in texts if t.get_text()]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    import matplotlib.pyplot as plt

    plt.close(fig)


def _unwritable_dirs(tmp_path):
    """Folders this process cannot write into: a 0o500 folder (not for root), and /proc, /sys where present."""
    dirs = []
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        dirs.append(ro)
    dirs += [Path(p) for p in ("/proc", "/sys") if Path(p).is_dir()]
    if not dirs:
        pytest.skip("no folder here that this process cannot write into")
    return dirs


@pytest.mark.parametrize("command", [TINY, ["hosts", "--seeds", "1", "--epochs", "1"],
                                     ["speed", "--backends", "native:tssl", "--quiet"]],
                         ids=["train", "hosts", "speed"])
def test_unwritable_out_is_one_line_before_any_work(tmp_path, capsys, command):
    for parent in _unwritable_dirs(tmp_path):
        for out in (parent / "tssl-bench-out", parent / "a" / "b"):
            assert _rc(command + ["--out", str(out)]) == 2
            line = _one_line_error(capsys)
            assert "error" in line and "--out" in line and "cannot write" in line, line


def test_without_a_terminal_each_epoch_prints_one_line(tmp_path, capsys):
    """stdout not a terminal (CI, `> log`): one flushed line per epoch as it finishes; --quiet: none."""
    assert cli.main(TINY[:-1] + ["--out", str(tmp_path / "run")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " epoch " in ln]
    assert [ln.split(": ")[0] for ln in lines] == ["native:tssl seed 0 epoch 1/2", "native:tssl seed 0 epoch 2/2"]
    assert all("test accuracy" in ln and "train loss" in ln for ln in lines)
    assert cli.main(TINY + ["--out", str(tmp_path / "quiet")]) == 0
    assert not [ln for ln in capsys.readouterr().out.splitlines() if " epoch " in ln]


def test_progress_lines_are_flushed(monkeypatch):
    import io

    from tssl_plugin.benchmarks import progress

    class Log(io.StringIO):
        flushed = ""

        def flush(self):
            Log.flushed = self.getvalue()

    log = Log()
    monkeypatch.setattr(sys, "stdout", log)
    progress.progress_line("run 1/4 done")
    assert Log.flushed == "run 1/4 done\n"
    assert progress.progress_lines(quiet=False) and not progress.progress_lines(quiet=True)
