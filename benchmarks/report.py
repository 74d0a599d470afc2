"""Result files: JSONL (appended, flushed per record), JSON, CSV, Markdown and PNG plots.

Every whole-file write goes to a temporary file in the same folder and is then
renamed over the target with :func:`os.replace` (atomic on POSIX and Windows),
so an interrupted run never leaves a half-written summary or checkpoint. The
file gets the mode a plain ``open()`` would give it (the umask is respected).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "JsonlWriter",
           "read_jsonl", "markdown_table", "csv_text", "plot_lines", "plot_points", "plot_bars", "bars_figure",
           "fmt", "si"]


def atomic_write_bytes(path: os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then ``os.replace``."""
    _atomic(path, lambda fh: fh.write(data))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` leaves: the existing file's, else ``0o666`` less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _atomic(path: os.PathLike, writer: Callable[[Any], Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: os.PathLike, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN written as null)."""
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` (checkpoints)."""
    import torch

    _atomic(path, lambda fh: torch.save(obj, fh))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class JsonlWriter:
    """Append one JSON record per line, flushed and fsynced after each record."""

    def __init__(self, path: os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean(record)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite(self, records: Iterable[Dict[str, Any]]) -> None:
        """Replace the file atomically with ``records`` (used when resuming)."""
        atomic_write_text(self.path, "".join(json.dumps(_clean(r)) + "\n" for r in records))


def read_jsonl(path: os.PathLike) -> List[Dict[str, Any]]:
    """Records of a JSONL file (a torn last line from a killed process is ignored)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def fmt(value: Any, digits: int = 4) -> str:
    """Human formatting for tables: ``digits`` decimals, ``-`` for missing values."""
    if value is None or isinstance(value, float) and not math.isfinite(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def si(x: float) -> str:
    """``1.23e6`` -> ``1.23 M`` (``-`` for NaN)."""
    if x != x:
        return "-"
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text with a header line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _pyplot():
    from tssl_plugin._optional import require

    mpl = require("matplotlib", "bench")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "bench")


def _save_fig(fig, path: os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _finish_axes(plt, fig, ax, path: os.PathLike, *, xlabel: str, ylabel: str, title: str, logx: bool, logy: bool,
                 hlines: Optional[Dict[str, float]]) -> None:
    """Dashed horizontal lines ``label -> y``, labels, title, log scales, grid and legend; save ``fig`` as PNG and close it."""
    for i, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="k", ls="--" if i == 0 else ":", lw=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_fig(fig, path)
    plt.close(fig)


def plot_lines(path: os.PathLike, series: Dict[str, tuple], *, xlabel: str, ylabel: str, title: str,
               logx: bool = False, logy: bool = False, hlines: Optional[Dict[str, float]] = None) -> None:
    """One line per series ``name -> (x, y[, yerr])``, dashed horizontal lines ``label -> y``; saved as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for name, xy in series.items():
        x, y = xy[0], xy[1]
        line, = ax.plot(x, y, marker="o", ms=3, label=name)
        if len(xy) > 2 and xy[2] is not None:
            lo = [a - b for a, b in zip(y, xy[2])]
            hi = [a + b for a, b in zip(y, xy[2])]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    _finish_axes(plt, fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title, logx=logx, logy=logy, hlines=hlines)


def plot_points(path: os.PathLike, points: Dict[str, tuple], *, xlabel: str, ylabel: str, title: str,
                logx: bool = False, hlines: Optional[Dict[str, float]] = None) -> None:
    """One marker per name ``name -> (x, y, xerr, yerr)`` with error bars; saved as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for i, (name, (x, y, xerr, yerr)) in enumerate(points.items()):
        ax.errorbar([x], [y], xerr=[xerr] if xerr else None, yerr=[yerr] if yerr else None, fmt="os^Dv<>ph*"[i % 10],
                    ms=7, capsize=3, color=f"C{i}", label=name)
    _finish_axes(plt, fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title, logx=logx, logy=False, hlines=hlines)


def bars_figure(names: Sequence[str], panels: Sequence[tuple], title: str):
    """The figure of :func:`plot_bars` (constrained layout: labels, panel notes and title never overlap)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), layout="constrained")
    if len(panels) == 1:
        axes = [axes]
    for ax, panel in zip(axes, panels):
        label, values = panel[0], panel[1]
        err = panel[2] if len(panel) > 2 else None
        ax.bar(range(len(names)), [v if v is not None else 0 for v in values], yerr=err,
               color=[f"C{i}" for i in range(len(names))], capsize=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(label)
        if len(panel) > 3 and panel[3]:
            ax.set_title(panel[3], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_bars(path: os.PathLike, names: Sequence[str], panels: Sequence[tuple], title: str) -> None:
    """Side-by-side bar panels, each ``(ylabel, values[, errors[, note]])``, one bar per name; saved as PNG."""
    plt = _pyplot()
    fig = bars_figure(names, panels, title)
    _save_fig(fig, path)
    plt.close(fig)
