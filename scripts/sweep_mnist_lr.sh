#!/usr/bin/env bash
# The MNIST learning-rate sweep behind configs/mnist.py's learning rate:
# results/mnist/lr_sweep.{md,json}. About 7 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0
source scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec "$VENV_PYTHON" scripts/sweep_mnist_lr.py "$@"
