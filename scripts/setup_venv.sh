#!/usr/bin/env bash
# Creates (or reuses) the virtualenv at $BN_REPRO_VENV (default: .venv in the repo) and
# installs requirements.txt and bn_repro itself into it. Prints nothing on success;
# sourced by the other scripts, which then use "$VENV_PYTHON".
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BN_REPRO_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.bn_repro_requirements.sha256"
want="$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements into $VENV (about a minute)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$REPO_ROOT/requirements.txt"
  "$VENV/bin/python" -m pip install --quiet --no-deps -e "$REPO_ROOT"
  echo "$want" > "$STAMP"
fi
VENV_PYTHON="$VENV/bin/python"
export VENV_PYTHON
