"""Progress: tqdm bars on a terminal (stderr); one flushed line per epoch or finished run on stdout when
stdout is not a terminal (CI, ``> log``) or no bar is drawn; nothing with ``--quiet``."""
from __future__ import annotations

import sys
from typing import Iterable

__all__ = ["progress", "progress_shown", "progress_lines", "progress_line"]


def progress_shown(quiet: bool) -> bool:
    """Whether a command draws progress bars (and so needs tqdm)."""
    return not quiet and sys.stderr.isatty()


def progress(iterable: Iterable, total: int, desc: str, quiet: bool, leave: bool = False, initial: int = 0):
    """A tqdm bar over ``iterable`` (``initial`` of ``total`` already done), or ``iterable`` when quiet/no terminal."""
    if not progress_shown(quiet):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc=desc, leave=leave, dynamic_ncols=True)


def progress_lines(quiet: bool) -> bool:
    """Whether a command prints one line per epoch (or finished run): unless quiet, whenever stdout is not
    a terminal or no progress bar is drawn, so a log shows progress as it happens."""
    return not quiet and (not sys.stdout.isatty() or not progress_shown(quiet))


def progress_line(text: str) -> None:
    """Print one progress line on stdout and flush it (a pipe or file would otherwise hold it to the end)."""
    print(text, flush=True)
