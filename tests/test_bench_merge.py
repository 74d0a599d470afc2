"""``tssl-bench merge``: runs trained as separate processes give the summary one joint run gives."""
import json

import pytest

from tssl_plugin.benchmarks import cli
from tssl_plugin.benchmarks import train as train_mod
from tssl_plugin.benchmarks.config import Config

SMALL = dict(limit_train=300, limit_test=100, hidden=[32], epochs=2, seeds=1, threads=1)
#: what a merge must reproduce exactly (timings and memory are the machine's, not the run's).
SAME = ("test_accuracy", "test_accuracy_per_seed", "best_per_seed", "epochs_per_seed", "train_accuracy",
        "train_loss", "firing_rates", "synops_per_sample", "acs_per_sample", "macs_per_sample",
        "activation_sparsity", "seeds", "loss")


def _run(out, backends, stop=None, **kw):
    cfg = Config(backends=backends, **{**SMALL, **kw})
    return train_mod.run_benchmark(cfg, out, quiet=True, stop_after_epochs=stop)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    joint = _run(root / "joint", ["native:tssl", "snntorch:atan"])
    _run(root / "a", ["native:tssl"])
    _run(root / "b", ["snntorch:atan"])
    return root, joint


def _merge(*args):
    return cli.main(["merge", *map(str, args)])


def test_merged_runs_equal_one_joint_run(runs, capsys):
    root, joint = runs
    assert _merge(root / "a", root / "b", "--out", root / "m") == 0
    merged = json.loads((root / "m" / "summary.json").read_text())
    assert [r["backend"] for r in merged["runs"]] == ["native:tssl", "snntorch:atan"]
    for mine, theirs in zip(merged["runs"], joint["runs"]):
        for key in SAME:
            assert mine[key] == theirs[key], (mine["backend"], key)
        assert mine["curve"]["test_accuracy"] == theirs["curve"]["test_accuracy"]
        assert mine["test_accuracy"] > 0.2  # above chance (0.1): not two untrained runs compared
    files = sorted(p.name for p in (root / "m").iterdir())
    assert "config.json" not in files and "checkpoints" not in files  # nothing to --resume by mistake
    assert {"summary.md", "summary.csv", "results.jsonl", "merged_from.json", "accuracy_vs_epoch.png"} <= set(files)
    sources = json.loads((root / "m" / "merged_from.json").read_text())["folders"]
    assert sources == [str((root / "a").resolve()), str((root / "b").resolve())]
    md = (root / "m" / "summary.md").read_text()
    assert "Merged from 2 runs" in md and "Unfinished" not in md
    # every record says which machine ran it, so the merged summary can name the machine
    assert merged["machine"] is not None and "Machine: " in md and "not recorded" not in md
    assert "snntorch:atan" in capsys.readouterr().out


def test_unfinished_run_is_merged_with_its_epochs_and_says_how_to_continue(runs, capsys):
    root, _ = runs
    _run(root / "half", ["spikingjelly:sigmoid"], stop=1)
    assert _merge(root / "a", root / "half", "--out", root / "m-half") == 0
    md = (root / "m-half" / "summary.md").read_text()
    assert "`spikingjelly:sigmoid` seed 0 has 1 of 2 epochs" in md
    assert f"tssl-bench --resume {root / 'half'}" in md
    assert "has 1 of 2 epochs" in capsys.readouterr().err
    summary = json.loads((root / "m-half" / "summary.json").read_text())
    assert [r["epochs_per_seed"] for r in summary["runs"]] == [[2], [1]]


def test_seeds_from_separate_runs_are_pooled(runs):
    root, _ = runs
    _run(root / "seed1", ["native:tssl"], seed=1)
    assert _merge(root / "a", root / "seed1", "--out", root / "m-seeds") == 0
    (run,) = json.loads((root / "m-seeds" / "summary.json").read_text())["runs"]
    assert run["seeds"] == [0, 1] and run["test_accuracy_std"] >= 0.0
    assert "seeds 0, 1" in (root / "m-seeds" / "summary.md").read_text()


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tssl-bench merge: error: ")
    return err[0]


def test_refuses_runs_with_different_settings(runs, capsys):
    root, _ = runs
    _run(root / "lr", ["snntorch:atan"], lr=0.01)
    assert _merge(root / "a", root / "lr", "--out", root / "no") == 2
    msg = _error(capsys)
    assert "differ in lr" in msg and "0.01" in msg
    assert not (root / "no").exists()  # nothing written for a refused merge


def test_refuses_what_cannot_be_merged(runs, capsys, tmp_path):
    root, _ = runs
    assert _merge(root / "a", root / "joint", "--out", tmp_path / "x") == 2
    assert "native:tssl seed 0 is in both" in _error(capsys)
    assert _merge(root / "a", root / "a", "--out", tmp_path / "x") == 2
    assert "given twice" in _error(capsys)
    assert _merge(root / "a", root / "b", "--out", root / "a") == 2
    assert "is one of the runs" in _error(capsys)
    before = (root / "joint" / "results.jsonl").read_text()
    for flag in ([], ["--overwrite"]):  # another run's folder is never written into
        assert _merge(root / "a", root / "b", "--out", root / "joint", *flag) == 2
        assert "holds a training run" in _error(capsys)
    assert (root / "joint" / "results.jsonl").read_text() == before
    assert _merge(root / "a", tmp_path, "--out", tmp_path / "x") == 2
    assert "no config.json there" in _error(capsys)
    assert not (tmp_path / "x").exists()


def test_an_earlier_merge_is_kept_unless_overwrite(runs, capsys):
    root, _ = runs
    assert _merge(root / "a", root / "b", "--out", root / "m2") == 0
    before = (root / "m2" / "summary.md").read_text()
    assert _merge(root / "a", root / "b", "--out", root / "m2") == 2
    msg = _error(capsys)
    assert "already holds a merged summary" in msg and "add --overwrite" in msg
    assert (root / "m2" / "summary.md").read_text() == before
    assert _merge(root / "a", root / "b", "--out", root / "m2", "--overwrite") == 0
    # a merged folder is not a run: neither a source of another merge nor something to resume
    assert _merge(root / "m2", root / "a", "--out", root / "m3") == 2
    assert "is a merged summary, not a run" in _error(capsys)
    assert cli.main(["--resume", str(root / "m2")]) == 2
    assert "no config.json" in capsys.readouterr().err


def _copy_with_records(src, dst, change):
    """A copy of the run folder ``src`` whose epoch records went through ``change(record)``."""
    import shutil

    shutil.copytree(src, dst)
    lines = (dst / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for r in records:
        change(r)
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_merged_summary_names_the_code(runs):
    root, _ = runs
    assert _merge(root / "a", root / "b", "--out", root / "m-code") == 0
    summary = json.loads((root / "m-code" / "summary.json").read_text())
    code = summary["code"]
    assert code is not None and code["tssl_plugin"] and code["torch"]
    assert [r["tssl_impl"] for r in summary["runs"]] == [[json.loads(
        (root / "a" / "results.jsonl").read_text().splitlines()[0])["tssl_impl"]], [None]]
    assert "Code: tssl-plugin " in (root / "m-code" / "summary.md").read_text()


def test_refuses_runs_made_by_different_code_unless_told(runs, capsys):
    root, _ = runs

    def other_commit(r):
        r["code"] = {**r["code"], "commit": "0" * 40, "torch": "1.0.0"}

    _copy_with_records(root / "b", root / "b-other-code", other_commit)
    assert _merge(root / "a", root / "b-other-code", "--out", root / "no-code") == 2
    msg = _error(capsys)
    assert "different code" in msg and "commit " in msg and "0000000" in msg and "torch " in msg and "1.0.0" in msg
    assert "--allow-different-code" in msg and str(root / "b-other-code") in msg
    assert not (root / "no-code").exists()
    assert _merge(root / "a", root / "b-other-code", "--out", root / "yes-code", "--allow-different-code") == 0
    summary = json.loads((root / "yes-code" / "summary.json").read_text())
    md = (root / "yes-code" / "summary.md").read_text()
    assert summary["code"] is None and "Different code (merged with --allow-different-code)" in md
    assert "Code: not the same for every record" in md


def test_refuses_runs_of_which_one_does_not_record_its_code(runs, capsys):
    root, _ = runs

    def old_version(r):
        del r["code"], r["tssl_impl"]

    _copy_with_records(root / "b", root / "b-old", old_version)
    assert _merge(root / "a", root / "b-old", "--out", root / "no-old") == 2
    assert f"code not recorded in {root / 'b-old'} (snntorch:atan seed 0 epoch 1)" in _error(capsys)


def test_merging_one_run_says_run_not_runs(runs, capsys):
    root, _ = runs
    assert _merge(root / "a", "--out", root / "m-one") == 0
    out = capsys.readouterr().out
    assert "merged 1 run into" in out and "1 runs" not in out
