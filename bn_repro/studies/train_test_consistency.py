"""Study 16: the train-test inconsistency at small normalization batch (Wu & Johnson 2021).

With BN statistics over g examples, training normalizes each example with its group's noisy
statistics while inference uses population averages: a network tuned to the first is tested
under the second. Wu & Johnson (2021, "Rethinking 'Batch' in BatchNorm") discuss two ways to
close the gap: evaluate as in training (batch statistics over g), or train the last part
with the population statistics fixed (a FrozenBN tail), so that the weights adapt to what
inference uses.

Design, fixed before the runs:
- Model and data: the MNIST BN MLP (`configs/mnist.py:bn`: 3x100 sigmoid, plain SGD,
  binarized real MNIST), SGD batch 32, learning rate 1.0 (study 13's rate at 32), 10,000 steps
  (320,000 examples), BN statistics over groups of g in {2, 4, 8, 32} consecutive examples
  (`model.norm.group_size`; 32: the whole batch), 3 seeds side by side.
- Arms per g: 'plain' (BN throughout) and 'frozen_tail' (FrozenBN from step 9,000: the last
  10% of the steps normalize with the running averages, which stop updating; gamma and beta
  keep training; `model.norm.freeze_from`).
- Measured per seed, final test error in points: plain arms with the moving averages, with
  Algorithm 2's population statistics (5,000 training examples, grouped as in training) and
  with batch statistics over test batches of g (as in training); frozen-tail arms with their
  frozen statistics (what their last 1,000 steps trained under).
- Rules (e: seed means; tolerance 0.5 points):
  * "At small normalization batch, evaluating as in training beats population statistics"
    HOLDS if e_batch(g) <= e_population(g) - 0.5 at g = 2 and g = 4; PARTLY if at one; else
    DOES NOT HOLD. (Study 8, run before this rule was written, measured batch-statistics
    evaluation below population statistics at every g for a batch of 60: this rule is the
    claim's natural reading, not a choice made after seeing it.)
  * "A FrozenBN tail reduces the inconsistency": HOLDS if the frozen-tail arm's error is at
    most e_population(g) of the plain arm - 0.5 at g = 2 and g = 4; PARTLY if at one; else
    DOES NOT HOLD.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import plain_log_axis, plot_over_seeds, write_results
from bn_repro.studies.common import (
  NUM_SEEDS,
  Arm,
  StudyContext,
  count_verdict,
  restore,
  train_arms,
  verdict_lines,
)
from bn_repro.training.evaluate import batch_statistics_accuracy

GROUP_SIZES = (2, 4, 8, 32)
SMALL_GROUPS = (2, 4)
BATCH_SIZE = 32
STEPS = 10_000
FROZEN_FRACTION = 0.1
LEARNING_RATE = 1.0
POPULATION_BATCHES = 5_000 // BATCH_SIZE
TOLERANCE = 0.5  # Points of test error.
MEASURES = {
  'moving_averages': 'moving averages',
  'population': 'population statistics',
  'batch_statistics': 'batch statistics over g',
  'frozen_tail': 'FrozenBN tail (its frozen statistics)',
}


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """{'plain_gG', 'frozen_tail_gG': config} for every group size."""
  steps = context.steps(STEPS)
  configs = {}
  for g in GROUP_SIZES:
    for arm in ('plain', 'frozen_tail'):
      configs[f'{arm}_g{g}'] = context.config(
        'configs/mnist.py:bn',
        num_steps=steps,
        batch_size=BATCH_SIZE,
        num_seeds=NUM_SEEDS,
        checkpoint_every=steps,
        eval_every=steps if context.smoke else steps // 4,
        optimizer__learning_rate=LEARNING_RATE,
        eval__unit_percentiles=False,
        model__norm__group_size=g,
        model__norm__freeze_from=round(steps * (1 - FROZEN_FRACTION)) if arm != 'plain' else None,
        population_stats__num_batches=POPULATION_BATCHES if arm == 'plain' else 0,
      )
  return configs


def measure(
  configs: dict[str, ml_collections.ConfigDict], arms: dict[str, Arm]
) -> dict[int, dict[str, list[float]]]:
  """{g: {measure: [per-seed test error, points]}} (MEASURES)."""
  out = {}
  for g in GROUP_SIZES:
    plain = arms[f'plain_g{g}']
    networks = restore(configs[f'plain_g{g}'], plain.workdir / 'checkpoints').seeds(NUM_SEEDS)
    images, labels = networks[0].test_inputs()
    out[g] = {
      'moving_averages': plain.seed_errors(),
      'population': plain.seed_errors('eval_population/accuracy'),
      'batch_statistics': [
        100.0
        * (1.0 - batch_statistics_accuracy(n.model, n.params, n.batch_stats, images, labels, g))
        for n in networks
      ],
      'frozen_tail': arms[f'frozen_tail_g{g}'].seed_errors(),
    }
  return out


def judge(errors: dict[int, dict[str, list[float]]]) -> dict[str, dict[str, object]]:
  """The module docstring's rules on `measure`'s output."""
  e = {g: {m: float(np.mean(v)) for m, v in by_m.items()} for g, by_m in errors.items()}
  small = [g for g in SMALL_GROUPS if g in e]
  batch_gain = {g: e[g]['population'] - e[g]['batch_statistics'] for g in small}
  frozen_gain = {g: e[g]['population'] - e[g]['frozen_tail'] for g in small}

  population = ', '.join(f'{e[g]["population"]:.2f}%' for g in small)

  def listed(gains: dict[int, float]) -> str:
    return ', '.join(f'g={g} {v:+.2f}' for g, v in gains.items())

  return {
    'batch_statistics_evaluation_helps': {
      'verdict': count_verdict(sum(v >= TOLERANCE for v in batch_gain.values()), len(small)),
      'said': 'population minus batch-statistics test error (points): '
      f'{listed(batch_gain)}; population {population}',
      'population_minus_batch_statistics': batch_gain,
    },
    'frozen_tail_helps': {
      'verdict': count_verdict(sum(v >= TOLERANCE for v in frozen_gain.values()), len(small)),
      'said': f'population (plain) minus FrozenBN-tail test error (points): {listed(frozen_gain)}',
      'population_minus_frozen_tail': frozen_gain,
    },
  }


def render(context: StudyContext, errors: dict, verdicts: dict, started: float) -> None:
  """figure.png (test error against g per inference), table.md and summary.json."""
  figure, ax = plt.subplots(figsize=(7.5, 4.5))
  for (key, label), style in zip(MEASURES.items(), ('o-', 's-', '^--', 'v-'), strict=True):
    plot_over_seeds(ax, GROUP_SIZES, [errors[g][key] for g in GROUP_SIZES], style, label)
  ax.set_xscale('log', base=2)
  plain_log_axis(ax)
  ax.set_xticks(GROUP_SIZES, [str(g) for g in GROUP_SIZES])
  ax.set(xlabel=f'BN statistics group size g (SGD batch {BATCH_SIZE})', ylabel='test error (%)')
  ax.legend(fontsize=8)
  ax.set_title(
    f'Study 16: train-test consistency, MNIST BN MLP, {STEPS:,} steps, {NUM_SEEDS} seeds',
    fontsize=10,
  )
  table = [
    f'MNIST BN MLP, SGD batch {BATCH_SIZE} at {LEARNING_RATE}, {STEPS:,} steps, BN statistics '
    f'over groups of g, {NUM_SEEDS} seeds side by side: final test error in points, mean (min to '
    f'max) over the seeds; the FrozenBN tail trains its last {FROZEN_FRACTION:.0%} of the steps '
    'with the running averages frozen.',
    '',
    '| g | ' + ' | '.join(MEASURES.values()) + ' |',
    '|---|' + '---|' * len(MEASURES),
    *[
      f'| {g} | ' + ' | '.join(fmt_seeds(errors[g][k], '{:.2f}') for k in MEASURES) + ' |'
      for g in GROUP_SIZES
    ],
    '',
    *verdict_lines(verdicts),
  ]
  record = {
    'num_seeds': NUM_SEEDS,
    'test_error': {g: {k: seed_summary(v) for k, v in errors[g].items()} for g in GROUP_SIZES},
    'verdicts': verdicts,
  }
  write_results(context, figure, table, record, started, MNIST_DATA)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs = arm_configs(context)
  errors = measure(configs, train_arms(context, configs))
  render(context, errors, judge(errors), started)
