"""Study 7: weight normalization (Salimans & Kingma 2016) against BN.

None vs BN vs WN (w = s v/||v||, data-dependent init) vs WN + mean-only BN, on
the MNIST MLP and on the small BN-Inception proxy (`bn_baseline` with its
normalization swapped; the no-normalization arm is then Inception without LRN
and dropout): test accuracy against steps, and wall time per training step.
"""

import time

import matplotlib.pyplot as plt

from bn_repro.studies.common import (
  FASHION_DATA,
  MNIST_DATA,
  StudyContext,
  fmt,
  train_arm,
  write_results,
)

NORMALIZATIONS = {  # label -> model.normalization
  'none': 'none',
  'BN': 'batch',
  'WN': 'weight',
  'WN + mean-only BN': 'weight_mean_only_batch',
}
MLP_STEPS = 50_000
INCEPTION_STEPS = 1_500


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = {}
  for model, spec, steps in (
    ('mlp', 'configs/mnist.py:bn', MLP_STEPS),
    ('inception', 'configs/inception.py:bn_baseline,small', INCEPTION_STEPS),
  ):
    for label, normalization in NORMALIZATIONS.items():
      config = context.config(
        spec, num_steps=context.steps(steps), model__normalization=normalization
      )
      arms[model, label] = train_arm(context, f'{model}_{normalization}', config)

  figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
  for ax, model, low in zip(axes, ('mlp', 'inception'), (0.9, 0.5), strict=True):
    for label in NORMALIZATIONS:
      curve = arms[model, label].curve('eval/accuracy')
      if curve:
        ax.plot(*zip(*curve, strict=True), label=label)
    ax.set(xlabel='step', ylabel='test accuracy', ylim=(low, 1.0))
    ax.legend()
  axes[0].set_title('MNIST MLP (3x100 sigmoid, SGD lr 2.0)')
  axes[1].set_title('small BN-Inception proxy (Fashion-MNIST, ReLU, bn_baseline settings)')
  figure.suptitle('Study 7: weight normalization vs batch normalization')

  table = [
    f'MLP: {context.steps(MLP_STEPS)} steps; Inception proxy: {context.steps(INCEPTION_STEPS)} '
    "steps. ms per step: the trainer's elapsed wall time (evaluations included) over steps.",
    '',
    '| model | normalization | final test accuracy | best test accuracy | steps to 97% (MLP) / '
    '85% (Inception) | ms per step | diverged at |',
    '|---|---|---|---|---|---|---|',
  ]
  rows = []
  for (model, label), arm in arms.items():
    accuracies = [v for _, v in arm.curve('eval/accuracy')]
    threshold = 0.97 if model == 'mlp' else 0.85
    seconds = arm.seconds_per_step()
    row = {
      'model': model,
      'normalization': label,
      'final_test_accuracy': arm.final('eval/accuracy'),
      'best_test_accuracy': max(accuracies, default=None),
      'steps_to_threshold': arm.steps_to('eval/accuracy', threshold),
      'ms_per_step': None if seconds is None else 1000 * seconds,
      'diverged_at': arm.diverged_at,
    }
    rows.append(row)
    table.append(
      f'| {model} | {label} | {fmt(row["final_test_accuracy"])} | '
      f'{fmt(row["best_test_accuracy"])} | {fmt(row["steps_to_threshold"], "{}")} | '
      f'{fmt(row["ms_per_step"], "{:.3f}")} | {fmt(row["diverged_at"], "{}")} |'
    )
  write_results(context, figure, table, {'arms': rows}, started, f'{MNIST_DATA}; {FASHION_DATA}')
