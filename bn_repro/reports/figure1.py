"""Figure 1 of the paper and its summary numbers, from the TensorBoard events of two runs.

Works on any finished (or partial) pair of workdirs: `scripts/plot_mnist.py`.
"""

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from bn_repro.analysis import unit_drift
from bn_repro.reports.formatting import fmt, mnist_data_description
from bn_repro.training.seeds import SEED_TAG

Scalars = dict[str, list[tuple[int, float]]]

ACCURACY_THRESHOLDS = (0.95, 0.97, 0.98)
REPORT_STEPS = (10_000, 20_000, 30_000, 40_000, 50_000)
PERCENTILES = (15, 50, 85)
DRIFT_WINDOW = 5  # Evaluations averaged at each end of training (bn_repro.analysis.unit_drift).


def last_hidden_layer(scalars: Scalars) -> int:
  """Index of the last hidden layer with logged percentiles."""
  layers = {
    int(tag.split('/')[1].removeprefix('layer'))
    for tag in scalars
    if tag.startswith('preactivation/layer')
  }
  if not layers:
    raise ValueError('No preactivation/layer*/ percentiles in these events.')
  return max(layers)


def typical_unit_ranges(scalars: Scalars) -> dict[str, float]:
  """How far the one tracked unit's input percentiles move (the paper's single-unit view).

  For the last hidden layer's tracked unit (`eval.typical_unit`), each of its 15th, 50th
  and 85th percentile trajectories spans max_t p(t) - min_t p(t), in units of the sigmoid's
  input: evaluation-to-evaluation jitter counts as movement here. Returns the three ranges
  and their mean ('mean').
  """
  layer = last_hidden_layer(scalars)
  ranges = {}
  for p in PERCENTILES:
    values = [v for _, v in scalars[f'preactivation/layer{layer}/unit_p{p}']]
    ranges[f'p{p}'] = max(values) - min(values)
  ranges['mean'] = sum(ranges[f'p{p}'] for p in PERCENTILES) / len(PERCENTILES)
  return ranges


def all_unit_drift(records: list[dict], window: int = DRIFT_WINDOW) -> dict[str, dict] | None:
  """Location drift, spread drift and jitter of every unit of the last hidden layer in every
  seed (moving-average statistics; `bn_repro.analysis.unit_drift`), as median and quartiles; None
  without records (runs that did not log `eval.unit_percentiles`) or with fewer than 2 x
  `window` evaluations (too short a run for an early and a late window)."""
  if not any(r['statistics'] == 'moving_average' for r in records):
    return None
  trajectories = unit_drift.last_layer_trajectories(records)
  if len(trajectories[0]['steps']) < 2 * window:
    return None
  per_seed = [
    unit_drift.drift_statistics(t['p15'], t['p50'], t['p85'], window) for t in trajectories
  ]
  return {
    name: unit_drift.summarize([d[name] for d in per_seed])
    for name in ('location_drift', 'spread_drift', 'jitter')
  }


def seed_accuracies(scalars: Scalars) -> np.ndarray | None:
  """Test accuracy `(seeds, evaluations)` of a multi-seed run (`config.num_seeds`), or None."""
  seeds = {
    int(m['seed']): tag
    for tag in scalars
    if (m := SEED_TAG.match(tag)) and (m['prefix'], m['name']) == ('eval', 'accuracy')
  }
  if not seeds:
    return None
  return np.array([[v for _, v in scalars[seeds[i]]] for i in sorted(seeds)])


def _first_step(
  accuracy: list[tuple[int, float]], values: np.ndarray, threshold: float
) -> int | None:
  """The first evaluation step at which one seed's `values` reach `threshold`, or None."""
  return next((s for (s, _), v in zip(accuracy, values, strict=True) if v >= threshold), None)


def summarize_arm(scalars: Scalars, records: list[dict] | None = None) -> dict[str, object]:
  """The summary.json entry of one arm; accuracies on the full test set.

  For a multi-seed run, `eval/accuracy` is the mean over the seeds, and the entry also
  holds the standard deviation over the seeds at the report steps, each seed's accuracy at
  them, its steps to each accuracy threshold (for paired tests over seeds, which share
  their data order with the other arm's seeds) and its final accuracy. `percentile_drift`
  is the median over all units and seeds of the last hidden layer's location drift
  (`all_unit_drift`; None without unit records), `drift` all three statistics with
  quartiles; `typical_unit_ranges` is the single tracked unit's view (first seed).
  """
  accuracy = scalars['eval/accuracy']
  by_step = dict(accuracy)
  per_seed = seed_accuracies(scalars)
  seeds = {}
  if per_seed is not None:
    std = dict(zip([s for s, _ in accuracy], per_seed.std(axis=0, ddof=1), strict=True))
    column = {s: i for i, (s, _) in enumerate(accuracy)}
    seeds = {
      'num_seeds': len(per_seed),
      'test_accuracy_std_over_seeds_at': {str(s): std.get(s) for s in REPORT_STEPS},
      'test_accuracy_at_per_seed': {
        str(s): per_seed[:, column[s]].tolist() for s in REPORT_STEPS if s in column
      },
      'steps_to_accuracy_per_seed': {
        f'{t:g}': [_first_step(accuracy, row, t) for row in per_seed] for t in ACCURACY_THRESHOLDS
      },
      'final_test_accuracy_per_seed': per_seed[:, -1].tolist(),
    }
  drift = all_unit_drift(records or [])
  return {
    **seeds,
    'steps': accuracy[-1][0],
    'final_test_accuracy': accuracy[-1][1],
    'test_accuracy_at': {str(s): by_step.get(s) for s in REPORT_STEPS},
    'steps_to_accuracy': {
      f'{t:g}': next((s for s, a in accuracy if a >= t), None) for t in ACCURACY_THRESHOLDS
    },
    'percentile_drift': drift['location_drift']['median'] if drift else None,
    'drift': drift,
    'typical_unit_ranges': typical_unit_ranges(scalars),
    'train_wall_time_s': scalars['train/elapsed_s'][-1][1],
  }


def plot_figure1(settings: dict[str, dict], path: pathlib.Path) -> None:
  """The paper's Figure 1 analog, one row per setting: (a) test accuracy (mean and min-max
  over seeds), (b, c) the last hidden layer's 15/50/85th sigmoid-input percentiles: the
  median over all units and seeds, with the units' interquartile band (the tracked single
  unit's curves where no unit records exist).

  `settings`: {name: {'learning_rate', 'init_std', 'arms': {arm: (scalars, records)}}}.
  """
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, grid = plt.subplots(len(settings), 3, figsize=(13, 3.8 * len(settings)), squeeze=False)
  styles = {'baseline': ('Without BN', 'tab:blue', '--'), 'bn': ('With BN', 'tab:red', '-')}
  for axes, (name, setting) in zip(grid, settings.items(), strict=True):
    where = f'lr {setting["learning_rate"]:g}, init std {setting["init_std"]:g}'
    for panel, (arm, (scalars, records)) in enumerate(setting['arms'].items(), start=1):
      label, color, line = styles[arm]
      steps, values = zip(*scalars['eval/accuracy'], strict=True)
      per_seed = seed_accuracies(scalars)
      if per_seed is not None:
        label += f' (mean; band: min-max of {len(per_seed)} seeds)'
        axes[0].fill_between(steps, per_seed.min(0), per_seed.max(0), color=color, alpha=0.2)
      axes[0].plot(steps, values, line, color=color, label=label)
      if any(r['statistics'] == 'moving_average' for r in records):
        runs = unit_drift.last_layer_trajectories(records)
        plot_unit_percentiles(axes[panel], runs, color)
        drawn = (
          f"each unit's 15/50/85th pct: median over {runs[0]['p50'].shape[1]} units x "
          f"{len(runs)} seeds,\nband: the units' interquartile range"
        )
      else:
        _plot_tracked_unit(axes[panel], scalars, color)
        drawn = 'one tracked unit: 15/50/85th pct'
      axes[panel].set_xlabel('training steps')
      axes[panel].set_title(
        f'({"abc"[panel]}) {styles[arm][0]}, {where}, last layer sigmoid input:\n{drawn}',
        fontsize=8,
      )
    axes[0].set_ylim(0.9, 1.0)
    axes[0].set_xlabel('training steps')
    axes[0].set_title(f'(a) test accuracy, {where} ({name})', fontsize=9)
    axes[0].legend(loc='lower right', fontsize=8)
    lows = [ax.get_ylim()[0] for ax in axes[1:]]
    highs = [ax.get_ylim()[1] for ax in axes[1:]]
    for ax in axes[1:]:
      ax.set_ylim(min(lows), max(highs))
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_tracked_unit(ax, scalars: Scalars, color: str) -> None:
  """The single tracked unit's percentiles (runs without unit records)."""
  layer = last_hidden_layer(scalars)
  for p in PERCENTILES:
    steps, values = zip(*scalars[f'preactivation/layer{layer}/unit_p{p}'], strict=True)
    ax.plot(steps, values, color=color, linewidth=1.5 if p == 50 else 1.0)


def plot_unit_percentiles(ax, runs: list[dict[str, np.ndarray]], color: str) -> None:
  """The 15/50/85th percentile trajectories of a layer's units over the seeds' `runs`
  (`unit_drift.last_layer_trajectories`): the median over all units and seeds, with the
  interquartile band."""
  for p in PERCENTILES:
    values = np.concatenate([t[f'p{p}'] for t in runs], axis=1)  # (evaluations, seeds x units)
    low, median, high = np.percentile(values, (25, 50, 75), axis=1)
    ax.plot(runs[0]['steps'], median, color=color, linewidth=1.5 if p == 50 else 1.0)
    ax.fill_between(runs[0]['steps'], low, high, color=color, alpha=0.15)


def write_summary(
  settings: dict[str, dict],
  run_infos: dict[str, dict],
  out_dir: pathlib.Path,
  command: str,
  end_to_end_s: float | None = None,
  preprocess: str = 'binary',
) -> dict[str, object]:
  """Writes summary.json and summary.md into `out_dir`; returns the JSON record.

  `settings` as for `plot_figure1`; the first is the primary one, whose arms are also the
  record's top-level `arms` (the keys of earlier summaries). `end_to_end_s` is the wall time
  of the whole command (installation and data fetch included), when the caller measured it.
  """
  summarized = {
    name: {
      'learning_rate': setting['learning_rate'],
      'init_std': setting['init_std'],
      'arms': {arm: summarize_arm(*run) for arm, run in setting['arms'].items()},
    }
    for name, setting in settings.items()
  }
  for setting in summarized.values():
    setting['seeds'] = next(iter(setting['arms'].values())).get('num_seeds', 1)
  info = next(iter(run_infos.values()))
  all_arms = [a for setting in summarized.values() for a in setting['arms'].values()]
  record = {
    'arms': next(iter(summarized.values()))['arms'],
    'settings': summarized,
    'wall_time_s': round(sum(a['train_wall_time_s'] for a in all_arms), 1),
    'end_to_end_wall_time_s': None if end_to_end_s is None else round(end_to_end_s, 1),
    'commit': info.get('commit'),
    'hardware': info.get('hardware'),
    'data': mnist_data_description(preprocess),
    'command': command,
  }
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / 'summary.json').write_text(json.dumps(record, indent=2) + '\n')
  (out_dir / 'summary.md').write_text(_summary_markdown(record))
  return record


def _arms_table(arms: dict) -> list[str]:
  names = {'baseline': 'Without BN', 'bn': 'With BN'}

  def row(label: str, values: Sequence[str]) -> str:
    return f'| {label} | ' + ' | '.join(values) + ' |'

  lines = [
    '| | ' + ' | '.join(names[a] for a in arms) + ' |',
    '|---|' + '---|' * len(arms),
    row('final test accuracy', [_final_accuracy(arms[a]) for a in arms]),
  ]
  for step in REPORT_STEPS:
    if all(arm['test_accuracy_at'][str(step)] is None for arm in arms.values()):
      continue  # A shorter run (--quick): no empty rows.

    def cell(arm: dict, step: int = step) -> str:
      mean = fmt(arm['test_accuracy_at'][str(step)])
      std = arm.get('test_accuracy_std_over_seeds_at', {}).get(str(step))
      return mean if std is None else f'{mean} ± {std:.4f}'

    lines.append(row(f'test accuracy at {step // 1000}k steps', [cell(arms[a]) for a in arms]))
  for t in ACCURACY_THRESHOLDS:
    lines.append(
      row(
        f'steps to {t:.0%} test accuracy',
        [fmt(arms[a]['steps_to_accuracy'][f'{t:g}'], '{:,}') for a in arms],
      )
    )
  for name, label in (
    ('location_drift', 'location drift, all units (median [IQR])'),
    ('spread_drift', 'spread drift, all units'),
    ('jitter', 'jitter, all units'),
  ):

    def drift(arm: dict, name: str = name) -> str:
      d = arm['drift'] and arm['drift'][name]
      return '—' if not d else f'{d["median"]:.3f} [{d["q25"]:.3f}, {d["q75"]:.3f}]'

    lines.append(row(label, [drift(arms[a]) for a in arms]))
  lines.append(
    row(
      "tracked unit: mean range of its 15/50/85th percentiles (the first seed's)",
      [fmt(arms[a]['typical_unit_ranges']['mean'], '{:.3f}') for a in arms],
    )
  )
  return lines


def _final_accuracy(arm: dict) -> str:
  """The final test accuracy, seed mean ± the seeds' standard deviation (ddof 1, as at the
  report steps) where there are several seeds."""
  per_seed = arm.get('final_test_accuracy_per_seed') or []
  mean = fmt(arm['final_test_accuracy'])
  return mean if len(per_seed) < 2 else f'{mean} ± {np.std(per_seed, ddof=1):.4f}'


def _summary_markdown(record: dict) -> str:
  first = next(iter(record['arms'].values()))
  lines = [
    '# MNIST, paper Figure 1: summary',
    '',
    f'Command: `{record["command"]}`  ',
    f'Hardware: {record["hardware"]}; commit {record["commit"]}  ',
    f'Data: {record["data"]}; steps: {first["steps"]} per arm  ',
    f'Training time summed over the arms (each arm from its start; arms may run side by '
    f'side): {record["wall_time_s"]:.0f} s; the whole command, installation and data fetch '
    'included: '
    f'{fmt(record["end_to_end_wall_time_s"], "{:.0f} s")}',
  ]
  for name, setting in record['settings'].items():
    lines += [
      '',
      f'## {name}: learning rate {setting["learning_rate"]:g}, init std '
      f'{setting["init_std"]:g}, {setting["seeds"]} seed(s) per arm',
      '',
      *_arms_table(setting['arms']),
    ]
  lines += [
    '',
    'Seeds are trained side by side (`config.num_seeds`): accuracies are the mean over the',
    'seeds ± their standard deviation; steps-to-accuracy use the mean curve.',
    '',
    'Drift (`bn_repro/analysis/unit_drift.py`), for every unit of the last hidden layer in every',
    'seed, from the 15th, 50th and 85th percentiles of its sigmoid input over the test set at each',
    'evaluation (moving-average statistics): location drift = |late - early| median, early',
    f'and late each the mean over {DRIFT_WINDOW} evaluations at that end of training; spread',
    'drift = |log| of the late/early ratio of the 85th-15th width; jitter = the standard',
    'deviation of consecutive median differences over the second half of training. Medians',
    'and interquartile ranges over units and seeds. `percentile_drift` in summary.json is the',
    "median location drift. The tracked unit's mean range (max - min over training, jitter",
    'included) is the single-unit number of earlier summaries.',
    '',
  ]
  return '\n'.join(lines)
