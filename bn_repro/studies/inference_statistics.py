"""Study 2: which statistics inference should use (Algorithm 2; the moving-average question).

One BN network (`configs/mnist.py:bn`) is evaluated on the test set with
(a) mini-batch statistics at several evaluation batch sizes, (b) the exponential
moving averages at several momenta, (c) population statistics recomputed after
training over K training batches with the unbiased m/(m-1) variance (Algorithm 2,
`bn_repro.nn.population_stats`), and with the biased variance for contrast. During
training, the trainer's `population_stats.every_eval` logs the population-statistic
accuracy next to the moving-average one. The momentum of the moving averages does
not touch training (only inference reads them), so the momentum arms retrain the
same trajectory; the study checks that their parameters agree. Every arm trains
`common.NUM_SEEDS` seeds side by side; each accuracy is measured per seed and the table gives
its mean and range over the seeds.
"""

import time

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.nn.population_stats import population_statistics_fn
from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import plot_over_seeds, write_results
from bn_repro.studies.common import (
  NUM_SEEDS,
  Arm,
  StudyContext,
  TrainedNetwork,
  restore,
  train_arms,
)
from bn_repro.training.evaluate import batch_statistics_accuracy, running_statistics_accuracy

NUM_STEPS = 50_000
MOMENTA = (0.9, 0.99, 0.999, 0.9999)  # 0.99: the main arm (the configs' default).
EVAL_BATCH_SIZES = (2, 4, 10, 50, 100, 1000, 10_000)
POPULATION_BATCHES = (1, 2, 5, 10, 50, 100, 500)
TRACKED_POPULATION_BATCHES = 100  # K of the population statistics logged during training.


def _biased(batch_stats: object, m: int) -> object:
  """Undoes Algorithm 2's m/(m-1) on every variance: the biased estimate, for contrast."""
  return jax.tree_util.tree_map_with_path(
    lambda path, v: v * (m - 1) / m if path[-1].key == 'var' else v, batch_stats
  )


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """One arm per momentum, its seeds side by side; the main arm (0.99) also evaluates the
  population statistics during training."""
  return {
    f'momentum_{momentum}': context.config(
      'configs/mnist.py:bn',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      model__norm__momentum=momentum,
      population_stats__num_batches=TRACKED_POPULATION_BATCHES,
      population_stats__every_eval=momentum == 0.99,
    )
    for momentum in MOMENTA
  }


def measure(configs: dict[str, ml_collections.ConfigDict], trained: dict[str, Arm]) -> dict:
  """The study's record: test accuracy per seed by inference statistics, the population
  minus moving-average gap during training, the momentum arms' parameter gap, and the
  main arm's accuracy curves."""
  arms = {m: trained[f'momentum_{m}'] for m in MOMENTA}
  networks = {
    m: restore(configs[f'momentum_{m}'], arms[m].workdir / 'checkpoints').seeds(NUM_SEEDS)
    for m in MOMENTA
  }
  mains = networks[0.99]  # One network per seed.
  images, labels = mains[0].test_inputs()
  parameter_gap = max(
    float(np.max(np.abs(a - b)))
    for seeds in networks.values()
    for n, main in zip(seeds, mains, strict=True)
    for a, b in zip(jax.tree.leaves(n.params), jax.tree.leaves(main.params), strict=True)
  )
  batch_size = configs['momentum_0.99'].batch_size
  batch_accuracy = {
    b: [
      batch_statistics_accuracy(n.model, n.params, n.batch_stats, images, labels, b) for n in mains
    ]
    for b in EVAL_BATCH_SIZES
    if b <= len(labels)
  }
  sizes = _population_sizes(batch_size, len(mains[0].dataset.train_labels))
  per_seed = [_population_accuracies(n, batch_size, sizes) for n in mains]
  tracked = arms[0.99]
  return {
    'num_seeds': NUM_SEEDS,
    'num_steps': configs['momentum_0.99'].num_steps,
    'population_batch_size': batch_size,
    'batch_statistics': {b: seed_summary(a) for b, a in batch_accuracy.items()},
    # The trainer evaluated each final state with its moving averages on the same test set.
    'moving_averages': {m: seed_summary(a.seed_finals('eval/accuracy')) for m, a in arms.items()},
    'population_unbiased': {k: seed_summary([p[k] for p, _ in per_seed]) for k in sizes},
    'population_biased': {k: seed_summary([b[k] for _, b in per_seed]) for k in sizes},
    'population_minus_ema_during_training': _population_minus_ema(tracked),
    'momentum_arms_parameter_gap': parameter_gap,
    'accuracy_curves': {
      'moving_averages': tracked.curve('eval/accuracy'),
      'population': tracked.curve('eval_population/accuracy'),
    },
  }


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  del context

  def seeds(summary: dict) -> str:
    return fmt_seeds(summary['per_seed'])

  lines = [
    f'BN MLPs after {record["num_steps"]} steps (batch 60), {record["num_seeds"]} seeds side by '
    'side; test accuracy by inference statistics, mean (min to max) over the seeds.',
    f'Momentum arms retrain the same trajectory: max |parameter difference| '
    f'{record["momentum_arms_parameter_gap"]:.2g}.',
    '',
    '| inference statistics | test accuracy |',
    '|---|---|',
    *[
      f'| mini-batch statistics, eval batch {b} | {seeds(a)} |'
      for b, a in record['batch_statistics'].items()
    ],
    *[
      f'| moving averages, momentum {m} | {seeds(a)} |'
      for m, a in record['moving_averages'].items()
    ],
    *[
      f'| population (Algorithm 2), K={k} batches of 60, unbiased / biased variance | '
      f'{seeds(a)} / {seeds(record["population_biased"][k])} |'
      for k, a in record['population_unbiased'].items()
    ],
  ]
  gaps = record['population_minus_ema_during_training']
  if gaps:
    everything = [g for seed_gaps in gaps for g in seed_gaps]
    lines += [
      '',
      f'During training (every 500 steps, each seed): population minus moving-average accuracy '
      f'ranges {min(everything):+.4f} to {max(everything):+.4f}; mean {np.mean(everything):+.4f}; '
      f'at the end {fmt_seeds([g[-1] for g in gaps], "{:+.4f}")}.',
    ]
  return lines


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs = arm_configs(context)
  record = measure(configs, train_arms(context, configs))
  write_results(context, draw(record, context), table(record, context), record, started, MNIST_DATA)


def _population_minus_ema(arm: Arm) -> list[list[float]]:
  """Per seed, population minus moving-average test accuracy at each evaluation ([] when
  the population statistics were not evaluated during training)."""
  population = arm.seed_curves('eval_population/accuracy')
  if not population:
    return []
  return [
    [p - e for (_, e), (_, p) in zip(ema_curve, population_curve, strict=True)]
    for ema_curve, population_curve in zip(
      arm.seed_curves('eval/accuracy'), population, strict=True
    )
  ]


def _population_sizes(batch_size: int, num_examples: int) -> list[int]:
  """The K of POPULATION_BATCHES whose K batches of distinct examples the training set holds."""
  return [k for k in POPULATION_BATCHES if k * batch_size <= num_examples]


def _population_accuracies(
  main: TrainedNetwork, batch_size: int, sizes: list[int]
) -> tuple[dict[int, float], dict[int, float]]:
  """Test accuracy with Algorithm 2's statistics over K random training batches, for each K
  in `sizes`: with the unbiased variance, and with the biased one."""
  images, labels = main.test_inputs()
  statistics = population_statistics_fn(main.model)
  population_accuracy, biased_accuracy = {}, {}
  for k in sizes:
    indices = np.random.default_rng(k).permutation(len(main.dataset.train_labels))
    batches = (
      main.preprocess(main.dataset.train_images[indices[i * batch_size : (i + 1) * batch_size]])
      for i in range(k)
    )
    population = statistics(main.params, main.batch_stats, batches)
    population_accuracy[k] = running_statistics_accuracy(
      main.model, main.params, population, images, labels
    )
    biased_accuracy[k] = running_statistics_accuracy(
      main.model, main.params, _biased(population, batch_size), images, labels
    )
  return population_accuracy, biased_accuracy


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """(a) accuracy during training (means over seeds); (b, c) the final networks by inference
  statistics (seed means, bars from the lowest to the highest seed). Drawn from the record."""
  del context
  curves = record['accuracy_curves']
  figure, axes = plt.subplots(1, 3, figsize=(18, 4.6), layout='constrained')
  axes[0].plot(*zip(*curves['moving_averages'], strict=True), label='moving averages (0.99)')
  if curves['population']:
    axes[0].plot(
      *zip(*curves['population'], strict=True),
      label=f'population statistics (K={TRACKED_POPULATION_BATCHES})',
    )
  axes[0].set(title='(a) test accuracy during training', xlabel='step', ylim=(0.9, 1.0))
  axes[0].legend()
  batch = {int(b): a['per_seed'] for b, a in record['batch_statistics'].items()}
  population = {int(k): a['per_seed'] for k, a in record['population_unbiased'].items()}
  for ax in axes[1:]:
    ax.set_xscale('log')
    plot_over_seeds(ax, list(batch), list(batch.values()), 'o-', 'batch statistics')
    plot_over_seeds(
      ax,
      [k * record['population_batch_size'] for k in population],
      list(population.values()),
      's-',
      'population statistics (Algorithm 2)',
    )
    for index, (m, accuracy) in enumerate(record['moving_averages'].items()):
      colour = plt.cm.viridis(index / len(record['moving_averages']))
      ax.axhline(accuracy['mean'], ls=':', color=colour, label=f'EMA {m}')
    ax.set(xlabel='test (batch) or training (population) examples behind the statistics')
  axes[1].set(title='(b) final networks, by inference statistics')
  axes[2].set(title='(c) = (b) zoomed in', ylim=(0.965, 0.98))
  axes[2].legend(fontsize=8)
  figure.suptitle('Study 2: training vs inference statistics, MNIST MLP with BN')
  return figure
