"""Fused CPU implementation: a small C file compiled at first use, called through ctypes.

``csrc/tssl_cpu.c`` holds the forward and backward recursions fused into one
pass over T per block of neurons (see that file). It includes no torch
headers, so the system C compiler builds it in one to two seconds, once
(``-O2 -march=native -fopenmp``; plainer flag sets are tried if that fails).
The shared library is cached per user (``$TSSL_PLUGIN_CACHE``, else
``$XDG_CACHE_HOME/tssl_plugin``, else ``~/.cache/tssl_plugin``; where that cannot be written, one
per-user folder ``<temp dir>/tssl_plugin-<uid>``, reused), keyed by a hash
of the source, the compiler, its flags and (for -march=native) the CPU. Each library is stored with its
SHA-256 (``tssl_cpu_<key>.sha256``) and loaded only when it matches: a file cut short would crash the
process (bus error) instead of raising, so a damaged one is deleted and rebuilt. With no compiler, or when the build
fails, loading raises ImportError and ``impl="auto"`` falls back to the
reference implementation with one warning that gives the reason.

The forward kernel also reports whether ``x`` held a NaN or inf (it reads
``x`` anyway), so the op's finite-input check costs no extra pass over ``x``.

Memory: the forward saves only the input ``x`` (which autograd often keeps
anyway); the backward recomputes ``u``, ``du``, ``o`` and ``s`` per block into
a block-local scratch buffer, so no ``[T, N]`` trace is stored between the
passes.
"""
from __future__ import annotations

import ctypes
import getpass
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ._params import RESET_CODES, c_defines, pack_params, param_table, step_forward_rows, step_table
from .._types import COMPUTE_DTYPES, FLOAT_DTYPES, Param, compute_dtype
from .._validation import raise_non_finite
from ..rule import LIFConstants, LIFParameters
from .reference import DELAYED_RESETS, HostTrace, Increment

_SRC_DIR = Path(__file__).resolve().parent / "csrc"
_SOURCES = ("tssl_cpu.c", "tssl_cpu_body.h", "tssl_cpu_step.h")
#: the version of the entry points' argument lists (the argtypes in :func:`_declare`), bumped when one
#: changes; its one definition: the C file gets it as ``-DTSSL_ABI_VERSION`` and returns it from
#: ``tssl_abi_version()``, which :func:`load` compares with this (a library built otherwise is refused).
ABI_VERSION = 7
_BASE_FLAGS = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-std=gnu99", *c_defines(),
               f"-DTSSL_ABI_VERSION={ABI_VERSION}"]
#: tried in order until one builds: native vector width + OpenMP, OpenMP only, OpenMP's simd pragmas
#: only (no runtime library), plain.
_FLAG_VARIANTS = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-fopenmp-simd"], [])
#: below this many elements per thread the kernels run single-threaded.
_MIN_PER_THREAD = 1 << 16

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_error: Optional[str] = None


def cache_dir() -> Path:
    """Directory for compiled kernels (created on demand)."""
    env = os.environ.get("TSSL_PLUGIN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tssl_plugin"


def _private_dir() -> Path:
    """``<temp dir>/tssl_plugin-<uid>``: where kernels are built when :func:`cache_dir` cannot be written
    (a read-only HOME), reused by every process of this user. OSError unless it is a folder of this user
    that nobody else can write (another user's folder there must not supply the library we load)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"tssl_plugin-{uid if uid is not None else getpass.getuser()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid) or st.st_mode & 0o022:
        raise PermissionError(f"{folder} is not a private folder of this user")
    return folder


def find_compiler() -> Optional[str]:
    """``$CC`` if set, else the first of cc, gcc, clang on PATH; None if there is none."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or (cc if os.path.isfile(cc) else None)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_id() -> str:
    """What -march=native depends on: the CPU model and feature flags (so a shared cache stays valid)."""
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(sorted({ln for ln in f if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.processor()


def _source() -> bytes:
    return b"".join((_SRC_DIR / f).read_bytes() for f in _SOURCES)


def _lib_path(cc: str, extra: Sequence[str], out_dir: Path, src: bytes) -> Path:
    """Where the kernel built by ``cc`` with ``_BASE_FLAGS + extra`` from ``src`` is cached."""
    flags = _BASE_FLAGS + list(extra)
    ident = repr((cc, flags, platform.machine(), sys.platform, _cpu_id() if "-march=native" in extra else ""))
    return out_dir / f"tssl_cpu_{hashlib.sha256(src + ident.encode()).hexdigest()[:16]}.so"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checksum_file(lib: Path) -> Path:
    return lib.with_suffix(".sha256")


def _intact(lib: Path) -> bool:
    """``lib`` matches the SHA-256 written next to it when it was built (a file cut short, or one from a
    version that wrote no checksum, is not loaded: loading a truncated library is a bus error, not an error)."""
    try:
        return _checksum_file(lib).read_text().strip() == _digest(lib)
    except OSError:
        return False


def _discard(path: Path) -> None:
    path.unlink()


def _build(cc: str, out_dir: Path) -> Path:
    """Compile the kernel with the first flag set in ``_FLAG_VARIANTS`` that works; return the library path.

    A cached library is used only when it matches its checksum; a damaged one is deleted and rebuilt
    (OSError naming the file to delete when it cannot be deleted).
    """
    src = _source()
    errors, last = [], ""
    for extra in _FLAG_VARIANTS:
        flags = _BASE_FLAGS + extra
        lib = _lib_path(cc, extra, out_dir, src)
        if lib.exists():
            if _intact(lib):
                return lib
            try:
                _discard(lib)
            except OSError as err:
                raise OSError(err.errno, f"the cached TSSL-BP CPU kernel {lib} is damaged and cannot be removed "
                                         f"({err.strerror}): delete {lib}") from None
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [cc, *flags, str(_SRC_DIR / "tssl_cpu.c"), "-o", tmp, "-lm"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if res.returncode == 0:
                sums = Path(tmp).with_suffix(".sha256")
                sums.write_text(_digest(Path(tmp)) + "\n")
                os.replace(sums, _checksum_file(lib))
                os.replace(tmp, lib)  # atomic: concurrent builders never see half a file
                return lib
            errors.append(f"{' '.join(cmd)}:\n{res.stderr.strip()}")
            last = _last_lines(res.stderr) or f"exit status {res.returncode}, no message"
        except (OSError, subprocess.SubprocessError) as err:
            errors.append(f"{' '.join(cmd)}: {err}")
            last = str(err)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    # the first line is what the fallback warning shows: the compiler's own last words, on one line
    raise ImportError(f"building the TSSL-BP CPU kernel with {cc} failed: {last}\n" + "\n".join(errors))


def _last_lines(text: str, n: int = 3, limit: int = 300) -> str:
    """The last ``n`` non-empty lines of a compiler's output, joined with `` | `` (at most ``limit`` characters)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()][-n:]
    joined = " | ".join(lines)
    return joined if len(joined) <= limit else "..." + joined[-limit:]


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, vp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for suf in ("f32", "f64"):
        f = getattr(lib, f"tssl_fwd_{suf}")
        f.argtypes = [i64, i64, vp, vp, vp, vp, vp, i32, i32, i32]
        f.restype = i32
        b = getattr(lib, f"tssl_bwd_{suf}")
        b.argtypes = [i64, i64, vp, vp, vp, vp, vp, vp, vp, i32, i32, i32, i32, i32]
        b.restype = i32
        sf = getattr(lib, f"tssl_step_fwd_{suf}")
        sf.argtypes = [i64, vp, vp, vp, vp, vp, vp, vp, vp, i32, i32]
        sf.restype = None
        bh = getattr(lib, f"tssl_bwd_host_{suf}")
        bh.argtypes = [i64, i64, vp, vp, vp, vp, vp, ctypes.c_double, vp, vp, i32, i32, i32, ctypes.c_double, i32]
        bh.restype = i32
        sb = getattr(lib, f"tssl_step_bwd_{suf}")
        sb.argtypes = [i64, vp, vp, vp, vp, vp, vp, i32, vp, vp, vp, vp, i32, i32, i32, ctypes.c_double, i32]
        sb.restype = i32


def load() -> ctypes.CDLL:
    """The compiled kernel library (built on first call). Raises ImportError if it cannot be built."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise ImportError(_error)
        try:
            cc = find_compiler()
            if cc is None:
                raise ImportError("no C compiler found (set CC or install gcc/clang) for the TSSL-BP CPU kernel")
            scratch = None
            try:
                path = _build(cc, cache_dir())
            except OSError as err:  # cache dir not writable, or a damaged file there: the per-user temp folder
                try:
                    try:
                        folder = _private_dir()
                    except OSError:  # not ours or not private: a one-off folder, deleted once loaded
                        folder = scratch = Path(tempfile.mkdtemp(prefix="tssl_plugin_"))
                    path = _build(cc, folder)
                except (ImportError, OSError) as err2:
                    if scratch is not None:
                        shutil.rmtree(scratch, ignore_errors=True)
                    first, _, rest = str(err2).partition("\n")
                    raise ImportError(f"{first}; and {err}\n{rest}") from err2
            lib = ctypes.CDLL(str(path))
            if scratch is not None:  # a loaded library stays mapped after its file is deleted
                shutil.rmtree(scratch, ignore_errors=True)
            if lib.tssl_abi_version() != ABI_VERSION:
                raise ImportError(f"{path} has an unexpected ABI version")
            _declare(lib)
        except (ImportError, OSError) as err:
            _error = str(err)
            raise ImportError(_error) from err
        _lib = lib
        return lib


def _reset_for_tests() -> None:
    """Forget the loaded library and any recorded failure (tests simulate a missing compiler)."""
    global _lib, _error
    with _lock:
        _lib, _error = None, None


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _threads(numel: int) -> int:
    return max(1, min(torch.get_num_threads(), numel // _MIN_PER_THREAD))


def _fn(kind: str, dtype: torch.dtype):
    return getattr(load(), f"tssl_{kind}_{'f32' if dtype == torch.float32 else 'f64'}")


def _forward(xc: Tensor, spikes: Optional[Tensor], spikes_real: Optional[Tensor], trace: Optional[Tensor],
             table: Tensor, per_neuron: bool, reset: str) -> None:
    """Run the forward kernel on contiguous ``xc`` (float32/float64); raises naming a NaN/inf in ``xc``."""
    T, N = xc.shape[0], xc[0].numel()
    bad = _fn("fwd", xc.dtype)(T, N, xc.data_ptr(), _ptr(spikes), _ptr(spikes_real), _ptr(trace),
                               table.data_ptr(), int(per_neuron), RESET_CODES[reset], _threads(xc.numel()))
    if bad:  # found while reading x anyway: no extra pass over x when it is finite
        raise_non_finite(xc, "x")


def _backward(grad: Tensor, like: Tensor, x, u, du, o, table: Tensor, per_neuron: bool, reset: str,
              warmup: bool, psc_output: bool) -> Tensor:
    g = grad.to(like.dtype).contiguous()
    T, N = like.shape[0], like[0].numel()
    gx = torch.empty(like.shape, dtype=like.dtype)
    err = _fn("bwd", like.dtype)(
        T, N, g.data_ptr(), _ptr(x), _ptr(u), _ptr(du), _ptr(o), gx.data_ptr(), table.data_ptr(), int(per_neuron),
        RESET_CODES[reset], int(warmup), int(psc_output), _threads(like.numel()))
    if err:
        raise MemoryError("TSSL-BP CPU kernel could not allocate its scratch buffer")
    return gx


class CpuImpl:
    """Fused C kernels for tensors on the CPU (see module docstring).

    float32/float64 run natively; float16/bfloat16 inputs of the op are computed
    in float32 and the results cast back.
    """

    name = "cpu"

    @staticmethod
    def available(x: Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in FLOAT_DTYPES

    # ----- the op's entry points (parameters packed once, outputs in x's dtype)
    @staticmethod
    def forward_op(x: Tensor, params: LIFParameters, psc_output: bool) -> Tensor:
        cd = compute_dtype(x.dtype)
        xc = x.to(cd).contiguous()
        table, per_neuron = param_table(params, xc.shape[1:], cd, xc.device)
        out = torch.empty(xc.shape, dtype=cd)
        _forward(xc, None, None if psc_output else out, out if psc_output else None, table, per_neuron,
                 params.reset)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    @staticmethod
    def backward_op(grad: Tensor, x: Tensor, params: LIFParameters, warmup: bool, psc_output: bool) -> Tensor:
        cd = compute_dtype(x.dtype)
        xc = x.to(cd).contiguous()
        table, per_neuron = param_table(params, xc.shape[1:], cd, xc.device)
        gx = _backward(grad, xc, xc, None, None, None, table, per_neuron, params.reset, warmup, psc_output)
        return gx if gx.dtype == x.dtype else gx.to(x.dtype)

    # ----- the adapters' backward (constants as LIFConstants)
    @staticmethod
    def backward_from_trace(grad, u, du, o, k: LIFConstants, warmup: bool) -> Tensor:
        uc = u.contiguous()
        duc = du.to(uc.dtype).contiguous()
        oc = o.to(torch.bool).contiguous()
        table, per_neuron = pack_params(k, uc)
        return _backward(grad, uc, None, uc, duc, oc, table, per_neuron, k.reset, warmup, False)

    @staticmethod
    def backward_from_host(grad: Tensor, host: HostTrace, k: LIFConstants, warmup: bool, scale: Any):
        return _backward_from_host(grad, host, k, warmup, scale)

    # ----- one step of the step-wise node (tssl_plugin.stepwise)
    @staticmethod
    def step_forward(o: Tensor, s: Tensor, inv_tau_s: Param, warmup_level: Optional[Param],
                     spike_dtype: Optional[torch.dtype]):
        return _step_forward(o, s, inv_tau_s, warmup_level, spike_dtype)

    @staticmethod
    def step_backward(G, h, u, du, flags, k: LIFConstants, warmup: bool, extra, scale):
        return _step_backward(G, h, u, du, flags, k, warmup, extra, scale)


def _backward_from_host(grad: Tensor, host: HostTrace, k: LIFConstants, warmup: bool, scale: Any):
    """``(grad_x, finite)``: dL/dx times ``scale`` from a host's forward (``tssl_bwd_host``), computing
    :func:`~tssl_plugin._impl.reference.host_trace` per block inside the kernel; ``finite`` tells whether every
    ``grad_x`` is finite (checked while writing it). Other dtypes, shapes or a tensor ``scale``: the trace is
    materialised and :meth:`CpuImpl.backward_from_trace` runs (``finite`` None)."""
    from . import backward_from_host_trace

    h, v0, v_seq, spikes = host.h, host.v0, host.v_seq, host.spikes
    dt = h.dtype
    if (isinstance(scale, Tensor) or dt not in (torch.float32, torch.float64)
            or any(t.dtype != dt for t in (v0, v_seq, spikes)) or v_seq.shape != h.shape
            or spikes.shape != h.shape or v0.shape != h.shape[1:]):
        return backward_from_host_trace(CpuImpl, grad, host, k, warmup, scale)
    hc = h.contiguous()
    table, per_neuron = pack_params(k, hc)
    # named, not converted inline: a temporary made in the argument list is freed before the kernel reads it
    g, v0c, vc, oc = _as(grad, dt), _as(v0, dt), _as(v_seq, dt), _as(spikes, dt)
    T, N = hc.shape[0], hc[0].numel()
    gx = torch.empty_like(hc)
    err = _fn("bwd_host", dt)(
        T, N, g.data_ptr(), hc.data_ptr(), v0c.data_ptr(), vc.data_ptr(),
        oc.data_ptr(), float(host.shift), gx.data_ptr(), table.data_ptr(), int(per_neuron),
        RESET_CODES[k.reset], int(warmup), float(scale), _threads(hc.numel()))
    if err & 1:
        raise MemoryError("TSSL-BP CPU kernel could not allocate its scratch buffer")
    return gx, not err & 2


def _step_native(u: Tensor, o: Tensor, *others: Optional[Tensor], spikes: torch.dtype = torch.bool) -> bool:
    """The step kernels take this step: float32/float64 ``u``, spikes (or flags) ``o`` of dtype ``spikes``, the
    other tensors shaped like ``u``."""
    return (u.dtype in COMPUTE_DTYPES and o.dtype == spikes
            and all(t is None or t.shape == u.shape for t in (o, *others)))


def _as(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """``t`` contiguous in ``dtype`` (itself when it already is), or None."""
    if t is None or (t.dtype == dtype and t.is_contiguous()):
        return t
    return t.to(dtype).contiguous()


def _step_forward(o: Tensor, s: Tensor, inv_tau_s: Param, warmup_level: Optional[Param],
                  spike_dtype: Optional[torch.dtype]):
    """One step's forward bookkeeping in one pass (``tssl_step_fwd``): ``(spike, s_next, flags)`` with
    ``s_next = s + (o - s) inv_tau_s``, the spikes ``o`` (bool, or 0/1 in ``s``'s dtype) as ``spike_dtype`` (None: not
    made) and the flags of
    :func:`~tssl_plugin._impl.reference.step_flags` (None when ``warmup_level`` is None)."""
    from . import _ReferenceImpl

    if not (_step_native(s, o) or _step_native(s, o, spikes=s.dtype)):
        return _ReferenceImpl.step_forward(o, s, inv_tau_s, warmup_level, spike_dtype)
    sc, oc = s.contiguous(), o.contiguous()  # named: an inline temporary is freed before the kernel reads it
    its, lvl, per_neuron = step_forward_rows(inv_tau_s, warmup_level, sc)
    s_next = torch.empty_like(sc)
    spike = torch.empty_like(sc) if spike_dtype == sc.dtype else None
    flags = None if warmup_level is None else torch.empty(sc.shape, dtype=torch.uint8, device=sc.device)
    o_bytes, o_real = (oc.data_ptr(), None) if oc.dtype == torch.bool else (None, oc.data_ptr())
    _fn("step_fwd", sc.dtype)(sc.numel(), o_bytes, o_real, sc.data_ptr(), s_next.data_ptr(), _ptr(spike),
                              _ptr(flags), its.data_ptr(), lvl.data_ptr(), int(per_neuron), _threads(sc.numel()))
    if spike is None and spike_dtype is not None:
        spike = o.to(spike_dtype)
    return spike, s_next, flags


def _step_backward(G: Optional[Tensor], h: Optional[Tensor], u: Tensor, du: Tensor, flags: Tensor,
                   k: LIFConstants, warmup: bool, extra: Optional[Tensor], scale: Any):
    """One step of the TSSL-BP backward in one pass (``tssl_step_bwd``): ``(grad_x, delta, finite)`` as
    :func:`tssl_plugin._impl.reference.carry_step` computes ``(grad_x, delta)`` from the step's flags
    (:func:`~tssl_plugin._impl.reference.step_flags`) and ``du`` (a tensor, or an
    :class:`~tssl_plugin._impl.reference.Increment` the kernel computes it from), ``grad_x`` times ``scale``;
    ``finite`` tells whether every ``grad_x`` is finite (the kernel checks while writing it)."""
    from . import _ReferenceImpl

    inc = du if isinstance(du, Increment) else None
    dut = inc.prev if inc is not None else du
    if isinstance(scale, Tensor) or not _step_native(u, flags, G, h, dut, extra, spikes=torch.uint8):
        return _ReferenceImpl.step_backward(G, h, u, du, flags, k, warmup, extra, scale)
    dt = u.dtype
    uc = u.contiguous()
    Gc = torch.zeros_like(uc) if G is None else _as(G, dt)
    hc, ec = _as(h, dt), _as(extra, dt)
    dc, fc = _as(dut, dt), flags.contiguous()  # named: an inline temporary is freed before the call
    table, per_neuron = step_table(k, uc)
    gx, delta = torch.empty_like(uc), torch.empty_like(uc)
    du_ptr, prev_ptr = (None, dc.data_ptr()) if inc is not None else (dc.data_ptr(), None)
    bad = _fn("step_bwd", dt)(
        uc.numel(), Gc.data_ptr(), _ptr(hc), _ptr(ec), uc.data_ptr(), du_ptr, prev_ptr,
        DELAYED_RESETS[inc.reset] if inc is not None else 0,
        fc.data_ptr(), gx.data_ptr(), delta.data_ptr(), table.data_ptr(),
        int(per_neuron), RESET_CODES[k.reset], int(warmup), float(scale), _threads(uc.numel()))
    return gx, delta, not bad


def loader() -> type:
    """Registry loader: the implementation, or ImportError when the kernel cannot be built."""
    load()
    return CpuImpl
