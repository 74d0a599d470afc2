"""What determines a training run: :class:`Config` (saved as ``config.json``, read back by ``--resume``) and its checks.

:func:`config_problems` lists every value that cannot run, so the command line
refuses a bad option with one line before any output folder exists, and a
hand-edited ``config.json`` is refused the same way under ``--resume``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from tssl_plugin.rule import ABLATIONS, CROSSINGS, WARMUP_GATES, WARMUP_WIDTH

from .backends import DEFAULT_BACKENDS
from .data import NORMALIZE
from .losses import LOSSES
from .models import NATIVE_BETWEEN

__all__ = ["Config", "OPTIMIZERS", "INITS", "NORMALIZATIONS", "config_problems", "check_config",
           "config_from_json", "read_config", "as_dict", "default_weight_decay"]

#: optimisers; the same one trains every backend of a run.
OPTIMIZERS = ("adamw", "adam")
#: initial weights: PyTorch's layer default times ``init_gain``, or the official TSSL-BP code's.
INITS = ("default", "paper")
#: input normalisation before encoding: none, or the official loaders' ``transforms.Normalize``.
NORMALIZATIONS = ("none",) + tuple(NORMALIZE)


def default_weight_decay(optimizer: str) -> float:
    """Weight decay used when none is given: PyTorch's own default of each optimiser (AdamW 0.01, Adam 0)."""
    return 0.01 if optimizer == "adamw" else 0.0


@dataclass
class Config:
    """Everything that determines a run (saved as ``config.json``; ``--resume`` reads it back)."""

    backends: List[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    dataset: str = "digits"
    data_root: Optional[str] = None
    download: bool = False
    limit_train: int = 0
    limit_test: int = 0
    arch: str = "mlp"
    hidden: List[int] = field(default_factory=lambda: [400, 400])
    steps: int = 5
    epochs: int = 8
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: Optional[float] = None
    weight_clip: float = 4.0
    grad_clip: float = 1.0
    seeds: int = 2
    seed: int = 0
    loss: str = "natural"
    tau_m: float = 5.0
    tau_s: float = 3.0
    threshold: float = 1.0
    reset: str = "zero"
    init: str = "default"
    init_gain: float = 2.0
    normalize: str = "none"
    schedule: str = "cosine"
    warmup: bool = True
    warmup_width: float = WARMUP_WIDTH  # TSSL-BP's warm-up surrogate width (absent from older config.json files)
    # where TSSL-BP's warm-up applies (tssl_plugin.rule.WARMUP_GATES); None: each backend's default (the core op's
    # "trace", the adapters' own). Absent from files written before the option existed, which ran "trace".
    warmup_gate: Optional[str] = None
    # whether TSSL-BP's warm-up surrogate keeps the reference's floor (tssl_plugin.functional.tssl_lif); None: each
    # backend's default (the core op's True, the adapters' False). Absent from files written before the option
    # existed, which ran with the floor everywhere.
    warmup_floor: Optional[bool] = None
    # what TSSL-BP's spike-time sensitivity measures (tssl_plugin.rule.CROSSINGS); None: each backend's default (the
    # core op's "step", the adapters' "interpolated" after a reset to zero). Absent from files written before the
    # option existed, which ran "step" everywhere.
    crossing: Optional[str] = None
    ablation: str = "none"  # a part of TSSL-BP switched off (tssl_plugin.rule.ABLATIONS; absent from older files)
    encoding: str = "psc"
    native_between: str = "psc"  # what native:tssl passes between layers (absent from older config.json files)
    device: str = "auto"
    threads: int = 1
    nmnist_window_us: int = 300_000
    preset: Optional[str] = None

    def seed_list(self) -> List[int]:
        return [self.seed + i for i in range(self.seeds)]

    def resolved_weight_decay(self) -> float:
        """``weight_decay``, or the optimiser's default when it is None."""
        return default_weight_decay(self.optimizer) if self.weight_decay is None else float(self.weight_decay)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def config_problems(cfg: Config) -> List[str]:
    """Every value of ``cfg`` that cannot run, each as ``--option: what is wrong`` (empty: all fine).

    Bounds: tau_m > 1 (beta = 1 - 1/tau_m in (0, 1)), tau_s >= 1, threshold > 0, lr > 0, warm-up width > 0,
    decay, clips and limits >= 0, steps, epochs, batch size, seeds and the N-MNIST window >= 1, threads >= 0.
    """
    from .data import DATASETS
    from .models import ARCHITECTURES

    out: List[str] = []

    def need(ok: bool, option: str, msg: str) -> None:
        if not ok:
            out.append(f"{option}: {msg}")

    def choice(value: Any, option: str, choices) -> None:
        need(value in choices, option, f"{value!r} is not one of {', '.join(map(str, choices))}")

    choice(cfg.dataset, "--dataset", DATASETS)
    choice(cfg.arch, "--arch", list(ARCHITECTURES))
    choice(cfg.loss, "--loss", LOSSES)
    choice(cfg.optimizer, "--optimizer", OPTIMIZERS)
    choice(cfg.init, "--init", INITS)
    choice(cfg.normalize, "--normalize", NORMALIZATIONS)
    choice(cfg.reset, "--reset", ("zero", "subtract"))
    choice(cfg.schedule, "--schedule", ("cosine", "constant"))
    choice(cfg.encoding, "--encoding", ("psc", "repeat"))
    need(isinstance(cfg.hidden, list) and bool(cfg.hidden) and all(_int(h) and h >= 1 for h in cfg.hidden),
         "--hidden", f"sizes must be positive integers, got {cfg.hidden!r}")
    for option, value in (("--steps", cfg.steps), ("--epochs", cfg.epochs), ("--batch-size", cfg.batch_size),
                          ("--seeds", cfg.seeds), ("--nmnist-window-us", cfg.nmnist_window_us)):
        need(_int(value) and value >= 1, option, f"must be an integer >= 1, got {value!r}")
    for option, value in (("--limit-train", cfg.limit_train), ("--limit-test", cfg.limit_test),
                          ("--threads", cfg.threads), ("--seed", cfg.seed)):
        need(_int(value) and value >= 0, option, f"must be an integer >= 0, got {value!r}")
    need(_number(cfg.tau_m) and cfg.tau_m > 1 or cfg.tau_m == math.inf, "--tau-m",
         f"must be > 1 (beta = 1 - 1/tau_m lies in (0, 1)), got {cfg.tau_m!r}")
    need(_number(cfg.tau_s) and cfg.tau_s >= 1, "--tau-s", f"must be >= 1, got {cfg.tau_s!r}")
    need(_number(cfg.threshold) and cfg.threshold > 0, "--threshold",
         f"must be > 0 (a neuron with threshold <= 0 fires at rest), got {cfg.threshold!r}")
    need(_number(cfg.lr) and cfg.lr > 0, "--lr", f"must be > 0, got {cfg.lr!r}")
    need(cfg.weight_decay is None or _number(cfg.weight_decay) and cfg.weight_decay >= 0, "--weight-decay",
         f"must be >= 0, got {cfg.weight_decay!r}")
    need(_number(cfg.weight_clip) and cfg.weight_clip >= 0, "--weight-clip", f"must be >= 0 (0: off), got {cfg.weight_clip!r}")
    need(_number(cfg.grad_clip) and cfg.grad_clip >= 0, "--grad-clip", f"must be >= 0 (0: off), got {cfg.grad_clip!r}")
    need(_number(cfg.init_gain) and cfg.init_gain > 0, "--init-gain", f"must be > 0, got {cfg.init_gain!r}")
    need(_number(cfg.warmup_width) and cfg.warmup_width > 0, "--warmup-width",
         f"must be a finite number > 0 (the warm-up surrogate's width), got {cfg.warmup_width!r}")
    choice(cfg.ablation, "--ablation", ABLATIONS)
    if cfg.warmup_gate is not None:
        choice(cfg.warmup_gate, "--warmup-gate", WARMUP_GATES)
    need(cfg.warmup_floor in (None, True, False), "--warmup-floor", f"must be on or off, got {cfg.warmup_floor!r}")
    if cfg.crossing is not None:
        choice(cfg.crossing, "--crossing", CROSSINGS)
    need(cfg.warmup_gate is None or cfg.warmup is not False, "--warmup-gate",
         "sets where the warm-up applies, which --no-warmup turns off; drop one of the two")
    need(cfg.ablation != "no_spike_timing" or cfg.warmup is not False, "--ablation",
         "no_spike_timing keeps only the warm-up surrogate, which --no-warmup turns off; drop one of the two")
    choice(cfg.native_between, "--native-between", list(NATIVE_BETWEEN))
    need(cfg.native_between == "psc" or "native:tssl" in (cfg.backends or []), "--native-between",
         "changes only native:tssl's network; add native:tssl to --backends")
    need(isinstance(cfg.backends, list) and bool(cfg.backends), "--backends", "no backend given")
    if cfg.preset is not None:
        from .presets import PRESETS

        choice(cfg.preset, "--preset", list(PRESETS))
    return out


def check_config(cfg: Config) -> Config:
    """Raise ValueError naming every bad value of ``cfg`` (one line each); return ``cfg``."""
    problems = config_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))
    return cfg


def config_from_json(data: Any, source: str) -> Config:
    """A :class:`Config` from the parsed ``config.json`` at ``source``; ValueError naming the file if it is not one."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} is not a tssl-bench config (expected a JSON object)")
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)} (written by another version of tssl-bench?)")
    if "warmup_gate" not in data:  # written before the option existed: every backend ran the reference's gate
        data = {**data, "warmup_gate": "trace"}
    if "warmup_floor" not in data:  # written before the option existed: every backend ran with the floor
        data = {**data, "warmup_floor": True}
    if "crossing" not in data:  # written before the option existed: every backend ran the reference's "step"
        data = {**data, "crossing": "step"}
    try:
        return Config(**data)
    except TypeError as err:
        raise ValueError(f"{source}: {err}") from err


def read_config(out: Path, option: str = "--resume") -> Config:
    """The saved config of the run in ``out``; ValueError naming the file if it is missing or unreadable.

    ``option``: the command reading it (``--resume``, ``merge``), named in the errors.
    """
    if not out.is_dir():
        raise ValueError(f"{option} {out}: no such folder")
    path = out / "config.json"
    if not path.exists():
        raise ValueError(f"{option} {out}: no config.json there (not a tssl-bench output folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{option}: cannot read {path} ({type(err).__name__}: {err}); it is damaged. Restore it, "
                         f"or start a new run with --out") from err
    return config_from_json(data, str(path))


def as_dict(cfg: Config) -> Dict[str, Any]:
    """``cfg`` as a plain dict (what ``config.json`` holds)."""
    return dataclasses.asdict(cfg)
