#!/usr/bin/env bash
# Reproduces the paper's Figure 1 on real MNIST: creates the virtualenv, fetches the data,
# trains both arms (no BN, BN) at the paper's settings and writes results/mnist/
# (figure1.png, summary.md, summary.json).
#
#   scripts/reproduce_mnist.sh            # 50,000 steps per arm (about 2 minutes on 2 CPU cores)
#   scripts/reproduce_mnist.sh --quick    # 5,000 steps per arm, into results/mnist_quick/
#   scripts/reproduce_mnist.sh --seeds=5  # 5 seeds per arm side by side (error bands), into
#                                         # results/mnist_5seeds/
#
# Options: --workdir=DIR (default runs/mnist[_quick][_Nseeds]), --out=DIR.
# An interrupted run resumes from its checkpoints when started again with the same options.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
quick=0 seeds=1 workdir='' out=''
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
if [ "$seeds" != 1 ]; then name+="_${seeds}seeds"; fi
workdir="${workdir:-runs/$name}" out="${out:-results/$name}"

source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
for arm in baseline bn; do
  echo "=== Training the '$arm' arm for $steps steps into $workdir/$arm"
  "$VENV_PYTHON" -m bn_repro.main --config="configs/mnist.py:$arm" --workdir="$workdir/$arm" \
    --config.num_steps="$steps" --config.num_seeds="$seeds" 2>&1 | grep --line-buffered -E 'train.py|Error|FATAL|MNIST' || {
      echo "Training the '$arm' arm failed; rerun without the filter to see the full log:" >&2
      echo "  $VENV_PYTHON -m bn_repro.main --config=configs/mnist.py:$arm --workdir=$workdir/$arm --config.num_steps=$steps --config.num_seeds=$seeds" >&2
      exit 1; }
done
"$VENV_PYTHON" scripts/plot_mnist.py --workdir="$workdir" --out="$out" \
  --command="scripts/reproduce_mnist.sh $*" --started_at="$start"
echo "Total wall time, installation and data fetch included: $(( $(date +%s) - start )) s"
