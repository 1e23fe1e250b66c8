#!/usr/bin/env bash
# Trains the six BN-Inception variants of the paper's Sec. 4.2 and writes the table
# "steps to match Inception" and the Figure 2 analog.
#
#   scripts/reproduce_inception.sh --scale=small   # CPU proxy on Fashion-MNIST: about 30 min
#                                                  # on 2 cores; writes results/inception_small/
#   scripts/reproduce_inception.sh --scale=full    # ImageNet (TFDS imagenet2012, prepared by
#     you), batch 32 per step as in the paper. Not run here. An estimate, not a measurement:
#     at 13.7 ms per step (the performance target on one H100) BN-x5's 2.1M steps to the
#     paper's 72.2% take about 8 hours, the Inception arm's 31M steps about 5 days.
# Options: --workdir=DIR, --out=DIR. Rerunning resumes unfinished variants from checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
scale='' workdir='' out=''
for arg in "$@"; do
  case "$arg" in
    --scale=small|--scale=full) scale="${arg#*=}" ;;
    --workdir=*) workdir="${arg#*=}" ;;
    --out=*) out="${arg#*=}" ;;
    *) echo "Unknown option $arg; expected --scale=small|full, --workdir=DIR, --out=DIR." >&2
       exit 2 ;;
  esac
done
if [ -z "$scale" ]; then echo "Say --scale=small or --scale=full." >&2; exit 2; fi
workdir="${workdir:-runs/inception_$scale}" out="${out:-results/inception_$scale}"
option=''
[ "$scale" = small ] && option=',small'

source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
for variant in inception bn_baseline bn_x5 bn_x30 bn_x5_sigmoid inception_sigmoid; do
  echo "=== $variant ($scale) into $workdir/$variant"
  "$VENV_PYTHON" -m bn_repro.main --config="configs/inception.py:$variant$option" \
    --workdir="$workdir/$variant" 2>&1 | grep --line-buffered -E 'train.py|Error|FATAL' || {
      echo "The '$variant' run failed; rerun it without the filter to see the full log:" >&2
      echo "  $VENV_PYTHON -m bn_repro.main --config=configs/inception.py:$variant$option" \
        "--workdir=$workdir/$variant" >&2
      exit 1; }
done
"$VENV_PYTHON" scripts/plot_inception.py --workdir="$workdir" --out="$out" \
  --command="scripts/reproduce_inception.sh $*"
