"""``tssl-bench hosts``: tutorial-style host models, as users write them, with and without ``convert``.

What a researcher gets when they add one line, ``convert(net)``, to code they
already have. Each run trains a tutorial-style network built only from the host
library's public classes, with the host's defaults unless an option says
otherwise, in one of three variants:

* ``host``: unconverted (the host's surrogate gradient);
* ``tssl``: ``convert(net)``: TSSL-BP in every layer;
* ``tssl+host``: ``convert(net, exclude=[output neuron])``: TSSL-BP in the hidden
  layer, the output layer on the host's surrogate (the recipe for losses that
  never saturate).

``--warmup-width W`` passes ``warmup_width=W`` (the width of TSSL-BP's warm-up
surrogate; 0.2, the reference's, by default) to both ``convert`` calls, and ``--warmup-gate G``
``warmup=G`` (where the warm-up applies, ``tssl_plugin.rule.WARMUP_GATES``; without it, the adapters' default).

Networks (sklearn's 8x8 digits, the image repeated over T steps as direct input):

* snnTorch: ``Linear(64, H) - snn.Leaky(beta) - Linear(H, 10) - snn.Leaky(beta)``
  in snnTorch's step loop with explicit membranes (tutorials 5 and 6); snnTorch's
  defaults: reset by subtraction, ``atan`` surrogate.
* SpikingJelly: ``layer.Linear - neuron.LIFNode(tau) - layer.Linear - neuron.LIFNode(tau)``
  in multi-step mode; SpikingJelly's defaults: hard reset to 0, ``decay_input=True``,
  ``Sigmoid`` surrogate.

Losses, named as the hosts name them (``targets`` are class indices):

* ``mse_count``, ``ce_rate``, ``ce_count``: ``snntorch.functional.mse_count_loss(0.8, 0.2)``,
  ``ce_rate_loss()``, ``ce_count_loss()`` on the output spike record;
* ``mem_ce``: snnTorch tutorial 5's ``sum_t CrossEntropy(mem[t], targets)`` on the output membrane
  (snnTorch only; SpikingJelly's adapter gives the membrane no gradient);
* ``mse_rate``: SpikingJelly's tutorial loss, ``MSE(mean_t spikes, one_hot(targets))``;
* ``kernel``, ``count``: ``tssl_plugin.loss.KernelLoss()`` and ``CountLoss()`` on the spike record.

Each finished run is appended to ``--out``'s ``results.jsonl``; Ctrl-C stops with one line, and
``tssl-bench hosts --resume DIR`` runs only the missing runs, with the options saved in ``DIR/config.json``
(each run is seeded by itself, so a resumed study equals an uninterrupted one).

Optimiser: ``torch.optim.Adam(lr)``, no clipping, no schedule (the tutorials').
Accuracy: argmax of the output spike counts on the test split; each record also has the synaptic
operations per test sample (``activity.ModuleActivityMeter``). The summary
gives mean and standard deviation over seeds and the mean firing rate of the
hidden and output layers.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tssl_plugin.rule import CROSSINGS, WARMUP_GATES, WARMUP_WIDTH

from .activity import ModuleActivityMeter
from .options import Parser

__all__ = ["main", "build_parser", "check_args", "run_one", "LOSSES", "VARIANTS"]

LOSSES = {
    "snntorch": ("mse_count", "ce_rate", "ce_count", "mem_ce", "mse_rate", "kernel", "count"),
    "spikingjelly": ("mse_rate", "mse_count", "ce_rate", "kernel", "count"),
}
VARIANTS = ("host", "tssl", "tssl+host")
RESETS = ("default", "subtract", "zero")


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tssl-bench hosts", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Tutorial-style snnTorch / SpikingJelly models on digits: unconverted, converted, and "
                    "converted with the output layer excluded, each with the hosts' own losses.")
    p.add_argument("--library", default="snntorch", choices=sorted(LOSSES), help="host library")
    p.add_argument("--losses", default="mse_count,ce_rate", help="comma-separated losses (see the module docs)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: host, tssl, tssl+host")
    p.add_argument("--resets", default="default",
                   help="comma-separated: default (the host's own), subtract, zero")
    p.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--steps", type=int, default=25, help="time steps T")
    p.add_argument("--beta", type=float, default=0.95, help="snnTorch Leaky beta")
    p.add_argument("--tau", type=float, default=2.0, help="SpikingJelly LIFNode tau")
    p.add_argument("--hidden", type=int, default=128, help="hidden layer size")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--warmup-width", type=float, default=WARMUP_WIDTH, metavar="W",
                   help="convert(..., warmup_width=W): width of TSSL-BP's warm-up surrogate, > 0 (0.2 is the "
                        "reference's)")
    p.add_argument("--warmup-gate", default=None, choices=list(WARMUP_GATES),
                   help="convert(..., warmup=G): where TSSL-BP's warm-up surrogate applies (default: the adapters')")
    p.add_argument("--warmup-floor", default=None, choices=("on", "off"),
                   help="convert(..., warmup_floor=on|off): whether TSSL-BP's warm-up surrogate keeps the reference's "
                        "floor far below the threshold (default: the adapters', off)")
    p.add_argument("--crossing", default=None, choices=list(CROSSINGS),
                   help="convert(..., crossing=C): what TSSL-BP's spike-time sensitivity measures (default: the "
                        "adapters', interpolated after a reset to zero, step after a subtraction)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None,
                   help="folder for config.json, results.jsonl and summary.{json,csv,md}, new or without earlier "
                        "results (none: print only)")
    p.add_argument("--overwrite", action="store_true", help="let --out name a folder with earlier results: delete them first")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue an interrupted run in DIR with its saved options (finished runs are kept)")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Tuple[List[str], List[str], List[str]]:
    """``(losses, variants, resets)`` of ``args``; ``parser.error`` (exit 2, one line) on a bad value."""
    losses, variants, resets = _csv(args.losses), _csv(args.variants), _csv(args.resets)
    for name, given, valid in (("loss", losses, LOSSES[args.library]), ("variant", variants, VARIANTS),
                               ("reset", resets, RESETS)):
        bad = [g for g in given if g not in valid]
        if bad or not given:
            parser.error(f"unknown {name} {', '.join(bad) or '(none given)'}; valid for {args.library}: "
                         f"{', '.join(valid)}")
    for name in ("seeds", "epochs", "steps", "hidden", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not (math.isfinite(args.warmup_width) and args.warmup_width > 0):
        parser.error(f"--warmup-width must be a finite number > 0, got {args.warmup_width}")
    return losses, variants, resets


def resume_command(out: Path) -> str:
    """The exact command that continues the hosts run in ``out``."""
    import shlex

    return f"tssl-bench hosts --resume {shlex.quote(str(out))}"


def _resumed_args(parser: argparse.ArgumentParser, argv: Sequence[str], folder: Path
                  ) -> Tuple[argparse.Namespace, List[Dict[str, Any]]]:
    """The options saved in ``folder/config.json`` and the records of the runs already finished there."""
    import json
    import sys

    from .report import read_jsonl

    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(f"--resume {folder}: no config.json there (not a tssl-bench hosts folder)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or "library" not in saved or "losses" not in saved:
            raise ValueError("not the options of tssl-bench hosts")
        saved.setdefault("warmup_gate", "trace")  # saved before the option existed: the runs used the reference's gate
        saved.setdefault("warmup_floor", "on")  # likewise: the runs had the floor
        saved.setdefault("crossing", "step")  # likewise: the runs had the reference's crossing
        args = argparse.Namespace(**{**vars(parser.parse_args([])), **saved})
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"--resume: cannot read {path} ({err}); it is damaged or not from tssl-bench hosts") from None
    ignored = [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] != "--resume"]
    if ignored:
        print(f"tssl-bench hosts: note: --resume continues with the options saved in {path}; ignoring "
              f"{', '.join(ignored)}", file=sys.stderr)
    args.out, args.overwrite, args.resume = str(folder), False, str(folder)
    records = read_jsonl(folder / "results.jsonl") if (folder / "results.jsonl").exists() else []
    return args, records


# ------------------------------------------------------------------ networks
class SnnTorchTutorialNet(nn.Module):
    """snnTorch tutorial network, step loop with explicit membranes; returns (spikes, membranes, hidden spikes)."""

    def __init__(self, hidden: int, beta: float, reset: Optional[str]) -> None:
        super().__init__()
        import snntorch as snn

        kw = {} if reset is None else {"reset_mechanism": reset}
        self.fc1, self.lif1 = nn.Linear(64, hidden), snn.Leaky(beta=beta, **kw)
        self.fc2, self.lif2 = nn.Linear(hidden, 10), snn.Leaky(beta=beta, **kw)

    def output_neuron(self) -> nn.Module:
        return self.lif2

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec, mem_rec, hid = [], [], []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
            hid.append(spk1)
        return torch.stack(spk_rec), torch.stack(mem_rec), torch.stack(hid)


class SpikingJellyTutorialNet(nn.Module):
    """SpikingJelly tutorial network in multi-step mode; returns (spikes, None, hidden spikes)."""

    def __init__(self, hidden: int, tau: float, reset: Optional[str]) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron

        kw = {} if reset is None else {"v_reset": 0.0 if reset == "zero" else None}
        self.fc1, self.lif1 = layer.Linear(64, hidden), neuron.LIFNode(tau=tau, **kw)
        self.fc2, self.lif2 = layer.Linear(hidden, 10), neuron.LIFNode(tau=tau, **kw)
        functional.set_step_mode(self, "m")

    def output_neuron(self) -> nn.Module:
        return self.lif2

    def forward(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        hid = self.lif1(self.fc1(x))
        return self.lif2(self.fc2(hid)), None, hid


def build_net(library: str, variant: str, reset: Optional[str], args: argparse.Namespace) -> nn.Module:
    """The tutorial network of ``library``, converted as ``variant`` says (public ``convert`` only)."""
    if library == "snntorch":
        net: nn.Module = SnnTorchTutorialNet(args.hidden, args.beta, reset)
        from tssl_plugin.adapters import snntorch as adapter
    else:
        net = SpikingJellyTutorialNet(args.hidden, args.tau, reset)
        from tssl_plugin.adapters import spikingjelly as adapter  # type: ignore[no-redef]
    options: Dict[str, Any] = {"warmup_width": args.warmup_width}
    if args.warmup_gate is not None:
        options["warmup"] = args.warmup_gate
    if args.warmup_floor is not None:
        options["warmup_floor"] = args.warmup_floor == "on"
    if args.crossing is not None:
        options["crossing"] = args.crossing
    if variant == "tssl":
        adapter.convert(net, **options)
    elif variant == "tssl+host":
        adapter.convert(net, exclude=[net.output_neuron()], **options)
    return net


# -------------------------------------------------------------------- losses
def make_loss(name: str) -> Tuple[str, Callable[[Tensor, Tensor], Tensor]]:
    """``(input, loss_fn)``: input is ``"spikes"`` or ``"membrane"``."""
    if name in ("mse_count", "ce_rate", "ce_count"):
        import snntorch.functional as SF

        fn = {"mse_count": lambda: SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2),
              "ce_rate": SF.ce_rate_loss, "ce_count": SF.ce_count_loss}[name]()
        return "spikes", fn
    if name == "mem_ce":
        ce = nn.CrossEntropyLoss()
        return "membrane", lambda mem, y: sum(ce(mem[t], y) for t in range(mem.shape[0]))
    if name == "mse_rate":
        return "spikes", lambda spk, y: F.mse_loss(spk.mean(0), F.one_hot(y, spk.shape[-1]).to(spk.dtype))
    if name in ("kernel", "count"):
        from tssl_plugin.loss import CountLoss, KernelLoss

        return "spikes", (KernelLoss() if name == "kernel" else CountLoss())
    raise ValueError(f"unknown loss {name!r}")


# ---------------------------------------------------------------------- runs
def _digits() -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    from .data import load_digits

    ds = load_digits()
    return ds.x_train.flatten(1), ds.y_train, ds.x_test.flatten(1), ds.y_test


def run_one(library: str, loss: str, reset: str, variant: str, seed: int, args: argparse.Namespace,
            data: Tuple[Tensor, Tensor, Tensor, Tensor]) -> Dict[str, Any]:
    """Train one network; returns its record (test accuracy, firing rates, seconds)."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    net = build_net(library, variant, None if reset == "default" else reset, args)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    kind, loss_fn = make_loss(loss)
    gen = torch.Generator().manual_seed(seed)
    T = args.steps
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            spk, mem, _ = net(xtr[idx].expand(T, -1, -1))
            value = loss_fn(mem if kind == "membrane" else spk, ytr[idx])
            opt.zero_grad()
            value.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad(), ModuleActivityMeter(net, []) as meter:
        spk, _, hid = net(xte.expand(T, -1, -1))
        acc = float((spk.sum(0).argmax(1) == yte).float().mean())
    from .machine import code_info, machine_info, tssl_impl

    return {"library": library, "loss": loss, "reset": reset, "variant": variant, "seed": seed,
            "code": code_info(), "machine": machine_info(torch.device("cpu"), 1),
            "tssl_impl": tssl_impl(variant != "host", torch.device("cpu")),
            "test_accuracy": acc, "firing_rates": [float(hid.mean()), float(spk.mean())], "seconds": seconds,
            **meter.synops(len(yte)),
            "steps": T, "epochs": args.epochs, "lr": args.lr, "hidden": args.hidden,
            "warmup_width": None if variant == "host" else args.warmup_width,
            "warmup_gate": None if variant == "host" else _gate(args.warmup_gate, net),
            "warmup_floor": None if variant == "host" else _floor(net),
            "crossing": None if variant == "host" else args.crossing,
            "beta" if library == "snntorch" else "tau": args.beta if library == "snntorch" else args.tau}


def _floor(net: nn.Module) -> Optional[bool]:
    """Whether the converted layers ran with the warm-up floor (read from a converted layer; None if none is)."""
    for m in net.modules():
        if hasattr(type(m), "warmup_floor"):  # a TSSL-BP layer
            return bool(m.warmup_floor)
    return None


def _gate(option: Optional[str], net: nn.Module) -> Optional[str]:
    """The warm-up gate the converted layers ran with: ``option``, or the adapters' default read from a layer."""
    from tssl_plugin.rule import warmup_gate

    if option is not None:
        return option
    for m in net.modules():
        if hasattr(m, "warmup_width") and hasattr(m, "warmup"):
            return warmup_gate(m.warmup)
    return None


def summarize(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (loss, reset, variant): mean and std of test accuracy over seeds, mean firing rates."""
    groups: Dict[Tuple[str, str, str, str], List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["library"], r["loss"], r["reset"], r["variant"]), []).append(r)
    rows = []
    for (lib, loss, reset, variant), rs in groups.items():
        accs = [r["test_accuracy"] for r in rs]
        rows.append({"library": lib, "loss": loss, "reset": reset, "variant": variant, "seeds": len(rs),
                     "mean": statistics.mean(accs), "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                     "accuracies": accs,
                     "firing_rates": [statistics.mean(r["firing_rates"][i] for r in rs) for i in range(2)]})
    return rows


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
    from .report import markdown_table

    body = [[r["library"], r["loss"], r["reset"], r["variant"], f"{r['mean']:.3f} ± {r['std']:.3f}",
             " ".join(f"{a:.3f}" for a in r["accuracies"]), " ".join(f"{f:.3f}" for f in r["firing_rates"])]
            for r in rows]
    return markdown_table(["library", "loss", "reset", "variant", "test acc (mean ± std)", "per seed",
                           "firing rates (hidden, output)"], body)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tssl-bench hosts``."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    done: List[Dict[str, Any]] = []
    if args.resume:
        try:
            args, done = _resumed_args(parser, argv, Path(args.resume))
        except ValueError as err:
            print(f"tssl-bench hosts: error: {err}", file=sys.stderr)
            return 2
    losses, variants, resets = check_args(parser, args)
    from .progress import progress_line
    from .results_dir import check_new_out, check_writable, start_results, write_summary_files

    out = None if args.out is None else Path(args.out)
    if out is not None:
        try:
            if args.resume:
                check_writable(out)
            else:
                check_new_out(out, overwrite=args.overwrite, resume=resume_command)
        except ValueError as err:
            print(f"tssl-bench hosts: error: {err}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    config = {**{k: v for k, v in vars(args).items() if k != "resume"}, "argv": getattr(args, "argv", argv)}
    finished = {(r.get("loss"), r.get("reset"), r.get("variant"), r.get("seed")): r for r in done}
    plan = [(loss, reset, variant, seed) for loss in losses for reset in resets for variant in variants
            for seed in range(args.seeds)]
    records = [finished[key] for key in plan if key in finished]
    try:
        data = _digits()
        writer = None if out is None else start_results(out, config, overwrite=args.overwrite, records=records)
        for key in plan:
            if key in finished:
                continue
            loss, reset, variant, seed = key
            records.append(run_one(args.library, loss, reset, variant, seed, args, data))
            if writer is not None:
                writer.append(records[-1])
            progress_line(f"hosts: run {len(records)}/{len(plan)} {args.library} {loss} {reset} {variant} "
                          f"seed {seed}: test accuracy {records[-1]['test_accuracy']:.4f}, "
                          f"{records[-1]['seconds']:.1f} s")
    except KeyboardInterrupt:
        if out is None:
            print(f"tssl-bench hosts: interrupted after {len(records)} of {len(plan)} runs; nothing was saved "
                  f"(no --out)", file=sys.stderr)
        elif not (out / "config.json").exists():
            print("tssl-bench hosts: interrupted before any result was written; nothing to resume", file=sys.stderr)
        else:
            print(f"tssl-bench hosts: interrupted; {len(records)} finished runs (of {len(plan)}) are saved in {out}; "
                  f"continue with: {resume_command(out)}", file=sys.stderr)
        return 130
    rows = summarize(records)
    table = markdown(rows)
    print(table)
    if out is not None:
        cols = ["library", "loss", "reset", "variant", "seeds", "mean", "std", "accuracies", "firing_rates"]
        csv_rows = [[" ".join(f"{v:.4f}" for v in r[c]) if isinstance(r[c], list) else r[c] for c in cols]
                    for r in rows]
        write_summary_files(out, {"rows": rows, "config": config}, cols, csv_rows,
                            f"`tssl-bench hosts {' '.join(config['argv'])}`\n\n{table}\n")
        print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
