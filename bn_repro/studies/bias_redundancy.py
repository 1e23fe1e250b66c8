"""Study 4: the pre-BN bias is redundant (Sec. 3.2).

BN(Wu + b) = BN(Wu): the batch mean absorbs b, so b has zero gradient and
training with and without it follows the same curve up to float rounding
(`configs/mnist.py` variants `bn` and `bn_bias`). Rounding differences compound over
many SGD steps, so the study reports how long the curves stay together as well as
how far apart they end; tests/test_studies.py asserts equality on a tiny config.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import StudyContext, train_arm
from bn_repro.studies.stats_in_gradient import bias_norm

NUM_STEPS = 50_000
EARLY_STEPS = 1_000  # Steps over which the curves are compared before rounding compounds.
APART = 1e-4  # A training-loss difference (100-step mean) that counts as the curves parting.


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = {
    name: train_arm(
      context,
      name,
      context.config(
        f'configs/mnist.py:{name}', num_steps=context.steps(NUM_STEPS), log_param_norms=True
      ),
    )
    for name in ('bn', 'bn_bias')
  }
  differences, early_differences = {}, {}
  for tag in ('train/loss', 'eval/accuracy', 'eval/loss'):
    steps = np.array([s for s, _ in arms['bn'].curve(tag)])
    a, b = (np.array([v for _, v in arm.curve(tag)]) for arm in arms.values())
    differences[tag] = float(np.max(np.abs(a - b)))
    early_differences[tag] = float(np.max(np.abs(a - b)[steps <= EARLY_STEPS]))
  loss_gap = np.abs(
    np.array([v for _, v in arms['bn'].curve('train/loss')])
    - np.array([v for _, v in arms['bn_bias'].curve('train/loss')])
  )
  apart = np.flatnonzero(loss_gap > APART)
  apart_step = int(arms['bn'].curve('train/loss')[apart[0]][0]) if apart.size else None
  norms = bias_norm(arms['bn_bias'])

  figure, axes = plt.subplots(1, 3, figsize=(15, 4))
  for name, arm in arms.items():
    style = '-' if name == 'bn' else '--'
    axes[0].plot(*zip(*arm.curve('train/loss'), strict=True), style, label=name)
    axes[1].plot(*zip(*arm.curve('eval/accuracy'), strict=True), style, label=name)
  axes[0].set(title='training loss', xlabel='step', yscale='log')
  axes[1].set(title='test accuracy', xlabel='step', ylim=(0.9, 1.0))
  axes[1].legend()
  axes[2].plot(*zip(*norms, strict=True))
  axes[2].set(title="||b|| of bn_bias's pre-BN biases (initialized to 0)", xlabel='step')
  figure.suptitle('Study 4: BN(Wu + b) vs BN(Wu), MNIST MLP')

  table = [
    f'MNIST MLP with BN, {context.steps(NUM_STEPS)} steps, with (`bn_bias`) and without (`bn`) '
    'the pre-BN bias, same seed.',
    '',
    f'| quantity | max abs difference, first {EARLY_STEPS} steps | max abs difference, whole run |',
    '|---|---|---|',
    *[f'| {tag} | {early_differences[tag]:.3g} | {d:.3g} |' for tag, d in differences.items()],
    f'| first logged step where the training losses differ by more than {APART:g} | '
    f'{fmt(apart_step, "{}")} | |',
    f'| final test accuracy (bn / bn_bias) | {fmt(arms["bn"].final("eval/accuracy"))} / '
    f'{fmt(arms["bn_bias"].final("eval/accuracy"))} | |',
    f'| largest ||b|| during training | {max(v for _, v in norms):.3g} | |',
  ]
  record = {
    'max_abs_difference': differences,
    f'max_abs_difference_first_{EARLY_STEPS}_steps': early_differences,
    'first_step_losses_differ': apart_step,
    'max_bias_norm': max(v for _, v in norms),
  }
  write_results(context, figure, table, record, started, MNIST_DATA)
