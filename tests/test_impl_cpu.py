"""The fused C kernel (impl="cpu") against reference.py, its build cache and its fallback."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings

import pytest
import torch

from tssl_plugin import _impl
from tssl_plugin._impl import cpu
from tssl_plugin.functional import last_impl, resolve_impl, tssl_lif
from tssl_plugin.rule import RESETS

import impl_cases as cases

try:
    cpu.load()
    HAVE_CPU = True
except ImportError:  # no compiler on this machine: the fallback tests below still run
    HAVE_CPU = False
needs_cpu = pytest.mark.skipif(not HAVE_CPU, reason="C kernel could not be built here")


@needs_cpu
@pytest.mark.parametrize("seed, dtype, reset, warmup, output", **cases.params(cases.mode_cases()))
def test_matches_reference(seed, dtype, reset, warmup, output):
    cases.mode_case("cpu", seed, dtype, reset, warmup, output)


@needs_cpu
@pytest.mark.parametrize("reset, warmup, output", **cases.params(cases.MODES))
def test_per_neuron_params_match_reference(reset, warmup, output):
    cases.per_neuron_case("cpu", reset, warmup, output)


@needs_cpu
def test_per_neuron_threshold_only_float32_matches_reference():
    cases.per_neuron_mixed("cpu")


@needs_cpu
def test_noncontiguous_t1_and_empty():
    cases.layout_edge_cases("cpu")


@needs_cpu
@pytest.mark.parametrize("seed, reset, warmup", **cases.params(cases.TRACE_CASES))
def test_backward_from_trace_matches_reference(seed, reset, warmup):
    cases.from_trace_case(cpu.CpuImpl, seed, reset, warmup)


@needs_cpu
@pytest.mark.parametrize("seed, dtype, reset, output", **cases.params(cases.WIDTH_CASES))
def test_warmup_width_matches_reference(seed, dtype, reset, output):
    cases.warmup_width_case("cpu", seed, dtype, reset, output)


@needs_cpu
def test_warmup_width_per_neuron_matches_reference():
    cases.warmup_width_per_neuron("cpu")


@needs_cpu
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.GATE_CASES))
def test_warmup_gate_silent_matches_reference(seed, reset, output):
    cases.warmup_gate_case("cpu", seed, reset, output)


@needs_cpu
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.FLOOR_CASES))
def test_warmup_without_floor_matches_reference(seed, reset, output):
    cases.warmup_floor_case("cpu", seed, reset, output)


@needs_cpu
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.CROSSING_CASES))
def test_interpolated_crossing_matches_reference(seed, reset, output):
    cases.crossing_case("cpu", seed, reset, output)


@needs_cpu
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("check", [cases.warmup_width_from_trace, cases.sensitivity_cap_from_trace,
                                   cases.warmup_gate_from_trace, cases.warmup_floor_from_trace,
                                   cases.crossing_from_trace],
                         ids=["warmup-width", "per-neuron-sensitivity-cap-and-crossing", "warmup-gate-silent",
                              "warmup-without-floor", "interpolated-crossing"])
def test_option_from_trace_matches_reference(check, reset):
    check(cpu.CpuImpl, reset)


@needs_cpu
@pytest.mark.parametrize("seed, reset, output", **cases.params(cases.CAP_CASES))
def test_sensitivity_cap_matches_reference(seed, reset, output):
    cases.sensitivity_cap_case("cpu", seed, reset, output)


@needs_cpu
@pytest.mark.parametrize("seed, ablation, reset, warmup, output, dtype", **cases.params(cases.ABLATION_CASES))
def test_ablation_matches_reference(seed, ablation, reset, warmup, output, dtype):
    cases.ablation_case("cpu", seed, ablation, reset, warmup, output, dtype)


@needs_cpu
@pytest.mark.parametrize("ablation", ["no_intra", "no_spike_timing"])
def test_ablation_per_neuron_and_from_trace_match_reference(ablation):
    cases.ablation_per_neuron_and_trace("cpu", cpu.CpuImpl, ablation)


@needs_cpu
def test_reference_vectors():
    cases.reference_vectors("cpu")


@needs_cpu
@pytest.mark.parametrize("dtype, output", **cases.params(cases.HALF_CASES))
def test_half_precision(dtype, output):
    cases.half_precision_case("cpu", dtype, output)


@needs_cpu
def test_long_sequence_float32_close_to_float64():
    x, g = cases.random_case(200, (600,), torch.float64, 5)  # > one block of neurons, long T
    cases.check_against_reference("cpu", x, g)
    y, gx = cases.run("cpu", x.float(), g.float(), output="spike")
    y64, _ = cases.run("cpu", x, g, output="spike")
    assert (y != y64.float()).float().mean() < 1e-3  # flips only at float32 rounding of the threshold


@needs_cpu
def test_two_threads_match_reference():
    """Enough neurons that the kernel splits its blocks over two OpenMP threads (uneven last block)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert cpu._threads(20 * 7000) == 2
        x, g = cases.random_case(20, (7000,), torch.float64, 6)
        cases.check_against_reference("cpu", x, g)
    finally:
        torch.set_num_threads(before)


@needs_cpu
def test_auto_selects_cpu_and_no_grad_path():
    x, _ = cases.random_case(5, (4, 8), torch.float32, 3)
    assert _impl.select("auto", x).name == "cpu"
    with torch.no_grad():
        a = tssl_lif(x.requires_grad_(), impl="cpu")
    assert not a.requires_grad
    torch.testing.assert_close(a, tssl_lif(x.detach(), impl="reference"))


@needs_cpu
def test_forward_saves_only_the_input():
    x, _ = cases.random_case(6, (2, 9), torch.float64, 4)
    saved = cases.saved_for_backward("cpu", x)
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr()


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """An unloaded kernel module with a private cache directory, no dispatch decisions; restored afterwards."""
    monkeypatch.setenv("TSSL_PLUGIN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the fallback folders land here
    cpu._reset_for_tests()
    _impl._reset_for_tests()
    yield tmp_path
    cpu._reset_for_tests()
    _impl._reset_for_tests()


@pytest.mark.parametrize("cc", ["/nonexistent/cc", "false"])
def test_missing_or_broken_compiler_falls_back_with_one_warning(fresh_loader, monkeypatch, cc):
    monkeypatch.setenv("CC", cc)
    x, g = cases.random_case(5, (3, 7), torch.float64, 11)
    with pytest.warns(RuntimeWarning, match=r"impl='auto' on cpu runs the plain-PyTorch 'reference'.*'cpu' is "
                                            r"not available \((no C compiler|building the TSSL-BP CPU kernel with \S+ failed: exit status 1)"):
        y, gx = cases.run("auto", x, g)
    assert last_impl("cpu", torch.float64) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once, not on every call
        assert _impl.select("auto", x).name == "reference"
        y2, _ = cases.run("auto", x, g)
    y_ref, gx_ref = cases.run("reference", x, g)
    assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref) and torch.equal(y2, y_ref)
    with pytest.raises(ImportError, match="compiler|failed"):
        tssl_lif(x, impl="cpu")
    assert not (fresh_loader / "cache").exists() or not any((fresh_loader / "cache").glob("*.so"))


@needs_cpu
def test_runtime_failure_of_the_kernel_falls_back_with_one_warning(fresh_loader, monkeypatch):
    """A fused implementation that raises at run time (as a kernel that does not compile for a GPU would):
    auto warns once, runs the reference for that call and the next ones; a named impl raises."""
    def broken(*args):
        raise RuntimeError("simulated compile failure")

    monkeypatch.setattr(cpu.CpuImpl, "backward_op", staticmethod(broken))
    x, g = cases.random_case(5, (3, 7), torch.float64, 12)
    with pytest.warns(RuntimeWarning, match="'cpu' failed \\(RuntimeError: simulated compile failure"):
        y, gx = cases.run("auto", x, g)
    assert last_impl("cpu", torch.float64) == "reference"
    y_ref, gx_ref = cases.run("reference", x, g)
    assert torch.equal(gx, gx_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)  # the forward ran in the kernel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _impl.select("auto", x).name == "reference"
    with pytest.raises(RuntimeError, match="simulated"):
        cases.run("cpu", x, g)


@needs_cpu
def test_last_impl_names_what_ran(fresh_loader):
    x, g = cases.random_case(4, (2, 3), torch.float32, 13)
    assert last_impl("cpu", torch.float32) is None
    cases.run("auto", x, g)
    assert last_impl("cpu", torch.float32) == "cpu" == resolve_impl(x)
    cases.run("reference", x, g)
    assert last_impl("cpu", torch.float32) == "reference"
    assert resolve_impl(x, "reference") == "reference"


@needs_cpu
def test_builds_into_the_cache_dir(fresh_loader):
    lib = cpu.load()
    built = list((fresh_loader / "cache").glob("tssl_cpu_*.so"))
    assert len(built) == 1 and lib.tssl_abi_version() == cpu.ABI_VERSION
    assert not list((fresh_loader / "cache").glob("tmp*"))  # no half-written files left
    cpu._reset_for_tests()
    assert cpu.load() is not lib  # reloaded from the cache, same file
    assert list((fresh_loader / "cache").glob("tssl_cpu_*.so")) == built


def _fake_cc(tmp_path, body: str) -> str:
    cc = tmp_path / "fake-cc"
    cc.write_text("#!/bin/sh\n" + body + "\n")
    cc.chmod(0o755)
    return str(cc)


@pytest.mark.parametrize("body,needle", [
    ('echo "tssl_cpu.c:1:10: fatal error: stdio.h: No such file or directory" >&2; exit 1',
     "fatal error: stdio.h: No such file or directory"),
    ("exit 3", "exit status 3"),
])
def test_fallback_warning_keeps_the_compilers_message(fresh_loader, monkeypatch, body, needle):
    """The one-line fallback warning ends with what the compiler said (or its exit status), not a bare colon."""
    monkeypatch.setenv("CC", _fake_cc(fresh_loader, body))
    x, g = cases.random_case(5, (3, 7), torch.float64, 11)
    with pytest.warns(RuntimeWarning) as rec:
        cases.run("auto", x, g)
    msg = " ".join(str(w.message) for w in rec if "reference" in str(w.message))
    assert needle in msg and not msg.rstrip(")").rstrip().endswith(":"), msg


_RUN_KERNEL = (
    "import torch; from tssl_plugin.functional import tssl_lif;"
    "x = torch.rand(6, 4, 5, dtype=torch.float64, requires_grad=True);"
    "tssl_lif(x, impl='cpu').sum().backward(); print('ok', bool(torch.isfinite(x.grad).all()))"
)


@needs_cpu
def test_truncated_cached_kernel_is_detected_and_rebuilt(fresh_loader):
    """A cache file cut short (a full disk, a killed copy) is never loaded (dlopen of it is a bus error):
    the next process notices, rebuilds it, and runs."""
    cpu.load()
    (lib,) = (fresh_loader / "cache").glob("tssl_cpu_*.so")
    good = lib.read_bytes()
    cut = lib.with_name("cut-short.tmp")  # a new file: this process still maps the old one, which must stay whole
    cut.write_bytes(good[: len(good) // 2])
    os.replace(cut, lib)
    env = {**os.environ, "TSSL_PLUGIN_CACHE": str(fresh_loader / "cache")}
    res = subprocess.run([sys.executable, "-c", _RUN_KERNEL], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.split() == ["ok", "True"], (res.returncode, res.stderr[-2000:])
    assert lib.stat().st_size == len(good)


def test_damaged_cache_that_cannot_be_rebuilt_says_what_to_delete(fresh_loader, monkeypatch):
    cc = _fake_cc(fresh_loader, "exit 1")
    monkeypatch.setenv("CC", cc)
    lib = cpu._lib_path(cc, cpu._FLAG_VARIANTS[0], fresh_loader / "cache", cpu._source())
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF cut short")

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cpu, "_discard", refuse)
    x, g = cases.random_case(5, (3, 7), torch.float64, 11)
    with pytest.warns(RuntimeWarning, match=f"damaged.*delete {lib}"):
        cases.run("auto", x, g)


@needs_cpu
def test_unwritable_cache_reuses_one_private_folder(fresh_loader, monkeypatch):
    """With the cache folder unwritable (a read-only HOME), every process builds into the same per-user
    folder under the temp dir, reused, instead of a new tssl_plugin_XXXX folder each time."""
    blocker = fresh_loader / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TSSL_PLUGIN_CACHE", str(blocker / "cache"))
    tmp = fresh_loader / "tmp"
    cpu.load()
    first = sorted(p.name for p in tmp.iterdir())
    (built,) = tmp.glob("*/tssl_cpu_*.so")
    stamp = built.stat().st_mtime_ns
    cpu._reset_for_tests()
    cpu.load()
    assert sorted(p.name for p in tmp.iterdir()) == first and len(first) == 1
    assert built.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert (built.parent.stat().st_mode & 0o777) == 0o700
