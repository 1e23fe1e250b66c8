"""Study 5: nonlinearity x normalization on the MNIST MLP.

{sigmoid, tanh, ReLU, LeCun's 1.7159 tanh(2x/3)} x {none, BN, WN, WN + mean-only BN},
each at two learning rates (the sigmoid baseline's tuned 2.0, and 0.5, since
the tuned rate need not suit the other nonlinearities): final test accuracy and
the steps to reach 97%. Each cell trains `common.NUM_SEEDS` seeds side by side: its
accuracy is given per seed (mean and range) and the steps to 97% for the seeds' mean curve.
The seeds train in one program, which stops at the first step any seed's loss is not
finite: a cell diverges if any of its seeds does.
"""

import itertools
import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import NUM_SEEDS, Arm, StudyContext, train_arms

NONLINEARITIES = ('sigmoid', 'tanh', 'relu', 'lecun_tanh')
NORMALIZATIONS = {  # name -> configs/mnist.py variant
  'none': 'baseline',
  'BN': 'bn',
  'WN': 'wn',
  'WN + mean-only BN': 'wn_mean_only_bn',
}
LEARNING_RATES = (0.5, 2.0)
NUM_STEPS = 20_000


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """One arm per cell and learning rate, its seeds side by side."""
  return {
    _arm_name(nonlinearity, variant, rate): context.config(
      f'configs/mnist.py:{variant}',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      checkpoint_every=context.steps(NUM_STEPS),
      model__nonlinearity=nonlinearity,
      optimizer__learning_rate=rate,
    )
    for nonlinearity, (_, variant), rate in _cells()
  }


def measure(arms: dict[str, Arm]) -> dict[str, object]:
  """The study's record: per cell and rate, the seeds' final test accuracies (None where the
  arm diverged), the steps for their mean to reach 97% and the divergence step."""
  runs = []
  for nonlinearity, (norm, variant), rate in _cells():
    arm = arms[_arm_name(nonlinearity, variant, rate)]
    runs.append(
      {
        'nonlinearity': nonlinearity,
        'normalization': norm,
        'learning_rate': rate,
        'final_test_accuracy': seed_summary(
          None if arm.diverged_at else arm.seed_finals('eval/accuracy')
        ),
        'steps_to_97': arm.steps_to('eval/accuracy', 0.97),
        'diverged_at': arm.diverged_at,
      }
    )
  return {'num_seeds': NUM_SEEDS, 'runs': runs}


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Each cell's seed-mean final accuracy at its better rate; a cell whose rates both
  diverged is grey and says so. Drawn from the record (`--redraw`)."""
  runs = _by_cell(record)
  grid = np.ma.masked_invalid(
    [[_best_mean(runs[g, n]) for n in NORMALIZATIONS] for g in NONLINEARITIES]
  )
  figure, ax = plt.subplots(figsize=(8.5, 4.5), layout='constrained')
  colours = plt.get_cmap('viridis').with_extremes(bad='lightgrey')
  image = ax.imshow(grid, vmin=0.95, vmax=0.985, cmap=colours)
  for (i, j), value in np.ndenumerate(grid.filled(np.nan)):
    text = 'diverged\n(both rates)' if np.isnan(value) else f'{value:.4f}'
    colour = 'k' if np.isnan(value) or value >= 0.975 else 'w'
    ax.text(j, i, text, ha='center', va='center', color=colour)
  ax.set_xticks(range(len(NORMALIZATIONS)), [n.replace(' + ', ' +\n') for n in NORMALIZATIONS])
  ax.set_yticks(range(len(NONLINEARITIES)), NONLINEARITIES)
  figure.colorbar(
    image,
    label=f'final test accuracy, mean of {record["num_seeds"]} seeds\n(better LR; below 0.95 '
    'at the bottom colour)',
  )
  ax.set_title(f'Study 5: final test accuracy after {context.steps(NUM_STEPS)} steps, MNIST MLP')
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  runs = _by_cell(record)

  def cell(nonlinearity: str, norm: str) -> str:
    parts = []
    for r in runs[nonlinearity, norm]:
      if r['diverged_at']:
        parts.append(f'diverged@{r["diverged_at"]}')
      else:
        accuracy = fmt_seeds(r['final_test_accuracy']['per_seed'])
        parts.append(f'{accuracy} ({fmt(r["steps_to_97"], "{}")})')
    return ' / '.join(parts)

  return [
    f'MNIST MLP 3x100, batch 60, plain SGD, {context.steps(NUM_STEPS)} steps, '
    f'{record["num_seeds"]} seeds side by side. Each cell: final test accuracy, mean (min to '
    'max) over the seeds (steps for the seed mean to reach 97%, — if never) at LR '
    + ' / '.join(str(r) for r in LEARNING_RATES)
    + '.',
    '',
    '| nonlinearity | ' + ' | '.join(NORMALIZATIONS) + ' |',
    '|---|' + '---|' * len(NORMALIZATIONS),
    *[f'| {g} | ' + ' | '.join(cell(g, n) for n in NORMALIZATIONS) + ' |' for g in NONLINEARITIES],
  ]


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  record = measure(train_arms(context, arm_configs(context)))
  write_results(context, draw(record, context), table(record, context), record, started, MNIST_DATA)


def _cells() -> list[tuple[str, tuple[str, str], float]]:
  return list(itertools.product(NONLINEARITIES, NORMALIZATIONS.items(), LEARNING_RATES))


def _arm_name(nonlinearity: str, variant: str, rate: float) -> str:
  return f'{nonlinearity}_{variant}_lr{rate}'


def _by_cell(record: dict) -> dict[tuple[str, str], list[dict]]:
  """{(nonlinearity, normalization): its runs, in LEARNING_RATES order}."""
  cells = {}
  for r in sorted(record['runs'], key=lambda r: LEARNING_RATES.index(r['learning_rate'])):
    cells.setdefault((r['nonlinearity'], r['normalization']), []).append(r)
  return cells


def _best_mean(runs: list[dict]) -> float:
  """The better rate's seed-mean final accuracy; NaN where every rate diverged."""
  means = [r['final_test_accuracy']['mean'] for r in runs if not r['diverged_at']]
  return max(means, default=np.nan)
