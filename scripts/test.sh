#!/usr/bin/env bash
# Runs the test suite (and ruff) in the project's virtualenv, creating it if needed: both
# tiers, the unit tier and the end-to-end tier (subprocesses, kills, servers, studies; the
# modules tests/conftest.py names), as CI does.
#   scripts/test.sh --fast     # the unit tier alone
# Extra arguments go to pytest, e.g. scripts/test.sh -k layers. Slow tests: scripts/test.sh -m slow
# The test files run in parallel, one worker per core, each file's tests in one worker (they
# share module fixtures); scripts/test.sh -n 0 runs them in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0
# The reference libraries of the parity tests (torch, tf-keras, fvcore) come with the suite.
BN_REPRO_EXTRA_REQUIREMENTS=requirements-test.txt source scripts/setup_venv.sh
"$VENV_PYTHON" -m ruff check .
"$VENV_PYTHON" -m ruff format --check --quiet .
tier="not slow"
args=()
for arg in "$@"; do
  case "$arg" in
    --fast) tier="not slow and not e2e" ;;
    *) args+=("$arg") ;;
  esac
done
marker=(-m "$tier")
for arg in "${args[@]}"; do [ "$arg" = "-m" ] && marker=(); done
exec "$VENV_PYTHON" -m pytest -q -n auto --dist loadfile "${marker[@]}" "${args[@]}"
