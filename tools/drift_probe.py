"""Continue a `tssl-bench` run from one of its checkpoints with one change, and print what each epoch does.

Written to look for the cause of the converted SpikingJelly Fashion-MNIST CNN's drift (docs/benchmarks.md,
"The paper's table": its second convolution fired more every epoch while its accuracy fell). It loads a
checkpoint written by `tssl-bench` (``DIR/checkpoints/<backend>-seed<N>.pt``, or a copy of one), rebuilds the
run's network from ``DIR/config.json`` with one variant, and trains on for ``--epochs`` epochs with the run's
own epoch loop (`benchmarks.epoch.train_epoch`, same data order, optimiser state and learning rate), printing
per epoch the training and test accuracy and the firing rate of each layer. Nothing is written.

Variants (``--variant``):

* ``default``: the run's own settings;
* ``sigmoid``: SpikingJelly's ``Sigmoid`` surrogate on the same network, weights and loss (the control);
* ``cap1``: ``convert(..., sensitivity_cap=1)`` (``c <= 1/threshold``);
* ``w1``: ``warmup_width=1.0``;
* ``no_intra``: ``ablation="no_intra"``.

``--sigmoid-at K[,K...]`` (with ``default``, ``cap1``, ``w1`` or ``no_intra``): the neuron layers ``K``
(0-based) keep SpikingJelly's ``Sigmoid`` surrogate and only the others are converted, to find which layer's
gradient makes the difference.

``--set-at K:OPTION=VALUE`` (repeatable): one converted neuron layer's option (a JSON value), to change a part
of the rule in that layer alone, e.g. ``--set-at 2:ablation='"no_intra"'`` or ``--set-at 2:sensitivity_cap=1.0``.

``--warmup-gate G``: the TSSL-BP layers' warm-up gate (``trace``, ``silent``; tssl_plugin.rule.WARMUP_GATES).

``--warmup-floor on|off``: whether the TSSL-BP layers' warm-up surrogate keeps the reference's floor (a run
written before the option existed ran with it, and continues with it unless this says otherwise).

``--crossing step|interpolated``: what the TSSL-BP layers' spike-time sensitivity measures (a run written before
the option existed ran ``step``, and continues with it unless this says otherwise).

``--gradient-sum N``: instead of training, print the sum of the gradient of synapse ``--layer``'s weights over the
first ``N`` training batches from the checkpoint's state (no step taken): its sign says whether the next updates
raise (negative: gradient descent adds to the weights) or lower that synapse's input, a cheap proxy that ranked the
variants as their epochs did.

``--offset X`` adds ``X`` to every weight of synapse ``--layer`` (0-based, default 1: the second
convolution) before training, so a layer can be started saturated, as the drifted run's was.

Usage::

    python tools/drift_probe.py --run DIR --checkpoint FILE --epochs 1 --variant default [--offset 0.01] [--lr X]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from tssl_plugin.benchmarks import backends as B, data as D, models as M
from tssl_plugin.benchmarks.checkpoints import load_checkpoint
from tssl_plugin.benchmarks.config import read_config
from tssl_plugin.benchmarks.epoch import evaluate, train_epoch
from tssl_plugin.benchmarks.losses import loss_for
from tssl_plugin.benchmarks.train import build_network
from tssl_plugin.rule import CROSSINGS, WARMUP_GATES

VARIANTS = ("default", "sigmoid", "cap1", "w1", "no_intra")


def _gradient_sum(net, ds, cfg, loss_name: str, weight: torch.Tensor, n_batches: int) -> float:
    """The sum over the first ``n_batches`` training batches (in data order) of ``weight``'s summed gradient."""
    from tssl_plugin.benchmarks.encoding import encode, output_psc
    from tssl_plugin.benchmarks.losses import compute_loss

    total, b = 0.0, cfg.batch_size
    for i in range(n_batches):
        x, y = ds.x_train[i * b:(i + 1) * b], ds.y_train[i * b:(i + 1) * b]
        net.zero_grad()
        out, _ = net(encode(x, cfg.steps, cfg.encoding, cfg.tau_s, ds.temporal))
        compute_loss(loss_name, out, output_psc(out, net.output_kind, cfg.tau_s), y, cfg.tau_s).backward()
        total += float(weight.grad.sum())
    return total


def _floor_text(floor) -> str:
    """``--warmup-floor`` as the header line says it."""
    return "default" if floor is None else ("on" if floor else "off")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the tssl-bench output folder (its config.json)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of that run (or a copy of one)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--variant", choices=VARIANTS, default="default")
    p.add_argument("--offset", type=float, default=0.0, help="added to every weight of synapse --layer first")
    p.add_argument("--layer", type=int, default=1, help="which synapse --offset shifts (0-based)")
    p.add_argument("--gradient-sum", type=int, default=0, metavar="N",
                   help="print the summed weight gradient of synapse --layer over N batches instead of training")
    p.add_argument("--lr", type=float, default=None, help="another learning rate than the run's")
    p.add_argument("--warmup-gate", default=None, choices=WARMUP_GATES, help="another warm-up gate than the run's")
    p.add_argument("--warmup-floor", default=None, choices=("on", "off"),
                   help="the warm-up floor of the TSSL-BP layers instead of the run's")
    p.add_argument("--crossing", default=None, choices=CROSSINGS,
                   help="the TSSL-BP layers' crossing instead of the run's")
    p.add_argument("--sigmoid-at", default="", help="neuron layers (0-based, comma-separated) left on the surrogate")
    p.add_argument("--set-at", action="append", default=[], metavar="K:OPTION=VALUE",
                   help="one converted neuron layer's option (JSON value), e.g. 2:ablation=\"no_intra\", "
                        "2:sensitivity_cap=1.0, 2:warmup=false: a part of the rule changed in that layer alone")
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = read_config(Path(a.run), "--run")
    if a.lr is not None:
        cfg = dataclasses.replace(cfg, lr=a.lr)
    if a.warmup_gate is not None:
        cfg = dataclasses.replace(cfg, warmup_gate=a.warmup_gate)
    if a.warmup_floor is not None:
        cfg = dataclasses.replace(cfg, warmup_floor=a.warmup_floor == "on")
    if a.crossing is not None:
        cfg = dataclasses.replace(cfg, crossing=a.crossing)
    if a.variant == "w1":
        cfg = dataclasses.replace(cfg, warmup_width=1.0)
    if a.variant == "no_intra":
        cfg = dataclasses.replace(cfg, ablation="no_intra")
    (name,) = cfg.backends
    tssl = B.resolve([name])[0]
    backend = B.resolve(["spikingjelly:sigmoid"])[0] if a.variant == "sigmoid" else tssl
    ds = D.load_dataset(cfg.dataset, cfg.data_root, n_steps=cfg.steps, limit_train=cfg.limit_train,
                        limit_test=cfg.limit_test, normalize=cfg.normalize)
    arch = M.make_arch(cfg.arch, ds.n_class, cfg.hidden)
    ncfg = M.NeuronCfg(cfg.tau_m, cfg.tau_s, cfg.threshold, cfg.reset,
                       sensitivity_cap=1.0 if a.variant == "cap1" else None, crossing=cfg.crossing)
    device = torch.device("cpu")
    keep = [int(k) for k in a.sigmoid_at.split(",") if k]
    if keep and a.variant == "sigmoid":
        p.error("--sigmoid-at mixes the surrogate into a TSSL-BP variant; with --variant sigmoid every layer has it")
    net, opt = build_network(B.resolve(["spikingjelly:sigmoid"])[0] if keep else backend, 0, ds, arch, cfg,
                             device, ncfg)
    if keep:
        from tssl_plugin.adapters import spikingjelly as adapter

        adapter.convert(net, tau_s=cfg.tau_s, warmup_width=cfg.warmup_width, exclude=[net.neurons()[k] for k in keep],
                        ablation=cfg.ablation, **B.warmup_kwargs(cfg.warmup, cfg.warmup_gate, cfg.warmup_floor),
                        **ncfg.convert_options())
    for item in a.set_at:
        where, _, option = item.partition(":")
        key, sep, value = option.partition("=")
        if not sep or not where.isdigit():
            p.error(f"--set-at {item!r}: expected K:OPTION=VALUE, e.g. 2:sensitivity_cap=1.0")
        setattr(net.neurons()[int(where)], key, json.loads(value))
    state = load_checkpoint(Path(a.checkpoint), device)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    with torch.no_grad():
        net.synapses()[a.layer].weight.add_(a.offset)
    loss = loss_for(cfg.loss, tssl, ds.temporal)  # the TSSL-BP run's loss for every variant
    start = state["epoch"]
    print(f"{a.variant}, warm-up gate {cfg.warmup_gate or 'default'}, floor {_floor_text(cfg.warmup_floor)}, "
          f"crossing {cfg.crossing or 'default'}, "
          f"surrogate at neuron layers {keep}, set {a.set_at}, offset {a.offset:g} "
          f"on synapse {a.layer}, from epoch {start}, loss {loss}", flush=True)
    if a.gradient_sum:
        print(f"{a.variant} gradient sum of synapse {a.layer} over {a.gradient_sum} batches: "
              f"{_gradient_sum(net, ds, cfg, loss, net.synapses()[a.layer].weight, a.gradient_sum):.4g}", flush=True)
        return
    for epoch in range(start, start + a.epochs):
        m = train_epoch(net, net, opt, ds, cfg, loss, epoch, 0, device, 1, 0, True)
        acc, _ = evaluate(net, net, ds, cfg, device, 1, 0, arch)
        rates = " / ".join(f"{r:.3f}" for r in m["firing_rates"])
        print(f"{a.variant} epoch {epoch + 1}: train {m['train_accuracy']:.4f} test {acc:.4f} "
              f"firing rates {rates} ({m['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
