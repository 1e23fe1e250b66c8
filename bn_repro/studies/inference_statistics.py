"""Study 2: which statistics inference should use (Algorithm 2; the moving-average question).

One BN network (`configs/mnist.py:bn`) is evaluated on the test set with
(a) mini-batch statistics at several evaluation batch sizes, (b) the exponential
moving averages at several momenta, (c) population statistics recomputed after
training over K training batches with the unbiased m/(m-1) variance (Algorithm 2,
`bn_repro.analysis.population_stats`), and with the biased variance for contrast. During
training, the trainer's `population_stats.every_eval` logs the population-statistic
accuracy next to the moving-average one. The momentum of the moving averages does
not touch training (only inference reads them), so the momentum arms retrain the
same trajectory; the study checks that their parameters agree.
"""

import time

import jax
import matplotlib.pyplot as plt
import numpy as np

from bn_repro.analysis.population_stats import population_statistics_fn
from bn_repro.reports.formatting import MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import StudyContext, TrainedNetwork, restore, train_arm
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


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms, networks = {}, {}
  for momentum in MOMENTA:
    config = context.config(
      'configs/mnist.py:bn',
      num_steps=context.steps(NUM_STEPS),
      model__bn__momentum=momentum,
      population_stats__num_batches=TRACKED_POPULATION_BATCHES,
      population_stats__every_eval=momentum == 0.99,
    )
    arms[momentum] = train_arm(context, f'momentum_{momentum}', config)
    networks[momentum] = restore(config, arms[momentum].workdir / 'checkpoints')
  main = networks[0.99]
  images, labels = main.test_inputs()
  parameter_gap = max(
    float(np.max(np.abs(a - b)))
    for n in networks.values()
    for a, b in zip(jax.tree.leaves(n.params), jax.tree.leaves(main.params), strict=True)
  )

  batch_size = config.batch_size
  eval_sizes = [b for b in EVAL_BATCH_SIZES if b <= len(labels)]
  batch_accuracy = {
    b: batch_statistics_accuracy(main.model, main.params, main.batch_stats, images, labels, b)
    for b in eval_sizes
  }
  # The trainer evaluated each final state with its moving averages on the same test set.
  ema_accuracy = {m: arm.final('eval/accuracy') for m, arm in arms.items()}
  population_accuracy, biased_accuracy = _population_accuracies(main, batch_size)
  tracked = arms[0.99]
  figure = _plot(tracked, eval_sizes, batch_accuracy, population_accuracy, ema_accuracy, batch_size)
  table = [
    f'One BN MLP after {config.num_steps} steps (batch 60); test accuracy by inference statistics.',
    f'Momentum arms retrain the same trajectory: max |parameter difference| {parameter_gap:.2g}.',
    '',
    '| inference statistics | test accuracy |',
    '|---|---|',
    *[f'| mini-batch statistics, eval batch {b} | {fmt(a)} |' for b, a in batch_accuracy.items()],
    *[f'| moving averages, momentum {m} | {fmt(a)} |' for m, a in ema_accuracy.items()],
    *[
      f'| population (Algorithm 2), K={k} batches of 60, unbiased / biased variance | '
      f'{fmt(population_accuracy[k])} / {fmt(biased_accuracy[k])} |'
      for k in population_accuracy
    ],
  ]
  gaps = [
    p - e
    for (s, e), (_, p) in zip(
      tracked.curve('eval/accuracy'), tracked.curve('eval_population/accuracy'), strict=True
    )
  ]
  if gaps:
    table += [
      '',
      f'During training (every 500 steps): population minus moving-average accuracy ranges '
      f'{min(gaps):+.4f} to {max(gaps):+.4f}; mean {np.mean(gaps):+.4f}, at the end '
      f'{gaps[-1]:+.4f}.',
    ]
  record = {
    'batch_statistics': batch_accuracy,
    'moving_averages': ema_accuracy,
    'population_unbiased': population_accuracy,
    'population_biased': biased_accuracy,
    'population_minus_ema_during_training': gaps,
    'momentum_arms_parameter_gap': parameter_gap,
  }
  write_results(context, figure, table, record, started, MNIST_DATA)


def _population_accuracies(
  main: TrainedNetwork, batch_size: int
) -> tuple[dict[int, float], dict[int, float]]:
  """Test accuracy with Algorithm 2's statistics over K random training batches, for each K
  in POPULATION_BATCHES: with the unbiased variance, and with the biased one."""
  images, labels = main.test_inputs()
  statistics = population_statistics_fn(main.model)
  population_accuracy, biased_accuracy = {}, {}
  for k in POPULATION_BATCHES:
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


def _plot(
  tracked: object,
  eval_sizes: list[int],
  batch_accuracy: dict[int, float],
  population_accuracy: dict[int, float],
  ema_accuracy: dict[float, float],
  batch_size: int,
) -> plt.Figure:
  """(a) accuracy during training; (b, c) the final network by inference statistics."""
  figure, axes = plt.subplots(1, 3, figsize=(18, 4.2))
  axes[0].plot(*zip(*tracked.curve('eval/accuracy'), strict=True), label='moving averages (0.99)')
  axes[0].plot(
    *zip(*tracked.curve('eval_population/accuracy'), strict=True),
    label=f'population statistics (K={TRACKED_POPULATION_BATCHES})',
  )
  axes[0].set(title='(a) test accuracy during training', xlabel='step', ylim=(0.9, 1.0))
  axes[0].legend()
  k_values = list(population_accuracy)
  for ax in axes[1:]:
    ax.semilogx(eval_sizes, [batch_accuracy[b] for b in eval_sizes], 'o-', label='batch statistics')
    ax.semilogx(
      [k * batch_size for k in k_values],
      [population_accuracy[k] for k in k_values],
      's-',
      label='population statistics (Algorithm 2)',
    )
    for m, accuracy in ema_accuracy.items():
      ax.axhline(
        accuracy, ls=':', color=plt.cm.viridis(MOMENTA.index(m) / len(MOMENTA)), label=f'EMA {m}'
      )
    ax.set(xlabel='test (batch) or training (population) examples behind the statistics')
  axes[1].set(title='(b) final network, by inference statistics')
  axes[2].set(title='(c) = (b) zoomed in', ylim=(0.965, 0.98))
  axes[2].legend(fontsize=8)
  figure.suptitle('Study 2: training vs inference statistics, MNIST MLP with BN')
  return figure
