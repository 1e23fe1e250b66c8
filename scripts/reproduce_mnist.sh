#!/usr/bin/env bash
# Reproduces the paper's Figure 1 on real MNIST: creates the virtualenv, fetches the data,
# trains both arms (no BN, BN), 3 seeds each side by side, at two settings (learning rate 2.0,
# the baseline's best, and 0.5: configs/mnist.py says how it was chosen) and writes
# results/mnist/ (figure1.png, summary.md, summary.json). Replaces the committed files there.
#
#   scripts/reproduce_mnist.sh            # 50,000 steps per arm
#   scripts/reproduce_mnist.sh --quick    # 5,000 steps per arm, into results/mnist_quick/
#   scripts/reproduce_mnist.sh --seeds=5  # 5 seeds per arm (error bands), into
#                                         # results/mnist_5seeds/
#
# Options: --workdir=DIR (default runs/mnist[_quick][_Nseeds]), --out=DIR.
# An interrupted run resumes from its checkpoints when started again with the same options.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
quick=0 seeds=3 workdir='' out=''
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --seeds=*) seeds="${arg#*=}" ;;
    --workdir=*) workdir="${arg#*=}" ;;
    --out=*) out="${arg#*=}" ;;
    *) echo "Unknown option $arg; expected --quick, --seeds=N, --workdir=DIR, --out=DIR." >&2
       exit 2 ;;
  esac
done
name=mnist steps=50000
if [ "$quick" = 1 ]; then name+=_quick steps=5000; fi
if [ "$seeds" != 3 ]; then name+="_${seeds}seeds"; fi
workdir="${workdir:-runs/$name}" out="${out:-results/$name}"

source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
settings=(lr2:2.0 lr0.5:0.5)  # name:learning rate; the first is the primary setting.
for setting in "${settings[@]}"; do
  rate="${setting#*:}" setting="${setting%%:*}"
  for arm in baseline bn; do
    run="$workdir/$setting/$arm"
    echo "=== Training the '$arm' arm at learning rate $rate, $seeds seeds, $steps steps, into $run"
    flags=(--config="configs/mnist.py:$arm" --workdir="$run" --config.num_steps="$steps"
           --config.num_seeds="$seeds" --config.optimizer.learning_rate="$rate")
    "$VENV_PYTHON" -m bn_repro.main "${flags[@]}" 2>&1 | grep --line-buffered -E 'train.py|Error|FATAL|MNIST' || {
        echo "Training the '$arm' arm failed; rerun without the filter to see the full log:" >&2
        echo "  $VENV_PYTHON -m bn_repro.main ${flags[*]}" >&2
        exit 1; }
  done
done
"$VENV_PYTHON" scripts/plot_mnist.py --workdir="$workdir" --out="$out" \
  --settings="$(IFS=,; names=("${settings[@]%%:*}"); echo "${names[*]}")" \
  --command="scripts/reproduce_mnist.sh $*" --started_at="$start"
echo "Total wall time, installation and data fetch included: $(( $(date +%s) - start )) s"
