"""Study 1: batch statistics held outside the gradient (the paper's Sec. 2 bias example).

Sec. 2: with x = u + b normalized as x - E[x], a gradient step that ignores
E[x]'s dependence on b moves b by -lr dl/dxhat every step while the output, and so
the loss, stays the same: b grows without bound. The paper adds that holding the
scale statistics out of the gradient too made the model blow up. Arms on the
MNIST MLP, all keeping the pre-BN bias b (`configs/mnist.py` variants):
full BN and mean-only BN (the example's normalization), each with its statistics
in the gradient (Algorithm 1) and held out of it (`BatchNorm.stop_gradient`).
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import Arm, StudyContext, train_arm

# arm -> (configs/mnist.py variant, model.normalization, model.bn.stop_gradient)
ARMS = {
  'bn': ('bn_bias', 'batch', 'none'),
  'bn_mean_stopped': ('bn_stop_mean', 'batch', 'mean'),
  'bn_mean_variance_stopped': ('bn_stop_mean_and_variance', 'batch', 'mean_and_variance'),
  'mean_only_bn': ('bn_bias', 'mean_only_batch', 'none'),
  'mean_only_bn_mean_stopped': ('bn_stop_mean', 'mean_only_batch', 'mean'),
}
NUM_STEPS = 20_000


def bias_norm(arm: Arm) -> list[tuple[int, float]]:
  """||b|| over training: the L2 norm of all hidden layers' pre-BN biases together."""
  tags = sorted(t for t in arm.scalars if t.startswith('params/dense') and t.endswith('/bias'))
  if not tags:
    return []
  steps = [s for s, _ in arm.scalars[tags[0]]]
  norms = np.sqrt(sum(np.square([v for _, v in arm.scalars[t]]) for t in tags))
  return list(zip(steps, norms.tolist(), strict=True))


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = {}
  for name, (variant, normalization, stop_gradient) in ARMS.items():
    config = context.config(
      f'configs/mnist.py:{variant}',
      num_steps=context.steps(NUM_STEPS),
      log_param_norms=True,
      model__normalization=normalization,
      model__bn__stop_gradient=stop_gradient,
    )
    arms[name] = train_arm(context, name, config)

  figure, axes = plt.subplots(1, 3, figsize=(16, 4.2))
  for name, arm in arms.items():
    style = '--' if 'stopped' in name else '-'
    for ax, curve in zip(
      axes, (arm.curve('train/loss'), bias_norm(arm), arm.curve('eval/accuracy')), strict=True
    ):
      if curve:
        ax.plot(*zip(*curve, strict=True), style, label=name)
  axes[0].set(title='training loss', xlabel='step', yscale='log')
  axes[1].set(title='||b||, pre-BN biases of all hidden layers', xlabel='step', yscale='log')
  axes[2].set(title='test accuracy (moving-average statistics)', xlabel='step', ylim=(0.0, 1.0))
  axes[2].legend(fontsize=8)
  figure.suptitle('Study 1: statistics inside vs outside the gradient (Sec. 2), MNIST MLP')

  table = [
    'MNIST MLP (3x100 sigmoid, batch 60, SGD lr 2.0) with a pre-BN bias b, '
    f'{context.steps(NUM_STEPS)} steps.',
    '',
    '| arm | diverged at step | final train loss | ||b|| at 1k steps | final ||b|| | '
    'final test accuracy |',
    '|---|---|---|---|---|---|',
  ]
  rows = {}
  for name, arm in arms.items():
    curve = bias_norm(arm)
    norms = dict(curve)
    rows[name] = {
      'diverged_at': arm.diverged_at,
      'final_train_loss': arm.final('train/loss'),
      'bias_norm_1k': norms.get(1000),
      'final_bias_norm': curve[-1][1] if curve else None,
      'final_test_accuracy': arm.final('eval/accuracy'),
    }
    r = rows[name]
    table.append(
      f'| {name} | {fmt(r["diverged_at"], "{}")} | {fmt(r["final_train_loss"])} | '
      f'{fmt(r["bias_norm_1k"], "{:.3g}")} | {fmt(r["final_bias_norm"], "{:.3g}")} | '
      f'{fmt(r["final_test_accuracy"])} |'
    )
  write_results(context, figure, table, {'arms': rows}, started, MNIST_DATA)
