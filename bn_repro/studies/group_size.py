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
import ml_collections
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import plot_over_seeds, write_results
from bn_repro.studies.common import NUM_SEEDS, Arm, StudyContext, restore, train_arms
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


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """One arm per group size g, its seeds side by side."""
  return {
    f'group_{g}': context.config(
      'configs/mnist.py:bn',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      checkpoint_every=context.steps(NUM_STEPS),
      model__norm__group_size=g,
      population_stats__num_batches=POPULATION_BATCHES,
    )
    for g in GROUP_SIZES
  }


def measure(configs: dict[str, ml_collections.ConfigDict], arms: dict[str, Arm]) -> dict:
  """The study's record: per g, each measure's seed summary (module docstring)."""
  per_seed = {}  # g -> measure -> [value per seed]
  for name, config in configs.items():
    g, arm = config.model.norm.group_size, arms[name]
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
  rows = {g: {k: seed_summary(v) for k, v in measures.items()} for g, measures in per_seed.items()}
  return {'num_seeds': NUM_SEEDS, 'by_group_size': rows}


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Each measure against g (seed means, bars from the lowest seed to the highest). Drawn
  from the record (`--redraw`)."""
  rows = {int(g): measures for g, measures in record['by_group_size'].items()}
  sizes = sorted(rows)
  figure, ax = plt.subplots(figsize=(7, 4.2), layout='constrained')
  for key, label in MEASURES.items():  # Dashed: the population curve lies on the averages'.
    style = 's--' if key == 'test_population' else 'o-'
    plot_over_seeds(ax, sizes, [rows[g][key]['per_seed'] for g in sizes], style, label)
  ax.set_xscale('log')
  ax.set_xticks(sizes, [str(g) for g in sizes])
  ax.minorticks_off()
  ax.set(xlabel='BN group size g (SGD batch 60)', ylabel='accuracy')
  ax.legend(fontsize=8)
  ax.set_title(
    f'Study 8: BN statistics group size, MNIST MLP, {context.steps(NUM_STEPS)} steps, '
    f'{record["num_seeds"]} seeds'
  )
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  rows = {int(g): measures for g, measures in record['by_group_size'].items()}
  return [
    f'MNIST BN MLP, SGD batch 60, BN statistics over groups of g, {context.steps(NUM_STEPS)} '
    f'steps, {record["num_seeds"]} seeds side by side: mean (min to max) over the seeds; '
    "training accuracy: the seeds' mean over the last 10 logs.",
    '',
    '| g | ' + ' | '.join(MEASURES.values()) + ' |',
    '|---|' + '---|' * len(MEASURES),
    *[
      f'| {g} | ' + ' | '.join(fmt_seeds(rows[g][k]['per_seed']) for k in MEASURES) + ' |'
      for g in sorted(rows)
    ],
  ]


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs = arm_configs(context)
  record = measure(configs, train_arms(context, configs))
  write_results(context, draw(record, context), table(record, context), record, started, MNIST_DATA)
