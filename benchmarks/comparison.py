r"""``compare``: does TSSL-BP help *your* model? Train it as it is and converted, side by side.

::

    from tssl_plugin.benchmarks import compare

    summary = compare(make_model, train_loader, test_loader, loss_fn, library="snntorch",
                      epochs=3, seeds=[0, 1], out="compare-results")

``make_model()`` builds your snnTorch or SpikingJelly model; ``train_loader`` and ``test_loader`` are
ordinary PyTorch ``DataLoader``\ s (any iterable of ``(input, target)`` batches: torchvision and tonic
data sets work as they are); ``loss_fn(output, target)`` is your loss. For every seed, ``make_model()``
is called once after ``torch.manual_seed(seed)`` and its initial weights (``state_dict``) are loaded into
every variant:

* ``host``: the model as built (the host library's surrogate gradient);
* ``tssl``: ``convert(model, **convert_options)``: TSSL-BP in every supported neuron;
* ``tssl+host``: ``convert(model, exclude=exclude, **convert_options)``, only when ``exclude`` is given
  (module names, or a function of the model returning its modules): the excluded neurons keep the
  host's surrogate.

One training step, the same for every variant: the host's neuron state is reset
(``snntorch.utils.reset`` / ``spikingjelly.activation_based.functional.reset_net``), ``output =
step_fn(model, input)`` (``model(input)`` when ``step_fn`` is None; give a step function when the
forward needs a step loop), ``loss = loss_fn(output, target)``, backward, optimiser step
(``optimizer(model.parameters())``, ``torch.optim.Adam(lr=lr)`` when None). The class a sample is given,
for accuracy, is ``predict(output)``; by default the argmax over classes of the output, where the
output is the first element of a tuple (snnTorch's ``(spikes, membranes)``) and a time-first
``[T, N, C]`` record is summed over ``T`` (spike counts).

Determinism: at the start of epoch ``e`` torch's global random state (and the train loader's
``generator``, when it has one) is seeded from ``(seed, e)`` (:func:`epoch.epoch_seed`), so a shuffling
loader gives every variant the same batches in the same order, and a resumed run equals an
uninterrupted one.

Reports, as ``tssl-bench`` writes them (results_dir.py, summary.py, report.py): after every epoch one
record per variant and seed is appended to ``out/results.jsonl`` and a checkpoint is saved
(checkpoints.py); at the end ``summary.md``, ``summary.csv``, ``summary.json`` and the plots. A record
holds the training loss (mean per sample: the loss value times the batch size, summed, over the samples),
training and test accuracy, training seconds and samples per second, peak memory (memory.py: CUDA
allocator peak, or on CPU the bytes autograd saves in one step plus parameters, gradients and optimiser
state) and the process's peak RSS, each spiking module's firing rate in training (mean output per
neuron and step), and on the test set the synaptic operations per sample and activation sparsity
(:class:`activity.ModuleActivityMeter`). ``resume=True`` continues an interrupted call (same arguments,
``epochs`` may grow) from its checkpoints.

Bad arguments raise one-line ``ValueError``/``TypeError`` naming the problem and the fix, before any
training.

The same from a shell, with the functions named as ``module:attribute`` (the module is imported from the
current folder or the installed packages)::

    tssl-bench compare --model my_cnn:make_model --data my_cnn:loaders --loss my_cnn:loss_fn \
        --step my_cnn:forward_pass --library snntorch --epochs 1 --seeds 0,1 --lr 1e-2 --out cmp

``--data`` names a function returning ``(train_loader, test_loader)``; ``--loss`` a loss function or
object (called as ``loss_fn(output, target)``), or a function without arguments that returns one
(``def loss(): return SF.ce_rate_loss()``). Ctrl-C stops with one line; ``--resume`` with the same command
continues.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .activity import ModuleActivityMeter, spiking_modules
from .checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from .epoch import epoch_seed
from .machine import code_info, machine_info, tssl_impl
from .memory import SavedBytes, memory_measure, process_peak_rss_mb, state_bytes
from .progress import progress, progress_line, progress_lines
from .results_dir import check_new_out, check_writable, start_results, write_summary_files
from .summary import (SUMMARY_COLUMNS, _code_line, _machine_text, aggregate, console_table, runs_markdown,
                      shared_code, summary_rows, write_plots)

__all__ = ["compare", "adapter_for", "default_predict", "main", "build_parser", "VARIANTS", "LIBRARIES"]

VARIANTS = ("host", "tssl", "tssl+host")
LIBRARIES = ("snntorch", "spikingjelly")
_GRADIENT = {"host": "surrogate", "tssl": "tssl", "tssl+host": "tssl+surrogate"}

ExcludeSpec = Union[None, str, Sequence[str], Callable[[nn.Module], Any]]


def adapter_for(library: str):
    """The adapter module (``convert``/``revert``) of ``library``: ``snntorch`` or ``spikingjelly``."""
    if library == "snntorch":
        from tssl_plugin.adapters import snntorch as adapter
    else:
        from tssl_plugin.adapters import spikingjelly as adapter  # type: ignore[no-redef]
    return adapter


def _reset_state(model: nn.Module, library: str) -> None:
    """Reset the host's neuron state before a batch, as the hosts' tutorials do."""
    if library == "snntorch":
        from snntorch import utils

        utils.reset(model)
    else:
        from spikingjelly.activation_based import functional

        functional.reset_net(model)


def default_predict(output: Any) -> Tensor:
    """Class index per sample: argmax over classes of ``output`` (its first element if a tuple or list),
    summed over time first when it is a time-first ``[T, N, C]`` record."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(out, Tensor) or out.dim() not in (2, 3):
        what = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"compare: cannot read class scores from the model's output ({what}); expected [N, C] "
                         f"or time-first [T, N, C]: pass predict=lambda output: <class index per sample>")
    return (out.sum(0) if out.dim() == 3 else out).argmax(-1)


def _name(obj: Any) -> str:
    """A readable name of a function or callable object (for the config and the tables)."""
    if obj is None:
        return "default"
    fn = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', type(obj).__module__)}.{fn}"


def _exclude_names(exclude: ExcludeSpec) -> Optional[List[str]]:
    if exclude is None or callable(exclude):
        return None
    return [exclude] if isinstance(exclude, str) else list(exclude)


def _samples(loader: Iterable) -> Optional[int]:
    try:
        return len(loader.dataset)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return None


def _check(make_model: Any, train_loader: Any, test_loader: Any, loss_fn: Any, library: Any, epochs: Any,
           seeds: Any, step_fn: Any, exclude: Any, optimizer: Any, lr: Any, predict: Any) -> List[int]:
    """TypeError/ValueError (one line, naming the fix) for a bad argument; returns the seeds as a list."""
    if isinstance(make_model, nn.Module):
        raise TypeError("compare: make_model must build a new model on each call (the class, or a function such as "
                        "lambda: Net()), not a model: every variant and seed starts from its own copy")
    for name, value in (("make_model", make_model), ("loss_fn", loss_fn)):
        if not callable(value):
            raise TypeError(f"compare: {name} must be callable, got {type(value).__name__}; pass the function itself "
                            f"(make_model, not make_model())")
    for name, value in (("step_fn", step_fn), ("optimizer", optimizer), ("predict", predict)):
        if value is not None and not callable(value):
            raise TypeError(f"compare: {name} must be callable or None, got {type(value).__name__}")
    for name, loader in (("train_loader", train_loader), ("test_loader", test_loader)):
        if isinstance(loader, (Tensor, str, bytes)) or not hasattr(loader, "__iter__"):
            raise TypeError(f"compare: {name} must be an iterable of (input, target) batches such as a "
                            f"torch.utils.data.DataLoader, got {type(loader).__name__}")
    if library not in LIBRARIES:
        raise ValueError(f"compare: library must be one of {', '.join(LIBRARIES)}, got {library!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"compare: epochs must be an integer >= 1, got {epochs!r}")
    seed_list = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if (not isinstance(seed_list, (list, tuple, range)) or not seed_list
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seed_list)):
        raise ValueError(f"compare: seeds must be a non-negative integer or a non-empty list of them, got {seeds!r}")
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"compare: seeds lists a seed twice: {list(seed_list)}")
    if not (exclude is None or callable(exclude) or isinstance(exclude, str)
            or (isinstance(exclude, (list, tuple)) and exclude and all(isinstance(e, str) for e in exclude))):
        raise TypeError("compare: exclude must be a module name, a list of names, or a function of the model "
                        "returning its modules (each variant builds its own model, so modules cannot be passed)")
    if optimizer is None and (isinstance(lr, bool) or not isinstance(lr, (int, float))
                              or not math.isfinite(lr) or lr <= 0):
        raise ValueError(f"compare: lr must be a finite number > 0, got {lr!r}")
    return list(seed_list)


def _batch(batch: Any, device: torch.device, what: str) -> Tuple[Any, Tensor]:
    """``(input, target)`` of one loader batch, moved to ``device``."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"compare: {what} must yield (input, target) pairs, got "
                         f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}; "
                         f"wrap the data set so that it returns (input, target)")
    x, y = batch
    if not isinstance(y, Tensor):
        y = torch.as_tensor(y)
    return (x.to(device) if isinstance(x, Tensor) else x), y.to(device)


def _build(make_model: Callable[[], nn.Module], seed: int, init: Optional[Dict[str, Tensor]]) -> nn.Module:
    torch.manual_seed(seed)
    model = make_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"compare: make_model() must return a torch.nn.Module, got {type(model).__name__}")
    if init is not None:
        model.load_state_dict(init)
    return model


def _variant_model(make_model: Callable[[], nn.Module], seed: int, init: Dict[str, Tensor], variant: str,
                   library: str, exclude: ExcludeSpec, convert_options: Dict[str, Any]) -> nn.Module:
    """The model of ``variant`` for ``seed``: built, given the seed's initial weights, converted."""
    model = _build(make_model, seed, init)
    if variant != "host":
        ex = None
        if variant == "tssl+host":
            ex = exclude(model) if callable(exclude) else exclude
        before = [type(m) for m in model.modules()]
        adapter_for(library).convert(model, exclude=ex, **convert_options)
        if before == [type(m) for m in model.modules()]:
            raise ValueError(f"compare: convert(model{', exclude=...' if ex is not None else ''}) converted nothing: "
                             f"make_model's model has no {library} neuron that TSSL-BP supports"
                             f"{' outside exclude' if ex is not None else ''}; check library= (snntorch or "
                             f"spikingjelly) and the model")
    return model


def _loss_value(loss: Any) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        what = (f"a tensor of shape {tuple(loss.shape)}{'' if loss.requires_grad else ' without a gradient'}"
                if isinstance(loss, Tensor) else type(loss).__name__)
        raise ValueError(f"compare: loss_fn(output, target) returned {what}; it must return a scalar tensor "
                         f"computed from the output (reduce it with .mean() or .sum())")
    return loss


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, loader: Iterable, loss_fn: Callable, step: Callable,
                 predict: Callable, library: str, device: torch.device, seed: int, epoch: int) -> Dict[str, Any]:
    """One pass over ``loader``; the epoch's training metrics (module docstring)."""
    torch.manual_seed(epoch_seed(seed, epoch))
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        gen.manual_seed(epoch_seed(seed, epoch))
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    loss_sum, correct, n, saved = 0.0, 0, 0, 0
    t0 = time.perf_counter()
    with ModuleActivityMeter(model, spiking_modules(model, library), ops=False) as meter:
        for i, batch in enumerate(loader):
            x, y = _batch(batch, device, "train_loader")
            _reset_state(model, library)
            with SavedBytes() if i == 0 else contextlib.nullcontext() as counter:  # one step's saved bytes
                output = step(model, x)
                loss = _loss_value(loss_fn(output, y))
            if i == 0:
                saved = counter.total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += float(loss.detach()) * len(y)
                correct += int((predict(output) == y).sum())
                n += len(y)
    if n == 0:
        raise ValueError("compare: train_loader gave no batch; give it a non-empty data set")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else saved + state_bytes(model, opt)
    return {"train_loss": loss_sum / n, "train_accuracy": correct / n, "train_samples": n, "seconds": seconds,
            "samples_per_second": n / seconds, "peak_memory_mb": peak / 2 ** 20,
            "process_peak_rss_mb": process_peak_rss_mb(), "firing_rates": meter.firing_rates()}


@torch.no_grad()
def _evaluate(model: nn.Module, loader: Iterable, step: Callable, predict: Callable, library: str,
              device: torch.device) -> Tuple[float, Dict[str, Any]]:
    """Test accuracy and the activity metrics (activity.ModuleActivityMeter) over ``loader``."""
    model.eval()
    correct = n = 0
    with ModuleActivityMeter(model, spiking_modules(model, library)) as meter:
        for batch in loader:
            x, y = _batch(batch, device, "test_loader")
            _reset_state(model, library)
            correct += int((predict(step(model, x)) == y).sum())
            n += len(y)
            meter.samples += len(y)
    if n == 0:
        raise ValueError("compare: test_loader gave no batch; give it a non-empty data set")
    return correct / n, meter.result()


def resume_text(out: Path) -> str:
    """How to continue the comparison in ``out`` (named in errors and on Ctrl-C)."""
    return f"call compare(...) again with the same arguments and out={str(out)!r}, resume=True"


def _check_resume(out: Path, config: Dict[str, Any]) -> None:
    path = out / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"compare: resume=True but {path} does not exist; start a new comparison with "
                         f"resume=False") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"compare: cannot read {path} ({err}); start again with overwrite=True") from None
    if not isinstance(saved, dict) or saved.get("command") != "compare":
        raise ValueError(f"compare: {out} does not hold a comparison (its config.json is not compare's); "
                         f"give the out= of the comparison to continue")
    differ = sorted(k for k in set(saved) | set(config) if k != "epochs" and saved.get(k) != config.get(k))
    if differ:
        raise ValueError(f"compare: resume=True with other arguments than the saved run ({', '.join(differ)} "
                         f"differ, see {path}); pass the same ones (epochs may grow), or start again with "
                         f"overwrite=True")


def compare(make_model: Callable[[], nn.Module], train_loader: Iterable, test_loader: Iterable,
            loss_fn: Callable[[Any, Tensor], Tensor], *, library: str, out: Union[str, os.PathLike],
            epochs: int = 1, seeds: Union[int, Sequence[int]] = (0,),
            step_fn: Optional[Callable[[nn.Module, Any], Any]] = None, exclude: ExcludeSpec = None,
            optimizer: Optional[Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]] = None, lr: float = 1e-3,
            convert_options: Optional[Dict[str, Any]] = None, predict: Optional[Callable[[Any], Tensor]] = None,
            device: str = "cpu", resume: bool = False, overwrite: bool = False, quiet: bool = False,
            name: Optional[str] = None) -> Dict[str, Any]:
    """Train ``make_model()`` unconverted and converted (and with ``exclude`` kept on the host's surrogate,
    when given) from the same initial weights per seed; write tssl-bench's reports into ``out`` and return
    the summary (``summary["runs"]``: one entry per variant). See the module docstring for every argument.

    ``name``: what the reports call the model (``make_model``'s name by default). ``quiet``: no progress.
    """
    from .device import pick_device

    seed_list = _check(make_model, train_loader, test_loader, loss_fn, library, epochs, seeds, step_fn, exclude,
                       optimizer, lr, predict)
    if convert_options is not None and not isinstance(convert_options, dict):
        raise TypeError(f"compare: convert_options must be a dict of convert's keyword arguments, got "
                        f"{type(convert_options).__name__}, e.g. convert_options={{'warmup_width': 1.0}}")
    convert_options = dict(convert_options or {})
    if "exclude" in convert_options or "strict" in convert_options:
        raise ValueError("compare: pass exclude= to compare itself (it adds the tssl+host variant); "
                         "convert_options takes convert's other options (tau_s, warmup, warmup_width, sensitivity_cap)")
    out = Path(out)
    variants = list(VARIANTS if exclude is not None else VARIANTS[:2])
    model_name = name or _name(make_model).rsplit(".", 1)[-1]
    dataset = type(getattr(train_loader, "dataset", train_loader)).__name__
    config = {"command": "compare", "model": _name(make_model), "name": model_name, "library": library,
              "epochs": epochs, "seeds": seed_list, "variants": variants, "loss": _name(loss_fn),
              "step_fn": _name(step_fn), "predict": _name(predict),
              "optimizer": _name(optimizer) if optimizer is not None else f"torch.optim.Adam(lr={lr})",
              "convert_options": convert_options,
              "exclude": None if exclude is None else _exclude_names(exclude) or _name(exclude),
              "dataset": dataset, "train_samples": _samples(train_loader), "test_samples": _samples(test_loader),
              "batch_size": getattr(train_loader, "batch_size", None), "device": device}
    try:
        json.dumps(config)
    except TypeError:
        raise ValueError("compare: convert_options must hold plain values (numbers, booleans, None, strings)") from None
    if resume:
        check_writable(out)
        _check_resume(out, config)
    else:
        check_new_out(out, overwrite=overwrite, resume=resume_text)
    dev = pick_device(device)
    step = step_fn or (lambda model, x: model(x))
    pred = predict or default_predict
    inits = {}
    for seed in seed_list:  # every variant's model and conversion is checked before any training
        base = _build(make_model, seed, None)
        inits[seed] = {k: v.detach().clone() for k, v in base.state_dict().items()}
        with warnings.catch_warnings():  # convert's warnings come once, when the variant is built to train
            warnings.simplefilter("ignore")
            for variant in variants[1:]:
                _variant_model(make_model, seed, inits[seed], variant, library, exclude, convert_options)
    old: List[Dict[str, Any]] = []
    if resume:
        for variant in variants:
            for seed in seed_list:
                ck = checkpoint_path(out, variant, seed)
                if ck.exists():
                    old += load_checkpoint(ck, torch.device("cpu"))["records"]
    writer = start_results(out, config, overwrite=overwrite and not resume, records=old)
    machine, code, measure = machine_info(dev, 1), code_info(), memory_measure(dev)
    records: List[Dict[str, Any]] = []
    for seed in seed_list:
        for variant in variants:
            model = _variant_model(make_model, seed, inits[seed], variant, library, exclude, convert_options)
            model = model.to(dev)
            opt = optimizer(model.parameters()) if optimizer else torch.optim.Adam(model.parameters(), lr=lr)
            ck = checkpoint_path(out, variant, seed)
            done: List[Dict[str, Any]] = []
            start = 0
            if ck.exists():
                state = load_checkpoint(ck, dev)
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                done, start = state["records"], state["epoch"]
            for epoch in progress(range(start, epochs), epochs, f"{variant} seed {seed}", quiet, leave=True,
                                  initial=start):
                m = _train_epoch(model, opt, train_loader, loss_fn, step, pred, library, dev, seed, epoch)
                t0 = time.perf_counter()
                m["test_accuracy"], activity = _evaluate(model, test_loader, step, pred, library, dev)
                m["eval_seconds"] = time.perf_counter() - t0
                m.update(activity)
                rec = {"backend": variant, "library": library, "gradient": _GRADIENT[variant], "dataset": dataset,
                       "arch": model_name, "seed": seed, "epoch": epoch + 1, "loss": _name(loss_fn).rsplit(".", 1)[-1],
                       "world_size": 1, "device": str(dev), "memory_measure": measure, "machine": machine,
                       "code": code, "tssl_impl": tssl_impl(variant != "host", dev), **m}
                done.append(rec)
                save_checkpoint(ck, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                                     "records": done, "backend": variant, "seed": seed})
                writer.append(rec)
                if progress_lines(quiet):
                    progress_line(f"compare: {variant} seed {seed} epoch {epoch + 1}/{epochs}: test accuracy "
                                  f"{rec['test_accuracy']:.4f}, train loss {rec['train_loss']:.4g}, "
                                  f"{rec['seconds'] + rec['eval_seconds']:.1f} s")
            records += done
    summary = _write_summary(out, records, config, machine, measure)
    if not quiet:
        print(console_table(summary["runs"]))
        print(f"\nresults in {out} (summary.md, summary.json, summary.csv, results.jsonl, *.png)")
    return summary


def _write_summary(out: Path, records: List[Dict[str, Any]], config: Dict[str, Any],
                   machine: Dict[str, Any], measure: str) -> Dict[str, Any]:
    """summary.json/.csv/.md and the plots of a comparison (summary.py's tables and plots)."""
    runs = aggregate(records)
    c = config
    step = c["step_fn"] if c["step_fn"] != "default" else "model(input)"
    options = "".join(f", {k}={v!r}" for k, v in c["convert_options"].items())
    plural = lambda n: "s" if n > 1 else ""  # noqa: E731
    header = (f"# compare: `{c['name']}` with and without TSSL-BP\n\n"
              f"Model `{c['model']}` ({c['library']}), data `{c['dataset']}` ({c['train_samples'] or '?'} train / "
              f"{c['test_samples'] or '?'} test samples, batch {c['batch_size'] or '?'}), loss `{c['loss']}`, step "
              f"function `{step}`, optimizer `{c['optimizer']}`, {c['epochs']} epoch{plural(c['epochs'])}, "
              f"seed{plural(len(c['seeds']))} {', '.join(map(str, c['seeds']))}, device {c['device']}. Variants: "
              f"`host` = the model as built; `tssl` = `convert(model{options})`"
              + (f"; `tssl+host` = the same with `exclude={c['exclude']!r}`" if "tssl+host" in c["variants"] else "")
              + ". Every variant of a seed starts from the same initial weights and sees the same batches.\n\n"
              + _machine_text(machine) + _code_line(shared_code(records), runs))
    legend = (f"*loss*: `{config['loss']}`, every variant. *test acc*: final epoch, "
              + ("argmax of the output summed over time (spike counts)" if config["predict"] == "default"
                 else f"prediction `{config['predict']}`")
              + ". *firing rate*: mean output of each spiking module during training.")
    note = ("*Activity and cost*, on the test set after the last epoch, as NeuroBench defines them, counted with "
            "forward hooks: synaptic operations per sample = effective accumulates (ACs: calls of a Linear/Conv "
            "layer whose input holds only 0 and +-1, the (non-zero input, non-zero weight) pairs reaching an "
            "output) + multiply-accumulates (MACs: the same count for calls with any other input, such as the "
            "image); dense = every input and weight counted; sparsity = fraction of zero outputs of each "
            "spiking module.")
    summary = {"runs": runs, "config": config, "machine": machine, "code": shared_code(records),
               "memory_measure": measure}
    summary = write_summary_files(out, summary, SUMMARY_COLUMNS, summary_rows(runs),
                                  header + runs_markdown(runs, measure, legend, note))
    write_plots(out, runs, config["dataset"], measure)
    return summary


# -------------------------------------------------------------------- CLI
def build_parser():
    """The parser of ``tssl-bench compare``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="tssl-bench compare", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Your own snnTorch / SpikingJelly model, unconverted and converted, from the same initial "
                    "weights: tssl-bench's reports (see tssl_plugin.benchmarks.compare). Functions are named as "
                    "module:attribute, the module importable from the current folder.")
    p.add_argument("--model", required=True, metavar="MODULE:FUNC", help="function building the model")
    p.add_argument("--data", required=True, metavar="MODULE:FUNC",
                   help="function returning (train_loader, test_loader)")
    p.add_argument("--loss", required=True, metavar="MODULE:NAME",
                   help="loss_fn(output, target), or a function without arguments returning one")
    p.add_argument("--step", default=None, metavar="MODULE:FUNC", help="step_fn(model, input) -> output")
    p.add_argument("--library", required=True, choices=LIBRARIES, help="host library of the model")
    p.add_argument("--epochs", type=int, default=1, help="training epochs")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--exclude", action="append", default=None, metavar="NAME",
                   help="a module name kept on the host's surrogate in the tssl+host variant (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--resume", action="store_true", help="continue the comparison in --out (same options)")
    p.add_argument("--overwrite", action="store_true", help="delete earlier results in --out first")
    p.add_argument("--quiet", action="store_true", help="no progress")
    return p


def load_object(spec: str, option: str) -> Any:
    """``module:attribute`` -> the object (the current folder is importable); ValueError in one line."""
    import importlib
    import sys

    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{option} {spec!r}: expected module:attribute, e.g. my_model:make_model")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"{option} {spec!r}: cannot import {module} ({err}); run from the folder that holds "
                         f"{module.replace('.', '/')}.py, or install it") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option} {spec!r}: {module} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tssl-bench compare``."""
    import inspect
    import sys

    args = build_parser().parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"tssl-bench compare: error: --seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1",
              file=sys.stderr)
        return 2
    try:
        make_model = load_object(args.model, "--model")
        data = load_object(args.data, "--data")
        loss = load_object(args.loss, "--loss")
        step = load_object(args.step, "--step") if args.step else None
        if inspect.isfunction(loss) and not inspect.signature(loss).parameters:
            loss = loss()  # a factory such as a function returning SF.ce_rate_loss()
        if not callable(data):
            raise ValueError(f"--data {args.data!r} is not a function returning (train_loader, test_loader)")
        loaders = data()
        if not isinstance(loaders, (tuple, list)) or len(loaders) != 2:
            raise ValueError(f"--data {args.data!r} must return (train_loader, test_loader), got "
                             f"{type(loaders).__name__}")
        compare(make_model, loaders[0], loaders[1], loss, library=args.library, out=args.out, epochs=args.epochs,
                seeds=seeds, step_fn=step, exclude=args.exclude, lr=args.lr, device=args.device,
                resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    except KeyboardInterrupt:
        done = (Path(args.out) / "config.json").exists()
        print("tssl-bench compare: interrupted; " + (
            f"the finished epochs are saved in {args.out}; continue with the same command and --resume" if done
            else "before any result was written; nothing to resume"), file=sys.stderr)
        return 130
    except (ValueError, TypeError) as err:
        print(f"tssl-bench compare: error: {str(err).removeprefix('compare: ')}", file=sys.stderr)
        return 2
    return 0
