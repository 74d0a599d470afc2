"""The README's quickstart runs and does what the README says; its commands are the ones CI runs."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(marker: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README has no code block after <!-- {marker} -->"
    return m.group(1)


def test_quickstart_trains_to_stated_accuracy(capsys):
    pytest.importorskip("sklearn")
    code = _block_after("quickstart")
    assert len(code.strip().splitlines()) <= 14
    ns: dict = {}
    exec(compile(code, "README-quickstart", "exec"), ns)
    assert ns["accuracy"] >= 0.90
    assert "test accuracy" in capsys.readouterr().out


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci  # .ci/run extracts and runs the README block verbatim
    assert "pytest" in _block_after("test-command")
