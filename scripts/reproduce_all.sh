#!/usr/bin/env bash
# Runs every result this machine can produce, stage by stage, into results/, then writes
# results/REPORT.md (the paper's claims, ours and a verdict; bn_repro/reports/paper_report.py).
#
#   scripts/reproduce_all.sh                      # every stage not yet done, in order
#   scripts/reproduce_all.sh --stages=figure1,report   # only these (comma-separated)
#   scripts/reproduce_all.sh --redo               # redo the chosen stages even if done
# Stages: figure1 (scripts/reproduce_mnist.sh), regime_map (study fig1_regimes),
# inception_proxy (scripts/reproduce_inception.sh --scale=small), ics_probes (studies
# noisy_bn, ics_measure, loss_landscape), studies (studies 1-8), family (studies 13-16,
# small_batches, non_iid_batches, precise_statistics, train_test_consistency: BN's successors), report (the rules'
# provenance from git and results/REPORT.md; always rerun). Resumable: a finished stage
# leaves runs/reproduce_all/STAGE.done (with its wall time) and is skipped by a rerun; an
# interrupted stage resumes its own finished and interrupted runs. One progress line per
# stage, with the time left by the times the committed summaries record for the stages to
# go (REPORT.md's stage table, beside each stage's arithmetic floor on 2 cores). The
# committed results are replaced stage by stage.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
help_requested "$0" "$@" && exit 0

all_stages=(figure1 regime_map inception_proxy ics_probes studies family report)
declare -A minutes=([report]=1)
stages=("${all_stages[@]}") redo=0
for arg in "$@"; do
  case "$arg" in
    --stages=*) IFS=, read -r -a stages <<< "${arg#*=}" ;;
    --redo) redo=1 ;;
    *) echo "Unknown argument $arg; see $0 --help" >&2; exit 2 ;;
  esac
done
for stage in "${stages[@]}"; do
  [[ " ${all_stages[*]} " == *" $stage "* ]] || { echo "Unknown stage '$stage'; expected one of: ${all_stages[*]}" >&2; exit 2; }
done
# Each stage's time as its committed summaries record it (0: none recorded).
while read -r stage recorded; do minutes[$stage]=$recorded; done \
  < <("${PYTHON:-python3}" bn_repro/reports/stages.py results 2> /dev/null)

# run_stage STAGE: runs every command of the stage, stopping at the first that fails (each
# command checked explicitly: this runs under `if !`, where bash ignores `set -e`).
run_stage() {
  local study names
  case "$1" in
    figure1) scripts/reproduce_mnist.sh || return ;;
    inception_proxy) scripts/reproduce_inception.sh --scale=small || return ;;
    regime_map | ics_probes | studies | family)  # Their studies, from the registry.
      names=$("${PYTHON:-python3}" bn_repro/studies/__init__.py --stage="$1") || return
      [ -n "$names" ] || { echo "No study is registered for stage $1." >&2; return 1; }
      for study in $names; do
        scripts/study.sh "$study" || return
      done ;;
    report)
      source scripts/setup_venv.sh || return
      "$VENV_PYTHON" -m bn_repro.reports.provenance results || return
      "$VENV_PYTHON" -m bn_repro.reports.paper_report results || return ;;
  esac
}

state=runs/reproduce_all
mkdir -p "$state"
started=$(date +%s)
for i in "${!stages[@]}"; do
  stage="${stages[$i]}"
  left=0
  for later in "${stages[@]:$i}"; do left=$((left + ${minutes[$later]:-0})); done
  if [ "$redo" = 0 ] && [ "$stage" != report ] && [ -f "$state/$stage.done" ]; then
    echo "== [$((i + 1))/${#stages[@]}] $stage: done before ($(cat "$state/$stage.done")); skipped"
    continue
  fi
  recorded="last recorded ${minutes[$stage]:-0} min"
  [ "${minutes[$stage]:-0}" != 0 ] || recorded="no time recorded yet"
  echo "== [$((i + 1))/${#stages[@]}] $stage ($recorded; about $left min left by the recorded times); log: $state/$stage.log"
  t0=$(date +%s)
  if ! run_stage "$stage" > "$state/$stage.log" 2>&1; then
    echo "Stage $stage failed; its log: $state/$stage.log (rerun this script to resume)." >&2
    exit 1
  fi
  seconds=$(( $(date +%s) - t0 ))
  echo "$seconds s at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$state/$stage.done"
  echo "   $stage done in $((seconds / 60)) min $((seconds % 60)) s"
done
echo "All stages done in $(( ($(date +%s) - started) / 60 )) min; the report: results/REPORT.md"
