#!/usr/bin/env bash
# Reproduces the paper's Figure 1 on real MNIST: creates the virtualenv, fetches the data,
# trains both arms (no BN, BN), 3 seeds each side by side, at two settings (learning rate 2.0,
# the baseline's best, and 0.5: configs/mnist.py says how it was chosen) and writes
# results/mnist/ (figure1.png, summary.md, summary.json). Replaces the committed files there.
#
#   scripts/reproduce_mnist.sh            # 50,000 steps per arm
#   scripts/reproduce_mnist.sh --quick    # 5,000 steps per arm (a check, about 2 minutes
#                                         # after installation), into runs/mnist_quick/
#   scripts/reproduce_mnist.sh --seeds=5  # 5 seeds per arm, paired by data order across
#                                         # the arms, into results/mnist_5seeds/
#
# Options: --workdir=DIR (default runs/mnist[_quick][_Nseeds]), --out=DIR (default
# results/mnist...: the committed results there are replaced; give a folder outside the
# repository to keep them), --jobs=N arms at a time (default: one per CPU core, each
# single-threaded), --overwrite (delete the arms' runs in the workdir and train them again).
# An interrupted run resumes from its checkpoints when started again with the same options.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0
start=$(date +%s)
quick=0 seeds=3 workdir='' out='' overwrite=() jobs="$(nproc 2>/dev/null || echo 1)"
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --seeds=[1-9]|--seeds=[1-9][0-9]) seeds="${arg#*=}" ;;
    --seeds=*) echo "FATAL: $arg: expected a number of seeds from 1 to 99." >&2; exit 2 ;;
    --overwrite) overwrite=(--overwrite) ;;
    --jobs=[1-9]*) jobs="${arg#*=}" ;;
    --workdir=*) workdir="${arg#*=}" ;;
    --out=*) out="${arg#*=}" ;;
    *) echo "Unknown option $arg; expected --quick, --seeds=N, --jobs=N, --workdir=DIR," \
         "--out=DIR, --overwrite (see --help)." >&2
       exit 2 ;;
  esac
done
name=mnist steps=50000
if [ "$quick" = 1 ]; then name+=_quick steps=5000; fi
if [ "$seeds" != 3 ]; then name+="_${seeds}seeds"; fi
results="results/$name"
if [ "$quick" = 1 ]; then results="runs/$name/figure"; fi  # A check, not a committed result.
workdir="${workdir:-runs/$name}" out="${out:-$results}"
check_writable --workdir "$workdir"
check_writable --out "$out"

source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
# The data once, before any arm starts: a failure is one line, not one per arm.
"$VENV_PYTHON" -m bn_repro.data.mnist_fetch
settings=(lr2:2.0 lr0.5:0.5)  # name:learning rate; the first is the primary setting.
one_core_per_run "$jobs"
echo "Runs go to $workdir, $jobs at a time; Figure 1 and its summary to $out (replacing what is there)."
OVERWRITE="${overwrite[*]:-}"
export VENV_PYTHON workdir steps seeds OVERWRITE
run_one() {  # SETTING RATE ARM
  local run="$workdir/$1/$3"
  echo "=== Training the '$3' arm at learning rate $2, $seeds seeds, $steps steps, into $run"
  run_training "$1 $3" --config="configs/mnist.py:$3" --workdir="$run" $OVERWRITE \
    --config.num_steps="$steps" --config.num_seeds="$seeds" --config.optimizer.learning_rate="$2"
}
export -f run_one
for setting in "${settings[@]}"; do
  for arm in baseline bn; do echo "${setting%%:*} ${setting#*:} $arm"; done
done | parallel_runs "$jobs"
"$VENV_PYTHON" scripts/plot_mnist.py --workdir="$workdir" --out="$out" \
  --settings="$(IFS=,; names=("${settings[@]%%:*}"); echo "${names[*]}")" \
  --command="scripts/reproduce_mnist.sh $*" --started_at="$start"
"$VENV_PYTHON" -m bn_repro.training.hparams_experiment --logdir="$workdir"
echo "TensorBoard: .venv/bin/tensorboard --logdir=$workdir"
echo "Total wall time, installation and data fetch included: $(( $(date +%s) - start )) s"
