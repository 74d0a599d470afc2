"""Command-line pieces shared by ``tssl-bench`` and its sub-commands: help formatting, value types,
the options every ``speed`` sub-command has, and which options a user typed."""
from __future__ import annotations

import argparse
from typing import Any, Dict, List, Sequence, Set

__all__ = ["Parser", "HelpFormatter", "ints", "pos_int", "nonneg_int", "explicit_options", "option_text",
           "add_int_list", "add_timing_options"]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump): ``prog: error: ... (see prog --help)``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option shows its default; a flag shows ``(default: off)``; a help text that already says
    ``(default: ...)`` is left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text or "%(default)" in text or action.default is argparse.SUPPRESS:
            return text
        if action.nargs == 0 and action.option_strings:  # store_true / store_false flags
            return text + " (default: off)"
        return super()._get_help_string(action)


def ints(text: str) -> List[int]:
    """``"8,32,128"`` -> ``[8, 32, 128]``, every value >= 1."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _int_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    if v < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
    return v


def pos_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Set[str]:
    """The ``dest`` of every option given on the command line ``argv`` (defaults not counted)."""
    saved = {a.dest: a.default for a in parser._actions}
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
        ns = parser.parse_args(list(argv))
    finally:
        for a in parser._actions:
            a.default = saved[a.dest]
    return set(vars(ns))


def option_text(parser: argparse.ArgumentParser, dests: Sequence[str], values: Dict[str, object]) -> str:
    """``--epochs 5, --quiet`` for ``dests`` as the user gave them."""
    parts = []
    for a in parser._actions:
        if a.dest in dests and a.option_strings:
            flag = max(a.option_strings, key=len)
            v = values.get(a.dest)
            v = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
            parts.append(flag if a.nargs == 0 else f"{flag} {v}")
    return ", ".join(parts)


class _Flatten(argparse.Action):
    """``--steps 5 10 30`` and ``--steps 5,10,30`` alike: the lists of every value, joined."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [v for vals in values for v in vals])


def add_int_list(p: argparse.ArgumentParser, *names: str, default: List[int], help: str) -> None:
    """An option taking positive integers, separated by spaces or commas (``--steps 4 8`` = ``--steps 4,8``)."""
    p.add_argument(*names, type=ints, nargs="+", action=_Flatten, default=default, metavar="N", help=help)


class _Renamed(argparse.Action):
    """An option that no longer exists: a one-line error naming what replaced it."""

    def __init__(self, option_strings, dest, message: str = "", **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kw)
        self.message = message

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string}: {self.message}")


def add_timing_options(p: argparse.ArgumentParser, *, repeats: int, untimed: int, threads: int = 0) -> None:
    """``--repeats``, ``--untimed`` and ``--threads`` of a ``tssl-bench speed`` sub-command (see timer.py)."""
    p.add_argument("--repeats", type=pos_int, default=repeats, help="timed runs of each call (the median is reported)")
    p.add_argument("--untimed", type=nonneg_int, default=untimed,
                   help="untimed runs of each call before the timed ones (warming caches and compilers up)")
    p.add_argument("--threads", type=nonneg_int, default=threads, help="torch CPU threads (0: torch's default)")
    p.add_argument("--warmup", action=_Renamed, default=argparse.SUPPRESS,
                   message="renamed --untimed (untimed runs before timing); TSSL-BP's warm-up is the training "
                           "option --no-warmup")
