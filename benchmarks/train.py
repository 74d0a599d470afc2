r"""Training loop, metrics, checkpoints and DistributedDataParallel for the harness.

For each backend and seed: build the network from the seed's shared initial
weights, train with AdamW or Adam (``--optimizer``, the same for every backend; cosine
learning-rate schedule over the epochs by default; weights clipped to [-4, 4] after every
step, gradient norm clipped to 1, as in the paper), and after each epoch record::

    train_loss (mean per sample), train_accuracy, test_accuracy,
    seconds (training wall time), eval_seconds (test-set pass), samples_per_second, peak_memory_mb,
    firing_rates (mean spikes per neuron per step during training, one per spiking layer),
    synops_per_sample, acs_per_sample, macs_per_sample, dense_synops_per_sample, synops_per_layer,
    activation_sparsity (per spiking layer), activation_sparsity_total (test set; see activity.py)

Input encoding: a static image is repeated over T steps; with ``encoding="psc"``
(default, the paper's) it is filtered by the PSC kernel, ``p = psp(img)``.
Prediction: ``argmax_c sum_t a_out[t, c]`` where ``a_out`` is the output PSC
(for spiking outputs ``a_out = psp(spikes)``), for every backend.

Losses (``y`` = output spikes, or the PSC for the native network):

* ``kernel``: ``tssl_plugin.kernel_loss(a_out, labels)`` (summed over batch, as the paper);
* ``count``: ``tssl_plugin.count_loss`` with desired/undesired counts T/2 and T/10;
* ``ce_rate``: ``mean_t CrossEntropy(y[t], label)`` (the formula of ``snntorch.functional.ce_rate_loss``);
* ``mse_rate``: ``MSE(mean_t y[t], onehot(label))`` (SpikingJelly's tutorial loss).

Memory: on CUDA the allocator peak (``torch.cuda.max_memory_allocated``) over
the epoch; on CPU the bytes of tensors autograd saves for backward during one
training step (counted with ``torch.autograd.graph.saved_tensors_hooks``, each
storage once) plus parameters, gradients and optimiser state. The process peak
RSS (``ru_maxrss``, whole process, never decreases) is recorded alongside.

Determinism: weights come from the seed; the shuffle of epoch ``e`` is
``DistributedSampler(seed=seed).set_epoch(e)``; ``torch.manual_seed`` is reset
from ``(seed, e)`` at every epoch start. So an epoch's numbers depend only on
the checkpoint it starts from, and ``--resume`` reproduces an uninterrupted run.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import backends as B
from . import data as D
from . import models as M
from . import report as R
from . import results_dir as RD
from .activity import ActivityMeter
from .config import LOSSES, Config, as_dict, check_config

__all__ = ["Config", "LOSSES", "run_benchmark", "encode", "compute_loss", "dist_info", "memory_measure",
           "make_optimizer"]

# --------------------------------------------------------------- distributed
def dist_info() -> Tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` when alone)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _init_dist(device: torch.device) -> Tuple[int, int, bool]:
    """``(rank, world_size, started)``; ``started``: this call created the process group."""
    rank, world, _ = dist_info()
    started = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            started = True
    return rank, world, started


def _close_dist(wait: bool) -> None:
    """Shut down the process group ``_init_dist`` started, after every rank is done when ``wait``.

    A rank that exits with the group still open can abort while gloo's threads shut down
    ("terminate called without an active exception"), failing the whole torchrun job.
    """
    import torch.distributed as dist

    if wait:
        dist.barrier()
    dist.destroy_process_group()


def _all_sum(t: Tensor, world: int) -> Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def check_device(name: str) -> None:
    """ValueError saying what to use if ``name`` (auto, cpu, cuda, cuda:N) cannot run here."""
    if name == "auto":
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: only auto, cpu, cuda and cuda:N are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")


def pick_device(name: str) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ValueError for a device that cannot run."""
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", dist_info()[2])
        torch.cuda.set_device(dev)
    return dev


# ------------------------------------------------------------ encode + loss
def encode(x: Tensor, steps: int, encoding: str, tau_s: float, temporal: bool) -> Tensor:
    """Input sequence ``[T, N, ...]``: static images repeated over T (PSC-filtered for ``psc``)."""
    from tssl_plugin import psp

    seq = x.transpose(0, 1) if temporal else x.unsqueeze(0).expand(steps, *x.shape)
    return psp(seq.contiguous(), tau_s) if encoding == "psc" else seq.contiguous()


def output_psc(out: Tensor, kind: str, tau_s: float) -> Tensor:
    """The output layer's PSC ``a_out`` (``psp`` of the spikes for spiking outputs)."""
    from tssl_plugin import psp

    return out if kind == "psc" else psp(out, tau_s)


def compute_loss(name: str, out: Tensor, a_out: Tensor, labels: Tensor, tau_s: float) -> Tensor:
    """The loss ``name`` (see module docstring) on output ``out`` / output PSC ``a_out`` ``[T, N, C]``."""
    from tssl_plugin import count_loss, kernel_loss

    T = out.shape[0]
    if name == "kernel":
        return kernel_loss(a_out, labels, tau_s=tau_s)
    if name == "count":
        return count_loss(a_out, labels, desired_count=T / 2, undesired_count=T / 10)
    if name == "ce_rate":
        return F.cross_entropy(out.flatten(0, 1), labels.repeat(T))
    if name == "mse_rate":
        return F.mse_loss(out.mean(0), F.one_hot(labels, out.shape[-1]).to(out.dtype))
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


def loss_for(cfg: Config, backend: B.Backend, temporal: bool) -> str:
    """The loss a backend uses: ``cfg.loss`` unless ``natural`` (TSSL-BP: kernel, count on event data)."""
    if cfg.loss != "natural":
        return cfg.loss
    if backend.natural_loss == "kernel" and temporal:
        return "count"
    return backend.natural_loss


# ------------------------------------------------------------------- memory
def memory_measure(device: torch.device) -> str:
    """Name of the peak-memory figure reported for ``device``."""
    if device.type == "cuda":
        return "cuda_max_memory_allocated"
    return "cpu_autograd_saved_tensors_plus_params_grads_optimizer"


class _SavedBytes:
    """Counts bytes of distinct storages autograd saves for backward (CPU memory figure)."""

    def __init__(self) -> None:
        self.seen: Dict[Tuple[int, int], int] = {}

    def pack(self, t: Tensor) -> Tensor:
        try:
            st = t.untyped_storage()
            self.seen[(st.data_ptr(), t.device.index or 0)] = st.nbytes()
        except Exception:  # tensors without storage (e.g. sparse, wrapper subclasses)
            self.seen[(id(t), -1)] = t.numel() * t.element_size()
        return t

    @staticmethod
    def unpack(t: Tensor) -> Tensor:
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def _state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    n = sum(p.numel() * p.element_size() * 2 for p in model.parameters())  # weights + grads
    for st in opt.state.values():
        n += sum(v.numel() * v.element_size() for v in st.values() if isinstance(v, Tensor))
    return n


def _rss_mb() -> float:
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024
    except Exception:
        return float("nan")


# --------------------------------------------------------------------- loop
def _batches(n: int, batch: int):
    for i in range(0, n, batch):
        yield slice(i, min(i + batch, n))


def _progress(iterable, total: int, desc: str, quiet: bool, leave: bool = False, initial: int = 0):
    """A tqdm bar over ``iterable`` (``initial`` of ``total`` already done), or ``iterable`` when quiet/no terminal."""
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc=desc, leave=leave, dynamic_ncols=True)


def lr_at(cfg: Config, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): constant, or cosine ``lr (1 + cos(pi e / E)) / 2``."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (adamw | adam, PyTorch's default betas) with ``cfg.lr`` and the resolved weight decay."""
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cfg.optimizer]
    return cls(params, lr=cfg.lr, weight_decay=cfg.resolved_weight_decay())


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 12345) % (2 ** 31)


def train_epoch(model: nn.Module, net: M.SpikingNet, opt, ds: D.Dataset, cfg: Config, loss_name: str,
                epoch: int, seed: int, device: torch.device, world: int, rank: int, quiet: bool) -> Dict[str, Any]:
    """One pass over the (sharded) training set; returns the epoch's training metrics (all ranks summed)."""
    from torch.utils.data import DistributedSampler

    torch.manual_seed(_epoch_seed(seed, epoch))
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
    bar = _progress(_batches(len(order), cfg.batch_size), n_batches, f"  epoch {epoch + 1} batches", quiet)
    for i, sl in enumerate(bar):
        idx = order[sl]
        x = ds.x_train[idx].to(device, non_blocking=True)
        y = ds.y_train[idx].to(device, non_blocking=True)
        seq = encode(x, cfg.steps, cfg.encoding, cfg.tau_s, ds.temporal)
        counter = _SavedBytes() if (i == 0 and device.type == "cpu") else None
        if counter is not None:
            with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
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
            per_batch = loss.detach().double().cpu() * (1.0 if loss_name in ("kernel", "count") else len(idx))
            loss_sum += per_batch
            correct += int((a_out.sum(0).argmax(-1) == y).sum())
            n_seen += len(idx)
            s = torch.stack([sp.double().sum().cpu() for sp in spikes])
            c = torch.tensor([float(sp.numel()) for sp in spikes], dtype=torch.float64)
            spike_sum = s if spike_sum is None else spike_sum + s
            spike_n = c if spike_n is None else spike_n + c
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = saved + _state_bytes(model, opt)
    stats = torch.cat([torch.tensor([float(loss_sum), correct, n_seen, float(peak)], dtype=torch.float64),
                       spike_sum, spike_n])
    stats = _all_sum(stats, world)
    nl = len(spikes)
    return {
        "train_loss": float(stats[0] / stats[2]),
        "train_accuracy": float(stats[1] / stats[2]),
        "train_samples": int(stats[2]),
        "seconds": seconds,
        "samples_per_second": float(stats[2]) / seconds,
        "peak_memory_mb": float(stats[3]) / world / 2 ** 20,
        "process_peak_rss_mb": _rss_mb(),
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
        correct += int((output_psc(out, net.output_kind, cfg.tau_s).sum(0).argmax(-1) == y).sum())
        if meter is not None:
            meter.add(seq, spikes)
    stats = _all_sum(torch.tensor([float(correct), float(len(idx_all))], dtype=torch.float64), world)
    if meter is None:
        return float(stats[0] / stats[1]), {}
    if world > 1:  # every rank's share of the test set
        meter.load_state(_all_sum(meter.state().to(device), world))
    return float(stats[0] / stats[1]), meter.result()


def run_one(backend: B.Backend, seed: int, ds: D.Dataset, arch: M.Arch, cfg: Config, out: Path,
            device: torch.device, rank: int, world: int, writer: Optional[R.JsonlWriter], quiet: bool,
            stop_after_epochs: Optional[int] = None) -> List[Dict[str, Any]]:
    """Train one backend with one seed (resuming from its checkpoint if any); returns the epoch records."""
    ncfg = M.NeuronCfg(cfg.tau_m, cfg.tau_s, cfg.threshold, cfg.reset)
    weights = M.initial_weights(arch, ds.in_shape, seed, cfg.init_gain, init=cfg.init)
    net = backend.build(arch, ds.in_shape, weights, ncfg, warmup=cfg.warmup).to(device)
    opt = make_optimizer(cfg, net.parameters())
    loss_name = loss_for(cfg, backend, ds.temporal)
    records: List[Dict[str, Any]] = []
    start = 0
    ck = RD.checkpoint_path(out, backend.name, seed)
    if ck.exists():
        state = RD.load_checkpoint(ck, device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        records, start = state["records"], state["epoch"]
    model: nn.Module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    epochs = _progress(range(start, cfg.epochs), cfg.epochs, f"{backend.name} seed {seed}", quiet, leave=True,
                       initial=start)
    for epoch in epochs:
        m = train_epoch(model, net, opt, ds, cfg, loss_name, epoch, seed, device, world, rank, quiet)
        t0 = time.perf_counter()
        m["test_accuracy"], activity = evaluate(model, net, ds, cfg, device, world, rank, arch)
        m["eval_seconds"] = time.perf_counter() - t0
        m.update(activity)
        rec = {"backend": backend.name, "library": backend.library, "gradient": backend.gradient,
               "dataset": ds.name, "arch": arch.name, "seed": seed, "epoch": epoch + 1, "loss": loss_name,
               "world_size": world, "device": str(device), "memory_measure": memory_measure(device), **m}
        records.append(rec)
        if rank == 0:
            RD.save_checkpoint(ck, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                    "epoch": epoch + 1, "records": records, "backend": backend.name, "seed": seed})
            if writer is not None:
                writer.append(rec)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(test_acc=f"{rec['test_accuracy']:.3f}", loss=f"{rec['train_loss']:.3g}")
        if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs:
            break
    return records


def machine_info(device: torch.device, world: int) -> Dict[str, Any]:
    """What ran the benchmark, recorded in summary.json."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
            "world_size": world}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for mod in ("snntorch", "spikingjelly"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            pass
    return info


def run_benchmark(cfg: Config, out: Path, *, resume: bool = False, quiet: bool = False,
                  stop_after_epochs: Optional[int] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Run every backend x seed of ``cfg`` writing into ``out``; returns the summary (rank 0) or {}.

    A new run (``resume=False``) refuses a folder that already holds results unless ``overwrite``,
    which deletes them once the data has loaded. ValueError for a bad ``cfg`` or folder.
    """
    check_config(cfg)
    out = Path(out)
    if not resume and dist_info()[0] == 0:
        RD.check_new_out(out, overwrite=overwrite)
    backends = B.resolve(cfg.backends)
    for b in backends:
        b.check_available()
    device = pick_device(cfg.device)
    rank, world, started = _init_dist(device)
    try:
        summary = _run_all(cfg, out, backends, device, rank, world, resume, quiet, stop_after_epochs, overwrite)
    except BaseException:
        if started:
            _close_dist(wait=False)
        raise
    if started:
        _close_dist(wait=True)
    return summary


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
        if not resume and overwrite:
            RD.clear_results(out)
        out.mkdir(parents=True, exist_ok=True)
        R.atomic_write_json(out / "config.json", as_dict(cfg))
        writer = R.JsonlWriter(out / "results.jsonl")
        if resume:  # rebuild results.jsonl from the checkpoints: no duplicates, no torn last line
            old = []
            for b in backends:
                for s in cfg.seed_list():
                    ck = RD.checkpoint_path(out, b.name, s)
                    if ck.exists():
                        old += RD.load_checkpoint(ck, torch.device("cpu"))["records"]
            writer.rewrite(old)
    all_records: List[Dict[str, Any]] = []
    for b in backends:
        for s in cfg.seed_list():
            if world > 1:
                import torch.distributed as dist

                dist.barrier()
            all_records += run_one(b, s, ds, arch, cfg, out, device, rank, world, writer, quiet, stop_after_epochs)
    if rank != 0:
        return {}
    from .summary import write_summary

    return write_summary(out, cfg, all_records, ds, arch, machine_info(device, world), memory_measure(device))
