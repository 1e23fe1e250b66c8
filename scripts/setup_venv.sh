#!/usr/bin/env bash
# Creates (or reuses) the virtualenv at $BN_REPRO_VENV (default: .venv in the repo) and
# installs requirements.txt and bn_repro itself into it, and the files named in
# $BN_REPRO_EXTRA_REQUIREMENTS (scripts/test.sh: requirements-test.txt). Prints nothing when
# the venv is current; sourced by the other scripts, which then use "$VENV_PYTHON".
#
# A venv is rebuilt from scratch when it is broken (no working python or pip) or was made
# by another interpreter than $PYTHON (default python3): its site-packages would not match.
# Only a folder that is a venv (it holds pyvenv.cfg) is ever deleted: any other non-empty
# folder at $BN_REPRO_VENV is refused with one line.
# Sourcing this file leaves the caller's shell options (set -e, -u, pipefail) as they were.

_bn_repro_setup_venv() {
  local repo_root venv python stamp want made_by current
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  venv="${BN_REPRO_VENV:-$repo_root/.venv}"
  python="${PYTHON:-python3}"
  stamp="$venv/.bn_repro_requirements.sha256"
  current="$("$python" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')" || {
    echo "FATAL: $python does not run; set PYTHON to a Python 3.11+ interpreter." >&2
    return 2
  }
  made_by="$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)' 2>/dev/null || true)"
  if [ -e "$venv" ] && { ! "$venv/bin/python" -m pip --version >/dev/null 2>&1 \
      || [ "$made_by" != "$current" ]; }; then
    if [ -f "$venv/pyvenv.cfg" ] && [ ! -L "$venv" ]; then
      echo "Rebuilding virtualenv $venv (broken, or made by another interpreter)" >&2
      rm -rf "$venv"
    elif [ ! -d "$venv" ] || [ -n "$(ls -A "$venv")" ]; then
      echo "FATAL: BN_REPRO_VENV=$venv exists and is not a virtualenv (no pyvenv.cfg); name a new folder, or move it away yourself." >&2
      return 2
    fi
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "Creating virtualenv $venv" >&2
    "$python" -m venv "$venv" || return 1
  fi
  want="$(cat "$repo_root/requirements.txt" "$repo_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing requirements into $venv (about 2 minutes on a fresh machine)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip 2>/dev/null || return 1
    "$venv/bin/python" -m pip install --quiet -r "$repo_root/requirements.txt" || return 1
    "$venv/bin/python" -m pip install --quiet --no-deps -e "$repo_root" || return 1
    echo "$want" > "$stamp"
  fi
  for extra in ${BN_REPRO_EXTRA_REQUIREMENTS:-}; do
    stamp="$venv/.bn_repro_$(basename "$extra").sha256"
    want="$(sha256sum < "$repo_root/$extra" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      echo "Installing $extra into $venv (about a minute on a fresh machine)" >&2
      "$venv/bin/python" -m pip install --quiet -r "$repo_root/$extra" || return 1
      echo "$want" > "$stamp"
    fi
  done
  VENV_PYTHON="$venv/bin/python"
  export VENV_PYTHON
}

# Status 2: the function printed its own FATAL line.
_bn_repro_setup_venv || { [ $? = 2 ] || echo "FATAL: could not set up the virtualenv" >&2; return 1 2>/dev/null || exit 1; }
