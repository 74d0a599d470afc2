"""Progress bars: tqdm on a terminal, nothing when ``--quiet`` or when stderr is not a terminal."""
from __future__ import annotations

import sys
from typing import Iterable

__all__ = ["progress", "progress_shown"]


def progress_shown(quiet: bool) -> bool:
    """Whether a command draws progress bars (and so needs tqdm)."""
    return not quiet and sys.stderr.isatty()


def progress(iterable: Iterable, total: int, desc: str, quiet: bool, leave: bool = False, initial: int = 0):
    """A tqdm bar over ``iterable`` (``initial`` of ``total`` already done), or ``iterable`` when quiet/no terminal."""
    if not progress_shown(quiet):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc=desc, leave=leave, dynamic_ncols=True)
