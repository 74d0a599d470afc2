import os
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


def reference_files():
    """The public vectors, plus any files named in TSSL_REFERENCE_FILES (os.pathsep-separated)."""
    files = [DATA / "tssl_reference_public.pt"]
    extra = os.environ.get("TSSL_REFERENCE_FILES", "")
    files += [Path(p) for p in extra.split(os.pathsep) if p]
    return files


def load_cases():
    cases = []
    for f in reference_files():
        ref = torch.load(f, weights_only=True)
        assert ref["format"] == "tssl-bp-reference-v1", f
        for c in ref["cases"]:
            cases.append(pytest.param(c, id=f"{f.stem}:{c['name']}"))
    return cases


def pytest_collection_modifyitems(config, items):
    """Tests marked ``triton`` run in Triton's interpreter, which needs TRITON_INTERPRET=1 before triton is
    imported: without it they are deselected (the default run covers them with
    ``test_impl_triton.py::test_interpreter_checks_pass``, which runs them in a process of their own)."""
    from tssl_plugin._impl import TRITON_INTERPRET

    if TRITON_INTERPRET:
        return
    marked = [item for item in items if item.get_closest_marker("triton")]
    if not marked:
        return
    if "triton" in (config.option.markexpr or "") and "not triton" not in config.option.markexpr:
        raise pytest.UsageError("-m triton runs the Triton kernels in the interpreter: set TRITON_INTERPRET=1 "
                                "(TRITON_INTERPRET=1 pytest -m triton)")
    config.hook.pytest_deselected(items=marked)
    items[:] = [item for item in items if not item.get_closest_marker("triton")]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Step loops are many tiny ops: one thread is ~10x faster than two on a shared 2-core machine.
    Modules of step-loop tests opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
