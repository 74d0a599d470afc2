"""tools/step_compile_speed.py: one step's backward, operator and bool-store timings (a tiny run)."""
import re
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "step_compile_speed.py"


def test_prints_three_lines_per_shape():
    r = subprocess.run([sys.executable, str(TOOL), "--shapes", "4x6,2x3x2", "--repeats", "3", "--untimed", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    num = r"(\d+) us"
    patterns = [rf"{{s}} backward: fused {num}, reference eager {num}, reference compiled {num} \((cpu|reference)\)",
                rf"{{s}} operator: step_forward direct {num}, through the operator {num}",
                rf"{{s}} bool: x > 1 eager {num}, compiled {num}"]
    assert len(lines) == 6
    for i, shape in enumerate(("4x6", "2x3x2")):
        for j, pat in enumerate(patterns):
            assert re.fullmatch(pat.format(s=shape), lines[3 * i + j]), lines[3 * i + j]
