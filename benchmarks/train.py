"""A training run: every backend x seed of a :class:`config.Config`, checkpointed, into one results folder.

For each backend and seed: build the network from the seed's shared initial weights (the same in every
library), train it epoch by epoch (epoch.py: AdamW or Adam, the same for every backend, the learning-rate
schedule of optimizer.py, the loss of losses.py) and after each epoch append the epoch's record to
``results.jsonl`` and save a checkpoint; at the end write the summary (summary.py). Under ``torchrun``
every rank trains its shard with DistributedDataParallel and only rank 0 writes.

An epoch's numbers depend only on the checkpoint it starts from (epoch.py), so ``--resume`` reproduces an
uninterrupted run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import backends as B
from . import data as D
from . import models as M
from . import report as R
from .checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from .config import Config, as_dict, check_config
from .device import pick_device
from .distributed import barrier, close_process_group, dist_info, init_process_group
from .epoch import evaluate, train_epoch
from .losses import loss_for
from .machine import code_info, machine_info, tssl_impl
from .memory import memory_measure
from .optimizer import make_optimizer
from .progress import progress, progress_line, progress_lines
from .results_dir import check_new_out, start_results
from .summary import shared_code, write_summary

__all__ = ["run_benchmark", "run_one"]


def build_network(backend: B.Backend, seed: int, ds: D.Dataset, arch: M.Arch, cfg: Config, device: torch.device,
                  ncfg: Optional[M.NeuronCfg] = None) -> Tuple[M.SpikingNet, torch.optim.Optimizer]:
    """A run's network for ``backend`` from its initial weights for ``seed``, on ``device``, and its optimiser.

    ``ncfg``: other neuron constants than ``cfg``'s (for example a sensitivity cap), as tools/drift_probe.py uses.
    """
    ncfg = ncfg or M.NeuronCfg(cfg.tau_m, cfg.tau_s, cfg.threshold, cfg.reset, crossing=cfg.crossing)
    weights = M.initial_weights(arch, ds.in_shape, seed, cfg.init_gain, init=cfg.init)
    net = backend.build(arch, ds.in_shape, weights, ncfg, warmup=cfg.warmup, warmup_width=cfg.warmup_width,
                        native_between=cfg.native_between, ablation=cfg.ablation,
                        warmup_gate=cfg.warmup_gate, warmup_floor=cfg.warmup_floor).to(device)
    return net, make_optimizer(cfg, net.parameters())


def run_one(backend: B.Backend, seed: int, ds: D.Dataset, arch: M.Arch, cfg: Config, out: Path,
            device: torch.device, rank: int, world: int, writer: Optional[R.JsonlWriter], quiet: bool,
            stop_after_epochs: Optional[int] = None) -> List[Dict[str, Any]]:
    """Train one backend with one seed (resuming from its checkpoint if any); returns the epoch records."""
    net, opt = build_network(backend, seed, ds, arch, cfg, device)
    loss_name = loss_for(cfg.loss, backend, ds.temporal)
    records: List[Dict[str, Any]] = []
    # in every record: a resumed run may continue on another machine, or with other code
    machine, code = machine_info(device, world), code_info()
    start = 0
    ck = checkpoint_path(out, backend.name, seed)
    if ck.exists():
        state = load_checkpoint(ck, device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        records, start = state["records"], state["epoch"]
    model: nn.Module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    epochs = progress(range(start, cfg.epochs), cfg.epochs, f"{backend.name} seed {seed}", quiet, leave=True,
                      initial=start)
    for epoch in epochs:
        m = train_epoch(model, net, opt, ds, cfg, loss_name, epoch, seed, device, world, rank, quiet)
        t0 = time.perf_counter()
        m["test_accuracy"], activity = evaluate(model, net, ds, cfg, device, world, rank, arch)
        m["eval_seconds"] = time.perf_counter() - t0
        m.update(activity)
        rec = {"backend": backend.name, "library": backend.library, "gradient": backend.gradient,
               "dataset": ds.name, "arch": arch.name, "seed": seed, "epoch": epoch + 1, "loss": loss_name,
               "world_size": world, "device": str(device), "memory_measure": memory_measure(device),
               "machine": machine, "code": code,
               "tssl_impl": tssl_impl(backend.gradient.startswith("tssl"), device), **m}
        records.append(rec)
        if rank == 0:
            save_checkpoint(ck, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                 "epoch": epoch + 1, "records": records, "backend": backend.name, "seed": seed})
            if writer is not None:
                writer.append(rec)
        if rank == 0 and progress_lines(quiet):
            progress_line(f"{backend.name} seed {seed} epoch {epoch + 1}/{cfg.epochs}: test accuracy "
                          f"{rec['test_accuracy']:.4f}, train loss {rec['train_loss']:.4g}, "
                          f"{rec['seconds'] + rec['eval_seconds']:.1f} s")
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(test_acc=f"{rec['test_accuracy']:.3f}", loss=f"{rec['train_loss']:.3g}")
        if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs:
            break
    return records


def run_benchmark(cfg: Config, out: Path, *, resume: bool = False, quiet: bool = False,
                  stop_after_epochs: Optional[int] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Run every backend x seed of ``cfg`` writing into ``out``; returns the summary (rank 0) or {}.

    A new run (``resume=False``) refuses a folder that already holds results unless ``overwrite``,
    which deletes them once the data has loaded. ValueError for a bad ``cfg`` or folder.
    """
    check_config(cfg)
    out = Path(out)
    if not resume and dist_info()[0] == 0:
        check_new_out(out, overwrite=overwrite)
    backends = B.resolve(cfg.backends)
    for b in backends:
        b.check_available()
    device = pick_device(cfg.device)
    rank, world, started = init_process_group(device)
    try:
        summary = _run_all(cfg, out, backends, device, rank, world, resume, quiet, stop_after_epochs, overwrite)
    except BaseException:
        if started:
            close_process_group(wait=False)
        raise
    if started:
        close_process_group(wait=True)
    return summary


def _finished_records(out: Path, backends: List[B.Backend], seeds: List[int]) -> List[Dict[str, Any]]:
    """The epoch records saved in the checkpoints of ``out`` (what a resumed run already has)."""
    old: List[Dict[str, Any]] = []
    for b in backends:
        for s in seeds:
            ck = checkpoint_path(out, b.name, s)
            if ck.exists():
                old += load_checkpoint(ck, torch.device("cpu"))["records"]
    return old


def _run_all(cfg: Config, out: Path, backends: List[B.Backend], device: torch.device, rank: int, world: int,
             resume: bool, quiet: bool, stop_after_epochs: Optional[int], overwrite: bool) -> Dict[str, Any]:
    """``run_benchmark`` on one rank, inside the process group."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    ds = D.load_dataset(cfg.dataset, cfg.data_root, n_steps=cfg.steps, download=cfg.download,
                        limit_train=cfg.limit_train, limit_test=cfg.limit_test,
                        nmnist_window_us=cfg.nmnist_window_us, normalize=cfg.normalize)
    arch = M.make_arch(cfg.arch, ds.n_class, cfg.hidden)
    M.initial_weights(arch, ds.in_shape, 0)  # checks that the network fits the data before any work
    out = Path(out)
    writer = None
    if rank == 0:
        old = _finished_records(out, backends, cfg.seed_list()) if resume else []
        writer = start_results(out, as_dict(cfg), overwrite=not resume and overwrite, records=old)
    all_records: List[Dict[str, Any]] = []
    for b in backends:
        for s in cfg.seed_list():
            barrier(world)
            all_records += run_one(b, s, ds, arch, cfg, out, device, rank, world, writer, quiet, stop_after_epochs)
    if rank != 0:
        return {}
    return write_summary(out, cfg, all_records, ds, arch, machine_info(device, world), memory_measure(device),
                         code=shared_code(all_records))
