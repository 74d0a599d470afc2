"""The ablation tables of docs/benchmarks.md from the folders tools/run_ablations.sh wrote.

Usage: python tools/ablation_table.py OUT > table.md

Prints two markdown tables: test accuracy (mean ± std over the seeds) per setup, T and variant, and every
run's accuracy per seed, firing rates (layer by layer) and synaptic operations per test sample. The
tutorial net's records hold no synaptic-operation count; its column is derived from its measured firing
rates (784-300-10, direct input: 784 x 300 MACs per step, then the hidden layer's spikes x 300 x 10 ACs).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

VARIANTS = ("full", "no-warmup", "no-intra", "surrogate-only")
#: row order: the MLP presets, the CNN presets, the tutorial net
SETUPS = ("digits-mlp", "mnist-mlp", "fmnist-mlp", "digits-cnn", "mnist-cnn", "fmnist-cnn", "tutorial-quickstart-fc")
LABELS = {"full": "full TSSL-BP", "no-warmup": "no warm-up", "no-intra": "no intra-neuron term",
          "surrogate-only": "warm-up surrogate only"}


def _si(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.3g}"


def read(out: Path) -> Dict[Tuple[str, int], Dict[str, dict]]:
    """(setup, T) -> variant -> {acc, std, per_seed, rates, synops}."""
    table: Dict[Tuple[str, int], Dict[str, dict]] = {}
    for path in sorted(out.glob("*/summary.json")):
        m = re.fullmatch(r"(.+)-T(\d+)-(" + "|".join(VARIANTS) + ")", path.parent.name)
        if not m:
            continue
        setup, steps, variant = m.group(1), int(m.group(2)), m.group(3)
        data = json.loads(path.read_text())
        if "runs" in data:  # tssl-bench training run
            r = data["runs"][0]
            row = dict(acc=r["test_accuracy"], std=r["test_accuracy_std"], per_seed=r["test_accuracy_per_seed"],
                       rates=r["firing_rates"], synops=r["synops_per_sample"], derived=False)
        else:  # tssl-bench tutorials
            r = data["rows"][0]
            rate = r["firing_rates"][0]
            row = dict(acc=r["mean"], std=r["std"], per_seed=r["accuracies"], rates=r["firing_rates"],
                       synops=steps * (784 * 300 + rate * 300 * 10), derived=True)
        table.setdefault((setup, steps), {})[variant] = row
    order = {name: i for i, name in enumerate(SETUPS)}
    return dict(sorted(table.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0], -kv[0][1])))


def markdown(table: Dict[Tuple[str, int], Dict[str, dict]]) -> str:
    head = "| setup | T | " + " | ".join(LABELS[v] for v in VARIANTS) + " |\n|---|---|" + "---|" * len(VARIANTS)
    lines: List[str] = [head]
    for (setup, steps), runs in table.items():
        cells = [f"{runs[v]['acc']:.3f} ± {runs[v]['std']:.3f}" if v in runs else "not run" for v in VARIANTS]
        lines.append(f"| {setup} | {steps} | " + " | ".join(cells) + " |")
    detail = ["| setup | T | variant | test acc per seed | firing rates (layer by layer) | synops / sample |",
              "|---|---|---|---|---|---|"]
    for (setup, steps), runs in table.items():
        for v in VARIANTS:
            if v not in runs:
                continue
            r = runs[v]
            detail.append(f"| {setup} | {steps} | {LABELS[v]} | {' '.join(f'{a:.3f}' for a in r['per_seed'])} | "
                          f"{' / '.join(f'{x:.3f}' for x in r['rates'])} | "
                          f"{_si(r['synops'])}{' (derived)' if r['derived'] else ''} |")
    return "\n".join(lines) + "\n\n" + "\n".join(detail) + "\n"


if __name__ == "__main__":
    print(markdown(read(Path(sys.argv[1]))))
