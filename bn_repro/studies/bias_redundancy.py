"""Study 4: the pre-BN bias is redundant (Sec. 3.2).

BN(Wu + b) = BN(Wu): the batch mean absorbs b, so b has zero gradient and
training with and without it follows the same curve up to float rounding
(`configs/mnist.py` variants `bn` and `bn_bias`). Rounding differences compound over
many SGD steps, so the study reports how long the curves stay together as well as
how far apart they end; tests/test_studies.py asserts equality on a tiny config. Both
arms train the same `common.NUM_SEEDS` seeds side by side and are compared seed by seed
(test curves; the training loss is the seeds' mean, as the trainer logs it).
"""

import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import NUM_SEEDS, Arm, StudyContext, train_arms
from bn_repro.studies.stats_in_gradient import seed_bias_norms

NUM_STEPS = 50_000
EARLY_STEPS = 1_000  # Steps over which the curves are compared before rounding compounds.
APART = 1e-4  # A training-loss difference (100-step mean) that counts as the curves parting.


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """`bn` and `bn_bias`, the same seeds side by side, logging their parameter norms."""
  return {
    name: context.config(
      f'configs/mnist.py:{name}',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      log_param_norms=True,
    )
    for name in ('bn', 'bn_bias')
  }


def measure(arms: dict[str, Arm]) -> dict[str, object]:
  """The study's record: the largest differences seed by seed (early and over the run),
  the first step the losses part, final accuracies, and the curves the figure draws."""
  differences, early_differences = {}, {}
  for tag in ('train/loss', 'eval/accuracy', 'eval/loss'):
    # Seed by seed: every seed's curve in one arm against the same seed's in the other.
    pairs = zip(*(arm.seed_curves(tag) for arm in arms.values()), strict=True)
    gaps = []
    for curve_a, curve_b in pairs:
      steps = np.array([s for s, _ in curve_a])
      gap = np.abs(np.array([v for _, v in curve_a]) - np.array([v for _, v in curve_b]))
      gaps.append((steps, gap))
    differences[tag] = float(max(np.max(g) for _, g in gaps))
    early_differences[tag] = float(max(np.max(g[s <= EARLY_STEPS]) for s, g in gaps))
  loss_gap = np.abs(
    np.array([v for _, v in arms['bn'].curve('train/loss')])
    - np.array([v for _, v in arms['bn_bias'].curve('train/loss')])
  )
  apart = np.flatnonzero(loss_gap > APART)
  norms = seed_bias_norms(arms['bn_bias'])
  return {
    'num_seeds': NUM_SEEDS,
    'max_abs_difference': differences,
    f'max_abs_difference_first_{EARLY_STEPS}_steps': early_differences,
    'first_step_losses_differ': int(arms['bn'].curve('train/loss')[apart[0]][0])
    if apart.size
    else None,
    'final_test_accuracy': {
      name: seed_summary(arm.seed_finals('eval/accuracy')) for name, arm in arms.items()
    },
    'max_bias_norm': max(v for curve in norms for _, v in curve),
    'curves': {
      'train_loss': {name: arm.curve('train/loss') for name, arm in arms.items()},
      'test_accuracy': {name: arm.curve('eval/accuracy') for name, arm in arms.items()},
      'bias_norm_per_seed': norms,
    },
  }


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Training loss and test accuracy of both arms (seed means) and the pre-BN biases' norm
  per seed. Drawn from the record (`--redraw`)."""
  curves, seeds = record['curves'], record['num_seeds']
  figure, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout='constrained')
  for name in ('bn', 'bn_bias'):
    style = '-' if name == 'bn' else '--'
    axes[0].plot(*zip(*curves['train_loss'][name], strict=True), style, label=name)
    axes[1].plot(*zip(*curves['test_accuracy'][name], strict=True), style, label=name)
  axes[0].set(title=f'training loss (mean of {seeds} seeds)', xlabel='step', yscale='log')
  axes[1].set(title=f'test accuracy (mean of {seeds} seeds)', xlabel='step', ylim=(0.9, 1.0))
  axes[1].legend()
  for seed, curve in enumerate(curves['bias_norm_per_seed']):
    axes[2].plot(*zip(*curve, strict=True), label=f'seed {seed}')
  axes[2].set(title="||b|| of bn_bias's pre-BN biases (initialized to 0)", xlabel='step')
  axes[2].legend(fontsize=8)
  figure.suptitle(f'Study 4: BN(Wu + b) vs BN(Wu), MNIST MLP, {context.steps(NUM_STEPS)} steps')
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  early = record[f'max_abs_difference_first_{EARLY_STEPS}_steps']
  final = record['final_test_accuracy']
  return [
    f'MNIST MLP with BN, {context.steps(NUM_STEPS)} steps, with (`bn_bias`) and without (`bn`) '
    f'the pre-BN bias, the same {record["num_seeds"]} seeds side by side; differences: the '
    "largest over the seeds, each seed against itself (training loss: the seeds' mean).",
    '',
    f'| quantity | max abs difference, first {EARLY_STEPS} steps | max abs difference, whole run |',
    '|---|---|---|',
    *[f'| {tag} | {early[tag]:.3g} | {d:.3g} |' for tag, d in record['max_abs_difference'].items()],
    f'| first logged step where the training losses differ by more than {APART:g} | '
    f'{fmt(record["first_step_losses_differ"], "{}")} | |',
    f'| final test accuracy, mean (min to max): bn / bn_bias | '
    f'{fmt_seeds(final["bn"]["per_seed"])} / {fmt_seeds(final["bn_bias"]["per_seed"])} | |',
    f'| largest ||b|| during training, any seed | {record["max_bias_norm"]:.3g} | |',
  ]


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  record = measure(train_arms(context, arm_configs(context)))
  write_results(context, draw(record, context), table(record, context), record, started, MNIST_DATA)
