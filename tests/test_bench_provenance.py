"""Every epoch record and summary names the code that produced it (machine.code_info, the TSSL-BP impl)."""
import json
import subprocess
from pathlib import Path

import pytest

import tssl_plugin
from tssl_plugin.benchmarks import machine as MI
from tssl_plugin.benchmarks import train as train_mod
from tssl_plugin.benchmarks.config import Config
from tssl_plugin.functional import impl_names

REPO = Path(tssl_plugin.__file__).resolve().parent.parent


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(cwd), *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "run"
    cfg = Config(backends=["native:tssl", "snntorch:atan"], limit_train=200, limit_test=60, hidden=[16], epochs=2,
                 seeds=1, threads=1)
    summary = train_mod.run_benchmark(cfg, out, quiet=True)
    return out, summary


def test_every_record_and_the_summary_name_the_code(run):
    out, summary = run
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4
    expected = MI.code_info()
    import snntorch
    import torch

    assert expected["tssl_plugin"] == tssl_plugin.__version__ and expected["torch"] == torch.__version__
    assert expected["snntorch"] == snntorch.__version__
    if expected["spikingjelly"] is not None:  # SpikingJelly 2.0 has no __version__: the distribution's
        from importlib.metadata import version

        assert expected["spikingjelly"] == version("spikingjelly")
    for r in records:
        assert r["code"] == expected
        assert r["machine"]["cpu"] == MI.cpu_model() and r["machine"]["spikingjelly"] == expected["spikingjelly"]
        assert r["tssl_impl"] in impl_names() if r["backend"] == "native:tssl" else r["tssl_impl"] is None
    assert summary["code"] == expected
    assert json.loads((out / "summary.json").read_text())["code"] == expected
    assert [r["tssl_impl"] for r in summary["runs"]] == [[records[0]["tssl_impl"]], [None]]
    md = (out / "summary.md").read_text()
    assert f"Code: {MI.code_text(expected)}." in md
    assert f"TSSL-BP implementation: `native:tssl` {records[0]['tssl_impl']}." in md


def test_checkout_commit_is_recorded_when_running_from_one():
    state = MI.git_state()
    if not (REPO / ".git").exists():
        assert state == {"commit": None, "modified": None}
        return
    assert state["commit"] == _git(REPO, "rev-parse", "HEAD")
    assert state["modified"] == bool(_git(REPO, "status", "--porcelain", "--untracked-files=no"))


def test_git_state_of_a_package_folder(tmp_path):
    pkg = tmp_path / "repo" / "tssl_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    assert MI.git_state(pkg) == {"commit": None, "modified": None}  # no repository at all
    _git(tmp_path / "repo", "init", "-q")
    # a package inside a repository that does not track it (a wheel in a venv inside a checkout)
    assert MI.git_state(pkg) == {"commit": None, "modified": None}
    _git(tmp_path / "repo", "add", "tssl_plugin/__init__.py")
    _git(tmp_path / "repo", "commit", "-q", "-m", "one")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD")
    assert MI.git_state(pkg) == {"commit": head, "modified": False}
    (tmp_path / "repo" / "results").mkdir()
    (tmp_path / "repo" / "results" / "r.json").write_text("{}")  # untracked files are not a modification
    assert MI.git_state(pkg) == {"commit": head, "modified": False}
    (pkg / "__init__.py").write_text("x = 2\n")
    assert MI.git_state(pkg) == {"commit": head, "modified": True}
    # a package one level deeper is not at the top of the checkout: not this repository's package
    deeper = tmp_path / "repo" / "site" / "tssl_plugin"
    deeper.mkdir(parents=True)
    (deeper / "__init__.py").write_text("")
    assert MI.git_state(deeper) == {"commit": None, "modified": None}


def test_code_differences_name_each_field():
    a = {"tssl_plugin": "0.1.0", "commit": "a" * 40, "modified": False, "torch": "2.4", "snntorch": "1.0.0",
         "spikingjelly": None}
    assert MI.code_differences(a, dict(a)) == []
    assert MI.code_differences(None, None) == []
    b = {**a, "commit": "b" * 40, "modified": True, "spikingjelly": "2.0.0"}
    assert MI.code_differences(a, b) == ["commit aaaaaaa vs bbbbbbb", "modified tree no vs yes",
                                         "SpikingJelly not installed vs 2.0.0"]
    assert MI.code_differences(a, None, names=("A", "B")) == ["code not recorded in B"]
    assert MI.code_text(None) == "not recorded"
    assert MI.code_text({**a, "commit": None, "modified": None}) == \
        "tssl-plugin 0.1.0, not run from a git checkout, torch 2.4, snnTorch 1.0.0"
