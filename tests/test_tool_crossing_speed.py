"""tools/crossing_speed.py: the interleaved timing of crossing="step" against the default (a tiny run)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("spikingjelly")

TOOL = Path(__file__).resolve().parents[1] / "tools" / "crossing_speed.py"


def test_prints_both_medians_and_their_ratio():
    r = subprocess.run([sys.executable, str(TOOL), "--hidden", "16", "--steps", "3", "--batch-size", "4",
                        "--repeats", "3", "--untimed", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"step ([\d.]+) ms, interpolated ([\d.]+) ms, ratio interpolated/step ([\d.]+) \(median of 3, "
                     r"T 3, batch 4, hidden 16\)", r.stdout.strip())
    assert m, r.stdout
    step, interp, ratio = map(float, m.groups())
    assert step > 0 and interp > 0 and abs(ratio - interp / step) < 0.01
