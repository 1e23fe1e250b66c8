"""Study 7: weight normalization (Salimans & Kingma 2016) against BN.

None vs BN vs WN (w = s v/||v||, data-dependent init) vs WN + mean-only BN, on
the MNIST MLP and on the small BN-Inception proxy (the `bn_baseline` config, LRN and
dropout 0.4 included, with its normalization swapped, so the no-normalization arm is
Inception itself): test accuracy against steps, and wall time per step. WN's
data-dependent initialization sees the first 256 training examples
(`bn_repro.training.state.WN_INIT_EXAMPLES`), with BN layers normalizing by that batch.
Plain SGD does not share WN's invariance to the learning rate (the WN paper trains with Adam): the
gradient of v is scaled by s/||v||, so WN's effective rate differs from the others'.
Every arm therefore runs at two learning rates (the config's, and a smaller one) and
the better one (the higher seed-mean final accuracy) is compared. Each setting trains
`common.NUM_SEEDS` seeds (the MLP's side by side, the proxy's as separate runs): accuracies
are per seed (mean and range), steps to the threshold are the seed-mean curve's.
"""

import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import (
  NUM_SEEDS,
  Arm,
  SeededArm,
  StudyContext,
  seed_arms,
  train_arms,
)

NORMALIZATIONS = {  # label -> model.norm.kind
  'none': 'none',
  'BN': 'batch',
  'WN': 'weight',
  'WN + mean-only BN': 'weight_mean_only_batch',
}
MODEL_NAMES = {'mlp': 'MLP', 'inception': 'Inception proxy'}
# model -> (config, steps, learning rates, evaluation period, accuracy threshold).
MODELS = {
  'mlp': ('configs/mnist.py:bn', 30_000, (2.0, 0.5), 500, 0.97),
  'inception': ('configs/inception.py:bn_baseline,small', 1_000, (0.01, 0.0025), 200, 0.75),
}


_TAG = 'eval/accuracy'


def _mean_final(seeds: SeededArm) -> float:
  """The seed-mean final test accuracy; a diverged seed counts as 0."""
  return float(np.mean([a or 0.0 for a in seeds.finals('eval/accuracy')]))


def _mean_curve(seeds: SeededArm) -> list[tuple[int, float]]:
  """The seed-mean test-accuracy curve (at the steps every seed evaluated)."""
  curves = [dict(c) for c in seeds.curves('eval/accuracy')]
  steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
  return [(step, float(np.mean([c[step] for c in curves]))) for step in steps]


def arm_configs(
  context: StudyContext,
) -> tuple[dict[str, ml_collections.ConfigDict], dict[tuple[str, str, float], str]]:
  """The arms `{name: config}` and each setting's name `{(model, label, rate): name}`."""
  configs, names = {}, {}
  for model, (spec, steps, learning_rates, eval_every, _) in MODELS.items():
    for label, normalization in NORMALIZATIONS.items():
      for rate in learning_rates:
        config = context.config(
          spec,
          num_steps=context.steps(steps),
          eval_every=context.steps(eval_every),
          checkpoint_every=context.steps(steps),
          model__norm__kind=normalization,
          optimizer__learning_rate=rate,
        )
        names[model, label, rate] = f'{model}_{normalization}_lr{rate:g}'
        configs.update(seed_arms(names[model, label, rate], config, side_by_side=model == 'mlp'))
  return configs, names


def measure(trained: dict[str, Arm], names: dict[tuple[str, str, float], str]) -> dict[str, object]:
  """The study's record: per model and normalization, its final accuracy at each rate
  ('div@N' where a seed diverged, with how many did), and at the better rate its best
  accuracy per seed, the seed-mean curve, the steps to the threshold and ms per step."""
  rates = {}  # (model, label) -> {rate: SeededArm}
  for (model, label, rate), name in names.items():
    rates.setdefault((model, label), {})[rate] = SeededArm.collect(trained, name)
  rows = []
  for (model, label), tried in rates.items():
    best_rate = max(tried, key=lambda r: _mean_final(tried[r]))
    seeds = tried[best_rate]
    seconds = [a.seconds_per_step() for a in seeds.arms if a.diverged_at is None]
    seconds = [t for t in seconds if t is not None]
    curve = _mean_curve(seeds)
    best_accuracy = [max(v for _, v in c) for c in seeds.curves('eval/accuracy')]
    rows.append(
      {
        'model': model,
        'normalization': label,
        'final_test_accuracy_by_learning_rate': {
          f'{rate:g}': f'div@{arm.diverged_at}'
          if arm.diverged_at
          else seed_summary(arm.finals(_TAG))
          for rate, arm in tried.items()
        },
        'seeds_diverged_by_learning_rate': {
          f'{rate:g}': sum(a is None for a in arm.finals(_TAG)) for rate, arm in tried.items()
        },
        'best_learning_rate': best_rate,
        'best_test_accuracy': None if seeds.diverged_at else seed_summary(best_accuracy),
        'mean_curve': curve,
        'steps_to_threshold': next((s for s, v in curve if v >= MODELS[model][4]), None),
        'ms_per_step': 1000 * float(np.median(seconds)) if seconds else None,
      }
    )
  return {'num_seeds': NUM_SEEDS, 'arms': rows}


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Each arm's seed-mean test accuracy at its better rate, the seeds that diverged said in
  its label (the mean is over the others). Drawn from the record (`--redraw`)."""
  del context
  figure, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout='constrained')
  for ax, model, low in zip(axes, ('mlp', 'inception'), (0.9, 0.3), strict=True):
    for colour, row in enumerate(r for r in record['arms'] if r['model'] == model):
      rate = row['best_learning_rate']
      diverged = row['seeds_diverged_by_learning_rate'][f'{rate:g}']
      label = f'{row["normalization"]} (lr {rate:g}'
      label += f'; {diverged} of {record["num_seeds"]} seeds diverged)' if diverged else ')'
      if row['mean_curve']:
        ax.plot(*zip(*row['mean_curve'], strict=True), color=f'C{colour}', label=label)
      else:
        ax.plot([], [], color=f'C{colour}', label=f'{row["normalization"]}: diverged at both LRs')
    ax.set(xlabel='step', ylabel='test accuracy, mean of the seeds that trained', ylim=(low, 1))
    if ax.get_legend_handles_labels()[0]:
      ax.legend(loc='lower right')
  axes[0].set_title('MNIST MLP (3x100 sigmoid, plain SGD)')
  axes[1].set_title('small BN-Inception proxy (Fashion-MNIST, ReLU, SGD + momentum)')
  figure.suptitle('Study 7: weight normalization vs batch normalization (better of two LRs)')
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  lines = [
    '; '.join(f'{MODEL_NAMES[m]}: {context.steps(spec[1])} steps' for m, spec in MODELS.items())
    + f'; {record["num_seeds"]} seeds per setting '
    "(the MLP's side by side, the proxy's as separate runs), accuracies as mean (min to max) "
    'over the seeds. Each arm at two learning rates; "final" is the final test accuracy at '
    'each ("div@N": a seed diverged at step N); the other columns are for the better one '
    '(higher seed mean, a diverged seed counting 0): best test accuracy over training per '
    'seed, steps for the seed-mean curve to reach the threshold, and ms per step: wall time '
    'between the first and last training log (compilation excluded, evaluations included; '
    "the MLP's for its 3 seeds together, the proxy's the median of its runs' one-seed "
    'times), same CPU for all arms.',
    '',
    '| model | normalization | final test accuracy by learning rate | best test accuracy | '
    'steps to 97% (MLP) / 75% (Inception) | ms per step |',
    '|---|---|---|---|---|---|',
  ]
  for row in record['arms']:
    cells = ', '.join(
      f'{rate}: {v}' if isinstance(v, str) else f'{rate}: {fmt_seeds(v["per_seed"])}'
      for rate, v in row['final_test_accuracy_by_learning_rate'].items()
    )
    best = row['best_test_accuracy']
    lines.append(
      f'| {row["model"]} | {row["normalization"]} | {cells} | '
      f'{"—" if best is None else fmt_seeds(best["per_seed"])} | '
      f'{fmt(row["steps_to_threshold"], "{}")} | {fmt(row["ms_per_step"], "{:.3f}")} |'
    )
  return lines


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs, names = arm_configs(context)
  record = measure(train_arms(context, configs), names)
  write_results(
    context,
    draw(record, context),
    table(record, context),
    record,
    started,
    f'{MNIST_DATA}; {FASHION_DATA}',
  )
