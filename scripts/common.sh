# Sourced by the scripts.

# `--help` or `-h` anywhere in the arguments: prints the comment block at the top of the
# script (up to `set -euo pipefail`).  Usage: help_requested "$0" "$@" && exit 0
help_requested() {
  local script="$1"; shift
  for arg in "$@"; do
    if [ "$arg" = --help ] || [ "$arg" = -h ]; then
      sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'
      return 0
    fi
  done
  return 1
}

# one_core_per_run JOBS: with several runs at a time, each XLA program gets one thread
# (two single-threaded runs beat one two-threaded run on these small models: study 9 took
# 36.8 instead of 71.4 minutes, results/studies/README.md; bn_repro/studies/common.py does
# the same for study workers).
one_core_per_run() {
  if [ "$1" -gt 1 ]; then
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false"
  fi
}

# parallel_runs JOBS: reads one run's arguments per line and runs `bash -c 'run_one ARGS'`,
# JOBS at a time. With several at a time and at least JOBS cores this process may use, each
# run is pinned to a core of its own (RUN_CORES[its xargs slot]; see run_training): unpinned,
# two single-threaded MNIST arms side by side ran 10,000 steps in 28.1-28.5 s, pinned in
# 24.2-25.3 s (24.5 s alone; benchmarks/README.md).
parallel_runs() {
  local jobs="$1"
  RUN_CORES="$("$VENV_PYTHON" -c 'import os; print(*sorted(os.sched_getaffinity(0)))' \
    2> /dev/null || true)"
  local cores=($RUN_CORES)
  if [ "$jobs" -gt 1 ] && [ "${#cores[@]}" -ge "$jobs" ] && command -v taskset > /dev/null; then
    export RUN_CORES
    xargs -P "$jobs" -L 1 --process-slot-var=RUN_SLOT bash -c 'run_one "$@"' _
  else
    xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _
  fi
}

# run_training LABEL ARGS...: `$VENV_PYTHON -m bn_repro.main ARGS` (pinned to its core when
# parallel_runs gave it a slot), showing only its progress, data-fetch and error lines, each
# prefixed [LABEL]; returns the trainer's exit status (3: the loss diverged). A failure
# without a FATAL line (a crash) names the command to rerun unfiltered.
run_training() {
  local label="$1"; shift
  local pin=() cores=(${RUN_CORES:-}) status shown
  if [ -n "${RUN_SLOT:-}" ]; then pin=(taskset -c "${cores[$RUN_SLOT]}"); fi
  shown="$(mktemp)"
  "${pin[@]}" "$VENV_PYTHON" -m bn_repro.main "$@" 2>&1 \
    | grep --line-buffered -iE 'train.py|Error|FATAL|MNIST' | sed -u "s|^|[$label] |" \
    | tee "$shown"
  status="${PIPESTATUS[0]}"
  if [ "$status" != 0 ] && ! grep -q FATAL "$shown"; then
    echo "The $label run failed (exit $status); rerun it without the filter to see the full log:" >&2
    echo "  $VENV_PYTHON -m bn_repro.main $*" >&2
  fi
  rm -f "$shown"
  return "$status"
}
export -f run_training

# check_writable FLAG DIR: DIR (created if needed) can be written, else one FATAL line naming
# FLAG=DIR and exit 2, before any training starts.
check_writable() {
  local probe
  if mkdir -p "$2" 2> /dev/null && probe="$(mktemp -p "$2" .bn_repro_write_check.XXXXXX 2> /dev/null)"; then
    rm -f "$probe"
  else
    echo "FATAL: $1=$2 cannot be written; choose a folder on a writable disk." >&2
    exit 2
  fi
}
