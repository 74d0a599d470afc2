"""``tssl-bench reproduce``: re-run a finished run's first epochs and compare record by record."""
import hashlib
import json
import shutil

import pytest

from tssl_plugin.benchmarks import cli
from tssl_plugin.benchmarks import train as train_mod
from tssl_plugin.benchmarks.config import Config
from tssl_plugin.benchmarks.reproduce import REL_TOL


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    cfg = Config(backends=["native:tssl", "snntorch:atan"], limit_train=200, limit_test=60, hidden=[16],
                 epochs=3, seeds=1, threads=1)
    train_mod.run_benchmark(cfg, root / "run", quiet=True)
    return root


def _digest(folder):
    """Every file under ``folder`` with its content hash (to check that nothing was written there)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tampered(root, name, change):
    """A copy of the run whose epoch records went through ``change(record)``."""
    dst = root / name
    shutil.copytree(root / "run", dst)
    records = [json.loads(line) for line in (dst / "results.jsonl").read_text().splitlines()]
    for r in records:
        change(r)
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return dst


def _reproduce(*args):
    return cli.main(["reproduce", *map(str, args), "--quiet"])


def _lines(capsys):
    return {line.split(": ", 1)[0]: line for line in capsys.readouterr().out.splitlines() if " seed " in line}


def test_same_code_reproduces_every_record_exactly(run, capsys):
    before = _digest(run / "run")
    assert _reproduce(run / "run", "--epochs", "2", "--out", run / "again") == 0
    lines = _lines(capsys)
    assert set(lines) == {"native:tssl seed 0", "snntorch:atan seed 0"}
    for line in lines.values():
        assert ": equal (2 epochs;" in line and "recorded: same code, implementation and machine" in line
        assert "s/epoch " in line
    assert _digest(run / "run") == before  # the original is only read
    again = [json.loads(line) for line in (run / "again" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["backend"], r["epoch"]) for r in again) == [("native:tssl", 1), ("native:tssl", 2),
                                                                 ("snntorch:atan", 1), ("snntorch:atan", 2)]
    saved = json.loads((run / "again" / "reproduce.json").read_text())
    assert [c["verdict"] for c in saved["comparisons"]] == ["equal", "equal"]
    assert saved["tolerance"]["relative"] == REL_TOL and saved["defaults_used"] == {}


def test_different_code_is_named_even_when_the_numbers_agree(run, capsys):
    def other_code(r):
        r["code"] = {**r["code"], "commit": "0" * 40, "modified": not r["code"]["modified"], "torch": "2.4.0"}
        if r["tssl_impl"] is not None:
            r["tssl_impl"] = "reference"

    src = _tampered(run, "other-code", other_code)
    assert _reproduce(src, "--epochs", "1", "--out", run / "other-code-again") == 0
    lines = _lines(capsys)
    native, atan = lines["native:tssl seed 0"], lines["snntorch:atan seed 0"]
    assert ": equal (1 epoch;" in native and "commit 0000000 vs " in native and "modified tree " in native
    assert "torch 2.4.0 vs " in native and "TSSL-BP implementation reference vs " in native
    assert "commit 0000000 vs " in atan and "TSSL-BP implementation" not in atan  # a surrogate backend runs no op


def test_different_numbers_are_found_with_their_epoch(run, capsys):
    def bump(r):
        if r["backend"] == "native:tssl" and r["epoch"] == 2:
            r["test_accuracy"] += 0.01
        if r["backend"] == "snntorch:atan":
            r["train_loss"] *= 1 + REL_TOL / 10  # float noise

    src = _tampered(run, "other-numbers", bump)
    assert _reproduce(src, "--epochs", "2", "--out", run / "other-numbers-again") == 1
    lines = _lines(capsys)
    assert ": different (2 epochs; first at epoch 2 test_accuracy: " in lines["native:tssl seed 0"]
    assert ": within float noise (2 epochs; largest relative difference " in lines["snntorch:atan seed 0"]
    assert "recorded: same code" in lines["native:tssl seed 0"]


def test_runs_without_recorded_code_are_compared_and_say_so(run, capsys):
    def old_version(r):
        for key in ("code", "tssl_impl", "machine", "synops_per_layer"):
            r.pop(key, None)

    src = _tampered(run, "old", old_version)
    config = json.loads((src / "config.json").read_text())
    del config["warmup_width"]  # a field older versions did not write
    (src / "config.json").write_text(json.dumps(config))
    assert _reproduce(src, "--epochs", "1", "--backends", "native:tssl", "--out", run / "old-again") == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if " seed " in x]
    assert line.startswith("native:tssl seed 0: equal (1 epoch;")
    assert "code not recorded in the original" in line and "TSSL-BP implementation not recorded vs " in line
    assert "machine not recorded in the original" in line
    assert "settings absent from the original config.json, taken from today's defaults: warmup_width=" in out


def test_default_folder_is_new_and_beside_the_run(run, capsys, monkeypatch):
    monkeypatch.chdir(run)
    assert _reproduce("run", "--epochs", "1", "--backends", "snntorch:atan") == 0
    made = [p for p in run.iterdir() if p.name.startswith("run-reproduce-")]
    assert len(made) == 1 and (made[0] / "reproduce.json").exists()
    assert f"into {made[0].resolve()}" in capsys.readouterr().out


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tssl-bench reproduce: error: ")
    return err[0]


def test_bad_requests_are_refused_in_one_line(run, capsys, tmp_path):
    before = _digest(run / "run")
    for epochs in ("0", "4"):
        assert _reproduce(run / "run", "--epochs", epochs, "--out", tmp_path / "x") == 2
        assert f"--epochs {epochs}: must be an integer from 1 to the run's 3 epochs" in _error(capsys)
    for out in (run / "run", run / "run" / "inside"):
        for flag in ([], ["--overwrite"]):
            assert _reproduce(run / "run", "--epochs", "1", "--out", out, *flag) == 2
            assert "never writes into the run it checks" in _error(capsys)
    assert _reproduce(run / "run", "--epochs", "1", "--backends", "spikingjelly:sigmoid", "--out", tmp_path / "x") == 2
    assert "spikingjelly:sigmoid not in the run" in _error(capsys)
    assert _reproduce(tmp_path / "nothing", "--epochs", "1") == 2
    assert "no such folder" in _error(capsys)
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "merged_from.json").write_text("{}")
    assert _reproduce(tmp_path / "merged", "--epochs", "1") == 2
    assert "is a merged summary, not a run" in _error(capsys)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "results.jsonl").write_text("")
    assert _reproduce(run / "run", "--epochs", "1", "--out", tmp_path / "taken") == 2
    assert "already holds tssl-bench results" in _error(capsys)
    assert not (tmp_path / "x").exists()
    assert _digest(run / "run") == before
