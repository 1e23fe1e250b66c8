"""Study 3: where to normalize (Sec. 3.2): BN on Wu vs BN on the layer input u.

The paper normalizes x = Wu + b rather than u: u is the output of a previous
nonlinearity, whose distribution's shape is likely to change during training,
while Wu + b "is more likely to have a symmetric, non-sparse distribution". Arms
(`configs/mnist.py`): `baseline` (no BN), `bn` (g(BN(Wu))), `bn_input` (g(W BN(u) + b)),
with the Figure 1(b, c) percentiles of the sigmoid input of the last hidden layer.
"""

import time

import matplotlib.pyplot as plt

from bn_repro.reports.figure1 import PERCENTILES, last_hidden_layer, typical_unit_ranges
from bn_repro.reports.formatting import MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import StudyContext, train_arm

ARMS = {'baseline': 'no BN', 'bn': 'BN on Wu (the paper)', 'bn_input': 'BN on u'}
NUM_STEPS = 50_000
REPORT_STEPS = (10_000, 50_000)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = {
    name: train_arm(
      context, name, context.config(f'configs/mnist.py:{name}', num_steps=context.steps(NUM_STEPS))
    )
    for name in ARMS
  }
  figure, axes = plt.subplots(1, 1 + len(arms), figsize=(5 * (1 + len(arms)), 4), sharey=False)
  for name, arm in arms.items():
    axes[0].plot(*zip(*arm.curve('eval/accuracy'), strict=True), label=ARMS[name])
  axes[0].set(title='test accuracy', xlabel='step', ylim=(0.9, 1.0))
  axes[0].legend()
  for ax, (name, arm) in zip(axes[1:], arms.items(), strict=True):
    layer = last_hidden_layer(arm.scalars)
    for p in PERCENTILES:
      curve = arm.curve(f'preactivation/layer{layer}/unit_p{p}')
      ax.plot(*zip(*curve, strict=True), label=f'{p}th')
    ax.set(title=f'{ARMS[name]}: sigmoid input, last layer, unit 0', xlabel='step')
    ax.legend(fontsize=8)
  figure.suptitle('Study 3: BN on Wu vs BN on the layer input u, MNIST MLP')

  steps = [s for s in REPORT_STEPS if s <= context.steps(NUM_STEPS)] or [context.steps(NUM_STEPS)]
  table = [
    f'MNIST MLP (3x100 sigmoid, batch 60, SGD lr 2.0), {context.steps(NUM_STEPS)} steps. '
    "Drift: mean range over training of the tracked unit's 15/50/85th sigmoid-input "
    'percentiles (last hidden layer; results/mnist/summary.md).',
    '',
    '| arm | ' + ' | '.join(f'test acc. @ {s}' for s in steps) + ' | steps to 97% | drift |',
    '|---|' + '---|' * (len(steps) + 2),
  ]
  rows = {}
  for name, arm in arms.items():
    accuracy = dict(arm.curve('eval/accuracy'))
    rows[name] = {
      'test_accuracy': {s: accuracy.get(s) for s in steps},
      'steps_to_97': arm.steps_to('eval/accuracy', 0.97),
      'percentile_drift': typical_unit_ranges(arm.scalars)['mean'],
    }
    r = rows[name]
    table.append(
      f'| {ARMS[name]} | '
      + ' | '.join(fmt(r['test_accuracy'][s]) for s in steps)
      + f' | {fmt(r["steps_to_97"], "{}")} | {r["percentile_drift"]:.2f} |'
    )
  write_results(context, figure, table, {'arms': rows}, started, MNIST_DATA)
