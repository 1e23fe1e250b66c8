"""Study 1: batch statistics held outside the gradient (the paper's Sec. 2 bias example).

Sec. 2: with x = u + b normalized as x - E[x], a gradient step that ignores
E[x]'s dependence on b moves b by -lr dl/dxhat every step while the output, and so
the loss, stays the same: b grows without bound. The paper adds that holding the
scale statistics out of the gradient too made the model blow up. Arms on the
MNIST MLP, all keeping the pre-BN bias b (`configs/mnist.py` variants):
full BN and mean-only BN (the example's normalization), each with its statistics
in the gradient (Algorithm 1) and held out of it (`BatchNorm.stop_gradient`).
Each arm trains `common.NUM_SEEDS` seeds side by side; the table gives each number's mean
and range over them. A run of several seeds stops at the first step any seed's loss is not
finite: 'diverged at step' is that step.
"""

import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import NUM_SEEDS, Arm, StudyContext, train_arms

# arm -> (configs/mnist.py variant, model.norm.kind, model.norm.stop_gradient)
ARMS = {
  'bn': ('bn_bias', 'batch', 'none'),
  'bn_mean_stopped': ('bn_stop_mean', 'batch', 'mean'),
  'bn_mean_variance_stopped': ('bn_stop_mean_and_variance', 'batch', 'mean_and_variance'),
  'mean_only_bn': ('bn_bias', 'mean_only_batch', 'none'),
  'mean_only_bn_mean_stopped': ('bn_stop_mean', 'mean_only_batch', 'mean'),
}
NUM_STEPS = 20_000


def seed_bias_norms(arm: Arm) -> list[list[tuple[int, float]]]:
  """||b|| over training for each seed of the arm: the L2 norm of all hidden layers' pre-BN
  biases together ([] when the arm did not log its parameter norms)."""
  tags = sorted(t for t in arm.scalars if t.startswith('params/dense') and t.endswith('/bias'))
  curves = []
  for per_tag in zip(*(arm.seed_curves(t) for t in tags), strict=True):  # One seed's curves.
    steps = [s for s, _ in per_tag[0]]
    norms = np.sqrt(sum(np.square([v for _, v in curve]) for curve in per_tag))
    curves.append(list(zip(steps, norms.tolist(), strict=True)))
  return curves


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """The five arms, each its seeds side by side, logging their parameter norms."""
  return {
    name: context.config(
      f'configs/mnist.py:{variant}',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      log_param_norms=True,
      model__norm__kind=normalization,
      model__norm__stop_gradient=stop_gradient,
    )
    for name, (variant, normalization, stop_gradient) in ARMS.items()
  }


def measure(arms: dict[str, Arm]) -> dict[str, object]:
  """The study's record: per arm, its divergence step, final train loss, ||b|| per seed at
  1k steps and at the end, final test accuracy per seed, and the curves the figure draws."""
  rows = {}
  for name, arm in arms.items():
    curves = seed_bias_norms(arm)
    rows[name] = {
      'diverged_at': arm.diverged_at,
      'final_train_loss': arm.final('train/loss'),
      'bias_norm_1k': seed_summary([dict(c)[1000] for c in curves if 1000 in dict(c)]),
      'final_bias_norm': seed_summary([c[-1][1] for c in curves if c]),
      'final_test_accuracy': seed_summary(arm.seed_finals('eval/accuracy')),
      'curves': {
        'train_loss': arm.curve('train/loss'),
        'test_accuracy': arm.curve('eval/accuracy'),
        'bias_norm_per_seed': curves,
      },
    }
  return {'num_seeds': NUM_SEEDS, 'arms': rows}


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Training loss, ||b|| per seed and test accuracy per arm (dashed: statistics held out of
  the gradient). Drawn from the record (`--redraw`)."""
  del context
  figure, axes = plt.subplots(1, 3, figsize=(16, 4.2))
  for color, (name, row) in enumerate(record['arms'].items()):
    style = dict(ls='--' if 'stopped' in name else '-', color=f'C{color}')
    for seed, norms in enumerate(row['curves']['bias_norm_per_seed']):
      if norms:
        axes[1].plot(*zip(*norms, strict=True), **style, label=None if seed else name)
    for ax, curve in zip(
      (axes[0], axes[2]), (row['curves']['train_loss'], row['curves']['test_accuracy']), strict=True
    ):
      if curve:
        ax.plot(*zip(*curve, strict=True), **style, label=name)
  axes[0].set(title='training loss (seed mean)', xlabel='step', yscale='log')
  axes[1].set(title='||b||, pre-BN biases, hidden layers (each seed)', xlabel='step', yscale='log')
  axes[2].set(title='test accuracy (moving averages, seed mean)', xlabel='step', ylim=(0.0, 1.0))
  for ax in axes:
    ax.title.set_fontsize(10)
  # One legend for the three panels (dashed: statistics held out of the gradient).
  handles, labels = axes[0].get_legend_handles_labels()
  figure.legend(handles, labels, loc='lower center', ncol=len(labels), fontsize=9)
  figure.suptitle(
    'Study 1: statistics inside vs outside the gradient (Sec. 2), MNIST MLP, '
    f'{record["num_seeds"]} seeds'
  )
  figure.tight_layout(rect=(0, 0.08, 1, 0.95))
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  lines = [
    'MNIST MLP (3x100 sigmoid, batch 60, SGD lr 2.0) with a pre-BN bias b, '
    f'{context.steps(NUM_STEPS)} steps, {record["num_seeds"]} seeds side by side per arm: mean '
    "(min to max) over the seeds; the train loss is the seeds' mean.",
    '',
    '| arm | diverged at step | final train loss | ||b|| at 1k steps | final ||b|| | '
    'final test accuracy |',
    '|---|---|---|---|---|---|',
  ]
  for name, r in record['arms'].items():
    lines.append(
      f'| {name} | {fmt(r["diverged_at"], "{}")} | {fmt(r["final_train_loss"])} | '
      f'{_seeds(r["bias_norm_1k"], "{:.3g}")} | {_seeds(r["final_bias_norm"], "{:.3g}")} | '
      f'{_seeds(r["final_test_accuracy"])} |'
    )
  return lines


def _seeds(summary: dict | None, pattern: str = '{:.4f}') -> str:
  return fmt_seeds(summary['per_seed'] if summary else [], pattern)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  record = measure(train_arms(context, arm_configs(context)))
  write_results(context, draw(record, context), table(record, context), record, started, MNIST_DATA)
