"""One epoch of one network: the training pass and the test pass, with the metrics of each.

After each epoch a run records::

    train_loss (mean per sample), train_accuracy, seconds (training wall time), samples_per_second,
    peak_memory_mb (see memory.py), process_peak_rss_mb,
    firing_rates (mean spikes per neuron per step during training, one per spiking layer),
    test_accuracy and the activity metrics of the test pass (see activity.py)

Every step: forward, loss, backward, gradient norm clipped to ``grad_clip``, optimiser step,
weights clipped to ``[-weight_clip, weight_clip]`` (the paper's 1 and 4).

Determinism: the shuffle of epoch ``e`` is ``DistributedSampler(seed=seed).set_epoch(e)`` and
``torch.manual_seed`` is reset from ``(seed, e)`` at the epoch's start, so an epoch's numbers depend only
on the state it starts from. Under DistributedDataParallel each rank takes its shard and every count is
summed over the ranks.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from . import data as D
from . import models as M
from .activity import ActivityMeter
from .config import Config
from .device import synchronize
from .distributed import all_sum
from .encoding import encode, output_psc, predict
from .losses import SUMMED_LOSSES, compute_loss
from .memory import SavedBytes, process_peak_rss_mb, state_bytes
from .optimizer import lr_at
from .progress import progress

__all__ = ["train_epoch", "evaluate", "epoch_seed"]


def _batches(n: int, batch: int):
    for i in range(0, n, batch):
        yield slice(i, min(i + batch, n))


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed set at the start of ``epoch`` of the run with ``seed``."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 12345) % (2 ** 31)


def train_epoch(model: nn.Module, net: M.SpikingNet, opt, ds: D.Dataset, cfg: Config, loss_name: str,
                epoch: int, seed: int, device: torch.device, world: int, rank: int, quiet: bool) -> Dict[str, Any]:
    """One pass over the (sharded) training set; returns the epoch's training metrics (all ranks summed)."""
    from torch.utils.data import DistributedSampler

    torch.manual_seed(epoch_seed(seed, epoch))
    for group in opt.param_groups:  # stateless schedule: depends only on the epoch (resume-safe)
        group["lr"] = lr_at(cfg, epoch)
    sampler = DistributedSampler(range(len(ds.y_train)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = n_seen = 0
    spike_sum: Optional[Tensor] = None
    spike_n: Optional[Tensor] = None
    saved = 0
    n_batches = math.ceil(len(order) / cfg.batch_size)
    t0 = time.perf_counter()
    bar = progress(_batches(len(order), cfg.batch_size), n_batches, f"  epoch {epoch + 1} batches", quiet)
    for i, sl in enumerate(bar):
        idx = order[sl]
        x = ds.x_train[idx].to(device, non_blocking=True)
        y = ds.y_train[idx].to(device, non_blocking=True)
        seq = encode(x, cfg.steps, cfg.encoding, cfg.tau_s, ds.temporal)
        if i == 0 and device.type == "cpu":
            with SavedBytes() as counter:
                out, spikes = model(seq)
                a_out = output_psc(out, net.output_kind, cfg.tau_s)
                loss = compute_loss(loss_name, out, a_out, y, cfg.tau_s)
            saved = counter.total
        else:
            out, spikes = model(seq)
            a_out = output_psc(out, net.output_kind, cfg.tau_s)
            loss = compute_loss(loss_name, out, a_out, y, cfg.tau_s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if cfg.weight_clip > 0:
            with torch.no_grad():
                for syn in net.synapses():
                    syn.weight.clamp_(-cfg.weight_clip, cfg.weight_clip)
        with torch.no_grad():
            # loss per sample: summed losses (kernel, count) are already per batch sum; mean losses times batch
            per_batch = loss.detach().double().cpu() * (1.0 if loss_name in SUMMED_LOSSES else len(idx))
            loss_sum += per_batch
            correct += int((predict(a_out) == y).sum())
            n_seen += len(idx)
            s = torch.stack([sp.double().sum().cpu() for sp in spikes])
            c = torch.tensor([float(sp.numel()) for sp in spikes], dtype=torch.float64)
            spike_sum = s if spike_sum is None else spike_sum + s
            spike_n = c if spike_n is None else spike_n + c
    synchronize(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = saved + state_bytes(model, opt)
    stats = torch.cat([torch.tensor([float(loss_sum), correct, n_seen, float(peak)], dtype=torch.float64),
                       spike_sum, spike_n])
    stats = all_sum(stats, world)
    nl = len(spikes)
    return {
        "train_loss": float(stats[0] / stats[2]),
        "train_accuracy": float(stats[1] / stats[2]),
        "train_samples": int(stats[2]),
        "seconds": seconds,
        "samples_per_second": float(stats[2]) / seconds,
        "peak_memory_mb": float(stats[3]) / world / 2 ** 20,
        "process_peak_rss_mb": process_peak_rss_mb(),
        "firing_rates": [float(a / b) for a, b in zip(stats[4:4 + nl], stats[4 + nl:])],
    }


@torch.no_grad()
def evaluate(model: nn.Module, net: M.SpikingNet, ds: D.Dataset, cfg: Config, device: torch.device,
             world: int, rank: int, arch: Optional[M.Arch] = None) -> Tuple[float, Dict[str, Any]]:
    """Test accuracy over the whole test set (each rank takes every ``world``-th sample, counts summed),
    and, given ``arch``, the activity metrics of :class:`activity.ActivityMeter` (summed over ranks)."""
    model.eval()
    idx_all = torch.arange(rank, len(ds.y_test), world)
    meter = ActivityMeter(arch, ds.in_shape, [s.weight for s in net.synapses()]) if arch is not None else None
    correct = 0
    for sl in _batches(len(idx_all), max(cfg.batch_size, 256)):
        idx = idx_all[sl]
        x = ds.x_test[idx].to(device)
        y = ds.y_test[idx].to(device)
        seq = encode(x, cfg.steps, cfg.encoding, cfg.tau_s, ds.temporal)
        out, spikes = model(seq)
        correct += int((predict(output_psc(out, net.output_kind, cfg.tau_s)) == y).sum())
        if meter is not None:
            meter.add(seq, spikes)
    stats = all_sum(torch.tensor([float(correct), float(len(idx_all))], dtype=torch.float64), world)
    if meter is None:
        return float(stats[0] / stats[1]), {}
    if world > 1:  # every rank's share of the test set
        meter.load_state(all_sum(meter.state().to(device), world))
    return float(stats[0] / stats[1]), meter.result()
