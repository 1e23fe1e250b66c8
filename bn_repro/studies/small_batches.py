"""Study 13: small normalization batches (Wu & He 2018, Figure 1; Ioffe 2017, Sec. 4).

BN computes its training statistics over the mini-batch, so their noise grows as the batch
shrinks, while inference uses averages over many batches. Wu & He (2018) report ResNet-50's
ImageNet error rising from 23.6% at 32 images per GPU to 34.7% at 2 with BN, and 24.1% at
both with GroupNorm, whose statistics are per example; Ioffe (2017) reports that Batch
Renormalization (BN corrected toward its moving averages) trains substantially better than
BN with small mini-batches and matches it with ordinary ones.

Design, fixed before the runs:
- Model and data: the paper's MNIST MLP (`configs/mnist.py`: 3x100 sigmoid, plain SGD,
  binarized real MNIST, 10k test images), the normalization after each hidden linear layer:
  BN, Batch Renorm, GroupNorm (4 groups of 25 units), LayerNorm, and no normalization as the
  control (any dependence on the batch that SGD alone has shows there). The claims are about
  where the statistics come from, which an MLP expresses as a CNN does (BN: over the batch
  per unit; GN and LN: over units per example); the papers' CNNs do not fit this machine's
  budget 25 times over. GN groups hidden units rather than feature maps: a reading of GN
  for dense layers.
- Batch sizes B in {2, 4, 8, 16, 32}, the normalization batch being the SGD batch; learning
  rate 1.0 x B / 32 (linear scaling, as Wu & He; 1.0 at 32 is Figure 1's baseline rate 2.0
  at batch 60, scaled); 320,000 training examples per arm (5.3 epochs: 160,000 steps at 2,
  10,000 at 32). BN and Batch Renorm: momentum 0.99 (as every other study); Batch Renorm
  rmax 3, dmax 5 with the paper's schedule scaled to each run (`renorm_schedule`); the
  paper's single pair of averages. 3 seeds side by side per arm.
- Measured per seed: final test error (points) with each method's inference statistics (BN
  and Batch Renorm their moving averages, as both papers evaluate); for BN also with
  Algorithm 2's population statistics over 5,000 training examples (reported, not judged).
- Rules (e: a method's seed-mean final test error in points; tolerance 0.5 points, about 3
  standard errors of a 10k test set at 2% error):
  * "BN degrades at small batch" HOLDS if e_BN(2) - e_BN(32) >= 0.5 with the seed ranges
    apart (every seed at 2 above every seed at 32) AND that rise exceeds the control's,
    e_none(2) - e_none(32), by >= 0.5; PARTLY if only the first; else DOES NOT HOLD.
  * "GroupNorm does not depend on the batch" HOLDS if |e_GN(B) - e_GN(32)| <= 0.5 at every
    B; PARTLY if not, but |(e_GN(B) - e_GN(32)) - (e_none(B) - e_none(32))| <= 0.5 at every B
    (it moves no more than the control); else DOES NOT HOLD.
  * "Batch Renorm recovers most of BN's loss at small batch": at each B in {2, 4} where BN
    degraded (e_BN(B) - e_BN(32) >= 0.5), the share recovered (e_BN(B) - e_BRN(B)) /
    (e_BN(B) - e_BN(32)) >= 1/2; HOLDS if at every such B, PARTLY if at one, DOES NOT HOLD
    if at none; NOT TESTABLE HERE if BN degraded at neither.
  * "Batch Renorm matches BN at batch 32" HOLDS if e_BRN(32) <= e_BN(32) + 0.5.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.nn.batch_renorm import renorm_schedule
from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import plot_over_seeds, write_results
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
)

BATCH_SIZES = (2, 4, 8, 16, 32)
SMOKE_BATCH_SIZES = (2, 32)
KINDS = {
  'batch': 'BN',
  'batch_renorm': 'Batch Renorm',
  'group': 'GroupNorm (4 groups)',
  'layer': 'LayerNorm',
  'none': 'no normalization',
}
EXAMPLES = 320_000
LEARNING_RATE_AT_32 = 1.0
NUM_GROUPS = 4
POPULATION_EXAMPLES = 5_000
TOLERANCE = 0.5  # Points of test error.


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """{'KIND_bB': config} for every normalization kind and batch size (two sizes in smoke)."""
  configs = {}
  for batch in SMOKE_BATCH_SIZES if context.smoke else BATCH_SIZES:
    steps = context.steps(EXAMPLES // batch)
    for kind in KINDS:
      configs[f'{kind}_b{batch}'] = context.config(
        'configs/mnist.py:bn',
        num_steps=steps,
        batch_size=batch,
        num_seeds=NUM_SEEDS,
        eval_every=steps if context.smoke else steps // 4,
        checkpoint_every=steps if context.smoke else steps // 4,
        optimizer__learning_rate=LEARNING_RATE_AT_32 * batch / 32,
        eval__unit_percentiles=False,
        model__norm__kind=kind,
        model__norm__num_groups=NUM_GROUPS,
        population_stats__num_batches=max(1, POPULATION_EXAMPLES // batch),
        **{f'model__norm__{k}': v for k, v in renorm_schedule(steps).items()},
      )
  return configs


def measure(arms: dict[str, Arm]) -> dict[str, dict[int, dict[str, list[float]]]]:
  """{kind: {B: {'test_error': [per seed], 'test_error_population': [per seed, BN's alone]}}},
  in points; a diverged arm (its seeds stop together) counts as chance, 90."""
  errors: dict[str, dict[int, dict[str, list[float]]]] = {kind: {} for kind in KINDS}
  for name, arm in arms.items():
    kind, batch = name.rsplit('_b', 1)
    population = arm.seed_errors('eval_population/accuracy') if kind == 'batch' else []
    errors[kind][int(batch)] = {
      'test_error': arm.seed_errors(),
      'test_error_population': population,
    }
  return errors


def _means(errors: dict[str, dict[int, list[float]]]) -> dict[str, dict[int, float]]:
  return {kind: {b: float(np.mean(v)) for b, v in by_b.items()} for kind, by_b in errors.items()}


def _bn_degrades(errors: dict, e: dict, small: int, large: int) -> dict[str, object]:
  bn_rise = e['batch'][small] - e['batch'][large]
  control_rise = e['none'][small] - e['none'][large]
  apart = min(errors['batch'][small]) > max(errors['batch'][large])
  raw = bn_rise >= TOLERANCE and apart
  verdict = DOES_NOT_HOLD
  if raw:
    verdict = HOLDS if bn_rise - control_rise >= TOLERANCE else PARTLY
  return {
    'verdict': verdict,
    'said': (
      f'BN test error {e["batch"][large]:.2f}% at B={large}, {e["batch"][small]:.2f}% at '
      f'B={small} ({bn_rise:+.2f} points, seed ranges {"apart" if apart else "overlapping"}); '
      f'the control without normalization {control_rise:+.2f}'
    ),
    'bn_rise': bn_rise,
    'control_rise': control_rise,
    'seed_ranges_apart': apart,
    'batches': [small, large],
  }


def _gn_independent(e: dict, large: int) -> dict[str, object]:
  smaller = [b for b in e['group'] if b != large]
  change = {b: e['group'][b] - e['group'][large] for b in smaller}
  net = {b: change[b] - (e['none'][b] - e['none'][large]) for b in smaller}
  verdict = DOES_NOT_HOLD
  if all(abs(v) <= TOLERANCE for v in change.values()):
    verdict = HOLDS
  elif all(abs(v) <= TOLERANCE for v in net.values()):
    verdict = PARTLY
  moves = ', '.join(f'B={b} {v:+.2f}' for b, v in change.items())
  return {
    'verdict': verdict,
    'said': (
      f'GroupNorm test error {e["group"][large]:.2f}% at B={large}; change at {moves} points '
      f'(net of the control: {", ".join(f"{v:+.2f}" for v in net.values())})'
    ),
    'gn_change': change,
    'gn_change_minus_control': net,
  }


def _brn_recovers(e: dict, large: int) -> dict[str, object]:
  rise = {b: e['batch'][b] - e['batch'][large] for b in (2, 4) if b in e['batch']}
  degraded = [b for b, r in rise.items() if r >= TOLERANCE]
  shares = {b: (e['batch'][b] - e['batch_renorm'][b]) / rise[b] for b in degraded}
  recovered = sum(share >= 0.5 for share in shares.values())
  verdict = count_verdict(recovered, len(degraded)) if degraded else NOT_TESTABLE
  said = 'BN did not degrade by 0.5 points at B=2 or 4'
  if degraded:
    said = "share of BN's loss Batch Renorm recovers: " + ', '.join(
      f'B={b} {shares[b]:.2f} (BN {e["batch"][b]:.2f}%, Batch Renorm {e["batch_renorm"][b]:.2f}%)'
      for b in degraded
    )
  return {'verdict': verdict, 'said': said, 'bn_degraded_at': degraded, 'share_recovered': shares}


def judge(errors: dict[str, dict[int, list[float]]]) -> dict[str, dict[str, object]]:
  """The module docstring's rules on `errors` {kind: {B: [per-seed test error, points]}}:
  {claim: {'verdict': ..., and the numbers it turned on}}."""
  e = _means(errors)
  small, large = min(e['batch']), max(e['batch'])
  brn_gap = e['batch_renorm'][large] - e['batch'][large]
  return {
    'bn_degrades': _bn_degrades(errors, e, small, large),
    'gn_independent': _gn_independent(e, large),
    'brn_recovers': _brn_recovers(e, large),
    'brn_matches_bn': {
      'verdict': HOLDS if brn_gap <= TOLERANCE else DOES_NOT_HOLD,
      'said': (
        f'at B={large}: Batch Renorm {e["batch_renorm"][large]:.2f}%, BN '
        f'{e["batch"][large]:.2f}% ({brn_gap:+.2f} points)'
      ),
      'brn_minus_bn': brn_gap,
      'batch': large,
    },
  }


def render(context: StudyContext, errors: dict, verdicts: dict, started: float) -> None:
  """figure.png (test error against B per method), table.md and summary.json."""
  batches = sorted(errors['batch'])
  figure, ax = plt.subplots(figsize=(7.5, 4.5))
  for (kind, label), style in zip(KINDS.items(), ('o-', 's-', '^-', 'v-', 'x--'), strict=True):
    plot_over_seeds(ax, batches, [errors[kind][b]['test_error'] for b in batches], style, label)
  ax.set_xscale('log', base=2)
  ax.set_xticks(batches, [str(b) for b in batches])
  ax.set(
    xlabel='batch size B (= normalization batch), learning rate 1.0 x B/32',
    ylabel='test error (%), mean and seed range',
  )
  ax.legend(fontsize=8)
  ax.set_title(
    f'Study 13: small batches, MNIST MLP, {EXAMPLES:,} examples, {NUM_SEEDS} seeds', fontsize=10
  )
  table = [
    f'MNIST MLP (3x100 sigmoid), {EXAMPLES:,} training examples per arm, SGD at 1.0 x B/32, '
    f'{NUM_SEEDS} seeds side by side: final test error in points, mean (min to max) over the '
    'seeds; BN and Batch Renorm with their moving averages.',
    '',
    '| B | ' + ' | '.join(KINDS.values()) + ' | BN, population statistics |',
    '|---|' + '---|' * (len(KINDS) + 1),
    *[
      f'| {b} | '
      + ' | '.join(fmt_seeds(errors[k][b]['test_error'], '{:.2f}') for k in KINDS)
      + f' | {fmt_seeds(errors["batch"][b]["test_error_population"], "{:.2f}")} |'
      for b in batches
    ],
    '',
    *[f'- {claim}: **{v["verdict"]}**' for claim, v in verdicts.items()],
  ]
  record = {
    'num_seeds': NUM_SEEDS,
    'examples': EXAMPLES,
    'test_error': {
      k: {str(b): {m: seed_summary(v) for m, v in errors[k][b].items()} for b in batches}
      for k in KINDS
    },
    'verdicts': verdicts,
  }
  write_results(context, figure, table, record, started, MNIST_DATA)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  errors = measure(train_arms(context, arm_configs(context)))
  verdicts = judge({k: {b: v['test_error'] for b, v in by_b.items()} for k, by_b in errors.items()})
  render(context, errors, verdicts, started)
