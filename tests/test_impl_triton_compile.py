"""Every Triton kernel variant compiles for real GPUs (sm_90, sm_80) on this CPU-only machine.

The interpreter (test_impl_triton.py) hides what only the compiler sees: an
integer argument equal to 1 becomes a constant (``T == 1`` crashed the
backward), types and layouts the interpreter accepts may not lower. Here
``TritonImpl`` runs its real entry points on CPU tensors with the launch
step replaced by a recorder, and each recorded launch is compiled with
Triton's own argument specialisation (the binder a launch uses) for a CUDA
target, down to a cubin (ptxas ships with Triton). Each dtype, reset,
parameter layout and output mode is covered, plus T = 1, N = 1 and N = 0,
for the forward, the one-pass backward and the two-pass backward.

Also checked on the compiled code: no fused multiply-add in the kernels'
arithmetic (``enable_fp_fusion=False`` keeps the reference's roundings; the
float64 ``exp`` is libdevice's and has its own) and no register spills in the
one-pass backward at its largest T. Compiled kernels land in Triton's cache
(``~/.triton/cache``), so reruns take seconds.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton not installed", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("compiles for a GPU target; run without TRITON_INTERPRET", allow_module_level=True)

import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from tssl_plugin._impl import triton_impl  # noqa: E402
from tssl_plugin._impl.triton_impl import TritonImpl  # noqa: E402
from tssl_plugin.rule import LIFParameters  # noqa: E402


def record_launches(monkeypatch, fn):
    """Run ``fn`` with the kernel launches recorded instead of run (outputs stay uninitialised)."""
    launches = []
    monkeypatch.setattr(triton_impl, "_run", lambda launch, device: launches.append(launch))
    fn()
    assert launches, "no kernel was launched"
    return launches


def compile_for(launch, arch):
    """Compile ``launch`` as its launch on a GPU of compute capability ``arch`` would (same specialisation)."""
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    kernel = launch.kernel
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kwargs = dict(launch.constexprs, enable_fp_fusion=False)  # as triton_impl._run launches on CUDA
    kwargs["debug"] = kernel.debug or knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                              options=options.__dict__)
    return compiled, signature


#: the line of ``tl.exp`` in triton_impl.py: float64 exp is libdevice code, which has FMAs of its own.
EXP_LINE = next(i for i, line in enumerate(Path(triton_impl.__file__).read_text().splitlines(), 1)
                if "tl.exp(" in line)


def fma_lines(ptx):
    """Source lines of triton_impl.py (by the PTX's .loc records) where the PTX has a fused multiply-add."""
    files = dict(re.findall(r'\.file\s+(\d+)\s+"([^"]+)"', ptx))
    ours = {k for k, v in files.items() if v.endswith("triton_impl.py")}
    lines, where = set(), None
    for line in ptx.splitlines():
        m = re.match(r"\s*\.loc\s+(\d+)\s+(\d+)", line)
        if m:
            where = int(m.group(2)) if m.group(1) in ours else None
        elif re.match(r"\s*fma\.", line):
            lines.add(where)
    return lines


def _x(T, N, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, N, generator=gen) * 0.9).to(dtype)


F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def _params(N, reset, per_neuron, dtype):
    """The layer's :class:`LIFParameters`; the width, the cap, the ablation's and the gate's gains, the warm-up bound
    and the crossing gain are run-time values (table rows), so values other than the reference's 0.2, 8, "none",
    "trace", the floor and "step" compile the same variants."""
    if not per_neuron:
        return LIFParameters(reset=reset)
    gen = torch.Generator().manual_seed(1)
    return LIFParameters(2.0 + 4 * torch.rand(N, generator=gen), 3.0, 0.5 + torch.rand(N, generator=gen), reset, 0.6,
                         1.0, "no_spike_timing", "silent", False, "interpolated")


# (name, entry point, dtype, reset, per-neuron parameters, T, N, warmup, psc output)
FORWARD = [
    ("fwd-f32-zero-psc", "op", F32, "zero", False, 8, 3000, True, True),
    ("fwd-f16-subtract-spike-perneuron", "op", F16, "subtract", True, 8, 3000, True, False),
    ("fwd-bf16-sal-psc", "op", BF16, "subtract_after_leak", False, 8, 3000, True, True),
    ("fwd-f64-none-psc-perneuron", "op", F64, "none", True, 8, 3000, True, True),
    ("fwd-f32-T1-N1-perneuron", "op", F32, "zero", True, 1, 1, True, True),
    ("fwd-f32-N0-spike", "op", F32, "subtract", False, 5, 0, True, False),
]
ONE_PASS = [
    ("bwd1-f32-zero-T4", "op", F32, "zero", False, 4, 3000, True, True),
    ("bwd1-f16-subtract-T8-perneuron", "op", F16, "subtract", True, 8, 3000, True, False),
    ("bwd1-bf16-sal-T16", "op", BF16, "subtract_after_leak", False, 16, 3000, False, True),
    ("bwd1-f32-none-T32-perneuron", "op", F32, "none", True, 32, 3000, False, False),
    ("bwd1-f64-none-T16-perneuron", "op", F64, "none", True, 16, 3000, False, False),
    ("bwd1-f32-trace-zero-T8-perneuron", "trace", F32, "zero", True, 8, 3000, True, False),
    ("bwd1-f64-trace-sal-T5", "trace", F64, "subtract_after_leak", False, 5, 3000, True, False),
    ("bwd1-f32-T1-N1-perneuron", "op", F32, "zero", True, 1, 1, True, True),
    ("bwd1-f32-T3-N0", "op", F32, "subtract", False, 3, 0, True, True),
]
TWO_PASS = [
    ("bwd2-f32-zero-T40", "op", F32, "zero", False, 40, 3000, True, True),
    ("bwd2-f16-subtract-T64-perneuron", "op", F16, "subtract", True, 64, 3000, True, False),
    ("bwd2-bf16-sal-T33-perneuron", "op", BF16, "subtract_after_leak", True, 33, 3000, False, True),
    ("bwd2-f64-none-T100", "op", F64, "none", False, 100, 3000, True, True),
    ("bwd2-f32-trace-zero-T50-perneuron", "trace", F32, "zero", True, 50, 3000, True, False),
    ("bwd2-f32-T1-N1-perneuron", "op", F32, "zero", True, 1, 1, True, True),
    ("bwd2-f64-trace-subtract-T1-N0", "trace", F64, "subtract", False, 1, 0, False, False),
]
#: one step of the step-wise node: (name, dtype, reset, constants, warmup, carry, membrane loss, spike dtype)
STEP = [
    ("step-f32-zero-numbers", F32, "zero", "numbers", True, True, False, F32),
    ("step-f32-subtract-0d-last", F32, "subtract", "0-d", True, False, False, F32),
    ("step-f64-sal-neurons-loss", F64, "subtract_after_leak", "neurons", False, True, True, None),
    ("step-f32-none-neurons", F32, "none", "neurons", True, True, True, torch.float16),
    ("step-f32-zero-N1", F32, "zero", "numbers", True, True, False, F32),
    # du from the membrane the step started from (reference.Increment): the name's last word is its delayed reset
    ("step-f32-sal-numbers-subtract", F32, "subtract_after_leak", "numbers", True, True, False, F32),
    ("step-f64-zero-neurons-zero", F64, "zero", "neurons", True, True, True, None),
    ("step-f32-none-0d-none", F32, "none", "0-d", False, True, False, F32),
    # the spikes as 0/1 floats (what a compiled graph hands the step_forward operator)
    ("step-f32-subtract-numbers-floatspikes", F32, "subtract", "numbers", True, True, False, F32),
]
#: compiled for sm_80 as well (the rest for sm_90 only, to keep the first, uncached run short).
SM80 = {"fwd-f16-subtract-spike-perneuron", "fwd-bf16-sal-psc", "fwd-f32-T1-N1-perneuron",
        "bwd1-f16-subtract-T8-perneuron", "bwd1-f32-T1-N1-perneuron", "bwd2-bf16-sal-T33-perneuron",
        "bwd2-f32-T1-N1-perneuron", "bwd1-f32-T3-N0", "step-f32-subtract-0d-last", "step-f64-sal-neurons-loss",
        "step-f32-sal-numbers-subtract", "step-f32-subtract-numbers-floatspikes"}


def _run_case(case, two_pass, monkeypatch):
    name, entry, dtype, reset, per_neuron, T, N, warmup, psc = case
    monkeypatch.setattr(triton_impl, "ONE_PASS_MAX_T", 0 if two_pass else 32)
    x = _x(T, N, dtype)
    g = _x(T, N, dtype, seed=2) - 0.4
    params = _params(N, reset, per_neuron, dtype)
    if name.startswith("fwd"):
        return lambda: TritonImpl.forward_op(x, params, psc)
    if entry == "trace":
        k = params.constants(x)
        u, du, o = x.clone(), x.clone(), x > 0.5
        return lambda: TritonImpl.backward_from_trace(g, u, du, o, k, warmup)  # psc False: spikes' gradient
    return lambda: TritonImpl.backward_op(g, x, params, warmup, psc)


CASES = ([(c, False, "forward") for c in FORWARD] + [(c, False, "one-pass") for c in ONE_PASS]
         + [(c, True, "two-pass") for c in TWO_PASS])
TARGETS = [(c, two, kind, arch) for c, two, kind in CASES for arch in (90, 80) if arch == 90 or c[0] in SM80]


@pytest.mark.parametrize("case, two_pass, kind, arch", TARGETS,
                         ids=[f"sm{a}-{c[0]}" for c, _, _, a in TARGETS])
def test_kernel_variant_compiles(case, two_pass, kind, arch, monkeypatch):
    launches = record_launches(monkeypatch, _run_case(case, two_pass, monkeypatch))
    assert len(launches) == 1
    launch = launches[0]
    want = {"forward": "_forward_kernel", "one-pass": "_backward_one_pass_kernel",
            "two-pass": "_backward_two_pass_kernel"}[kind]
    assert launch.kernel.fn.__name__ == want
    compiled, signature = compile_for(launch, arch)
    assert compiled.asm.get("cubin"), "no cubin"
    fused = fma_lines(compiled.asm["ptx"])
    assert fused <= {EXP_LINE}, f"multiply-adds contracted at triton_impl.py lines {sorted(fused - {EXP_LINE})}"
    T, N = case[5], case[6]
    if T == 1 and "T" in signature:
        assert signature["T"] == "constexpr"  # the specialisation that used to crash
    if N == 1:
        assert signature["N"] == "constexpr"


def _step_case(case):
    """The two launches of one step (forward bookkeeping, backward) for a STEP case, on CPU tensors."""
    import impl_cases as cases
    from tssl_plugin._impl.reference import DELAYED_RESETS, Increment, step_flags

    name, dtype, reset, kind, warmup, has_h, has_extra, spike_dtype = case
    shape = (1, 1) if name.endswith("N1") else (3, 700)
    G, h, extra, u, du, o, s = cases._step_inputs(shape, dtype, 1, "cpu")
    k = cases._step_constants(kind, reset, shape, dtype, "cpu")

    flags = step_flags(o, s, k.warmup_level)
    if name.endswith("floatspikes"):
        o = o.to(dtype)
    delayed = name.rsplit("-", 1)[1]
    if delayed in DELAYED_RESETS:
        du = Increment(u - du, delayed)

    def run():
        TritonImpl.step_forward(o, s, k.inv_tau_s, k.warmup_level, spike_dtype)
        TritonImpl.step_backward(G, h if has_h else None, u, du, flags, k, warmup, extra if has_extra else None, 0.5)
    return run


STEP_TARGETS = [(c, arch) for c in STEP for arch in (90, 80) if arch == 90 or c[0] in SM80]


@pytest.mark.parametrize("case, arch", STEP_TARGETS, ids=[f"sm{a}-{c[0]}" for c, a in STEP_TARGETS])
def test_step_kernels_compile(case, arch, monkeypatch):
    """The step-wise node's two kernels: one launch each way per step, compiled to a cubin without FMAs."""
    launches = record_launches(monkeypatch, _step_case(case))
    assert [launch.kernel.fn.__name__ for launch in launches] == ["_step_forward_kernel", "_step_backward_kernel"]
    for launch in launches:
        compiled, signature = compile_for(launch, arch)
        assert compiled.asm.get("cubin"), "no cubin"
        fused = fma_lines(compiled.asm["ptx"])
        assert fused <= {EXP_LINE}, f"multiply-adds contracted at triton_impl.py lines {sorted(fused - {EXP_LINE})}"
        if case[0].endswith("N1"):
            assert signature["N"] == "constexpr"


def test_fp_fusion_check_is_meaningful(monkeypatch):
    """With fusion on, the same kernel does contain FMAs: the assertion above can fail."""
    launch = record_launches(monkeypatch, _run_case(ONE_PASS[0], False, monkeypatch))[0]
    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    kernel = launch.kernel
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kwargs = dict(launch.constexprs, enable_fp_fusion=True, debug=False,
                  instrumentation_mode=knobs.compilation.instrumentation_mode)
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    ptx = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                         options=options.__dict__).asm["ptx"]
    assert any(isinstance(line, int) and line != EXP_LINE for line in fma_lines(ptx))


def _cuobjdump():
    import triton.backends.nvidia as nv

    path = Path(nv.__file__).parent / "bin" / "cuobjdump"
    return str(path) if path.exists() else shutil.which("cuobjdump")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_one_pass_backward_keeps_the_trace_in_registers(dtype, monkeypatch, tmp_path):
    """At the largest T of the one-pass kernel, sm_90: no local memory, no stack (no register spills)."""
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found")
    T = triton_impl.one_pass_max_t(dtype)
    case = ("bwd1", "op", dtype, "zero", True, T, 3000, True, True)
    launch = record_launches(monkeypatch, _run_case(case, False, monkeypatch))[0]
    assert launch.kernel.fn.__name__ == "_backward_one_pass_kernel"
    compiled, _ = compile_for(launch, 90)
    cubin = tmp_path / "k.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    usage = subprocess.run([tool, "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", usage)
    assert m, usage
    regs, stack, local = map(int, m.groups())
    assert stack == 0 and local == 0 and regs <= 255, usage
