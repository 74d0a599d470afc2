"""Optional packages a command needs, all checked before it starts, all reported in one line.

A core-only install (``pip install tssl-plugin``) lacks the ``bench`` extra and the host libraries;
the harness names every missing package and the extra that brings it in one error, before any work,
instead of failing at the first import, or at plotting time after a whole run.
"""
from __future__ import annotations

import importlib.util
from typing import Dict, Iterable, List, Tuple

__all__ = ["missing", "check_requirements", "MissingExtras"]


class MissingExtras(RuntimeError):
    """One or more optional packages are not installed; the message names each and its extra."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


def missing(requirements: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """The ``(module, extra)`` pairs whose module cannot be found, without duplicates, in order."""
    out: List[Tuple[str, str]] = []
    for module, extra in requirements:
        if (module, extra) not in out and not _installed(module):
            out.append((module, extra))
    return out


def check_requirements(requirements: Iterable[Tuple[str, str]]) -> None:
    """Raise :class:`MissingExtras` naming every missing module, grouped by the extra that installs it."""
    gone = missing(requirements)
    if not gone:
        return
    by_extra: Dict[str, List[str]] = {}
    for module, extra in gone:
        by_extra.setdefault(extra, []).append(module.split(".")[0])
    parts = [f"{', '.join(dict.fromkeys(mods))} (pip install 'tssl-plugin[{extra}]')" for extra, mods in by_extra.items()]
    extras = ",".join(by_extra)
    raise MissingExtras(f"missing optional package(s): {'; '.join(parts)}; all at once: "
                        f"pip install 'tssl-plugin[{extras}]'")
