"""tools/compare_official.py: the check of the native networks against the official TSSL-BP code.

The official code is not part of this repository; the comparison itself runs when
``TSSL_OFFICIAL_DIR`` names a local clone of github.com/stonezwr/TSSL-BP (see docs/benchmarks.md for
the measured result), and the refusals run always.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compare_official.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=600)


def test_refuses_a_folder_that_is_not_the_official_code(tmp_path):
    r = _run("--official", str(tmp_path), "--preset", "mnist-cnn")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a clone of stonezwr/TSSL-BP" in lines[0] and "git clone" in lines[0]


def test_refuses_an_unknown_preset(tmp_path):
    r = _run("--official", str(tmp_path), "--preset", "cifar10-cnn1")
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.skipif(not os.environ.get("TSSL_OFFICIAL_DIR"), reason="set TSSL_OFFICIAL_DIR to a clone of stonezwr/TSSL-BP")
@pytest.mark.parametrize("preset", ["mnist-cnn", "fmnist-cnn", "fmnist-mlp"])
def test_native_network_equals_the_official_code(preset):
    r = _run("--official", os.environ["TSSL_OFFICIAL_DIR"], "--preset", preset, "--batch", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "same within 1e-12" in r.stdout
