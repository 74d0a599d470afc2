"""Every Python block of the README and docs/ runs as written (blocks of one page share one namespace, in order)."""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
#: blocks with their own test (they train): README's quickstart and examples, in tests/test_readme.py.
OWN_TEST = ("quickstart", "snntorch-example", "spikingjelly-example")


def python_blocks(page: Path):
    """``(marker, code)`` of every fenced ```python block of ``page``; marker is the ``<!-- x -->`` before it."""
    text = page.read_text()
    out = []
    for m in re.finditer(r"(?:<!-- ([\w-]+) -->\s*)?```python\n(.*?)```", text, re.S):
        out.append((m.group(1), m.group(2)))
    return out


def fence_languages(page: Path):
    """The language of every fenced block of ``page`` ("" where none is given)."""
    langs, inside = [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            if not inside:
                langs.append(line.lstrip()[3:].strip())
            inside = not inside
    assert not inside, f"{page.name}: an unclosed code fence"
    return langs


def test_every_code_block_names_its_language():
    """Python blocks run here; a block without a language would silently escape the check."""
    for page in PAGES:
        assert all(fence_languages(page)), f"{page.name}: a code block without a language"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, capsys):
    blocks = [(marker, code) for marker, code in python_blocks(page) if marker not in OWN_TEST]
    if not blocks:
        pytest.skip(f"{page.name} has no Python block of its own")
    pytest.importorskip("sklearn")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ns: dict = {"__name__": f"doc_{page.stem}"}
        for i, (_, code) in enumerate(blocks):
            exec(compile(code, f"{page.name}[block {i}]", "exec"), ns)
    finally:
        torch.set_num_threads(n)
