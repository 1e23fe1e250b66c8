#!/usr/bin/env bash
# Runs a normalization study on real data: creates the virtualenv, fetches the data,
# trains the study's arms and writes results/studies/NAME/ (figure.png, table.md, summary.json).
#
#   scripts/study.sh NAME        # NAME: a study in results/studies/README.md, or 'all'
#   scripts/study.sh NAME --workdir=DIR --out=DIR
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
"$VENV_PYTHON" scripts/study.py "$@" 2>&1 | grep --line-buffered -vE '^(W|I)[0-9]{4} |oneDNN|^Instructions for updating|^Use eager|tf.data.TFRecordDataset'
