#!/usr/bin/env bash
# gpu_check.sh -- one-shot check of the GPU path on a CUDA machine (issue 12, item 7), about 4 minutes.
#
# What it runs, each step with its own time limit inside an overall budget (GPU_CHECK_BUDGET, default
# 240 s; a step that would not fit is skipped and listed as such):
#   1. versions, the card, which implementation impl="auto" picks;
#   2. the tests that need CUDA (pytest -m cuda), with the Triton kernels compiled for the card (no
#      interpreter): the CUDA tests of tests/test_impl_triton.py (exactness, both backward kernels, bit identity of the
#      trace, NaN reported without a sync, cuda:1, torch.compile on CUDA) and test_core_properties.py;
#   3. exactness of impl="triton" against impl="reference" on CUDA (exact.py below): float32/float64/
#      float16/bfloat16, every reset x warm-up x output, T = 1, N = 0 and 1, partial blocks, non-contiguous
#      inputs, stride-0 gradients, per-neuron parameters, one-pass vs two-pass backward, the adapters'
#      backward_from_trace, the public reference vectors, bit-identity of the forward trace with the
#      reference (no FMA contraction), side streams, a NaN input reported without a sync, torch.compile;
#   4. T*N > 2^31 elements (64-bit offsets), both backward kernels, in a process of its own;
#   5. tssl-bench speed gpu-layer: TSSL-BP vs SpikingJelly 2.0's LIFNode (each of its
#      CUDA implementations in a child process), T = 4, 8, 16; time, peak memory, bandwidth / copy bandwidth;
#   6. one epoch of tssl-bench on the digits data set with --device cuda;
#   then, if the budget allows: 7. a per-neuron parameter table of more than 2^31 elements; 8. a block-size
#   sweep of the kernels (informational, for tuning).
# It writes $OUT/gpu_report.txt as it goes (a killed run still returns what it had) and ends with a summary.
#
# Run it from the repository root:
#   bash tools/gpu_check.sh                       (python: $PY, else the first python3/python with torch)
# With the device tool: run "bash tools/gpu_check.sh" with a timeout that leaves time to rerun it. The
# device image has no network: for the SpikingJelly columns and the snnTorch backend, download wheels
# first and carry the folder .whl (installed into a private directory, never into the system python):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl spikingjelly==2.0.0 loguru snntorch==1.0.0
# "bash tools/gpu_check.sh host-step" runs only the step-wise node's kernels and the tssl-bench speed
# host-step grid on the GPU (issue 20; GPU_CHECK_BUDGET=280 keeps it under 5 minutes), GPU ratios last.
# Without CUDA it still runs as a dry run (CUDA steps print SKIP), e.g. PY=.venv/bin/python bash tools/gpu_check.sh
# Nothing is installed: the project is put on PYTHONPATH through a copy of its package layout
# (tssl_plugin + adapters/ + benchmarks/ as tssl_plugin.adapters / tssl_plugin.benchmarks).

set -u
START=$(date +%s)
if [ "${1:-}" = "host-step" ]; then BUDGET=${GPU_CHECK_BUDGET:-280}; else BUDGET=${GPU_CHECK_BUDGET:-240}; fi
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
REPORT="$OUT/gpu_report.txt"
: >"$REPORT"
REPO=$(pwd)
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
unset TRITON_INTERPRET            # compile for the real GPU
export TSSL_PLUGIN_CACHE="$WORK/cpu_kernel_cache"
declare -a SUMMARY=()

log() { printf '%s\n' "$*" | tee -a "$REPORT"; }
elapsed() { echo $(( $(date +%s) - START )); }

# run_step NAME CAP_SECONDS CMD... : run CMD with a timeout of min(CAP, what is left of the budget)
run_step() {
  local name=$1 cap=$2; shift 2
  local left=$(( BUDGET - $(elapsed) - 10 ))
  local t=$cap
  (( left < t )) && t=$left
  if (( t < 5 || (left < 15 && cap >= 15) )); then
    log "=== $name: SKIPPED (time budget of ${BUDGET}s spent)"
    SUMMARY+=("SKIP     $name (budget)")
    return
  fi
  log ""
  log "=== $name (limit ${t}s, t=$(elapsed)s) ==="
  local t0; t0=$(date +%s)
  timeout -k 5 "$t" "$@" 2>&1 | tee -a "$REPORT"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  local st
  case $rc in
    0) st="PASS   " ;;
    124|137) st="TIMEOUT" ;;
    *) st="FAIL($rc)" ;;
  esac
  SUMMARY+=("$st  $name (${dt}s)")
  log "--- $name: $st in ${dt}s"
}

# ---------------------------------------------------------------- python with torch
PY=${PY:-}
if [ -z "$PY" ]; then
  for c in python3 python /opt/torch/.venv/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" >/dev/null 2>&1; then PY=$(command -v "$c"); break; fi
  done
fi

log "gpu_check.sh  $(date -u +%Y-%m-%dT%H:%M:%SZ)  repo=$REPO  commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
log "budget ${BUDGET}s, work dir $WORK, python ${PY:-NONE}"
case $PY in /*|"") ;; */*) PY="$REPO/$PY" ;; esac   # a relative path: make it work from other directories
if [ -z "$PY" ]; then
  log "FATAL: no python with torch found (tried python3, python, /opt/torch/.venv/bin/python3)"
  exit 1
fi

# ---------------------------------------------------------------- project on PYTHONPATH (no install)
SHIM="$WORK/shim"
mkdir -p "$SHIM"
cp -r "$REPO/tssl_plugin" "$SHIM/tssl_plugin"
cp -r "$REPO/adapters" "$SHIM/tssl_plugin/adapters"
cp -r "$REPO/benchmarks" "$SHIM/tssl_plugin/benchmarks"
EXTRA_PP=""
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
  log "installing carried wheels into $WORK/site: $(cd "$REPO/.whl" && ls *.whl | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$REPO"/.whl/*.whl 2>&1 | tail -5 | tee -a "$REPORT"
  EXTRA_PP=":$WORK/site"
fi
export PYTHONPATH="$SHIM$EXTRA_PP:$REPO/tests${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK/run"

# ---------------------------------------------------------------- python probes
cat >"$WORK/env_info.py" <<'PYEOF'
import importlib, platform, sys
print("python", sys.version.split()[0], sys.executable, platform.machine())
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
try:
    import triton
    print("triton", triton.__version__)
except Exception as e:
    print("triton: IMPORT FAILED:", type(e).__name__, e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device {p.name}, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.1f} GiB, L2 {getattr(p, 'L2_cache_size', 0) / 2**20:.0f} MiB")
    free, total = torch.cuda.mem_get_info()
    print(f"free memory {free / 2**30:.1f} GiB of {total / 2**30:.1f} GiB")
for m in ("tssl_plugin", "tssl_plugin.adapters", "tssl_plugin.benchmarks", "spikingjelly", "snntorch", "loguru", "sklearn"):
    try:
        mod = importlib.import_module(m)
        print(f"import {m}: ok {getattr(mod, '__version__', '')} {getattr(mod, '__file__', '')}")
    except Exception as e:
        print(f"import {m}: FAILED {type(e).__name__}: {e}")
from tssl_plugin.functional import resolve_impl
for dev in (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])):
    for dt in (torch.float32, torch.float16):
        print(f"impl auto on {dev} {dt} -> {resolve_impl(torch.zeros(2, 3, device=dev, dtype=dt))}")
if torch.cuda.is_available():
    try:
        from spikingjelly._ops.lif import _selection
        print("SpikingJelly LIF CUDA implementation (auto):", _selection._get_cuda_selection(torch.device("cuda", 0)).name)
    except Exception as e:
        print("SpikingJelly LIF selection: n/a", type(e).__name__, str(e)[:200])
PYEOF

cat >"$WORK/exact.py" <<'PYEOF'
"""impl='triton' against impl='reference' on CUDA (compiled kernels, no interpreter)."""
import itertools, sys, time, traceback
import torch
import impl_cases as cases
from tssl_plugin.functional import tssl_lif, lif_constants, last_impl
from tssl_plugin._impl import _ReferenceImpl, reference, triton_impl
from tssl_plugin._impl.triton_impl import TritonImpl
from tssl_plugin.rule import LIFParameters

FAILS = []


def check(name, fn):
    t0 = time.time()
    try:
        detail = fn() or ""
        st = "PASS"
    except AssertionError as e:
        st, detail = "FAIL", str(e).strip().splitlines()[0][:300] if str(e).strip() else "assertion"
    except Exception as e:
        msg = [l for l in str(e).strip().splitlines() if l.strip()]
        st, detail = "ERROR", f"{type(e).__name__}: {(msg[-1] if msg else '')[:300]}"
        traceback.print_exc(limit=3, file=sys.stdout)
    if st != "PASS":
        FAILS.append(name)
    print(f"CHECK {name}: {st} ({time.time() - t0:.1f}s) {detail}", flush=True)


if not torch.cuda.is_available():
    print("CHECK exact: SKIP (no CUDA)")
    sys.exit(0)
DEV = "cuda"


def compare(x, g, **kw):
    yr, gr = cases.run("reference", x, g, **kw)
    yt, gt = cases.run("triton", x, g, **kw)
    torch.cuda.synchronize()
    assert yt.dtype == x.dtype and gt.dtype == x.dtype, f"dtypes {yt.dtype} {gt.dtype}"
    dy = (yt.double() - yr.double()).abs().max().item() if yt.numel() else 0.0
    dg = (gt.double() - gr.double()).abs().max().item() if gt.numel() else 0.0
    if kw.get("output") == "spike":
        flips = int((yt != yr).sum())
        assert flips == 0, f"{flips} spikes differ; max|dgx|={dg:.2e}"
    torch.testing.assert_close(yt, yr, **cases.tol(x.dtype))
    torch.testing.assert_close(gt, gr, **cases.tol(x.dtype))
    return f"max|dy|={dy:.1e} max|dgx|={dg:.1e}"


def sel():
    out = []
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x, g = cases.random_case(3, (2, 5), dt, 0, DEV)
        cases.run("auto", x, g)
        assert last_impl("cuda", dt) == "triton", f"auto ran {last_impl('cuda', dt)} for {dt}"
        out.append(str(dt)[6:])
    return "auto ran triton for " + "/".join(out)


check("auto selects triton on CUDA (every float dtype)", sel)


def modes(dtype, T=12, shape=(3, 257)):
    def f():
        worst = [0.0, 0.0]
        for i, (reset, warmup, output) in enumerate(itertools.product(cases.RESETS, (True, False), ("psc", "spike"))):
            x, g = cases.random_case(T, shape, dtype, i, DEV)
            d = compare(x, g, reset=reset, warmup=warmup, output=output)
            a, b = (float(v.split("=")[1]) for v in d.split())
            worst = [max(worst[0], a), max(worst[1], b)]
        return f"16 modes, worst max|dy|={worst[0]:.1e} max|dgx|={worst[1]:.1e}"
    return f


for dt in (torch.float32, torch.float64):
    for T in (12, 40):  # one-pass and two-pass backward
        check(f"all resets x warmup x output, {str(dt)[6:]}, [{T}, 3, 257] (partial block)", modes(dt, T=T))

for T, shape in ((8, (1,)), (8, (255,)), (8, (256,)), (5, (4, 2, 3, 5, 7)), (64, (1000,)), (8, (65536 + 3,)),
                 (16, (2, 129)), (17, (2, 129)), (32, (2, 129)), (33, (2, 129))):
    for dt in (torch.float32, torch.float64):
        check(f"shape {[T, *shape]} {str(dt)[6:]}",
              lambda T=T, shape=shape, dt=dt: compare(*cases.random_case(T, shape, dt, 7, DEV)))


def t_one():
    out = []
    for limit in (32, 0):
        triton_impl.ONE_PASS_MAX_T = limit
        x, g = cases.random_case(1, (3, 50), torch.float32, 8, DEV)
        out.append(compare(x * 3, g) + "; " + compare(x * 3, g, output="spike"))
    triton_impl.ONE_PASS_MAX_T = 32
    return " | ".join(out)


check("T=1, one-pass and two-pass (Triton turns an int argument equal to 1 into a constexpr)", t_one)
check("N=0 neurons", lambda: compare(*cases.random_case(4, (0,), torch.float32, 9, DEV)))
check("N=1 neuron", lambda: compare(*cases.random_case(6, (1,), torch.float64, 9, DEV)))


def one_vs_two_pass():
    worst = 0
    for T in (1, 4, 8, 16, 32):
        for dt in (torch.float32, torch.float64, torch.float16):
            x, g = cases.random_case(T, (4, 999), dt, T, DEV)
            got = []
            for limit in (32, 0):
                triton_impl.ONE_PASS_MAX_T = limit
                got.append(cases.run("triton", x, g, reset="subtract")[1])
            triton_impl.ONE_PASS_MAX_T = 32
            assert torch.equal(got[0], got[1]), f"T={T} {dt}: one-pass and two-pass gradients differ"
            worst += 1
    return f"{worst} cases bit-identical"


check("one-pass backward == two-pass backward, bit for bit", one_vs_two_pass)


def noncontig():
    x, g = cases.random_case(9, (5, 70), torch.float64, 10, DEV)
    xt, gt = x.transpose(1, 2), g.transpose(1, 2)
    assert not xt.is_contiguous()
    return compare(xt, gt) + "; " + compare(xt, gt, output="spike", reset="subtract")


check("non-contiguous input and grad", noncontig)


def expanded_grad():
    x, _ = cases.random_case(6, (4, 33), torch.float32, 11, DEV)
    outs = []
    for impl in ("reference", "triton"):
        xx = x.clone().requires_grad_()
        tssl_lif(xx, impl=impl).sum().backward()  # grad is an expanded (stride-0) tensor
        outs.append(xx.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=2e-5, atol=2e-5)


check("stride-0 upstream gradient (y.sum().backward())", expanded_grad)
check("per-neuron parameters (tensor tau_m with inf, tau_s, threshold), all modes",
      lambda: cases.per_neuron_params("triton", device=DEV))
check("float16/bfloat16 natively in the kernels, equal to float32 rounded",
      lambda: cases.half_precision("triton", device=DEV))
check("backward_from_trace (adapters' path), float64, all modes", lambda: cases.from_trace(TritonImpl, device=DEV))
check("published reference vectors (float64, tests/data)", lambda: f"{cases.reference_vectors('triton', device=DEV)} layers")


def bit_identity():
    worst = []
    for dt in (torch.float32, torch.float64):
        for reset in cases.RESETS:
            x, g = cases.random_case(12, (64, 4096), dt, 5, DEV)
            k = lif_constants(x, tau_m=7.0, reset=reset)
            p = LIFParameters(tau_m=7.0, reset=reset)
            o, s = TritonImpl.forward_op(x, p, False), TritonImpl.forward_op(x, p, True)
            tr = reference.forward_sequence(x, k)
            so = (s != tr.s).float().mean().item()
            oo = int((o != tr.o.to(o.dtype)).sum())
            assert so == 0 and oo == 0, f"{dt} {reset}: fraction of s not bit-equal {so:.4f}, spikes differing {oo}"
            rec = TritonImpl.backward_op(g, x, p, True, False)
            giv = TritonImpl.backward_from_trace(g, tr.u, tr.du, tr.o, k, True)
            assert torch.equal(rec, giv), f"{dt} {reset}: recomputed-trace gradient differs from given-trace gradient"
    return "forward trace bit-identical to the torch reference (no FMA contraction), recomputation too"


check("bit identity with the reference forward (float32, float64)", bit_identity)


def side_stream():
    x, g = cases.random_case(8, (2, 5000), torch.float32, 12, DEV)
    want = cases.run("triton", x, g)[1]
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        got = cases.run("triton", x, g)[1]
    s.synchronize()
    assert torch.equal(got, want), "result differs on a side stream"
    assert torch.equal(cases.run("triton", x, g)[1], want), "not deterministic"
    return "side stream and rerun bit-identical"


check("side stream + determinism", side_stream)


def second_device():
    if torch.cuda.device_count() < 2:
        return "SKIP (one device)"
    x, g = cases.random_case(6, (3, 300), torch.float32, 2, "cuda:1")
    with torch.cuda.device(0):
        return compare(x, g)


check("tensor on cuda:1 while cuda:0 is current (device guard)", second_device)


def nonfinite():
    from tssl_plugin._impl.triton_impl import raise_pending_input_errors
    x, _ = cases.random_case(4, (2, 50), torch.float32, 1, DEV)
    bad = x.clone()
    bad[1, 1, 7] = float("inf")
    tssl_lif(bad, impl="triton")
    try:
        raise_pending_input_errors(DEV)
    except ValueError as e:
        msg = str(e)
    else:
        raise AssertionError("no error for inf")
    tssl_lif(x, impl="triton")
    raise_pending_input_errors(DEV)
    return msg[:80]


check("NaN/inf in x flagged by the kernel and reported without a sync", nonfinite)


def compiled():
    import torch._dynamo
    from torch import nn
    from tssl_plugin import TSSLNeuron
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), TSSLNeuron(), nn.Linear(64, 10),
                        TSSLNeuron(threshold=torch.full((10,), 0.8), output="spike")).to(DEV)
    x = torch.rand(8, 16, 32, device=DEV)
    torch._dynamo.reset()
    ex = torch._dynamo.explain(net)(x)
    assert ex.graph_break_count == 0, ex.break_reasons
    y = torch.compile(net, fullgraph=True)(x)
    y.sum().backward()
    g1 = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    d = max((a - p.grad).abs().max().item() for a, p in zip(g1, net.parameters()))
    return f"graphs {ex.graph_count}, breaks {ex.graph_break_count}, max|grad diff| vs eager {d:.1e}"


check("torch.compile(fullgraph=True) on CUDA (inductor)", compiled)

print(f"RESULT exact: {len(FAILS)} failing checks" + (": " + "; ".join(FAILS) if FAILS else ""))
sys.exit(1 if FAILS else 0)
PYEOF

cat >"$WORK/large.py" <<'PYEOF'
"""More than 2^31 elements (int32 offset overflow) or a per-neuron parameter table past 2^31 elements.

usage: large.py idx     -- T=8, N = 2^28 + 4099 neurons, scalar parameters (T*N > 2^31), both backward kernels
       large.py params  -- T=2, N = 2^29 + 4099, per-neuron threshold (row * N > 2^31 in the [7, N] table)
Each neuron is independent, so slices of neurons are checked against the reference run on that slice alone.
Runs in its own process: an out-of-bounds access poisons the CUDA context.
"""
import sys, time
import torch

mode = sys.argv[1]
if not torch.cuda.is_available():
    print(f"CHECK large-{mode}: SKIP (no CUDA)")
    sys.exit(0)
from tssl_plugin.functional import lif_constants
from tssl_plugin.rule import LIFParameters
from tssl_plugin._impl import reference, triton_impl
from tssl_plugin._impl.triton_impl import TritonImpl
from tssl_plugin.rule import LIFParameters

if mode == "idx":
    T, N, bpe = 8, 2**28 + 4099, 4 + 1 + 4 + 4 + 4 + 5 + 1   # x o s g gx + two-pass scratch u, flags (+ slack)
else:
    T, N, bpe = 2, 2**29 + 4099, 17 + 1 + 60 // 2  # + [7, N] table built twice (stack of 7 materialized rows)
free, total = torch.cuda.mem_get_info()
need = T * N * bpe * 1.1
if need > free:
    N = int(N * free / need) // 256 * 256 + 4099
    print(f"only {free / 2**30:.1f} GiB free: N reduced to {N} (T*N = {T * N}, 2^31 = {2**31})")
print(f"T={T} N={N} T*N={T * N} ({T * N / 2**31:.3f} x 2^31), free {free / 2**30:.1f} GiB")
dev = "cuda"
gen = torch.Generator(device=dev).manual_seed(0)
x = torch.empty(T, N, device=dev).uniform_(-0.15, 0.85, generator=gen)
kw = dict(threshold=1.0 + 0.05 * torch.rand(N, device=dev, generator=gen)) if mode == "params" else {}
params = LIFParameters(threshold=kw.get("threshold", 1.0))  # the reference's defaults
slices = [(0, 512), (N // 2 - 256, N // 2 + 256), (N - 1024, N)]


def sub_k(a, b):
    return lif_constants(x[:, a:b], **({"threshold": kw["threshold"][a:b]} if kw else {}))


bad = []
torch.cuda.synchronize()
t0 = time.time()
o = TritonImpl.forward_op(x, params, False)  # spikes as 0/1 in x's dtype
s = TritonImpl.forward_op(x, params, True)  # the PSC trace
torch.cuda.synchronize()
print(f"forward kernel done in {time.time() - t0:.2f}s (incl. compile)")
refs = {}
for a, b in slices:
    kk = sub_k(a, b)
    tr = reference.forward_sequence(x[:, a:b].contiguous(), kk)
    refs[(a, b)] = (kk, tr)
    flips = int((o[:, a:b] != tr.o.to(o.dtype)).sum())
    ds = (s[:, a:b] - tr.s).abs().max().item()
    print(f"  neurons [{a}, {b}): spikes differing {flips}, max|ds| {ds:.2e}")
    if flips or ds > 0:
        bad.append(f"forward [{a},{b})")
del o, s
g = torch.randn(T, N, device=dev, generator=gen)
for limit in ((32, 0) if mode == "idx" else (32,)):
    triton_impl.ONE_PASS_MAX_T = limit
    t0 = time.time()
    gx = TritonImpl.backward_op(g, x, params, True, True)
    torch.cuda.synchronize()
    kind = "one-pass" if limit else "two-pass"
    print(f"{kind} backward done in {time.time() - t0:.2f}s (incl. compile), peak allocated "
          f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    for (a, b), (kk, tr) in refs.items():
        gx_r = reference.backward_sequence(g[:, a:b].contiguous(), tr, kk, True, True)
        d = (gx[:, a:b] - gx_r).abs().max().item()
        print(f"  neurons [{a}, {b}): max|dgx| {d:.2e}")
        if not d <= 1e-3:
            bad.append(f"{kind} backward [{a},{b})")
    del gx
    torch.cuda.empty_cache()
over = T * N > 2**31 if mode == "idx" else 6 * N > 2**31
print(f"CHECK large-{mode} (T*N={T * N}, exercises int32 overflow: {over}): "
      f"{'PASS' if not bad else 'FAIL ' + ', '.join(bad)}")
sys.exit(1 if bad else 0)
PYEOF

cat >"$WORK/sweep.py" <<'PYEOF'
"""Informational: kernel times for other block sizes (forward / two-pass BLOCK, one-pass neurons per program)."""
import statistics, sys
import torch

if not torch.cuda.is_available():
    print("CHECK sweep: SKIP (no CUDA)")
    sys.exit(0)
from tssl_plugin._impl import triton_impl
from tssl_plugin.functional import tssl_lif


def ms(fn, rep=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(rep):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


for T in (8, 16):
    x = torch.rand(T, 64, 65536, device="cuda") * 0.6
    g = torch.randn_like(x)

    def step():
        xx = x.detach().requires_grad_()
        tssl_lif(xx).backward(g)

    for blk in (128, 256, 512, 1024):
        triton_impl.BLOCK = blk
        print(f"T={T} forward BLOCK={blk:5d}: fwd+bwd {ms(step):.3f} ms")
    triton_impl.BLOCK = 256
    for blk in (64, 128, 256):
        triton_impl.ONE_PASS_BLOCK = blk
        print(f"T={T} one-pass block={blk:5d}: fwd+bwd {ms(step):.3f} ms")
print("CHECK sweep: PASS (informational)")
PYEOF

cat >"$WORK/step_exact.py" <<'PYEOF'
"""The step-wise node's fused Triton kernels (one launch each way per step) against reference.carry_step on
CUDA, and the node dispatching to them."""
import sys
import torch

if not torch.cuda.is_available():
    print("CHECK step kernels: SKIP (no CUDA)")
    sys.exit(0)
import impl_cases as cases
from tssl_plugin import _impl
from tssl_plugin._impl.triton_impl import TritonImpl
from tssl_plugin.rule import LIFParameters
from tssl_plugin.rule import lif_constants
from tssl_plugin.stepwise import initial_state, tssl_step

cases.step_cases(TritonImpl, device="cuda")
x = torch.rand(64, 300, device="cuda", requires_grad=True)
u = x.detach() * 2
(spk, _), _ = tssl_step(x, initial_state(x.detach()), u, u, u > 1.0, None, lif_constants(x.unsqueeze(0)))
spk.sum().backward()
used = _impl.last_used("cuda", torch.float32)
print(f"CHECK step kernels: {'PASS' if used == 'triton' else 'FAIL (node ran ' + str(used) + ')'}")
sys.exit(0 if used == "triton" else 1)
PYEOF

# ---------------------------------------------------------------- steps (most important first)
run_step "nvidia-smi" 10 nvidia-smi
run_step "versions and imports" 30 "$PY" "$WORK/env_info.py"
if [ "${1:-}" = "host-step" ]; then
  # bash tools/gpu_check.sh host-step: the step-wise node's kernels and the host-step grid on the GPU
  # (issue 20), in under 5 minutes: eager grid first, then the compiled ratios where the budget allows;
  # the GPU tables are printed last.
  GRID="--grid --device cuda --channels 32 --repeats 10 --untimed 2"
  POINTS="--grid-steps 5,25 --batch-sizes 128"
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then  # dry run
    GRID="--grid --device cpu --channels 4 --hidden 16 --grid-steps 2 --batch-sizes 2 --repeats 1 --untimed 0"
    POINTS=""
  fi
  run_step "step-wise node kernels on CUDA" 30 "$PY" "$WORK/step_exact.py"
  # eager: all variants in one process (30 points fit the budget only so); compiled: each variant in a process
  # of its own (the default), where one process's shared compiled frames change the numbers (docs/performance.md)
  run_step "host-step grid, eager" 100 bash -c "cd '$WORK/run' && '$PY' -m tssl_plugin.benchmarks speed host-step $GRID --processes one | tee '$OUT/grid_eager.md'"
  run_step "host-step grid, compiled, T = 5 and 25, batch 128" 150 bash -c "cd '$WORK/run' && '$PY' -m tssl_plugin.benchmarks speed host-step $GRID --compile --nets snntorch-cnn,spikingjelly-fc $POINTS | tee '$OUT/grid_compiled.md'"
  log ""
  log "==================== GPU host-step ratios ($(elapsed)s) ===================="
  for f in "$OUT/grid_eager.md" "$OUT/grid_compiled.md"; do [ -f "$f" ] && cat "$f" | tee -a "$REPORT"; done
  printf '  %s\n' "${SUMMARY[@]}" | tee -a "$REPORT"
  rm -rf "$WORK"
  exit 0
fi
run_step "pytest: the CUDA tests, Triton compiled for this GPU (no interpreter)" 50 \
  "$PY" -m pytest -q -p no:cacheprovider -rs -m cuda tests/test_impl_triton.py tests/test_core_properties.py
run_step "exactness triton vs reference on CUDA" 45 "$PY" "$WORK/exact.py"
run_step "large tensor, T*N > 2^31 (64-bit offsets), both backward kernels" 30 "$PY" "$WORK/large.py" idx
run_step "tssl-bench speed gpu-layer (T = 4, 8, 16, vs SpikingJelly)" 45 \
  bash -c "cd '$WORK/run' && '$PY' -m tssl_plugin.benchmarks speed gpu-layer --repeats 15"

BACKENDS="native:tssl"
"$PY" -c "import spikingjelly.activation_based" >/dev/null 2>&1 && BACKENDS="$BACKENDS,spikingjelly:tssl,spikingjelly:sigmoid"
"$PY" -c "import snntorch" >/dev/null 2>&1 && BACKENDS="$BACKENDS,snntorch:tssl"
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVARGS="--device cuda"
else
  DEVARGS="--device cpu --limit-train 200 --limit-test 100"   # dry run without a GPU
fi
run_step "harness: tssl-bench, digits, 1 epoch ($DEVARGS, $BACKENDS)" 45 bash -c \
  "cd '$WORK/run' && '$PY' -m tssl_plugin.benchmarks --dataset digits --epochs 1 --seeds 1 $DEVARGS \
   --backends $BACKENDS --out '$WORK/bench' --quiet"
if [ -f "$WORK/bench/summary.md" ]; then
  cp "$WORK/bench/summary.md" "$OUT/bench_summary.md"
  { echo; echo "--- harness summary.md"; cat "$WORK/bench/summary.md"; } >>"$REPORT"
fi
# extras, run when the budget allows
run_step "large per-neuron parameter table (row*N > 2^31)" 25 "$PY" "$WORK/large.py" params
run_step "block-size sweep (informational)" 25 "$PY" "$WORK/sweep.py"
run_step "nvidia-smi (after)" 10 nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv

# ---------------------------------------------------------------- summary
{
  echo ""
  echo "==================== SUMMARY ($(elapsed)s of ${BUDGET}s budget) ===================="
  for s in "${SUMMARY[@]}"; do echo "  $s"; done
  echo "-- failing checks:"
  grep -E "^CHECK .*: (FAIL|ERROR)" "$REPORT" | sed 's/^/  /' || true
  grep -qE "^CHECK .*: (FAIL|ERROR)" "$REPORT" || echo "  none"
  echo "-- pytest outcome:"
  grep -E "^(FAILED|ERROR) |[0-9]+ (passed|failed)" "$REPORT" | sed 's/^/  /' | head -8
  echo "-- key numbers:"
  grep -E "^(T=[0-9]+: tssl / fastest|one LIF layer|device )" "$REPORT" | sed 's/^/  /'
} | tee -a "$REPORT"
rm -rf "$WORK"
exit 0
