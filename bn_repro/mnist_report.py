"""Figure 1 of the paper and its summary numbers, from the TensorBoard events of two runs.

Works on any finished (or partial) pair of workdirs: `scripts/plot_mnist.py`.
"""

import json
import pathlib
from collections.abc import Sequence

import numpy as np

Scalars = dict[str, list[tuple[int, float]]]

ACCURACY_THRESHOLDS = (0.95, 0.97, 0.98)
REPORT_STEPS = (10_000, 20_000, 30_000, 40_000, 50_000)
PERCENTILES = (15, 50, 85)


def last_hidden_layer(scalars: Scalars) -> int:
  """Index of the last hidden layer with logged percentiles."""
  layers = {
    int(tag.split('/')[1].removeprefix('layer')) for tag in scalars if tag.startswith('bn/layer')
  }
  if not layers:
    raise ValueError('No bn/layer*/ percentiles in these events.')
  return max(layers)


def percentile_drift(scalars: Scalars) -> dict[str, float]:
  """How far the fixed unit's input percentiles move over training.

  For the last hidden layer's tracked unit, each of its 15th, 50th and 85th
  percentile trajectories (over the test set, at every evaluation) spans a range
  max_t p(t) - min_t p(t), in units of the sigmoid's input. Returns the three
  ranges and their mean ('mean'), the number quoted as `percentile_drift`.
  """
  layer = last_hidden_layer(scalars)
  ranges = {}
  for p in PERCENTILES:
    values = [v for _, v in scalars[f'bn/layer{layer}/unit_p{p}']]
    ranges[f'p{p}'] = max(values) - min(values)
  ranges['mean'] = sum(ranges[f'p{p}'] for p in PERCENTILES) / len(PERCENTILES)
  return ranges


def seed_accuracies(scalars: Scalars) -> np.ndarray | None:
  """Test accuracy `(seeds, evaluations)` of a multi-seed run (`config.num_seeds`), or None."""
  tags = sorted(
    (t for t in scalars if t.startswith('eval_seed') and t.endswith('/accuracy')),
    key=lambda t: int(t.split('/')[0].removeprefix('eval_seed')),
  )
  if not tags:
    return None
  return np.array([[v for _, v in scalars[t]] for t in tags])


def summarize_arm(scalars: Scalars) -> dict[str, object]:
  """The summary.json entry of one arm; accuracies on the full test set.

  For a multi-seed run, `eval/accuracy` is the mean over the seeds, and the entry also
  holds the standard deviation over the seeds at the report steps and each seed's final
  accuracy. Percentiles follow the first seed.
  """
  accuracy = scalars['eval/accuracy']
  by_step = dict(accuracy)
  per_seed = seed_accuracies(scalars)
  seeds = {}
  if per_seed is not None:
    std = dict(zip([s for s, _ in accuracy], per_seed.std(axis=0, ddof=1), strict=True))
    seeds = {
      'num_seeds': len(per_seed),
      'test_accuracy_std_over_seeds_at': {str(s): std.get(s) for s in REPORT_STEPS},
      'final_test_accuracy_per_seed': per_seed[:, -1].tolist(),
    }
  return {
    **seeds,
    'steps': accuracy[-1][0],
    'final_test_accuracy': accuracy[-1][1],
    'test_accuracy_at': {str(s): by_step.get(s) for s in REPORT_STEPS},
    'steps_to_accuracy': {
      f'{t:g}': next((s for s, a in accuracy if a >= t), None) for t in ACCURACY_THRESHOLDS
    },
    'percentile_drift': percentile_drift(scalars)['mean'],
    'percentile_drift_by_percentile': percentile_drift(scalars),
    'train_wall_time_s': scalars['train/elapsed_s'][-1][1],
  }


def plot_figure1(arms: dict[str, Scalars], path: pathlib.Path) -> None:
  """Writes the paper's Figure 1 analog: (a) test accuracy, (b, c) percentile panels."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  styles = {'baseline': ('Without BN', 'tab:blue', '--'), 'bn': ('With BN', 'tab:red', '-')}
  for arm, scalars in arms.items():
    label, color, line = styles[arm]
    steps, values = zip(*scalars['eval/accuracy'], strict=True)
    per_seed = seed_accuracies(scalars)
    if per_seed is not None:
      label += f' (mean; band: min-max of {len(per_seed)} seeds)'
      axes[0].fill_between(steps, per_seed.min(0), per_seed.max(0), color=color, alpha=0.2)
    axes[0].plot(steps, values, line, color=color, label=label)
  axes[0].set_ylim(0.9, 1.0)
  axes[0].set_xlabel('training steps')
  axes[0].set_title('(a) test accuracy')
  axes[0].legend(loc='lower right')
  for ax, (arm, scalars) in zip(axes[1:], arms.items(), strict=True):
    layer = last_hidden_layer(scalars)
    for p in PERCENTILES:
      steps, values = zip(*scalars[f'bn/layer{layer}/unit_p{p}'], strict=True)
      ax.plot(steps, values, color=styles[arm][1], linewidth=1.5 if p == 50 else 1.0)
    ax.set_xlabel('training steps')
    ax.set_title(f'({"bc"[list(arms).index(arm)]}) {styles[arm][0]}: sigmoid input, 15/50/85th pct')
  lows = [ax.get_ylim()[0] for ax in axes[1:]]
  highs = [ax.get_ylim()[1] for ax in axes[1:]]
  for ax in axes[1:]:
    ax.set_ylim(min(lows), max(highs))
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


# config.input.preprocess -> how the images were fed (bn_repro.data.PREPROCESSORS).
PREPROCESSING = {'binary': 'binarized at 1/2', 'grayscale': 'intensities scaled to [0, 1]'}


def mnist_data_description(preprocess: str) -> str:
  """The data line of a summary, naming the preprocessing the runs used."""
  return f'real MNIST (60k train, 10k test), {PREPROCESSING.get(preprocess, preprocess)}'


def write_summary(
  arms: dict[str, Scalars],
  run_infos: dict[str, dict],
  out_dir: pathlib.Path,
  command: str,
  end_to_end_s: float | None = None,
  preprocess: str = 'binary',
) -> dict[str, object]:
  """Writes summary.json and summary.md into `out_dir`; returns the JSON record.

  `end_to_end_s` is the wall time of the whole command (installation and data
  fetch included), when the caller measured it.
  """
  summaries = {arm: summarize_arm(scalars) for arm, scalars in arms.items()}
  info = next(iter(run_infos.values()))
  record = {
    'arms': summaries,
    'wall_time_s': round(sum(s['train_wall_time_s'] for s in summaries.values()), 1),
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


def _fmt(value: object, pattern: str = '{:.4f}') -> str:
  return '—' if value is None else pattern.format(value)


def _summary_markdown(record: dict) -> str:
  arms = record['arms']
  names = {'baseline': 'Without BN', 'bn': 'With BN'}
  header = '| | ' + ' | '.join(names[a] for a in arms) + ' |'
  rule = '|---|' + '---|' * len(arms)

  def row(label: str, values: Sequence[str]) -> str:
    return f'| {label} | ' + ' | '.join(values) + ' |'

  lines = [
    '# MNIST, paper Figure 1: summary',
    '',
    f'Command: `{record["command"]}`  ',
    f'Hardware: {record["hardware"]}; commit {record["commit"]}  ',
    f'Data: {record["data"]}; steps: {next(iter(arms.values()))["steps"]} per arm  ',
    f'Training wall time, both arms (after installation and data fetch): '
    f'{record["wall_time_s"]:.0f} s; the whole command: '
    f'{_fmt(record["end_to_end_wall_time_s"], "{:.0f} s")}',
    '',
    header,
    rule,
    row('final test accuracy', [_fmt(arms[a]['final_test_accuracy']) for a in arms]),
  ]
  for step in REPORT_STEPS:

    def cell(arm: dict, step: int = step) -> str:
      mean = _fmt(arm['test_accuracy_at'][str(step)])
      std = arm.get('test_accuracy_std_over_seeds_at', {}).get(str(step))
      return mean if std is None else f'{mean} ± {std:.4f}'

    lines.append(row(f'test accuracy at {step // 1000}k steps', [cell(arms[a]) for a in arms]))
  for t in ACCURACY_THRESHOLDS:
    lines.append(
      row(
        f'steps to {t:.0%} test accuracy',
        [_fmt(arms[a]['steps_to_accuracy'][f'{t:g}'], '{:,}') for a in arms],
      )
    )
  lines.append(
    row(
      'percentile drift (mean of 15/50/85th ranges)',
      [_fmt(arms[a]['percentile_drift'], '{:.3f}') for a in arms],
    )
  )
  for p in PERCENTILES:
    lines.append(
      row(
        f'  range of the {p}th percentile',
        [_fmt(arms[a]['percentile_drift_by_percentile'][f'p{p}'], '{:.3f}') for a in arms],
      )
    )
  num_seeds = next(iter(arms.values())).get('num_seeds')
  if num_seeds:
    lines += [
      '',
      f'{num_seeds} seeds per arm, trained side by side (`config.num_seeds`): accuracies are',
      'the mean over the seeds ± their standard deviation; steps-to-accuracy use the mean',
      'curve; the percentiles follow the first seed.',
    ]
  lines += [
    '',
    'Percentile drift: for one fixed unit (config `model.typical_unit`) of the last hidden',
    'layer, the 15th, 50th and 85th percentiles of its input to the sigmoid over the test',
    'set are recorded at every evaluation; each trajectory spans max - min over training;',
    'the drift is the mean of the three spans, in units of the sigmoid input.',
    '',
  ]
  return '\n'.join(lines)
