"""The judges of the report's claims (`bn_repro.reports.claims`): each takes a parsed
summary file and returns (ours, verdict): what we measured, in words with the numbers and
their seed spread, and one of VERDICTS. The rule each implements is written beside it in
`claims.CLAIMS`; where a summary holds one seed only, `ours` says so.
"""

import functools
import math
from collections.abc import Callable

import numpy as np

from bn_repro.reports import statistics

REPRODUCED, PARTLY, NOT_REPRODUCED = 'reproduced', 'partly', 'not reproduced'
NOT_TESTABLE = 'not testable here'
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE, 'not run')
MARKS = ('10000', '20000', '30000', '40000', '50000')


def fig1a_two_standard_errors(summary: dict) -> tuple[str, str]:
  settings_won, parts = 0, []
  for setting in summary['settings'].values():
    bn, base = setting['arms']['bn'], setting['arms']['baseline']
    n = bn['num_seeds']
    wins = 0
    for mark in MARKS:
      gap = bn['test_accuracy_at'][mark] - base['test_accuracy_at'][mark]
      se = math.hypot(
        bn['test_accuracy_std_over_seeds_at'][mark], base['test_accuracy_std_over_seeds_at'][mark]
      ) / math.sqrt(n)
      wins += gap > 2 * se
    settings_won += wins >= 3
    final_gap = 100 * (bn['final_test_accuracy'] - base['final_test_accuracy'])
    parts.append(
      f'lr {setting["learning_rate"]:g}: BN ahead beyond 2 SE at {wins} of 5 marks, '
      f'final gap {final_gap:+.2f} points ({n} seeds)'
    )
  verdict = _count_verdict(settings_won, len(summary['settings']))
  return '; '.join(parts), verdict


# Fig. 1(a)'s reading with each arm at its own best rate of the one-seed sweep
# (results/mnist/lr_sweep.md): the baseline at 2.0, BN at 0.5.
BEST_RATE_SETTINGS = {'baseline': 'lr2', 'bn': 'lr0.5'}


def fig1a_paired(summary: dict) -> tuple[str, str]:
  arms = {a: summary['settings'][s]['arms'][a] for a, s in BEST_RATE_SETTINGS.items()}
  bn, base = arms['bn'], arms['baseline']
  higher = [
    statistics.paired_greater(
      bn['test_accuracy_at_per_seed'][m], base['test_accuracy_at_per_seed'][m]
    )
    for m in MARKS
  ]
  never = bn['steps'] + 1  # A seed that never reaches 97% counts as one step past the run.
  steps = {
    name: [never if s is None else s for s in arm['steps_to_accuracy_per_seed']['0.97']]
    for name, arm in arms.items()
  }
  faster = statistics.paired_greater(steps['baseline'], steps['bn'])
  gap = 100 * (bn['final_test_accuracy'] - base['final_test_accuracy'])
  ours = (
    f'BN (lr 0.5) ahead of the baseline (lr 2.0) by a one-sided paired t test at 95% at '
    f'{sum(higher)} of 5 marks, final gap {gap:+.2f} points; steps to 97% per seed BN '
    f'{_step_list(steps["bn"], never)}, baseline {_step_list(steps["baseline"], never)}: '
    f'{"faster" if faster else "not faster"} by the same test ({bn["num_seeds"]} paired seeds)'
  )
  if sum(higher) >= 3 and faster:
    return ours, REPRODUCED
  return ours, PARTLY if any(higher) or faster else NOT_REPRODUCED


def _step_list(steps: list[int], never: int) -> str:
  return ', '.join('never' if s == never else f'{s:,}' for s in steps)


# Fig. 1(b, c) with location and spread: an arm whose final test accuracy is below this
# trains no better than a linear classifier of MNIST (88-92%, LeCun et al. 1998): untrained.
TRAINED_ACCURACY = 0.9
DRIFT_RATIO = 1.5  # The earlier reading's margin, now for the spread as well.
TUNED_CELLS = ((0.5, 0.1), (2.0, 0.1))  # (lr, init std): BN's and the baseline's best rates.


def drift_ratio(cell: dict, measure: str) -> float:
  """Baseline / BN of a study-9 cell's median `measure` ('location_drift', 'spread_drift')."""
  return cell['baseline'][measure]['median'] / cell['bn'][measure]['median']


def fig1bc_cell(cell: dict) -> str:
  """A study-9 cell by the location-and-spread rule: 'untrained' (an arm diverged or ends
  below TRAINED_ACCURACY: excluded), 'holds' or 'does not hold'."""
  arms = [cell[a] for a in ('baseline', 'bn')]
  if any(arm.get('final_test_accuracy', 0.0) < TRAINED_ACCURACY for arm in arms):
    return 'untrained'
  location = sum(r > DRIFT_RATIO for r in cell['location_drift_ratio_by_seed']) >= 2
  holds = location and drift_ratio(cell, 'spread_drift') > DRIFT_RATIO
  return 'holds' if holds else 'does not hold'


def fig1bc_location_and_spread(summary: dict) -> tuple[str, str]:
  trained, held, tuned = [], [], []
  for cell in summary['cells']:
    verdict = fig1bc_cell(cell)
    if verdict == 'untrained':
      continue
    trained.append(cell)
    holds = verdict == 'holds'
    held += [cell] if holds else []
    if (cell['learning_rate'], cell['init_std']) in TUNED_CELLS:
      tuned.append(
        f'lr {cell["learning_rate"]:g}, init std {cell["init_std"]:g}: location ratio '
        f'{drift_ratio(cell, "location_drift"):.2f}, spread ratio '
        f'{drift_ratio(cell, "spread_drift"):.2f} '
        f'({"holds" if holds else "does not hold"})'
      )
  untrained = len(summary['cells']) - len(trained)
  ours = (
    f'tuned-rate cells: {"; ".join(tuned)}. Holds in {len(held)} of {len(trained)} cells where '
    f'both arms trained ({untrained} cell{"s" * (untrained != 1)} excluded as untrained)'
  )
  return ours, _count_verdict(len(held), len(trained))


def fig1bc_location_only(summary: dict) -> tuple[str, str]:
  cells = summary['cells']
  held = [c for c in cells if c['paper_picture_holds']]
  ratios = [np.median(c['location_drift_ratio_by_seed']) for c in cells]
  ours = (
    f'holds in {len(held)} of {len(cells)} learning-rate x init-std cells (3 seeds each); '
    f'median baseline/BN drift ratio per cell {min(ratios):.2f}-{max(ratios):.2f}'
  )
  return ours, _count_verdict(len(held), len(cells))


def _inception_variant(summary: dict, name: str) -> dict:
  return summary['variants'][name]


def _steps_text(variant: dict) -> str:
  steps = variant['steps_to_target_per_seed']
  per_seed = ', '.join('never' if s is None else f'{s:,}' for s in steps)
  return f'steps to target per seed: {per_seed}'


def _untestable_by_design(summary: dict, name: str) -> str | None:
  """Why the proxy cannot answer a row comparing `name` with the Inception target, or None:
  the validity gate failed (the Inception arm had not converged), or, for bn_x30, its pilot
  diverged at the x30 rate (configs/inception.py)."""
  gate = summary.get('validity_gate')
  if gate and not gate['passed']:
    gains = ', '.join(f'{100 * g:+.2f}' for g in gate['per_seed_gain'])
    return (
      f'not testable with this proxy: the validity gate failed ({gate["rule"]}; gains {gains} '
      'points), so the target is not a converged baseline'
    )
  pilot = summary.get('pilot_bn_x30')
  if name == 'bn_x30' and pilot and pilot['diverged']:
    return f'x30 not testable at this base rate: its {pilot["steps"]}-step pilot diverged'
  return None


def _gated(
  name: str, judge: Callable[[dict], tuple[str, str]]
) -> Callable[[dict], tuple[str, str]]:
  """`judge`, unless the proxy's design cannot answer the row (`_untestable_by_design`)."""

  def gated_judge(summary: dict) -> tuple[str, str]:
    reason = _untestable_by_design(summary, name)
    return (reason, NOT_TESTABLE) if reason else judge(summary)

  return gated_judge


def inception_faster(name: str, factor: float) -> Callable[[dict], tuple[str, str]]:
  @functools.partial(_gated, name)
  def judge(summary: dict) -> tuple[str, str]:
    inception = np.median(
      [s for s in _inception_variant(summary, 'inception')['steps_to_target_per_seed'] if s]
    )
    steps = _inception_variant(summary, name)['steps_to_target_per_seed']
    reached = [s for s in steps if s is not None]
    ours = f'{_steps_text(_inception_variant(summary, name))} (Inception: median {inception:,.0f})'
    if len(reached) == len(steps) and max(reached) * factor <= inception:
      return ours, REPRODUCED
    if reached and np.median([s if s else math.inf for s in steps]) < inception:
      return ours, PARTLY
    return ours, NOT_REPRODUCED

  return judge


@functools.partial(_gated, 'bn_x30')
def bn_x30_higher(summary: dict) -> tuple[str, str]:
  x30 = _inception_variant(summary, 'bn_x30')['max_accuracy_per_seed']
  inception = _inception_variant(summary, 'inception')['max_accuracy_per_seed']
  ours = (
    f'max accuracy BN-x30 {_range(x30)} ({_seeds(x30)}), Inception {_range(inception)} '
    f'({_seeds(inception)})'
  )
  if min(x30) > max(inception):
    return ours, REPRODUCED
  return ours, PARTLY if np.median(x30) > np.median(inception) else NOT_REPRODUCED


def sigmoid_inception(summary: dict) -> tuple[str, str]:
  missing = [v for v in ('bn_x5_sigmoid', 'inception_sigmoid') if v not in summary['variants']]
  if missing:
    return f'{", ".join(missing)} did not run under this design', 'not run'
  bn = _inception_variant(summary, 'bn_x5_sigmoid')['max_accuracy_per_seed']
  plain = _inception_variant(summary, 'inception_sigmoid')['max_accuracy_per_seed']
  ours = (
    f'max accuracy BN-x5-Sigmoid {_range(bn)} ({_seeds(bn)}), Inception with sigmoid '
    f'{_range(plain)} ({_seeds(plain)})'
  )
  trains, fails = min(bn) > 0.5, max(plain) < 0.2
  return ours, REPRODUCED if trains and fails else (PARTLY if trains or fails else NOT_REPRODUCED)


def stats_in_gradient(summary: dict) -> tuple[str, str]:
  stopped, proper = summary['arms']['bn_mean_stopped'], summary['arms']['bn']
  seeds = len(stopped['final_bias_norm']['per_seed'])
  ours = (
    f'norm of b with the mean outside the gradient {_spread(stopped["bias_norm_1k"])} after 1k '
    f'steps, {_spread(stopped["final_bias_norm"])} at the end; with it inside '
    f'{_spread(proper["final_bias_norm"])} ({seeds} seeds)'
  )
  grows = all(
    final > at_1k > 1.0
    for final, at_1k in zip(
      stopped['final_bias_norm']['per_seed'], stopped['bias_norm_1k']['per_seed'], strict=True
    )
  )
  stays = proper['final_bias_norm']['max'] < 1e-3
  return ours, REPRODUCED if grows and stays else NOT_REPRODUCED


def _spread(values: dict, pattern: str = '{:.3g}') -> str:
  """'mean (min-max)' of a `formatting.seed_summary` entry."""
  mean, low, high = (pattern.format(values[k]) for k in ('mean', 'min', 'max'))
  return f'{mean} ({low}-{high})'


def higher_rates(summary: dict) -> tuple[str, str]:
  largest = {
    (r['model'], r['variant']): r['learning_rate'] for r in summary['largest_lr_that_trains']
  }
  pairs = (('mlp', 'bn', 'baseline'), ('inception', 'bn_baseline', 'inception'))
  higher = [largest[m, bn] > largest[m, plain] for m, bn, plain in pairs]
  ours = '; '.join(
    f'{m}: largest rate that trains {largest[m, plain]:g} without BN, {largest[m, bn]:g} with'
    for m, bn, plain in pairs
  )
  seeds = summary.get('num_seeds', 1)
  ours += f' (every one of {seeds} seeds trains)' if seeds > 1 else ' (1 seed)'
  return ours, _count_verdict(sum(higher), len(higher))


def weight_scale(summary: dict) -> tuple[str, str]:
  changes = [v['logits'] for v in summary['weight_scale']['bn, epsilon 0'].values()]
  worst = max(changes)
  ours = f'largest relative change of the logits for a in 0.01..100, epsilon 0: {worst:.2g}'
  return ours, REPRODUCED if worst < 1e-5 else NOT_REPRODUCED


def population_statistics(summary: dict) -> tuple[str, str]:
  population = summary['population_unbiased']['100']
  ema = summary['moving_averages']['0.99']
  batch = summary['batch_statistics']['50']
  population_text, ema_text, batch_text = (_spread(v, '{:.4f}') for v in (population, ema, batch))
  ours = (
    f'test accuracy with population statistics (100 batches) {population_text}, moving '
    f'averages {ema_text}, batch statistics over test batches of 50 {batch_text} '
    f'({len(population["per_seed"])} seeds)'
  )
  agree = abs(population['mean'] - ema['mean']) <= 0.003  # 2 standard errors of a 10k test set.
  return ours, REPRODUCED if agree and population['mean'] > batch['mean'] else NOT_REPRODUCED


def noisy_bn(summary: dict) -> tuple[str, str]:
  """Study 10: noisy BN (n = 1) against BN with noise-free population statistics."""
  settings = {f'MLP lr {k}': v for k, v in summary['mlp'].items()}
  settings['Inception proxy'] = summary['inception_proxy']
  gaps, held, shares = [], 0, []
  for name, setting in settings.items():
    verdict = setting['verdicts']['bn_noisy']['population']
    held += verdict['about_as_well_as_bn']
    gaps.append(f'{name} {100 * verdict["noisy_minus_bn"]:+.2f}')
    if (share := setting['shift_share_of_cost']) is not None:
      shares.append(f'{name} {share:.2f}')
  ours = (
    f'noisy BN minus BN, test accuracy with noise-free population statistics, points (3 '
    f'seeds): {", ".join(gaps)}; within the tolerance in {held} of {len(settings)}; the '
    f"shift's share of the cost where there is one (fixed-noise control): "
    f'{", ".join(shares) or "none"}'
  )
  return ours, _count_verdict(held, len(settings))


def noisy_bn_running_averages(summary: dict) -> tuple[str, str]:
  """Study 10's earlier design (its summary format): running averages at test time."""
  rows = {f'MLP lr {k}': v for k, v in summary['mlp'].items()}
  rows['Inception proxy'] = summary['inception_proxy']
  held = [name for name, row in rows.items() if row['noisy_about_as_well_as_bn']]
  gaps = []
  for name, row in rows.items():
    accuracy = row['final_test_accuracy']
    gaps.append(f'{name} {100 * (accuracy["bn_noisy"]["mean"] - accuracy["bn"]["mean"]):+.2f}')
  ours = (
    f'noisy BN minus BN, points (3 seeds): {", ".join(gaps)}; within the tolerance in '
    f'{len(held)} of {len(rows)}'
  )
  return ours, _count_verdict(len(held), len(rows))


def santurkar_by_measure(summary: dict) -> tuple[str, str]:
  """Studies 11 and 12: a verdict per measure, the claim 'holds', 'mixed' or 'does not
  hold' over them (each summary carries its own rule's verdicts)."""
  if 'claim_holds_by_measure' in summary:
    counts, cells = summary['cells_where_bn_has_less_ics'], summary['num_cells']
    parts = [
      f'{name}: less ICS with BN in {counts[name]} of {cells} cells'
      for name in summary['claim_holds_by_measure']
    ]
  else:
    parts = []
    for name, verdict in summary['verdicts'].items():
      smoother = sum(c['bn_smoother'] for c in verdict['cells'])
      effects = ', '.join(f'{c["log10_ratio_median"]:+.2f}' for c in verdict['cells'])
      parts.append(
        f'{name}: BN smoother in {smoother} of {len(verdict["cells"])} cells '
        f'(log10 BN/baseline {effects})'
      )
  claim = summary['santurkar_claim']
  verdict = {'holds': REPRODUCED, 'mixed': PARTLY}.get(claim, NOT_REPRODUCED)
  return f'{"; ".join(parts)}; the claim {claim} (3 seeds)', verdict


def santurkar_study(summary: dict) -> tuple[str, str]:
  """Studies 11 and 12's earlier designs (their summary format), whose summaries carry their
  own rule's verdict."""
  if 'pairs' in summary:
    reduced = summary['pairs_where_bn_reduces_ics']
    detail = f'BN reduces ICS in {reduced} of {summary["pairs"]} (learning rate, layer) pairs'
  else:
    smoother = sum(bool(r['bn_smoother']) for r in summary['rows'])
    detail = f'BN smoother at {smoother} of {len(summary["rows"])} learning rates'
  verdict = REPRODUCED if summary['santurkar_claim_holds'] else NOT_REPRODUCED
  return f'{detail} (3 seeds)', verdict


# A study's own verdict (its docstring's rule) -> the report's.
_STUDY_VERDICTS = {
  'holds': REPRODUCED,
  'partly': PARTLY,
  'does not hold': NOT_REPRODUCED,
  'not testable here': NOT_TESTABLE,
}


def study_claim(claim: str) -> Callable[[dict], tuple[str, str]]:
  """The judge of a claim that a study decides by its own rule into
  `summary['verdicts'][claim]` ({'verdict', 'said', ...})."""

  def judge(summary: dict) -> tuple[str, str]:
    verdict = summary['verdicts'][claim]
    said = f'{verdict["said"]} ({summary["num_seeds"]} seeds)'
    return said, _STUDY_VERDICTS[verdict['verdict']]

  return judge


def _count_verdict(successes: int, total: int) -> str:
  return REPRODUCED if successes == total else (PARTLY if successes else NOT_REPRODUCED)


def _seeds(values: list[object]) -> str:
  return f'{len(values)} seed{"s" if len(values) > 1 else ""}'


def _range(values: list[float]) -> str:
  return f'{min(values):.4f}' if len(values) == 1 else f'{min(values):.4f}-{max(values):.4f}'
