#!/usr/bin/env bash
# The device check: BN-Inception steps at 224 (batch 32 and 128, float32 and bfloat16) against
# the 13.7 ms target with peak memory, the ImageNet input pipeline's JPEG decodes, Figure 1's
# 50k-step arm time, and a 200-step BN-Inception run whose loss must fall, as one table
# (benchmarks/device_check.py; SYNTHETIC data, timing only). Under 8 minutes on a GPU.
#
#   benchmarks/device_check.sh          # on a machine with an accelerator
#   benchmarks/device_check.sh --cpu    # the CPU path at toy sizes (a check that it runs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0
if [ -x .venv/bin/python ] || [ -z "${DEVICE_PYTHON:-}" ]; then source scripts/setup_venv.sh; fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec "${DEVICE_PYTHON:-$VENV_PYTHON}" -m benchmarks.device_check "$@"
