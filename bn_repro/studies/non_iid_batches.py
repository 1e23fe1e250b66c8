"""Study 14: non-i.i.d. mini-batches (Ioffe 2017, Sec. 4).

BN's output for an example depends on the other examples of its batch. When batches are
not i.i.d. samples (Ioffe's example: a batch of 32 made of 16 same-class pairs, as metric
learning draws them), the network can learn to lean on the batch's statistics, which
inference replaces by population averages. Ioffe (2017) reports BN's validation accuracy
falling with such batches and Batch Renormalization, whose outputs depend on the example
alone once r and d are relaxed, keeping most of it; GroupNorm (Wu & He 2018) has no batch
statistics at all.

Design, fixed before the runs:
- Model and data: the MNIST MLP of study 13 (`configs/mnist.py`: 3x100 sigmoid, plain SGD,
  binarized real MNIST), batch 32, learning rate 1.0 (study 13's rate at 32), 320,000
  training examples (10,000 steps), 3 seeds side by side; BN, Batch Renorm (rmax 3, dmax 5,
  the paper's schedule scaled to the run), GroupNorm (4 groups of 25 units) and no
  normalization (the control).
- Batch orders (`input.shuffle`): 'iid' (a uniform permutation per epoch); 'pairs' (16
  same-class pairs per batch: Ioffe's construction; with MNIST's 10 classes a batch's pairs
  still cover most classes, a milder departure from i.i.d. than 16 of ImageNet's 1,000);
  'halves' (two same-class chunks of 16 per batch: at most 2 classes in a batch, our
  stronger version of the same departure).
- Measured per seed: final test error (points) with each method's inference statistics
  (BN and Batch Renorm their moving averages); the training error under the training
  batches (the seeds' mean over the last 10 logs), which shows how much the batch helped.
- Rules (e: seed-mean final test error in points; tolerance 0.5 points):
  * "BN suffers from non-i.i.d. batches" at an order o: e_BN(o) - e_BN(iid) >= 0.5 with the
    seed ranges apart AND more than the control's rise e_none(o) - e_none(iid) by >= 0.5.
    HOLDS if at both orders, PARTLY if at one, else DOES NOT HOLD.
  * "Batch Renorm does not suffer": at each order where BN's rise was >= 0.5, Batch
    Renorm's rise e_BRN(o) - e_BRN(iid) is at most half of BN's. HOLDS if at every such
    order, PARTLY if at one, DOES NOT HOLD if at none; NOT TESTABLE HERE if BN rose at none.
  * "GroupNorm does not suffer": HOLDS if |e_GN(o) - e_GN(iid)| <= 0.5 at both orders;
    PARTLY if not, but within 0.5 of the control's change at both; else DOES NOT HOLD.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.nn.batch_renorm import renorm_schedule
from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import (
  DOES_NOT_HOLD,
  HOLDS,
  NOT_TESTABLE,
  NUM_SEEDS,
  PARTLY,
  Arm,
  StudyContext,
  count_verdict,
  train_arms,
  verdict_lines,
)

KINDS = {
  'batch': 'BN',
  'batch_renorm': 'Batch Renorm',
  'group': 'GroupNorm (4 groups)',
  'none': 'no normalization',
}
# Order -> (input.shuffle, input.class_chunk).
ORDERS = {'iid': ('full', 2), 'pairs': ('class_chunks', 2), 'halves': ('class_chunks', 16)}
BATCH_SIZE = 32
STEPS = 10_000
LEARNING_RATE = 1.0
NUM_GROUPS = 4
TOLERANCE = 0.5  # Points of test error.
TRAIN_LOGS = 10


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """{'KIND_ORDER': config} for every normalization kind and batch order."""
  steps = context.steps(STEPS)
  configs = {}
  for order, (shuffle, chunk) in ORDERS.items():
    for kind in KINDS:
      configs[f'{kind}_{order}'] = context.config(
        'configs/mnist.py:bn',
        num_steps=steps,
        batch_size=BATCH_SIZE,
        num_seeds=NUM_SEEDS,
        eval_every=steps if context.smoke else steps // 4,
        checkpoint_every=steps if context.smoke else steps // 4,
        optimizer__learning_rate=LEARNING_RATE,
        eval__unit_percentiles=False,
        input__shuffle=shuffle,
        input__class_chunk=chunk,
        model__norm__kind=kind,
        model__norm__num_groups=NUM_GROUPS,
        **{f'model__norm__{k}': v for k, v in renorm_schedule(steps).items()},
      )
  return configs


def measure(arms: dict[str, Arm]) -> dict[str, dict[str, dict[str, list[float]]]]:
  """{kind: {order: {'test_error': [per seed], 'train_error': [seeds' mean]}}}, in points."""
  errors: dict[str, dict[str, dict[str, list[float]]]] = {kind: {} for kind in KINDS}
  for name, arm in arms.items():
    kind, order = name.rsplit('_', 1)
    train = [v for _, v in arm.curve('train/accuracy')[-TRAIN_LOGS:]]
    errors[kind][order] = {
      'test_error': arm.seed_errors(),
      'train_error': [100.0 * (1.0 - float(np.mean(train)))] if train else [],
    }
  return errors


def _rises(e: dict[str, dict[str, float]], kind: str) -> dict[str, float]:
  return {o: e[kind][o] - e[kind]['iid'] for o in e[kind] if o != 'iid'}


def judge(errors: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, object]]:
  """The module docstring's rules on `errors` {kind: {order: [per-seed test error]}}."""
  e = {k: {o: float(np.mean(v)) for o, v in by_o.items()} for k, by_o in errors.items()}
  bn, brn, gn, control = (_rises(e, k) for k in ('batch', 'batch_renorm', 'group', 'none'))
  raw = {
    o: r >= TOLERANCE and min(errors['batch'][o]) > max(errors['batch']['iid'])
    for o, r in bn.items()
  }
  suffers = [o for o in bn if raw[o] and bn[o] - control[o] >= TOLERANCE]
  bn_verdict = count_verdict(len(suffers), len(bn))
  rose = [o for o, r in bn.items() if r >= TOLERANCE]
  kept = [o for o in rose if brn[o] <= bn[o] / 2]
  brn_verdict = count_verdict(len(kept), len(rose)) if rose else NOT_TESTABLE
  gn_verdict = DOES_NOT_HOLD
  if all(abs(r) <= TOLERANCE for r in gn.values()):
    gn_verdict = HOLDS
  elif all(abs(gn[o] - control[o]) <= TOLERANCE for o in gn):
    gn_verdict = PARTLY

  def listed(rises: dict[str, float]) -> str:
    return ', '.join(f'{o} {r:+.2f}' for o, r in rises.items())

  return {
    'bn_suffers': {
      'verdict': bn_verdict,
      'said': f'rise of the test error over i.i.d. batches, points: BN {listed(bn)} '
      f'(i.i.d. {e["batch"]["iid"]:.2f}%); the control {listed(control)}',
      'bn_rise': bn,
      'control_rise': control,
      'seed_ranges_apart': raw,
    },
    'brn_does_not_suffer': {
      'verdict': brn_verdict,
      'said': f'Batch Renorm {listed(brn)} where BN {listed(bn)}',
      'brn_rise': brn,
      'bn_rose_at': rose,
    },
    'gn_does_not_suffer': {
      'verdict': gn_verdict,
      'said': f'GroupNorm {listed(gn)} (i.i.d. {e["group"]["iid"]:.2f}%); the control '
      f'{listed(control)}',
      'gn_rise': gn,
    },
  }


def render(context: StudyContext, errors: dict, verdicts: dict, started: float) -> None:
  """figure.png (test error per method and order), table.md and summary.json."""
  figure, ax = plt.subplots(figsize=(7.5, 4.2))
  width = 0.8 / len(ORDERS)
  for i, order in enumerate(ORDERS):
    x = np.arange(len(KINDS)) + (i - (len(ORDERS) - 1) / 2) * width
    values = [errors[k][order]['test_error'] for k in KINDS]
    means = np.array([np.mean(v) for v in values])
    spread = [means - [min(v) for v in values], [max(v) for v in values] - means]
    ax.bar(x, means, width, yerr=spread, capsize=3, label=f'{order} batches')
  ax.set_xticks(np.arange(len(KINDS)), list(KINDS.values()), fontsize=8)
  ax.set(ylabel='test error (%), mean and seed range')
  ax.legend(fontsize=8)
  ax.set_title(
    f'Study 14: non-i.i.d. batches of {BATCH_SIZE}, MNIST MLP, {STEPS:,} steps, {NUM_SEEDS} seeds',
    fontsize=10,
  )
  table = [
    f'MNIST MLP (3x100 sigmoid), batch {BATCH_SIZE}, SGD at {LEARNING_RATE}, {STEPS:,} steps, '
    f'{NUM_SEEDS} seeds side by side: final test error in points, mean (min to max) over the '
    'seeds (BN and Batch Renorm with their moving averages); in brackets the training error '
    f"under the training batches (the seeds' mean over the last {TRAIN_LOGS} logs).",
    '',
    '| batches | ' + ' | '.join(KINDS.values()) + ' |',
    '|---|' + '---|' * len(KINDS),
    *[
      f'| {order} | '
      + ' | '.join(
        f'{fmt_seeds(errors[k][order]["test_error"], "{:.2f}")} '
        f'[{fmt_seeds(errors[k][order]["train_error"], "{:.2f}")}]'
        for k in KINDS
      )
      + ' |'
      for order in ORDERS
    ],
    '',
    *verdict_lines(verdicts),
  ]
  record = {
    'num_seeds': NUM_SEEDS,
    'errors': {
      k: {o: {m: seed_summary(v) for m, v in errors[k][o].items()} for o in ORDERS} for k in KINDS
    },
    'verdicts': verdicts,
  }
  write_results(context, figure, table, record, started, MNIST_DATA)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  errors = measure(train_arms(context, arm_configs(context)))
  verdicts = judge({k: {o: v['test_error'] for o, v in by_o.items()} for k, by_o in errors.items()})
  render(context, errors, verdicts, started)
