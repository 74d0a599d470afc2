"""The installed distribution exposes one top-level name, tssl_plugin, with adapters and benchmarks inside."""
import importlib.util
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest


def test_only_tssl_plugin_is_a_top_level_name(tmp_path):
    code = (
        "import importlib.util as u, tssl_plugin.adapters, tssl_plugin.benchmarks;"
        "print(u.find_spec('adapters'), u.find_spec('benchmarks'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "None"]


def test_console_script_points_into_the_package():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert eps.get("tssl-bench") == "tssl_plugin.benchmarks.cli:main"


def test_extras_declared():
    extras = set(metadata.metadata("tssl-plugin").get_all("Provides-Extra"))
    assert {"snntorch", "spikingjelly", "bench", "dev", "all"} <= extras


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An sdist built from this checkout, and a wheel built from that unpacked sdist (offline, no isolation)."""
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 70 and importlib.util.find_spec("wheel") is None:
        pytest.skip("building a wheel with setuptools < 70 needs the wheel package (pip install wheel; it is in the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    code = (
        "import sys; from setuptools import build_meta as b;"
        "print(b.build_sdist(sys.argv[1]))"
    )
    name = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.split()[-1]
    with tarfile.open(out / name) as tar:
        sdist = sorted(m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name)
        tar.extractall(out / "src")
    src = next((out / "src").iterdir())
    wcode = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    wname = subprocess.run([sys.executable, "-c", wcode, str(out)], cwd=src, capture_output=True,
                           text=True, check=True).stdout.split()[-1]
    with zipfile.ZipFile(out / wname) as whl:
        wheel = sorted(whl.namelist())
    return sdist, wheel


def test_license_is_mit_and_in_the_repository():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the tssl-plugin authors" in text


def test_sdist_and_wheel_carry_the_license(built):
    sdist, wheel = built
    assert "LICENSE" in sdist
    # setuptools puts it in .dist-info/ (older) or .dist-info/licenses/ (PEP 639, newer)
    assert any(f.endswith((".dist-info/LICENSE", ".dist-info/licenses/LICENSE")) for f in wheel), \
        [f for f in wheel if "dist-info" in f]


def test_sdist_ships_no_tests_it_cannot_run(built):
    """The tests need the repository (conftest.py, tests/data, docs/, tools/); the sdist is for building."""
    sdist, _ = built
    assert not [f for f in sdist if f.startswith("tests/")]
    assert "tssl_plugin/_impl/csrc/tssl_cpu.c" in sdist


def test_a_missing_optional_dependency_names_its_extra():
    from tssl_plugin._optional import require

    assert require("math", "bench").sqrt(4.0) == 2.0
    with pytest.raises(ImportError, match=r"^tssl_no_such_module is required for this feature; install it with: "
                                          r"pip install 'tssl-plugin\[snntorch\]'$"):
        require("tssl_no_such_module", "snntorch")


def test_every_source_module_has_its_tests_listed():
    """tests/README.md names, for every module of tssl_plugin/, adapters/ and benchmarks/, the test modules that
    check it, and every test file it names exists."""
    import re

    text = (ROOT / "tests" / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([\w/]+\.py)` \| (.+) \|$", text, re.M))
    sources = {str(p.relative_to(ROOT)) for d in ("tssl_plugin", "adapters", "benchmarks")
               for p in (ROOT / d).rglob("*.py")}
    assert sorted(sources - set(rows)) == [], "modules without a row in tests/README.md"
    assert sorted(set(rows) - sources) == [], "rows of tests/README.md for modules that do not exist"
    named = set(re.findall(r"\b(test_\w+\.py)\b", text))
    assert named and sorted(n for n in named if not (ROOT / "tests" / n).exists()) == []
