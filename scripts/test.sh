#!/usr/bin/env bash
# Runs the test suite (and ruff) in the project's virtualenv, creating it if needed.
# Extra arguments go to pytest, e.g. scripts/test.sh -k layers. Slow tests: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0
source scripts/setup_venv.sh
"$VENV_PYTHON" -m ruff check .
"$VENV_PYTHON" -m ruff format --check --quiet .
marker=(-m "not slow")
for arg in "$@"; do [ "$arg" = "-m" ] && marker=(); done
exec "$VENV_PYTHON" -m pytest -q "${marker[@]}" "$@"
