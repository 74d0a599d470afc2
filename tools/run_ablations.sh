#!/bin/sh
# The ablation table of docs/benchmarks.md ("Ablations"): every part of TSSL-BP switched off in turn,
# on the paper's MLP and CNN presets (digits, MNIST, Fashion-MNIST subsets) and one snnTorch tutorial net,
# at the presets' T and at T=3, 3 seeds each. Usage: tools/run_ablations.sh OUT [FIRST_SEED [PART]]
# PART: mlp (the MLP presets, then the tutorial), cnn, tutorial or all (default): mlp and cnn run side by
# side. FIRST_SEED shifts the presets' seeds (the tutorial runs seeds 0..2). Finished runs are skipped, so a stopped run continues. Table: python tools/ablation_table.py OUT.
set -eu
OUT=${1:?usage: tools/run_ablations.sh OUT [FIRST_SEED [PART]]}
SEED=${2:-0}
PART=${3:-all}
PY=${PYTHON:-python}
mkdir -p "$OUT"
ablation_flags() {  # the four variants: full rule, no warm-up, no intra-neuron term, warm-up surrogate only
  case $1 in
    full) echo "" ;;
    no-warmup) echo "--no-warmup" ;;
    no-intra) echo "--ablation no_intra" ;;
    surrogate-only) echo "--ablation no_spike_timing" ;;
  esac
}
run() {  # run NAME STEPS OPTIONS...: one preset setup at one T, all four variants
  name=$1; steps=$2; shift 2
  for v in full no-warmup no-intra surrogate-only; do
    dir="$OUT/$name-T$steps-$v"
    [ -f "$dir/summary.json" ] && continue
    # shellcheck disable=SC2046
    $PY -m tssl_plugin.benchmarks "$@" --steps "$steps" --seeds 3 --seed "$SEED" --backends native:tssl \
      --threads 1 --quiet --out "$dir" --overwrite $(ablation_flags $v) > "$dir.log" 2>&1 || echo "FAILED $dir"
  done
}
if [ "$PART" = all ] || [ "$PART" = mlp ]; then  # budgets: subsets and epochs cut to a loaded 2-core CPU
  for T in 5 3; do
    run digits-mlp $T --preset fmnist-mlp --dataset digits --epochs 4
    run mnist-mlp $T --preset fmnist-mlp --dataset mnist --limit-train 2000 --limit-test 500 --epochs 2
    run fmnist-mlp $T --preset fmnist-mlp --limit-train 2000 --limit-test 500 --epochs 2
  done
fi
if [ "$PART" = all ] || [ "$PART" = cnn ]; then
  for T in 5 3; do
    run digits-cnn $T --preset fmnist-cnn --dataset digits --epochs 1
    run mnist-cnn $T --preset mnist-cnn --limit-train 1000 --limit-test 300 --epochs 2
    run fmnist-cnn $T --preset fmnist-cnn --limit-train 500 --limit-test 200 --epochs 1
  done
fi
# one host tutorial net through the snnTorch adapter (convert(net, ...)): the tutorial's T=25 and T=3
case $PART in cnn) exit 0 ;; esac
for T in 25 3; do
  for v in full no-warmup no-intra surrogate-only; do
    dir="$OUT/tutorial-quickstart-fc-T$T-$v"
    [ -f "$dir/summary.json" ] && continue
    case $v in
      full) opts="" ;; no-warmup) opts="--convert-option warmup=false" ;;
      no-intra) opts="--convert-option ablation=\"no_intra\"" ;;
      surrogate-only) opts="--convert-option ablation=\"no_spike_timing\"" ;;
    esac
    # shellcheck disable=SC2086
    $PY -m tssl_plugin.benchmarks tutorials --setups snntorch-quickstart-fc --variants tssl --seeds 3 \
      --iterations 20 --test-images 500 --steps $T --threads 1 --out "$dir" --overwrite $opts > "$dir.log" 2>&1 \
      || echo "FAILED $dir"
  done
done
