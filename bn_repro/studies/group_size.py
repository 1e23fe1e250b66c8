"""Study 8: how many examples the BN statistics are computed over.

At a fixed SGD batch of 60, BN computes its statistics over groups of g examples
(`model.norm.group_size`, the paper's per-worker mini-batch, Sec. 4.2). Small groups
make training statistics noisy: the network learns under them but is tested with
population statistics, a train-test inconsistency. Per g: training accuracy
(mini-batch statistics, last 10 logs), test accuracy with mini-batch statistics
over test groups of g, with the moving averages, and with Algorithm 2's population
statistics (K=100 batches, each normalized in groups of g as in training). Each g trains
`common.NUM_SEEDS` seeds side by side; test accuracies are per seed (mean and range), the
training accuracy is the seeds' mean (the trainer logs it averaged over the seeds).
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import plot_over_seeds, write_results
from bn_repro.studies.common import NUM_SEEDS, StudyContext, restore, train_arms
from bn_repro.training.evaluate import batch_statistics_accuracy

GROUP_SIZES = (2, 4, 6, 10, 20, 60)
NUM_STEPS = 20_000
POPULATION_BATCHES = 100

MEASURES = {
  'train_accuracy': 'training accuracy (batch statistics)',
  'test_batch_statistics': 'test, batch statistics over g',
  'test_moving_averages': 'test, moving averages',
  'test_population': 'test, population statistics',
}


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs = {
    g: context.config(
      'configs/mnist.py:bn',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      checkpoint_every=context.steps(NUM_STEPS),
      model__norm__group_size=g,
      population_stats__num_batches=POPULATION_BATCHES,
    )
    for g in GROUP_SIZES
  }
  arms = train_arms(context, {f'group_{g}': config for g, config in configs.items()})
  per_seed = {}  # g -> measure -> [value per seed]
  for g, config in configs.items():
    arm = arms[f'group_{g}']
    networks = restore(config, arm.workdir / 'checkpoints').seeds(NUM_SEEDS)
    images, labels = networks[0].test_inputs()
    per_seed[g] = {
      'train_accuracy': [float(np.mean([v for _, v in arm.curve('train/accuracy')[-10:]]))],
      'test_batch_statistics': [
        batch_statistics_accuracy(n.model, n.params, n.batch_stats, images, labels, g)
        for n in networks
      ],
      # The trainer evaluated the final states with their moving averages on the same test set.
      'test_moving_averages': arm.seed_finals('eval/accuracy'),
      'test_population': arm.seed_finals('eval_population/accuracy'),
    }

  figure, ax = plt.subplots(figsize=(7, 4.2), layout='constrained')
  for key, label in MEASURES.items():
    plot_over_seeds(ax, GROUP_SIZES, [per_seed[g][key] for g in GROUP_SIZES], 'o-', label)
  ax.set_xscale('log')
  ax.set_xticks(GROUP_SIZES, [str(g) for g in GROUP_SIZES])
  ax.minorticks_off()
  ax.set(xlabel='BN group size g (SGD batch 60)', ylabel='accuracy')
  ax.legend(fontsize=8)
  ax.set_title(
    f'Study 8: BN statistics group size, MNIST MLP, {context.steps(NUM_STEPS)} steps, '
    f'{NUM_SEEDS} seeds'
  )

  table = [
    f'MNIST BN MLP, SGD batch 60, BN statistics over groups of g, {context.steps(NUM_STEPS)} '
    f'steps, {NUM_SEEDS} seeds side by side: mean (min to max) over the seeds; training '
    "accuracy: the seeds' mean over the last 10 logs.",
    '',
    '| g | ' + ' | '.join(MEASURES.values()) + ' |',
    '|---|' + '---|' * len(MEASURES),
    *[
      f'| {g} | ' + ' | '.join(fmt_seeds(per_seed[g][k]) for k in MEASURES) + ' |'
      for g in GROUP_SIZES
    ],
  ]
  rows = {g: {k: seed_summary(v) for k, v in measures.items()} for g, measures in per_seed.items()}
  record = {'num_seeds': NUM_SEEDS, 'by_group_size': rows}
  write_results(context, figure, table, record, started, MNIST_DATA)
