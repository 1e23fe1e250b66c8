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
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import NUM_SEEDS, StudyContext, train_arms

NONLINEARITIES = ('sigmoid', 'tanh', 'relu', 'lecun_tanh')
NORMALIZATIONS = {  # name -> configs/mnist.py variant
  'none': 'baseline',
  'BN': 'bn',
  'WN': 'wn',
  'WN + mean-only BN': 'wn_mean_only_bn',
}
LEARNING_RATES = (0.5, 2.0)
NUM_STEPS = 20_000


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  cells = list(itertools.product(NONLINEARITIES, NORMALIZATIONS.items(), LEARNING_RATES))
  configs = {
    f'{nonlinearity}_{variant}_lr{rate}': context.config(
      f'configs/mnist.py:{variant}',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      checkpoint_every=context.steps(NUM_STEPS),
      model__nonlinearity=nonlinearity,
      optimizer__learning_rate=rate,
    )
    for nonlinearity, (_, variant), rate in cells
  }
  arms = train_arms(context, configs)
  results, per_seed = {}, {}
  for nonlinearity, (norm, variant), rate in cells:
    arm = arms[f'{nonlinearity}_{variant}_lr{rate}']
    per_seed[nonlinearity, norm, rate] = (
      None if arm.diverged_at else arm.seed_finals('eval/accuracy')
    )
    results[nonlinearity, norm, rate] = {
      'final_test_accuracy': seed_summary(per_seed[nonlinearity, norm, rate]),
      'steps_to_97': arm.steps_to('eval/accuracy', 0.97),
      'diverged_at': arm.diverged_at,
    }

  def best(nonlinearity, norm):
    accuracies = [np.mean(per_seed[nonlinearity, norm, r] or [0.0]) for r in LEARNING_RATES]
    return max(accuracies)

  grid = np.array([[best(g, n) for n in NORMALIZATIONS] for g in NONLINEARITIES])
  figure, ax = plt.subplots(figsize=(8.5, 4.5))
  image = ax.imshow(grid, vmin=0.95, vmax=0.985, cmap='viridis')
  for (i, j), value in np.ndenumerate(grid):
    ax.text(j, i, f'{value:.4f}', ha='center', va='center', color='w' if value < 0.975 else 'k')
  ax.set_xticks(range(len(NORMALIZATIONS)), [n.replace(' + ', ' +\n') for n in NORMALIZATIONS])
  ax.set_yticks(range(len(NONLINEARITIES)), NONLINEARITIES)
  figure.colorbar(image, label=f'final test accuracy, mean of {NUM_SEEDS} seeds (better LR)')
  ax.set_title(f'Study 5: final test accuracy after {context.steps(NUM_STEPS)} steps, MNIST MLP')

  def cell(nonlinearity, norm):
    parts = []
    for rate in LEARNING_RATES:
      r = results[nonlinearity, norm, rate]
      if r['diverged_at']:
        parts.append(f'diverged@{r["diverged_at"]}')
      else:
        accuracy = fmt_seeds(per_seed[nonlinearity, norm, rate])
        parts.append(f'{accuracy} ({fmt(r["steps_to_97"], "{}")})')
    return ' / '.join(parts)

  table = [
    f'MNIST MLP 3x100, batch 60, plain SGD, {context.steps(NUM_STEPS)} steps, {NUM_SEEDS} seeds '
    'side by side. Each cell: final test accuracy, mean (min to max) over the seeds (steps for '
    'the seed mean to reach 97%, — if never) at LR '
    + ' / '.join(str(r) for r in LEARNING_RATES)
    + '.',
    '',
    '| nonlinearity | ' + ' | '.join(NORMALIZATIONS) + ' |',
    '|---|' + '---|' * len(NORMALIZATIONS),
    *[f'| {g} | ' + ' | '.join(cell(g, n) for n in NORMALIZATIONS) + ' |' for g in NONLINEARITIES],
  ]
  record = {
    'num_seeds': NUM_SEEDS,
    'runs': [
      {'nonlinearity': g, 'normalization': n, 'learning_rate': r, **v}
      for (g, n, r), v in results.items()
    ],
  }
  write_results(context, figure, table, record, started, MNIST_DATA)
