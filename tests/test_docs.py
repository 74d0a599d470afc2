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


def documented_commands():
    """Every ``tssl-bench ...`` (or ``python -m tssl_plugin.benchmarks ...``) line of a bash block, as argv."""
    import shlex

    out = []
    for page in PAGES:
        text = page.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.split(" #")[0].strip().removesuffix("&").strip()  # a background job
                for prefix in ("tssl-bench", "python -m tssl_plugin.benchmarks", ".venv/bin/tssl-bench"):
                    if prefix in line:
                        argv = shlex.split(line.split(prefix, 1)[1].split("&&")[0])
                        out.append((page.name, line, argv))
                        break
        for span in re.findall(r"`((?:tssl-bench|python -m tssl_plugin\.benchmarks) [^`]*)`", text):
            if "SUB-COMMAND" in span or "..." in span or "--preset NAME" in span:
                continue  # a pattern, not a command
            argv = shlex.split(span.split(" ", 1)[1] if span.startswith("tssl-bench") else span.split("benchmarks", 1)[1])
            if argv in (["merge"], ["hosts"], ["study"], ["speed"], ["reproduce"], ["tutorials"], ["sweep"]):
                continue  # a sub-command's name in the text, not a command
            out.append((page.name, span, argv))
    return out


def test_documented_commands_parse():
    """Each documented tssl-bench command names options its parser knows (a renamed option fails here)."""
    pytest.importorskip("sklearn")
    from tssl_plugin.benchmarks import (cli, hosts, merge, reproduce, speed_gpu_layer, speed_host_step, speed_layer,
                                        speed_mlp_step, speed_scaling, study, sweep, tutorials)

    speeds = {"layer": speed_layer, "mlp-step": speed_mlp_step, "scaling": speed_scaling, "gpu-layer": speed_gpu_layer,
              "host-step": speed_host_step}
    commands = documented_commands()
    assert len(commands) >= 30
    bad = []
    for page, line, argv in commands:
        if "--help" in argv:
            continue
        if argv and argv[0] == "sweep":
            try:
                sweep.check_command(argv[1:])
            except (SystemExit, ValueError):
                bad.append(f"{page}: {line}")
            continue
        if argv and argv[0] == "speed":
            rest = argv[1:]
            module = speeds.get(rest[0], speed_layer) if rest else speed_layer
            parser = module.build_parser()
            argv = rest[1:] if rest and rest[0] in speeds else rest
        elif argv and argv[0] in ("hosts", "study", "merge", "reproduce", "tutorials"):
            parser = {"hosts": hosts, "study": study, "merge": merge, "reproduce": reproduce,
                      "tutorials": tutorials}[argv[0]].build_parser()
            argv = argv[1:]
        else:
            parser = cli.build_parser()
        try:
            parser.parse_args(argv)
        except SystemExit:
            bad.append(f"{page}: {line}")
    assert not bad, "documented commands that do not parse:\n" + "\n".join(bad)
