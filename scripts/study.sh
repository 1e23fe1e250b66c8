#!/usr/bin/env bash
# Runs a normalization study on real data: creates the virtualenv, fetches the data,
# trains the study's arms and writes results/studies/NAME/ (figure.png, table.md, summary.json).
#
#   scripts/study.sh NAME        # NAME: a study in results/studies/README.md, or 'all'
#   scripts/study.sh NAME --workdir=DIR --out=DIR --jobs=N
# Options: --workdir=DIR (training runs, default runs/studies; finished arms are reused and
# interrupted ones resume), --out=DIR (default results/studies: the committed results there
# are replaced; give a folder outside the repository to keep them), --jobs=N arms at a time
# (default: one per core this process may use, single-threaded), --smoke (tiny runs: a
# check, not a result; into runs/smoke/, never into results/), --overwrite (delete the
# arms' runs and train them again, e.g. after a change of their state's structure), --redraw
# (the figure and table again from the study's summary.json, training nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0
"${PYTHON:-python3}" bn_repro/studies/__init__.py "$@"  # A study's name, before any venv work.
source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
"$VENV_PYTHON" scripts/study.py "$@" 2>&1 | grep --line-buffered -vE '^(W|I)[0-9]{4} |oneDNN|^Instructions for updating|^Use eager|tf.data.TFRecordDataset'
