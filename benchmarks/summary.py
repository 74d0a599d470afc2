"""Turn a training run's per-epoch records into ``summary.json``, ``summary.csv``, ``summary.md`` and the PNG plots.

Per backend, over seeds: mean and (sample) standard deviation of the final
test accuracy, mean of the final train accuracy / loss, mean seconds per
epoch (training, and the test-set pass) and samples per second over all
epochs, the largest peak memory, the mean firing rate of each spiking layer
over all epochs, the activity metrics of the last epoch (synaptic operations
per test sample and activation sparsity per layer, see activity.py), and the
per-epoch curve (mean and std over seeds of test accuracy, train accuracy and
loss at every epoch).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import report as R
from .memory import CUDA_PEAK, MEASURE_LABELS
from .results_dir import write_summary_files

__all__ = ["write_summary", "aggregate", "shared", "shared_code", "summary_rows", "SUMMARY_COLUMNS", "activity_markdown",
           "runs_markdown", "write_plots", "preset_info"]

_OPT_NAMES = {"adamw": "AdamW", "adam": "Adam"}


def _mean(xs: Sequence[float]) -> float:
    return float(statistics.fmean(xs)) if xs else float("nan")


def _std(xs: Sequence[float]) -> float:
    return float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


_NAN = float("nan")


def _num(r: Dict[str, Any], key: str) -> float:
    """``r[key]`` as a float (NaN when absent, e.g. records of an older harness version)."""
    v = r.get(key)
    return _NAN if v is None else float(v)


def _per_layer(recs: List[Dict[str, Any]], key: str) -> List[float]:
    rows = [r[key] for r in recs if r.get(key)]
    return [_mean([row[i] for row in rows]) for i in range(len(rows[0]))] if rows else []


def _curve(recs: List[Dict[str, Any]]) -> Dict[str, List[float]]:
    epochs = sorted({r["epoch"] for r in recs})
    out: Dict[str, List[float]] = {"epoch": epochs}
    for key in ("test_accuracy", "train_accuracy", "train_loss"):
        per = [[r[key] for r in recs if r["epoch"] == e] for e in epochs]
        out[key] = [_mean(p) for p in per]
        out[key + "_std"] = [_std(p) for p in per]
    return out


def shared(records: List[Dict[str, Any]], key: str) -> Optional[Any]:
    """The value of ``key`` every record has, or None when they differ or some do not say (older records)."""
    seen = [r.get(key) for r in records]
    if not seen or any(v is None for v in seen) or any(v != seen[0] for v in seen):
        return None
    return seen[0]


def shared_code(records: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The ``code`` (machine.code_info) every record names, or None when they differ or some do not say."""
    return shared(records, "code")


def _impls(recs: List[Dict[str, Any]]) -> List[Optional[str]]:
    """The TSSL-BP implementations a backend's records name (first-seen order; ``"not recorded"`` for
    records of older versions, None for a backend that does not run the TSSL-BP op)."""
    return list(dict.fromkeys(r["tssl_impl"] if "tssl_impl" in r else "not recorded" for r in recs))


def aggregate(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One run summary per backend (in first-seen order), aggregated over its seeds."""
    order: List[str] = []
    by: Dict[str, List[Dict[str, Any]]] = {}
    for r in records:
        if r["backend"] not in by:
            order.append(r["backend"])
            by[r["backend"]] = []
        by[r["backend"]].append(r)
    runs = []
    for name in order:
        recs = by[name]
        seeds = sorted({r["seed"] for r in recs})
        last = [max((r for r in recs if r["seed"] == s), key=lambda r: r["epoch"]) for s in seeds]
        final = [r["test_accuracy"] for r in last]
        # [accuracy, epoch] of each seed's best epoch (the earliest among equals)
        best = [list(max(((r["test_accuracy"], r["epoch"]) for r in recs if r["seed"] == s),
                         key=lambda ae: (ae[0], -ae[1]))) for s in seeds]
        n_layers = len(recs[0]["firing_rates"])
        runs.append({
            "backend": name, "library": recs[0]["library"], "gradient": recs[0]["gradient"],
            "dataset": recs[0]["dataset"], "arch": recs[0]["arch"], "loss": recs[0]["loss"],
            "epochs": max(r["epoch"] for r in recs), "seeds": seeds,
            "test_accuracy": _mean(final), "test_accuracy_std": _std(final),
            "test_accuracy_per_seed": final,
            "best_test_accuracy": _mean([acc for acc, _ in best]),
            "best_per_seed": best,
            "epochs_per_seed": [r["epoch"] for r in last],
            "train_accuracy": _mean([r["train_accuracy"] for r in last]),
            "train_loss": _mean([r["train_loss"] for r in last]),
            "seconds_per_epoch": _mean([r["seconds"] for r in recs]),
            "seconds_per_epoch_std": _std([r["seconds"] for r in recs]),
            "samples_per_second": _mean([r["samples_per_second"] for r in recs]),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in recs),
            "memory_measure": recs[0]["memory_measure"],
            "process_peak_rss_mb": max(r.get("process_peak_rss_mb", float("nan")) for r in recs),
            "firing_rates": [_mean([r["firing_rates"][i] for r in recs]) for i in range(n_layers)],
            "eval_seconds_per_epoch": _mean([_num(r, "eval_seconds") for r in recs]),
            "synops_per_sample": _mean([_num(r, "synops_per_sample") for r in last]),
            "synops_per_sample_std": _std([_num(r, "synops_per_sample") for r in last]),
            "acs_per_sample": _mean([_num(r, "acs_per_sample") for r in last]),
            "macs_per_sample": _mean([_num(r, "macs_per_sample") for r in last]),
            "dense_synops_per_sample": _mean([_num(r, "dense_synops_per_sample") for r in last]),
            "synops_per_layer": _per_layer(last, "synops_per_layer"),
            "activation_sparsity": _per_layer(last, "activation_sparsity"),
            "activation_sparsity_total": _mean([_num(r, "activation_sparsity_total") for r in last]),
            "curve": _curve(recs),
            "world_size": recs[0]["world_size"], "device": recs[0]["device"],
            "tssl_impl": _impls(recs),
        })
    return runs


SUMMARY_COLUMNS = ["backend", "loss", "test_accuracy", "test_accuracy_std", "train_accuracy", "train_loss",
                   "seconds_per_epoch", "samples_per_second", "peak_memory_mb", "firing_rates", "seeds", "epochs",
                   "world_size", "eval_seconds_per_epoch", "synops_per_sample", "acs_per_sample", "macs_per_sample",
                   "dense_synops_per_sample", "activation_sparsity", "activation_sparsity_total"]
_LIST_COLUMNS = ("firing_rates", "activation_sparsity")


def summary_rows(runs: List[Dict[str, Any]]) -> List[List[Any]]:
    """Rows for the CSV (raw numbers)."""
    rows = []
    for r in runs:
        row = []
        for c in SUMMARY_COLUMNS:
            v = r[c]
            row.append(" ".join(f"{x:.4f}" for x in v) if c in _LIST_COLUMNS else
                       len(v) if c == "seeds" else v)
        rows.append(row)
    return rows


#: what activity_markdown's table counts, for the harness's networks (its ``note``).
ACTIVITY_NOTE = ("*Activity and cost*, on the test set after the last epoch, as NeuroBench defines them: synaptic "
                 "operations per sample = effective accumulates (ACs: binary spikes x non-zero fan-out) + "
                 "multiply-accumulates (MACs: layers whose input is not binary, i.e. the encoded image and "
                 "sum-pooled spikes); dense = every input and weight counted; sparsity = fraction of zero "
                 "outputs of each spiking layer. The native network's operations are counted from its spikes "
                 "(its PSC filter is linear).")


def activity_markdown(runs: List[Dict[str, Any]], note: str = ACTIVITY_NOTE) -> str:
    """The activity and cost table: synaptic operations per test sample and activation sparsity per layer,
    with ``note`` saying what is counted."""
    head = ["backend", "test acc", "synaptic ops / sample", "ACs", "MACs", "dense ops", "activation sparsity per layer",
            "overall"]
    rows = [[f"`{r['backend']}`", f"{r['test_accuracy']:.4f}", R.si(r["synops_per_sample"]) + (
                f" ± {R.si(r['synops_per_sample_std'])}" if len(r["seeds"]) > 1 else ""),
             R.si(r["acs_per_sample"]), R.si(r["macs_per_sample"]), R.si(r["dense_synops_per_sample"]),
             " / ".join(f"{x:.3f}" for x in r["activation_sparsity"]) or "-",
             "-" if r["activation_sparsity_total"] != r["activation_sparsity_total"]
             else f"{r['activation_sparsity_total']:.3f}"] for r in runs]
    return R.markdown_table(head, rows) + "\n" + note + "\n"


def _machine_text(machine: Optional[Dict[str, Any]]) -> str:
    if machine is None:
        return ("Machine: not the same for every record, or not recorded (records of older versions); "
                "see `machine` in results.jsonl.\n\n")
    return (f"Machine: {machine.get('gpu') or machine['platform']}"
            + (f", {machine['cpu']}" if machine.get("cpu") and not machine.get("gpu") else "")
            + f", {machine['cpu_count']} CPU cores, "
            f"torch {machine['torch']}, {machine['torch_threads']} thread(s), world size {machine['world_size']}.\n\n")


def _code_line(code: Optional[Dict[str, Any]], runs: List[Dict[str, Any]]) -> str:
    from .machine import code_text

    what = (code_text(code) if code is not None else
            "not the same for every record, or not recorded (records of older versions); see `code` in results.jsonl")
    impls = [f"`{r['backend']}` {', '.join(map(str, r['tssl_impl']))}" for r in runs
             if r.get("tssl_impl") and r["tssl_impl"] != [None]]
    return f"Code: {what}." + (f" TSSL-BP implementation: {'; '.join(impls)}." if impls else "") + "\n\n"


def markdown(runs: List[Dict[str, Any]], cfg: Any, ds: Any, arch: Any, machine: Optional[Dict[str, Any]],
             measure: str, preset: Optional[Dict[str, Any]] = None, notes: Sequence[str] = (),
             code: Optional[Dict[str, Any]] = None) -> str:
    """The human-readable summary tables with their context (``notes``: lines printed under the heading;
    ``code``: what every record says ran, machine.code_info)."""
    seeds = sorted({s for r in runs for s in r["seeds"]})
    gate = getattr(cfg, "warmup_gate", None) or "each backend's default"
    warmup = f"width {cfg.warmup_width}, gate {gate}" if cfg.warmup else "off"
    text = (f"# tssl-bench results\n\n" + "".join(f"{n}\n\n" for n in notes)
            + f"Data set `{ds.name}` ({len(ds.y_train)} train / {len(ds.y_test)} test; {ds.source}), network "
            f"`{arch.name}` ({'x'.join(map(str, ds.in_shape))}-{arch.describe()}), T={cfg.steps}, "
            f"{cfg.epochs} epochs, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, batch {cfg.batch_size}, "
            f"{_OPT_NAMES.get(cfg.optimizer, cfg.optimizer)} lr {cfg.lr} ({cfg.schedule}, weight decay "
            f"{cfg.resolved_weight_decay()}), weights clipped to ±{cfg.weight_clip}, grad norm ≤ {cfg.grad_clip}, "
            f"tau_m={cfg.tau_m}, tau_s={cfg.tau_s}, threshold={cfg.threshold}, reset={cfg.reset}, "
            f"TSSL-BP warm-up {warmup}, "
            + (f"TSSL-BP ablation {cfg.ablation}, " if cfg.ablation != "none" else "")
            + (f"TSSL-BP crossing {cfg.crossing}, " if getattr(cfg, "crossing", None) else "")
            + f"encoding={cfg.encoding}, init={cfg.init} (gain {cfg.init_gain}), normalize={cfg.normalize}"
            + (f", native:tssl passes {cfg.native_between}s between layers" if cfg.native_between != "psc" else "")
            + ".\n\n"
            + (f"Preset `{preset['name']}` ({preset['title']}); the paper: {preset['text']}.\n\n" if preset else "")
            + _machine_text(machine) + _code_line(code, runs))
    return text + runs_markdown(runs, measure)


#: what the harness's table columns *loss* and *test acc* are (runs_markdown's ``legend``).
HARNESS_LEGEND = ("*loss*: the loss each backend trained with (kernel = TSSL-BP kernel loss on the output PSC; "
                  "ce_rate = cross-entropy per step on output spikes, as snntorch.functional.ce_rate_loss; "
                  "mse_rate = MSE of output firing rate vs one-hot, as SpikingJelly tutorials; count = TSSL-BP "
                  "count loss). *test acc*: final epoch, argmax of the summed output PSC.")


def runs_markdown(runs: List[Dict[str, Any]], measure: str, legend: str = HARNESS_LEGEND,
                  activity_note: str = ACTIVITY_NOTE) -> str:
    """The results table of :func:`aggregate`'s ``runs`` (one row per backend) with its ``legend`` (what
    *loss* and *test acc* are) and what *peak MB* measures (``measure``, memory.py), then the activity table
    with its ``activity_note``."""
    head = ["backend", "loss", "epochs", "test acc (mean ± std)", "per seed", "best epoch per seed",
            "train acc", "s/epoch", "samples/s", "peak MB", "firing rate per layer"]
    rows = [[f"`{r['backend']}`", r["loss"], " / ".join(map(str, r["epochs_per_seed"])),
             f"{r['test_accuracy']:.4f}" + (f" ± {r['test_accuracy_std']:.4f}" if len(r["seeds"]) > 1 else " (1 seed)"),
             " ".join(f"{a:.3f}" for a in r["test_accuracy_per_seed"]),
             best_epochs_text(r), f"{r['train_accuracy']:.4f}",
             f"{r['seconds_per_epoch']:.2f}", f"{r['samples_per_second']:.0f}", f"{r['peak_memory_mb']:.2f}",
             " / ".join(f"{x:.3f}" for x in r["firing_rates"])] for r in runs]
    text = R.markdown_table(head, rows)
    text += (f"\n{legend} *peak MB*: {measure}"
             + (" (bytes autograd saves for backward in one training step + parameters, gradients, optimizer "
                "state; the process RSS peak is in summary.json)" if measure.startswith("cpu") else "")
             + ". *s/epoch*: training wall time per epoch.\n\n")
    return text + activity_markdown(runs, activity_note)


def best_epochs_text(run: Dict[str, Any]) -> str:
    """Each seed's best test accuracy and its epoch: ``seed 0: 0.958 @ epoch 7; seed 1: ...``."""
    return "; ".join(f"seed {s}: {a:.3f} @ epoch {e}" for s, (a, e) in zip(run["seeds"], run["best_per_seed"]))


def console_table(runs: List[Dict[str, Any]]) -> str:
    """The final table printed to the terminal, with a line saying what its memory columns measure."""
    measures = {r.get("memory_measure", "") for r in runs}
    cuda = measures == {CUDA_PEAK}
    mem = "CUDA peak MB" if cuda else "saved MB"
    head = ["backend", "loss", "test acc", "± std", "s/epoch", "eval s", "samples/s", mem, "process peak MB",
            "synops/sample", "firing rates"]
    rows = [[r["backend"], r["loss"], f"{r['test_accuracy']:.4f}", f"{r['test_accuracy_std']:.4f}",
             f"{r['seconds_per_epoch']:.2f}", f"{r['eval_seconds_per_epoch']:.2f}", f"{r['samples_per_second']:.0f}",
             f"{r['peak_memory_mb']:.2f}", f"{r.get('process_peak_rss_mb', float('nan')):.0f}",
             R.si(r["synops_per_sample"]), " ".join(f"{x:.3f}" for x in r["firing_rates"])] for r in runs]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    labels = ", ".join(MEASURE_LABELS.get(m, m) for m in sorted(measures))
    legend = (f"{mem}: {labels}" + ("" if cuda else " (the largest step's, not the process's memory)")
              + "; process peak MB: the whole process's peak resident memory (RSS).")
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows] + [legend])


def write_summary(out: Path, cfg: Any, records: List[Dict[str, Any]], ds: Any, arch: Any,
                  machine: Optional[Dict[str, Any]], measure: str, notes: Sequence[str] = (),
                  code: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write summary.json/.csv/.md and the plots into ``out``; return the summary dict.

    ``machine``: what ran every record (None when they differ or do not say); ``code``: the code every
    record names (:func:`shared_code`; None when they differ or do not say); ``notes``: lines for the
    top of summary.md (``merge`` names its sources and the unfinished runs there).
    """
    import dataclasses

    runs = aggregate(records)
    preset = preset_info(getattr(cfg, "preset", None))
    summary = {"runs": runs, "config": dataclasses.asdict(cfg), "machine": machine, "code": code,
               "memory_measure": measure,
               "preset": preset, "notes": list(notes),
               "dataset": {"name": ds.name, "train": len(ds.y_train), "test": len(ds.y_test), "source": ds.source},
               "network": f"{'x'.join(map(str, ds.in_shape))}-{arch.describe()}"}
    summary = write_summary_files(out, summary, SUMMARY_COLUMNS, summary_rows(runs),
                                  markdown(runs, cfg, ds, arch, machine, measure, preset, notes, code))
    write_plots(out, runs, ds.name, measure, preset)
    return summary


def preset_info(name: Optional[str]) -> Optional[Dict[str, Any]]:
    """The paper's result for preset ``name`` (None without a preset)."""
    if not name:
        return None
    from .presets import PRESETS

    p = PRESETS[name]
    return {"name": p.name, "title": p.title, "paper_accuracy": p.paper_accuracy, "paper_best": p.paper_best,
            "paper_epochs": p.paper_epochs, "text": p.paper_text(), "config_file": p.config_file,
            "deviations": list(p.deviations)}


def write_plots(out: Path, runs: List[Dict[str, Any]], dataset: str, measure: str,
                preset: Optional[Dict[str, Any]] = None) -> None:
    """accuracy_vs_epoch.png, accuracy_vs_synops.png (where counted) and time_memory.png of ``runs``."""
    series = {f"{r['backend']} ({r['loss']})": (r["curve"]["epoch"], r["curve"]["test_accuracy"],
                                                r["curve"]["test_accuracy_std"]) for r in runs}
    paper = ({f"paper: {100 * preset['paper_accuracy']:.2f} % ({preset['paper_epochs']} epochs)":
              preset["paper_accuracy"]} if preset else None)
    R.plot_lines(out / "accuracy_vs_epoch.png", series, xlabel="epoch", ylabel="test accuracy",
                 title=f"{dataset}: test accuracy per epoch (mean ± std over seeds)", hlines=paper)
    points = {f"{r['backend']} ({r['loss']})": (r["synops_per_sample"], r["test_accuracy"], r["synops_per_sample_std"],
                                                r["test_accuracy_std"])
              for r in runs if r["synops_per_sample"] == r["synops_per_sample"]}
    if points:
        R.plot_points(out / "accuracy_vs_synops.png", points, xlabel="synaptic operations per test sample (ACs + MACs)",
                      ylabel="test accuracy", title=f"{dataset}: accuracy vs synaptic operations (last epoch)",
                      hlines=paper)
    names = [r["backend"] for r in runs]
    R.plot_bars(out / "time_memory.png", names,
                [("seconds per epoch", [r["seconds_per_epoch"] for r in runs], [r["seconds_per_epoch_std"] for r in runs],
                  "training wall time"),
                 ("peak memory MB", [r["peak_memory_mb"] for r in runs], None, MEASURE_LABELS.get(measure, measure))],
                title=f"{dataset}: training time and memory per backend")
