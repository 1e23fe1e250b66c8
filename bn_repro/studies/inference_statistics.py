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


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs = {
    momentum: context.config(
      'configs/mnist.py:bn',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      model__norm__momentum=momentum,
      population_stats__num_batches=TRACKED_POPULATION_BATCHES,
      population_stats__every_eval=momentum == 0.99,
    )
    for momentum in MOMENTA
  }
  trained = train_arms(context, {f'momentum_{m}': c for m, c in configs.items()})
  arms = {m: trained[f'momentum_{m}'] for m in MOMENTA}
  networks = {
    m: restore(configs[m], arms[m].workdir / 'checkpoints').seeds(NUM_SEEDS) for m in MOMENTA
  }
  mains = networks[0.99]  # One network per seed.
  images, labels = mains[0].test_inputs()
  parameter_gap = max(
    float(np.max(np.abs(a - b)))
    for seeds in networks.values()
    for n, main in zip(seeds, mains, strict=True)
    for a, b in zip(jax.tree.leaves(n.params), jax.tree.leaves(main.params), strict=True)
  )

  batch_size = configs[0.99].batch_size
  eval_sizes = [b for b in EVAL_BATCH_SIZES if b <= len(labels)]
  batch_accuracy = {
    b: [
      batch_statistics_accuracy(n.model, n.params, n.batch_stats, images, labels, b) for n in mains
    ]
    for b in eval_sizes
  }
  # The trainer evaluated each final state with its moving averages on the same test set.
  ema_accuracy = {m: arm.seed_finals('eval/accuracy') for m, arm in arms.items()}
  sizes = _population_sizes(batch_size, len(mains[0].dataset.train_labels))
  per_seed = [_population_accuracies(n, batch_size, sizes) for n in mains]
  population_accuracy = {k: [p[k] for p, _ in per_seed] for k in sizes}
  biased_accuracy = {k: [b[k] for _, b in per_seed] for k in sizes}
  tracked = arms[0.99]
  figure = _plot(tracked, eval_sizes, batch_accuracy, population_accuracy, ema_accuracy, batch_size)
  table = [
    f'BN MLPs after {configs[0.99].num_steps} steps (batch 60), {NUM_SEEDS} seeds side by side; '
    'test accuracy by inference statistics, mean (min to max) over the seeds.',
    f'Momentum arms retrain the same trajectory: max |parameter difference| {parameter_gap:.2g}.',
    '',
    '| inference statistics | test accuracy |',
    '|---|---|',
    *[
      f'| mini-batch statistics, eval batch {b} | {fmt_seeds(a)} |'
      for b, a in batch_accuracy.items()
    ],
    *[f'| moving averages, momentum {m} | {fmt_seeds(a)} |' for m, a in ema_accuracy.items()],
    *[
      f'| population (Algorithm 2), K={k} batches of 60, unbiased / biased variance | '
      f'{fmt_seeds(population_accuracy[k])} / {fmt_seeds(biased_accuracy[k])} |'
      for k in sizes
    ],
  ]
  gaps = _population_minus_ema(tracked)
  if gaps:
    everything = [g for seed_gaps in gaps for g in seed_gaps]
    table += [
      '',
      f'During training (every 500 steps, each seed): population minus moving-average accuracy '
      f'ranges {min(everything):+.4f} to {max(everything):+.4f}; mean {np.mean(everything):+.4f}; '
      f'at the end {fmt_seeds([g[-1] for g in gaps], "{:+.4f}")}.',
    ]
  record = {
    'num_seeds': NUM_SEEDS,
    'batch_statistics': {b: seed_summary(a) for b, a in batch_accuracy.items()},
    'moving_averages': {m: seed_summary(a) for m, a in ema_accuracy.items()},
    'population_unbiased': {k: seed_summary(a) for k, a in population_accuracy.items()},
    'population_biased': {k: seed_summary(a) for k, a in biased_accuracy.items()},
    'population_minus_ema_during_training': gaps,
    'momentum_arms_parameter_gap': parameter_gap,
  }
  write_results(context, figure, table, record, started, MNIST_DATA)


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


def _plot(
  tracked: object,
  eval_sizes: list[int],
  batch_accuracy: dict[int, list[float]],
  population_accuracy: dict[int, list[float]],
  ema_accuracy: dict[float, list[float]],
  batch_size: int,
) -> plt.Figure:
  """(a) accuracy during training (means over seeds); (b, c) the final networks by inference
  statistics (seed means, bars from the lowest to the highest seed)."""
  figure, axes = plt.subplots(1, 3, figsize=(18, 4.6), layout='constrained')
  axes[0].plot(*zip(*tracked.curve('eval/accuracy'), strict=True), label='moving averages (0.99)')
  axes[0].plot(
    *zip(*tracked.curve('eval_population/accuracy'), strict=True),
    label=f'population statistics (K={TRACKED_POPULATION_BATCHES})',
  )
  axes[0].set(title='(a) test accuracy during training', xlabel='step', ylim=(0.9, 1.0))
  axes[0].legend()

  for ax in axes[1:]:
    ax.set_xscale('log')
    plot_over_seeds(
      ax, eval_sizes, [batch_accuracy[b] for b in eval_sizes], 'o-', 'batch statistics'
    )
    plot_over_seeds(
      ax,
      [k * batch_size for k in population_accuracy],
      list(population_accuracy.values()),
      's-',
      'population statistics (Algorithm 2)',
    )
    for m, accuracy in ema_accuracy.items():
      ax.axhline(
        np.mean(accuracy),
        ls=':',
        color=plt.cm.viridis(MOMENTA.index(m) / len(MOMENTA)),
        label=f'EMA {m}',
      )
    ax.set(xlabel='test (batch) or training (population) examples behind the statistics')
  axes[1].set(title='(b) final networks, by inference statistics')
  axes[2].set(title='(c) = (b) zoomed in', ylim=(0.965, 0.98))
  axes[2].legend(fontsize=8)
  figure.suptitle('Study 2: training vs inference statistics, MNIST MLP with BN')
  return figure
