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
the better one (the higher seed-mean final accuracy) is compared. Each setting trains
`common.NUM_SEEDS` seeds (the MLP's side by side, the proxy's as separate runs): accuracies
are per seed (mean and range), steps to the threshold are the seed-mean curve's.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import NUM_SEEDS, SeededArm, StudyContext, seed_arms, train_arms

NORMALIZATIONS = {  # label -> model.norm.kind
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


def _mean_final(seeds: SeededArm) -> float:
  """The seed-mean final test accuracy; a diverged seed counts as 0."""
  return float(np.mean([a or 0.0 for a in seeds.finals('eval/accuracy')]))


def _mean_curve(seeds: SeededArm) -> list[tuple[int, float]]:
  """The seed-mean test-accuracy curve (at the steps every seed evaluated)."""
  curves = [dict(c) for c in seeds.curves('eval/accuracy')]
  steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
  return [(step, float(np.mean([c[step] for c in curves]))) for step in steps]


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs, names = {}, {}
  for model, (spec, steps, learning_rates, eval_every, _) in MODELS.items():
    for label, normalization in NORMALIZATIONS.items():
      for rate in learning_rates:
        config = context.config(
          spec,
          num_steps=context.steps(steps),
          eval_every=context.steps(eval_every),
          checkpoint_every=context.steps(steps),
          model__norm__kind=normalization,
          optimizer__learning_rate=rate,
        )
        names[model, label, rate] = f'{model}_{normalization}_lr{rate:g}'
        configs.update(seed_arms(names[model, label, rate], config, side_by_side=model == 'mlp'))
  trained = train_arms(context, configs)
  rates = {}  # (model, label) -> {rate: SeededArm}
  for (model, label, rate), name in names.items():
    rates.setdefault((model, label), {})[rate] = SeededArm.collect(trained, name)
  best_rate = {key: max(tried, key=lambda r: _mean_final(tried[r])) for key, tried in rates.items()}
  best = {key: rates[key][rate] for key, rate in best_rate.items()}

  figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
  for ax, model, low in zip(axes, MODELS, (0.9, 0.5), strict=True):
    for label in NORMALIZATIONS:
      curve = _mean_curve(best[model, label])
      if curve:
        ax.plot(*zip(*curve, strict=True), label=f'{label} (lr {best_rate[model, label]:g})')
    ax.set(xlabel='step', ylabel=f'test accuracy, mean of {NUM_SEEDS} seeds', ylim=(low, 1.0))
    ax.legend()
  axes[0].set_title('MNIST MLP (3x100 sigmoid, plain SGD)')
  axes[1].set_title('small BN-Inception proxy (Fashion-MNIST, ReLU, SGD + momentum)')
  figure.suptitle('Study 7: weight normalization vs batch normalization (better of two LRs)')

  table = [
    f'MLP: {context.steps(MODELS["mlp"][1])} steps; Inception proxy: '
    f"{context.steps(MODELS['inception'][1])} steps; {NUM_SEEDS} seeds per setting (the MLP's "
    "side by side, the proxy's as separate runs), accuracies as mean (min to max) over the "
    'seeds. Each arm at two learning rates; "final" is the final test accuracy at each '
    '("div@N": a seed diverged at step N); the other columns are for the better one (higher '
    'seed mean): best test accuracy over training per seed, steps for the seed-mean curve to '
    'reach the threshold, and ms per step: wall time between the first and last training log '
    "(compilation excluded, evaluations included; the MLP's for its 3 seeds together, the "
    "proxy's the median of its runs' one-seed times), same CPU for all arms.",
    '',
    '| model | normalization | final test accuracy by learning rate | best test accuracy | '
    'steps to 97% (MLP) / 75% (Inception) | ms per step |',
    '|---|---|---|---|---|---|',
  ]
  rows = []
  for (model, label), seeds in best.items():
    seconds = [a.seconds_per_step() for a in seeds.arms if a.diverged_at is None]
    seconds = [t for t in seconds if t is not None]
    by_rate = {
      rate: f'div@{tried.diverged_at}' if tried.diverged_at else tried.finals('eval/accuracy')
      for rate, tried in rates[model, label].items()
    }
    best_accuracy = [max(v for _, v in c) for c in seeds.curves('eval/accuracy')]
    row = {
      'model': model,
      'normalization': label,
      'final_test_accuracy_by_learning_rate': {
        rate: v if isinstance(v, str) else seed_summary(v) for rate, v in by_rate.items()
      },
      'best_test_accuracy': None if seeds.diverged_at else seed_summary(best_accuracy),
      'steps_to_threshold': next((s for s, v in _mean_curve(seeds) if v >= MODELS[model][4]), None),
      'ms_per_step': 1000 * float(np.median(seconds)) if seconds else None,
    }
    rows.append(row)
    cells = ', '.join(
      f'{r:g}: {v}' if isinstance(v, str) else f'{r:g}: {fmt_seeds(v)}' for r, v in by_rate.items()
    )
    table.append(
      f'| {model} | {label} | {cells} | '
      f'{"—" if seeds.diverged_at else fmt_seeds(best_accuracy)} | '
      f'{fmt(row["steps_to_threshold"], "{}")} | {fmt(row["ms_per_step"], "{:.3f}")} |'
    )
  record = {'num_seeds': NUM_SEEDS, 'arms': rows}
  write_results(context, figure, table, record, started, f'{MNIST_DATA}; {FASHION_DATA}')
