"""Check the harness's native networks against the official TSSL-BP code, one training step.

Builds a preset's network twice, the official code's (``cnns.Network`` from a local clone of
github.com/stonezwr/TSSL-BP, its ``Networks/<name>.yaml``) and the harness's ``native:tssl``
(``tssl_plugin.benchmarks.models.build_native``), gives both the same weights and the same images,
and compares the output PSC, the kernel loss and every layer's weight gradient. The official code
asks for CUDA; here ``Tensor.cuda`` is made a no-op so it runs on the CPU, unchanged otherwise.

Usage (nothing of the official code is part of this repository; clone it yourself)::

    git clone https://github.com/stonezwr/TSSL-BP /tmp/TSSL-BP
    python tools/compare_official.py --official /tmp/TSSL-BP --preset fmnist-cnn \
        [--checkpoint RUN/checkpoints/native_tssl-seed0.pt] [--dataset fashion-mnist] [--dtype float64]

``--checkpoint`` takes trained weights from a ``native:tssl`` run of the harness (at initialisation
the CNNs' output layers are silent); ``--dataset`` takes the first test images, normalised as the
official loaders do, instead of random ones. Exit status 1 if a difference is above the tolerance
(float64: 1e-12 relative, float32: 1e-4).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import List

import torch

YAMLS = {"mnist-cnn": "MNIST_CNN.yaml", "fmnist-cnn": "FashionMNIST_CNN.yaml", "fmnist-mlp": "FashionMNIST_400_400.yaml"}
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-4}


def _fail(msg: str) -> "NoReturn":  # noqa: F821
    print(f"compare_official: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _official(path: Path, preset: str):
    """The official modules and the preset's (network, layers) configuration, CPU-patched."""
    if not (path / "cnns.py").is_file() or not (path / "global_v.py").is_file():
        _fail(f"{path} is not a clone of stonezwr/TSSL-BP (no cnns.py / global_v.py); "
              "clone it with: git clone https://github.com/stonezwr/TSSL-BP")
    try:
        import yaml
    except ImportError:
        _fail("the official configs are YAML; install PyYAML: pip install pyyaml")
    torch.Tensor.cuda = lambda self, *a, **k: self  # the official code calls .cuda() everywhere
    sys.path.insert(0, str(path))
    import cnns
    import functions.loss_f as loss_f
    import global_v as glv

    params = yaml.safe_load((path / "Networks" / YAMLS[preset]).read_text())
    net_cfg, layers_cfg = params["Network"], params["Layers"]
    net_cfg.setdefault("rule", "TSSLBP")
    net_cfg.setdefault("model", "LIF")
    return cnns, loss_f, glv, net_cfg, layers_cfg


def _weights(arch, checkpoint: str, dtype: torch.dtype) -> List[torch.Tensor]:
    from tssl_plugin.benchmarks import models as M

    if not checkpoint:
        return [w.to(dtype) for w in M.initial_weights(arch, (1, 28, 28), seed=0, init="paper")]
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    except (OSError, KeyError, RuntimeError) as err:
        _fail(f"cannot read native:tssl weights from {checkpoint} ({err}); give a harness checkpoint, "
              "e.g. RUN/checkpoints/native_tssl-seed0.pt")
    return [v.to(dtype) for k, v in state.items() if k.endswith("weight")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", required=True, type=Path, help="a local clone of stonezwr/TSSL-BP")
    ap.add_argument("--preset", required=True, choices=sorted(YAMLS))
    ap.add_argument("--checkpoint", default="", help="native:tssl weights from a harness run (default: initial)")
    ap.add_argument("--dataset", default="", help="use the first test images of this data set (default: random)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    if args.batch < 1:
        _fail(f"--batch must be >= 1, got {args.batch}")
    dtype = getattr(torch, args.dtype)

    from tssl_plugin import kernel_loss
    from tssl_plugin.benchmarks import models as M
    from tssl_plugin.benchmarks.encoding import encode

    cnns, loss_f, glv, net_cfg, layers_cfg = _official(args.official, args.preset)
    T, tau_m, tau_s = net_cfg["n_steps"], net_cfg["tau_m"], net_cfg["tau_s"]
    torch.set_default_dtype(dtype)
    glv.init(T, tau_s)
    arch = M.make_arch("mlp" if args.preset == "fmnist-mlp" else args.preset, 10)
    W = _weights(arch, args.checkpoint, dtype)
    with contextlib.redirect_stdout(io.StringIO()):  # the official constructor prints every layer
        official = cnns.Network(net_cfg, layers_cfg, [1, 28, 28])
    params = list(official.get_parameters())
    if len(params) != len(W):
        _fail(f"{args.checkpoint or 'initial weights'} has {len(W)} weighted layers, the official "
              f"{args.preset} network {len(params)}; give a checkpoint of the same preset")
    with torch.no_grad():
        for p, w in zip(params, W):
            p.copy_(w.reshape(p.shape))  # conv: [out, in, k, k] -> [out, in, k, k, 1]
    native = M.build_native(arch, (1, 28, 28), W, M.NeuronCfg(tau_m=tau_m, tau_s=tau_s)).to(dtype)

    N = args.batch
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 28, 28, generator=gen, dtype=dtype) * 3 - 0.4  # the range of normalised images
    labels = torch.randint(0, 10, (N,), generator=gen)
    if args.dataset:
        from tssl_plugin.benchmarks import data as D

        ds = D.normalize_images(D.load_dataset(args.dataset), "mnist")
        x, labels = ds.x_test[:N].to(dtype), ds.y_test[:N].long()

    # the official training step (main.py): images repeated over T, kernel loss on the psp'd pattern
    out_o = official.forward(x.unsqueeze(-1).repeat(1, 1, 1, 1, T), 0, True)
    pattern = torch.tensor([0, 1, 1, 1, 1], dtype=dtype).repeat(T // 5).view(1, 1, 1, 1, T)
    pattern = loss_f.psp(pattern, net_cfg).view(1, 1, 1, T)
    targets = torch.zeros(N, 10, 1, 1, T, dtype=dtype)
    for i in range(N):
        targets[i, labels[i], ...] = pattern
    loss_o = loss_f.SpikeLoss(net_cfg).spike_kernel(out_o, targets, net_cfg)
    loss_o.backward()
    # the harness's step
    out_n, spikes = native(encode(x, T, "psc", tau_s, False))
    loss_n = kernel_loss(out_n, labels, tau_s=tau_s)
    loss_n.backward()

    tol = TOLERANCE[dtype]
    a_o = out_o.detach().reshape(N, 10, T).permute(2, 0, 1)
    a_n = out_n.detach()
    rows = [("output PSC", float((a_o - a_n).abs().max() / a_n.abs().max().clamp_min(1e-30)))]
    rows.append(("kernel loss", abs(float(loss_o.detach()) - float(loss_n.detach())) / abs(float(loss_n.detach()))))
    for i, (p, syn) in enumerate(zip(params, native.synapses())):
        g_o, g_n = p.grad.reshape(syn.weight.shape), syn.weight.grad
        rows.append((f"grad layer {i} {tuple(syn.weight.shape)}",
                     float((g_o - g_n).abs().max() / g_o.abs().max().clamp_min(1e-30))))
    print(f"{args.preset}, {args.dtype}, {N} images ({args.dataset or 'random'}), weights: "
          f"{args.checkpoint or 'initial (seed 0)'}; output spikes per image {float(spikes[-1].sum()) / N:.2f}")
    print("quantity | max |official - harness| / max |official|")
    for name, rel in rows:
        print(f"{name} | {rel:.2e}")
    bad = [name for name, rel in rows if rel > tol]
    if bad:
        print(f"DIFFERENT above {tol:g}: {', '.join(bad)}")
        return 1
    print(f"same within {tol:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
