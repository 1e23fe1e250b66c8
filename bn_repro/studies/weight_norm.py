"""Study 7: weight normalization (Salimans & Kingma 2016) against BN.

None vs BN vs WN (w = s v/||v||, data-dependent init) vs WN + mean-only BN, on
the MNIST MLP and on the small BN-Inception proxy (the `bn_baseline` config, LRN and
dropout 0.4 included, with its normalization swapped, so the no-normalization arm is
Inception itself): test accuracy against steps, and wall time per step. WN's
data-dependent initialization sees the first 256 training examples
(`bn_repro.training.state.WN_INIT_EXAMPLES`), with BN layers normalizing by that batch.
Plain SGD does not share WN's invariance to the learning rate (the WN paper trains with Adam): the
gradient of v is scaled by s/||v||, so WN's effective rate differs from the others'.
Every arm therefore runs at two learning rates (the config's, and a smaller one) and
the better one is compared.
"""

import time

import matplotlib.pyplot as plt

from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import Arm, StudyContext, train_arm

NORMALIZATIONS = {  # label -> model.normalization
  'none': 'none',
  'BN': 'batch',
  'WN': 'weight',
  'WN + mean-only BN': 'weight_mean_only_batch',
}
# model -> (config, steps, learning rates, evaluation period, accuracy threshold).
MODELS = {
  'mlp': ('configs/mnist.py:bn', 30_000, (2.0, 0.5), 500, 0.97),
  'inception': ('configs/inception.py:bn_baseline,small', 1_000, (0.01, 0.0025), 200, 0.75),
}


def _best(arms: list[Arm]) -> Arm:
  """The arm with the highest final test accuracy (a diverged arm counts as 0)."""
  return max(arms, key=lambda a: (a.final('eval/accuracy') or 0.0) if not a.diverged_at else 0.0)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  best, rates = {}, {}
  for model, (spec, steps, learning_rates, eval_every, _) in MODELS.items():
    for label, normalization in NORMALIZATIONS.items():
      tried = {}
      for rate in learning_rates:
        config = context.config(
          spec,
          num_steps=context.steps(steps),
          eval_every=context.steps(eval_every),
          checkpoint_every=context.steps(steps),
          model__normalization=normalization,
          optimizer__learning_rate=rate,
        )
        tried[rate] = train_arm(context, f'{model}_{normalization}_lr{rate:g}', config)
      best[model, label] = _best(list(tried.values()))
      rates[model, label] = tried

  figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
  for ax, model, low in zip(axes, MODELS, (0.9, 0.5), strict=True):
    for label in NORMALIZATIONS:
      curve = best[model, label].curve('eval/accuracy')
      rate = next(r for r, a in rates[model, label].items() if a is best[model, label])
      if curve:
        ax.plot(*zip(*curve, strict=True), label=f'{label} (lr {rate:g})')
    ax.set(xlabel='step', ylabel='test accuracy', ylim=(low, 1.0))
    ax.legend()
  axes[0].set_title('MNIST MLP (3x100 sigmoid, plain SGD)')
  axes[1].set_title('small BN-Inception proxy (Fashion-MNIST, ReLU, SGD + momentum)')
  figure.suptitle('Study 7: weight normalization vs batch normalization (better of two LRs)')

  table = [
    f'MLP: {context.steps(MODELS["mlp"][1])} steps; Inception proxy: '
    f'{context.steps(MODELS["inception"][1])} steps. Each arm at two learning rates; '
    '"final" is the final test accuracy at each ("div@N": diverged at step N); the other '
    'columns are for the better one. ms per step: wall time between the first and last '
    'training log (compilation excluded, evaluations included), same CPU for all arms.',
    '',
    '| model | normalization | final test accuracy by learning rate | best test accuracy | '
    'steps to 97% (MLP) / 75% (Inception) | ms per step |',
    '|---|---|---|---|---|---|',
  ]
  rows = []
  for (model, label), arm in best.items():
    accuracies = [v for _, v in arm.curve('eval/accuracy')]
    seconds = arm.seconds_per_step()
    by_rate = {
      rate: (f'div@{a.diverged_at}' if a.diverged_at else a.final('eval/accuracy'))
      for rate, a in rates[model, label].items()
    }
    row = {
      'model': model,
      'normalization': label,
      'final_test_accuracy_by_learning_rate': by_rate,
      'best_test_accuracy': None if arm.diverged_at else max(accuracies, default=None),
      'steps_to_threshold': arm.steps_to('eval/accuracy', MODELS[model][4]),
      'ms_per_step': None if seconds is None or arm.diverged_at else 1000 * seconds,
    }
    rows.append(row)
    cells = ', '.join(
      f'{r:g}: {v}' if isinstance(v, str) else f'{r:g}: {fmt(v)}' for r, v in by_rate.items()
    )
    table.append(
      f'| {model} | {label} | {cells} | {fmt(row["best_test_accuracy"])} | '
      f'{fmt(row["steps_to_threshold"], "{}")} | {fmt(row["ms_per_step"], "{:.3f}")} |'
    )
  write_results(context, figure, table, {'arms': rows}, started, f'{MNIST_DATA}; {FASHION_DATA}')
