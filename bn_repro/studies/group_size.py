"""Study 8: how many examples the BN statistics are computed over.

At a fixed SGD batch of 60, BN computes its statistics over groups of g examples
(`model.bn.group_size`, the paper's per-worker mini-batch, Sec. 4.2). Small groups
make training statistics noisy: the network learns under them but is tested with
population statistics, a train-test inconsistency. Per g: training accuracy
(mini-batch statistics, last 10 logs), test accuracy with mini-batch statistics
over test groups of g, with the moving averages, and with Algorithm 2's population
statistics (K=100 batches, each normalized in groups of g as in training).
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import StudyContext, restore, train_arm
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
  rows = {}
  for g in GROUP_SIZES:
    config = context.config(
      'configs/mnist.py:bn',
      num_steps=context.steps(NUM_STEPS),
      checkpoint_every=context.steps(NUM_STEPS),
      model__bn__group_size=g,
      population_stats__num_batches=POPULATION_BATCHES,
    )
    arm = train_arm(context, f'group_{g}', config)
    network = restore(config, arm.workdir / 'checkpoints')
    images, labels = network.test_inputs()
    rows[g] = {
      'train_accuracy': float(np.mean([v for _, v in arm.curve('train/accuracy')[-10:]])),
      'test_batch_statistics': batch_statistics_accuracy(
        network.model, network.params, network.batch_stats, images, labels, g
      ),
      # The trainer evaluated the final state with its moving averages on the same test set.
      'test_moving_averages': arm.final('eval/accuracy'),
      'test_population': arm.final('eval_population/accuracy'),
    }

  figure, ax = plt.subplots(figsize=(7, 4.2))
  for key, label in MEASURES.items():
    ax.semilogx(GROUP_SIZES, [rows[g][key] for g in GROUP_SIZES], 'o-', label=label)
  ax.set_xticks(GROUP_SIZES, [str(g) for g in GROUP_SIZES])
  ax.set(xlabel='BN group size g (SGD batch 60)', ylabel='accuracy')
  ax.legend(fontsize=8)
  ax.set_title(f'Study 8: BN statistics group size, MNIST MLP, {context.steps(NUM_STEPS)} steps')

  table = [
    f'MNIST BN MLP, SGD batch 60, BN statistics over groups of g, {context.steps(NUM_STEPS)} '
    'steps.',
    '',
    '| g | ' + ' | '.join(MEASURES.values()) + ' |',
    '|---|' + '---|' * len(MEASURES),
    *[f'| {g} | ' + ' | '.join(fmt(rows[g][k]) for k in MEASURES) + ' |' for g in GROUP_SIZES],
  ]
  write_results(context, figure, table, {'by_group_size': rows}, started, MNIST_DATA)
