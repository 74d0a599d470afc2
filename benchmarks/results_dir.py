"""The results folder of a run (training or ``speed``): which files it holds, when it may be written, and the
one writer of its files.

A folder that already holds tssl-bench results is never written into silently: a new run refuses it
(pointing to ``--resume`` where the command can resume, and to ``--overwrite``); ``--overwrite`` deletes
exactly the files a run writes (so no old checkpoint can mix with the new run) and leaves anything else
in the folder alone. Every command writes its folder through :func:`start_results` (``config.json`` and
``results.jsonl``, one record appended per result as it comes) and :func:`write_summary_files`
(``summary.json``, ``summary.csv``, ``summary.md``); every whole file is written atomically (report.py).
"""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from . import report as R

__all__ = ["RESULT_FILES", "existing_results", "check_new_out", "check_writable", "clear_results", "resume_command",
           "start_results", "write_summary_files"]

#: what a run (training or ``speed``) writes into its folder, as glob patterns (``checkpoints`` is a folder).
RESULT_FILES = ("config.json", "results.jsonl", "summary.json", "summary.csv", "summary.md",
                "accuracy_vs_epoch.png", "accuracy_vs_synops.png", "time_memory.png", "speed_vs_T_size*.png",
                "checkpoints")


def resume_command(out: Path) -> str:
    """The exact command that continues the training run in ``out``."""
    return f"tssl-bench --resume {shlex.quote(str(out))}"


def existing_results(out: Path, files: Sequence[str] = RESULT_FILES) -> List[str]:
    """Names of the ``files`` (glob patterns; a run's :data:`RESULT_FILES` by default) present in ``out``."""
    return sorted({p.name for pattern in files for p in out.glob(pattern)})


def check_new_out(out: Path, *, overwrite: bool, resume: Optional[Callable[[Path], str]] = resume_command,
                  files: Sequence[str] = RESULT_FILES, holding: str = "tssl-bench results") -> None:
    """ValueError unless ``out`` can take a new run: absent, or a folder without ``files`` (or ``overwrite``).

    ``resume``: the command that continues the earlier run in a folder, named in the error (None for a
    command that cannot resume); ``holding``: what the ``files`` are, for the error.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a new folder name")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out {out}: {parent} is a file, not a folder; give another path")
    check_writable(out)
    if out.is_dir() and not overwrite:
        found = existing_results(out, files)
        if found:
            what = (f"continue that run with: {resume(out)}, or add --overwrite to delete them and start again"
                    if resume is not None else "give another --out, or add --overwrite to delete them first")
            raise ValueError(f"--out {out} exists and already holds {holding} ({', '.join(found)}); {what}")


def check_writable(out: Path) -> None:
    """ValueError unless this process can write files into ``out`` (or create it, where it is absent).

    Probes by creating, then removing, a temporary file in ``out`` or a temporary folder in its nearest
    existing ancestor; nothing is left behind. Catches read-only mounts, ``/proc``, and missing permissions.
    """
    existing = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    try:
        if existing == out:
            fd, probe = tempfile.mkstemp(prefix=".tssl-bench-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".tssl-bench-probe-", dir=existing))
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write into {existing} ({err.strerror or err}); "
                         f"give a folder you can write to") from None


def clear_results(out: Path, files: Sequence[str] = RESULT_FILES) -> None:
    """Delete the ``files`` a previous run wrote into ``out`` (a run's :data:`RESULT_FILES` by default), nothing else."""
    for name in existing_results(out, files):
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def start_results(out: Path, config: Dict[str, Any], *, overwrite: bool = False,
                  records: Iterable[Dict[str, Any]] = ()) -> R.JsonlWriter:
    """Make ``out`` ready for a run and return the writer of its ``results.jsonl``.

    Deletes earlier results first when ``overwrite``; writes ``config.json``; (re)writes ``results.jsonl``
    to hold exactly ``records`` (those a resumed run already has: no duplicates, no torn last line).
    """
    if overwrite:
        clear_results(out)
    out.mkdir(parents=True, exist_ok=True)
    R.atomic_write_json(out / "config.json", config)
    writer = R.JsonlWriter(out / "results.jsonl")
    writer.rewrite(records)
    return writer


def write_summary_files(out: Path, summary: Dict[str, Any], csv_columns: Sequence[str],
                        csv_rows: Sequence[Sequence[Any]], markdown: str) -> Dict[str, Any]:
    """Write ``summary.json`` (``summary`` stamped with the time it was ``written``), ``summary.csv`` and
    ``summary.md`` into ``out``; return the stamped summary."""
    summary = {**summary, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    R.atomic_write_json(out / "summary.json", summary)
    R.atomic_write_text(out / "summary.csv", R.csv_text(csv_columns, csv_rows))
    R.atomic_write_text(out / "summary.md", markdown)
    return summary


def read_run(folder: Path, command: str, *, prefix: str, empty: str, then: str = ""):
    """``(config, epoch records)`` of the training run in ``folder``, for ``tssl-bench COMMAND``; ValueError
    naming what is wrong: a merged summary, an unreadable config or results file, no finished epoch
    (``empty`` and ``then`` word that message; ``prefix`` starts the merged-summary one)."""
    from .config import check_config, read_config

    if (folder / "merged_from.json").exists() and not (folder / "config.json").exists():
        raise ValueError(f"{prefix}{folder} is a merged summary, not a run; {command} the run folders it lists "
                         f"in {folder / 'merged_from.json'}")
    cfg = check_config(read_config(folder, option=command))
    path = folder / "results.jsonl"
    try:
        records = R.read_jsonl(path) if path.exists() else []
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{command}: cannot read {path} ({type(err).__name__}: {err})") from err
    if not records:
        raise ValueError(f"{command}: {folder} {empty} ({path} is empty or missing){then}")
    return cfg, records
