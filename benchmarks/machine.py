"""What ran a benchmark: the machine (platform, cores, threads, device) and the code (tssl-plugin's version
and git commit, the host libraries' versions, the TSSL-BP implementation that ran).

Every epoch record of a training run holds ``machine`` (:func:`machine_info`), ``code`` (:func:`code_info`)
and ``tssl_impl`` (:func:`tssl_impl`); ``summary.json`` holds the ``machine`` and ``code`` its records share.
``tssl-bench merge`` refuses runs whose ``code`` differs (:func:`code_differences` names how), and
``tssl-bench reproduce`` says how the code of a re-run differs from the original's.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

__all__ = ["machine_info", "cpu_model", "code_info", "library_versions", "git_state", "tssl_impl", "code_differences",
           "code_text", "CODE_FIELDS"]

#: the fields of :func:`code_info`, in the order they are compared and printed.
CODE_FIELDS = ("tssl_plugin", "commit", "modified", "torch", "snntorch", "spikingjelly")
#: how each field is named in messages.
_LABELS = {"tssl_plugin": "tssl-plugin", "commit": "commit", "modified": "modified tree", "torch": "torch",
           "snntorch": "snnTorch", "spikingjelly": "SpikingJelly"}


def library_versions() -> Dict[str, str]:
    """``torch``'s version and, when installed, ``snntorch``'s and ``spikingjelly``'s (the installed
    distribution's version; SpikingJelly 2.0 has no ``__version__``), else the module's ``__version__``."""
    from importlib import metadata

    out = {"torch": torch.__version__}
    for mod in ("snntorch", "spikingjelly"):
        try:
            out[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            try:
                out[mod] = str(__import__(mod).__version__)
            except Exception:
                pass
    return out


def cpu_model() -> Optional[str]:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``; None if unknown).
    Numbers can differ between CPU models: the C kernel is compiled for the CPU it runs on
    (``-march=native``), and torch picks its matrix-product code by the CPU's instruction set."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def machine_info(device: torch.device, world: int) -> Dict[str, Any]:
    """What ran the benchmark: platform, CPU model, Python, torch, CPU cores, torch threads, device, world
    size, the GPU's name on CUDA, and the host libraries' versions when installed."""
    info = {"platform": platform.platform(), "cpu": cpu_model(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device), "world_size": world}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info.update({k: v for k, v in library_versions().items() if k != "torch"})
    return info


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(package_dir: Optional[Path] = None) -> Dict[str, Any]:
    """``{"commit": sha, "modified": bool}`` when the ``tssl_plugin`` package runs from a git checkout
    (an editable install), else ``{"commit": None, "modified": None}``.

    The checkout is the folder above the package, and only when git tracks the package's ``__init__.py``
    there (a wheel installed into a virtual environment inside some repository is not that repository's
    code). ``modified``: a tracked file differs from the commit (untracked files, such as results folders,
    do not count).
    """
    if package_dir is None:
        import tssl_plugin

        package_dir = Path(tssl_plugin.__file__).resolve().parent
    root = package_dir.parent
    none: Dict[str, Any] = {"commit": None, "modified": None}
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return none
    if _git(root, "ls-files", "--error-unmatch", f"{package_dir.name}/__init__.py") is None:
        return none
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return none
    return {"commit": commit, "modified": bool(status)}


def code_info() -> Dict[str, Any]:
    """What code ran: tssl-plugin's version, its git commit and whether the checkout was modified (None
    for both when not run from a checkout, see :func:`git_state`), and the versions of torch, snnTorch and
    SpikingJelly (None when not installed).

    Read once per process (the first call; a run calls it before its first epoch) and then returned as
    is: a process runs the code it imported, so a checkout edited or switched while it trains does not
    change what its later records say.
    """
    global _CODE
    if _CODE is None:
        import tssl_plugin

        versions = library_versions()
        _CODE = {"tssl_plugin": tssl_plugin.__version__, **git_state(),
                 "torch": versions["torch"], "snntorch": versions.get("snntorch"),
                 "spikingjelly": versions.get("spikingjelly")}
    return dict(_CODE)


_CODE: Optional[Dict[str, Any]] = None


def tssl_impl(uses_tssl: bool, device: torch.device, dtype: torch.dtype = torch.float32) -> Optional[str]:
    """The TSSL-BP implementation that ran (``tssl_plugin.functional.last_impl``) for a backend whose
    gradient uses the TSSL-BP op (``uses_tssl``), after it trained; None for a surrogate-gradient backend
    (the op did not run for it, whatever ran last in the process)."""
    if not uses_tssl:
        return None
    from tssl_plugin.functional import last_impl

    return last_impl(device, dtype)


def _short(field: str, value: Any) -> str:
    if value is None:
        return "not from a checkout" if field in ("commit", "modified") else "not installed"
    if field == "commit":
        return str(value)[:7]
    if field == "modified":
        return "yes" if value else "no"
    return str(value)


def code_differences(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]],
                     names: Tuple[str, str] = ("the first", "the second")) -> List[str]:
    """How the code ``b`` differs from ``a`` (two :func:`code_info` dicts), one phrase per field, such as
    ``commit 927e9e3 vs 1a2b3c4``; ``code not recorded in the first`` (``names``) for a missing side
    (records of versions before the code was recorded). Empty: the same code, or neither recorded."""
    if a is None and b is None:
        return []
    if a is None or b is None:
        return [f"code not recorded in {names[0] if a is None else names[1]}"]
    return [f"{_LABELS[f]} {_short(f, a.get(f))} vs {_short(f, b.get(f))}"
            for f in CODE_FIELDS if a.get(f) != b.get(f)]


def code_text(code: Optional[Dict[str, Any]]) -> str:
    """One line naming ``code`` (a :func:`code_info` dict): ``tssl-plugin 0.1.0, commit 927e9e3 (modified),
    torch 2.14.1, snnTorch 1.0.0, SpikingJelly 2.0.0``; ``not recorded`` for None."""
    if code is None:
        return "not recorded"
    commit = code.get("commit")
    where = ("not run from a git checkout" if commit is None else
             f"commit {commit[:7]}" + (" (modified)" if code.get("modified") else ""))
    libs = ", ".join(f"{_LABELS[f]} {code[f]}" for f in ("torch", "snntorch", "spikingjelly") if code.get(f))
    return f"tssl-plugin {code.get('tssl_plugin')}, {where}, {libs}"
