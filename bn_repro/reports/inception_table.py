"""The paper's Figure 2 analog and its "steps to match Inception" table, over seeds.

Definitions (fixed with the proxy's design in `configs/inception.py`, before its runs):
- smoothed curve: at each evaluation, the mean test accuracy over a centred window of
  `WINDOW` evaluations (shrunk at the ends of the run);
- target: the minimum over the Inception seeds of the mean of their last `WINDOW`
  evaluations, the level every Inception run reaches (the paper's 72.2% plays that role);
- a run's steps to target: the step of the first evaluation where its smoothed curve
  reaches the target (None: never);
- per variant: the median over seeds of steps to target (a never counting as infinitely
  many steps, so the median is None when most seeds never get there), of the maximum and of
  the final accuracy (raw evaluations), and the ratio of Inception's median steps to the
  variant's (the paper's "x fewer steps");
- the validity gate: in every Inception seed the smoothed accuracy gains at most
  `GATE_MAX_GAIN` from the evaluation nearest half the run to the last (the Inception arm
  has reached its plateau, so the target is a converged baseline's accuracy). When it fails,
  the rows that compare with the target are not testable with the proxy
  (`bn_repro.reports.claims`).
"""

import json
import pathlib
from collections.abc import Sequence

import numpy as np

Curve = list[tuple[int, float]]  # (step, test accuracy) at each evaluation.

WINDOW = 5
# The paper's table (Sec. 4.2.2): steps to 72.2% and max top-1 accuracy on ImageNet.
PAPER = {
  'inception': ('31.0M', '72.2%'),
  'bn_baseline': ('13.3M', '72.7%'),
  'bn_x5': ('2.1M', '73.0%'),
  'bn_x30': ('2.7M', '74.8%'),
  'bn_x5_sigmoid': ('never', '69.8%'),
  'inception_sigmoid': ('never', 'chance (< 0.1%)'),
}
PAPER_SPEEDUP = {
  'inception': 1.0,
  'bn_baseline': 31.0 / 13.3,
  'bn_x5': 31.0 / 2.1,
  'bn_x30': 31.0 / 2.7,
}


GATE_MAX_GAIN = 0.01
GATE_RULE = (
  'in every Inception seed the smoothed test accuracy gains at most 1 point from the '
  'evaluation nearest step T/2 to the last (step T)'
)


def plateau_gain(curve: Curve) -> float:
  """Smoothed accuracy at the last evaluation minus at the evaluation nearest half the
  run's last step."""
  steps = np.array([s for s, _ in curve])
  values = smoothed(curve)
  half = int(np.argmin(np.abs(steps - steps[-1] / 2)))
  return float(values[-1] - values[half])


def validity_gate(inception_curves: Sequence[Curve]) -> dict[str, object]:
  """{'rule', 'per_seed_gain', 'passed'}: the gate over the Inception seeds' curves."""
  gains = [plateau_gain(curve) for curve in inception_curves]
  return {
    'rule': GATE_RULE,
    'per_seed_gain': gains,
    'passed': all(g <= GATE_MAX_GAIN for g in gains),
  }


def smoothed(curve: Curve) -> np.ndarray:
  """Mean accuracy over a centred window of `WINDOW` evaluations, `(len(curve),)`."""
  values = np.array([a for _, a in curve], np.float64)
  half = WINDOW // 2
  return np.array(
    [values[max(0, i - half) : i + half + 1].mean() for i in range(len(values))], np.float64
  )


def target_accuracy(inception_curves: Sequence[Curve]) -> float:
  """The minimum over Inception seeds of the mean of their last `WINDOW` evaluations."""
  return float(min(np.mean([a for _, a in curve[-WINDOW:]]) for curve in inception_curves))


def steps_to_target(curve: Curve, target: float) -> int | None:
  """The step of the first evaluation whose smoothed accuracy reaches `target`."""
  reached = np.flatnonzero(smoothed(curve) >= target)
  return int(curve[reached[0]][0]) if reached.size else None


def median_steps(steps: Sequence[int | None]) -> float | None:
  """The median over seeds, a None (never) counting as infinitely many steps."""
  median = float(np.median([np.inf if s is None else s for s in steps]))
  return None if np.isinf(median) else median


def summarize_variants(
  curves: dict[str, list[Curve]],
  wall_times: dict[str, list[float]],
  per_seed_extras: dict[str, dict[str, list[float]]] | None = None,
) -> tuple[float, dict[str, dict]]:
  """The target and each variant's summary.json record, for `curves[variant]` = one
  evaluation curve per seed, in the table's order ('inception' sets the target).

  `per_seed_extras[variant]`: more per-seed measures, {NAME: [value per seed]}, recorded as
  `NAME_per_seed` with their median as `NAME` (e.g. the full-test re-scoring).
  """
  target = target_accuracy(curves['inception'])
  variants = {}
  for name, per_seed in curves.items():
    steps = [steps_to_target(curve, target) for curve in per_seed]
    maxima = [max(a for _, a in curve) for curve in per_seed]
    finals = [curve[-1][1] for curve in per_seed]
    variants[name] = {
      'seeds': len(per_seed),
      'steps_to_target': median_steps(steps),
      'steps_to_target_per_seed': steps,
      'max_accuracy': float(np.median(maxima)),
      'max_accuracy_per_seed': maxima,
      'final_accuracy': float(np.median(finals)),
      'final_accuracy_per_seed': finals,
      'steps': per_seed[0][-1][0],
      'wall_time_s': float(np.median(wall_times[name])),
    }
    for measure, values in (per_seed_extras or {}).get(name, {}).items():
      variants[name][measure] = float(np.median(values))
      variants[name][f'{measure}_per_seed'] = list(values)
  inception_steps = variants['inception']['steps_to_target']
  for record in variants.values():
    steps = record['steps_to_target']
    record['speedup_over_inception'] = (
      inception_steps / steps if steps and inception_steps else None
    )
  return target, variants


def _band(per_seed: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  steps = np.array([s for s, _ in per_seed[0]])
  values = np.array([[a for _, a in curve] for curve in per_seed])
  return steps, np.median(values, axis=0), values.min(axis=0), values.max(axis=0)


def plot_figure2(curves: dict[str, list[Curve]], target: float, path: pathlib.Path) -> None:
  """Test accuracy vs steps: median over seeds with the seeds' range as a band; left the
  whole run and range, right a log-step axis zoomed onto the accuracies near the target."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12, 4.5))
  tops = []
  for name in curves:
    steps, median, low, high = _band(curves[name])
    tops.append(high.max())
    label = f'{name} ({len(curves[name])} seed{"s" if len(curves[name]) > 1 else ""})'
    for ax in (whole, zoom):
      (line,) = ax.plot(steps, median, label=label)
      ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
  for ax in (whole, zoom):
    ax.axhline(target, color='gray', linestyle=':', label=f'target {target:.4f}')
    ax.set_xlabel('training steps')
    ax.set_ylabel('test accuracy (top-1)')
  zoom.set_xscale('log')
  zoom.set_ylim(target - 0.12, max(tops) + 0.01)
  whole.set_title('whole run (median over seeds, band: min-max)')
  zoom.set_title('near the target (log steps)')
  whole.legend(fontsize=8)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _format_steps(steps: float | None) -> str:
  return 'never' if steps is None else f'{steps:,.0f}'


def _examples(count: int | None) -> str:
  return 'the whole test set' if count is None else f'{count:,} test images'


def _minutes(seconds: float | None) -> str:
  return 'not timed' if seconds is None else f'{seconds / 60:.1f} min'


def _optional(value: float | None) -> str:
  return '—' if value is None else f'{value:.4f}'


def _full_test(variant: dict) -> str:
  maxima = variant.get('max_accuracy_full_test_per_seed')
  if not maxima:
    return '— | —'
  return (
    f'{variant["max_accuracy_full_test"]:.4f} ({min(maxima):.4f}-{max(maxima):.4f}) | '
    f'{variant["final_accuracy_full_test"]:.4f}'
  )


def _table(record: dict) -> list[str]:
  lines = [
    '| variant | seeds | steps to target: median (per seed) | x fewer than Inception '
    '| max accuracy: median (range) | final accuracy: median '
    '| max, whole test set: median (range) | final, whole test set: median '
    '| training accuracy: median | paper: steps to 72.2% | paper: x fewer | paper: max |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for name, v in record['variants'].items():
    per_seed = ', '.join(_format_steps(s) for s in v['steps_to_target_per_seed'])
    speedup = v['speedup_over_inception']
    paper_steps, paper_max = PAPER[name]
    paper_speedup = PAPER_SPEEDUP.get(name)
    lines.append(
      f'| {name} | {v["seeds"]} | {_format_steps(v["steps_to_target"])} ({per_seed}) | '
      f'{"—" if speedup is None else f"{speedup:.1f}x"} | {v["max_accuracy"]:.4f} '
      f'({min(v["max_accuracy_per_seed"]):.4f}-{max(v["max_accuracy_per_seed"]):.4f}) | '
      f'{v["final_accuracy"]:.4f} | {_full_test(v)} | {_optional(v.get("train_accuracy"))} | '
      f'{paper_steps} | {"—" if paper_speedup is None else f"{paper_speedup:.1f}x"} | {paper_max} |'
    )
  return lines


def write_summary(
  curves: dict[str, list[Curve]],
  wall_times: dict[str, list[float]],
  run_info: dict,
  config_facts: dict,
  out_dir: pathlib.Path,
  command: str,
  end_to_end_s: float | None = None,
  per_seed_extras: dict[str, dict[str, list[float]]] | None = None,
  design: dict | None = None,
) -> dict[str, object]:
  """Writes summary.json and summary.md (the paper's table with ours beside it).

  `config_facts`: {'num_steps', 'eval_every', 'extra_eval_steps', 'eval_examples',
  'schedule'} of the runs. `end_to_end_s`: the whole command's wall time (None: not timed).
  `per_seed_extras`: as `summarize_variants`. `design`: the proxy's design record
  ('subset_size', 'num_steps_per_variant', 'calibration', 'pilot_bn_x30',
  'target_accuracy_full_test'), stored as is; the validity gate is computed here.
  """
  target, variants = summarize_variants(curves, wall_times, per_seed_extras)
  record = {
    'target_accuracy': target,
    **config_facts,
    **(design or {}),
    'validity_gate': validity_gate(curves['inception']),
    'variants': variants,
    'commit': run_info.get('commit'),
    'hardware': run_info.get('hardware'),
    'command': command,
    'end_to_end_wall_time_s': None if end_to_end_s is None else round(end_to_end_s, 1),
  }
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / 'summary.json').write_text(json.dumps(record, indent=2) + '\n')
  (out_dir / 'summary.md').write_text('\n'.join(_summary_lines(record, end_to_end_s)) + '\n')
  return record


def _summary_lines(record: dict, end_to_end_s: float | None) -> list[str]:
  gate = record['validity_gate']
  gains = ', '.join(f'{100 * g:+.2f}' for g in gate['per_seed_gain'])
  lines = [
    '# BN-Inception variants: steps to match the Inception arm',
    '',
    f'Command: `{record["command"]}`  ',
    f'Hardware: {record["hardware"]}; commit {record["commit"]}  ',
    f'Runs: {record["num_steps"]:,} steps (Inception); evaluation on '
    f'{_examples(record["eval_examples"])} every {record["eval_every"]} steps and at '
    f'{record["extra_eval_steps"]}  ',
    f'Schedule: {record["schedule"]}  ',
    f'Wall time of the whole command: {_minutes(end_to_end_s)}  ',
    f'Target: the minimum over Inception seeds of the mean of their last {WINDOW} evaluations, '
    f'{record["target_accuracy"]:.4f}; steps to target from curves smoothed over {WINDOW} '
    'evaluations (bn_repro/reports/inception_table.py)  ',
    f'Validity gate ({gate["rule"]}): gains {gains} points per seed: '
    f'**{"passed" if gate["passed"] else "failed"}**',
  ]
  if 'subset_size' in record:
    steps = ', '.join(f'{k} {v:,}' for k, v in record['num_steps_per_variant'].items())
    lines[-1] += '  '
    lines += [
      f'Training data: a class-balanced subset of {record["subset_size"]:,} images; '
      f'steps per variant: {steps}  ',
      f"Target re-scored on the whole test set (the lowest Inception seed's final "
      f'accuracy): {record["target_accuracy_full_test"]:.4f}  ',
      f'Calibration attempts (Inception runs before any BN arm): {_calibration(record)}  ',
      f'Pilot of BN-x30 at its rate: {_pilot(record["pilot_bn_x30"])}',
    ]
  return [*lines, '', *_table(record)]


def _calibration(record: dict) -> str:
  return '; '.join(
    f'T={a["num_steps"]:,}, base LR {a["base_learning_rate"]:g}, '
    f'{a.get("subset_size") or "all"} images: gains '
    f'{", ".join(f"{100 * g:+.2f}" for g in a["gain_points"])} points, training accuracy '
    f'{", ".join(f"{t:.3f}" for t in a["train_accuracy"])} '
    f'({"passed" if a["passed"] else "failed"}; '
    f'{_minutes(a.get("wall_time_s"))} of training)'
    for a in record['calibration']
  )


def _pilot(pilot: dict | None) -> str:
  if pilot is None:
    return 'not run'
  if pilot['diverged']:
    return f'{pilot["steps"]} steps: diverged (x30 not testable at this base rate)'
  return f'{pilot["steps"]} steps: trained (final training loss {pilot["final_loss"]:.3f})'
