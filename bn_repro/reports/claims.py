"""The paper's claims (and Santurkar et al.'s), each with the rule that judges it from our
summary files. `results/REPORT.md` (`bn_repro.reports.paper_report`) is their table.

Each judge takes the parsed summary file and returns (ours, verdict): what we measured, in
words with the numbers and their seed spread, and one of VERDICTS. The rules are fixed
here, in code, before the report is generated; a rule is never changed to flip a verdict.
Where a summary holds one seed only, `ours` says so.
"""

import dataclasses
import functools
import math
from collections.abc import Callable

import numpy as np

REPRODUCED, PARTLY, NOT_REPRODUCED = 'reproduced', 'partly', 'not reproduced'
NOT_TESTABLE = 'not testable here'
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE, 'not run')
MARKS = ('10000', '20000', '30000', '40000', '50000')


@dataclasses.dataclass(frozen=True)
class Claim:
  """One row of the report.

  Attributes:
    where: the paper's section, figure or table (or the later paper).
    claim: what it says.
    paper: its number.
    summary: the summary file, relative to `results/`; None: not testable here.
    rule: the rule, in words, that `judge` implements.
    judge: summary -> (ours, verdict).
  """

  where: str
  claim: str
  paper: str
  summary: str | None
  rule: str
  judge: Callable[[dict], tuple[str, str]] | None = None


def _fig1a(summary: dict) -> tuple[str, str]:
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


def _fig1bc(summary: dict) -> tuple[str, str]:
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


def _inception_faster(name: str, factor: float) -> Callable[[dict], tuple[str, str]]:
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
def _bn_x30_higher(summary: dict) -> tuple[str, str]:
  x30 = _inception_variant(summary, 'bn_x30')['max_accuracy_per_seed']
  inception = _inception_variant(summary, 'inception')['max_accuracy_per_seed']
  ours = (
    f'max accuracy BN-x30 {_range(x30)} ({_seeds(x30)}), Inception {_range(inception)} '
    f'({_seeds(inception)})'
  )
  if min(x30) > max(inception):
    return ours, REPRODUCED
  return ours, PARTLY if np.median(x30) > np.median(inception) else NOT_REPRODUCED


def _sigmoid(summary: dict) -> tuple[str, str]:
  bn = _inception_variant(summary, 'bn_x5_sigmoid')['max_accuracy_per_seed']
  plain = _inception_variant(summary, 'inception_sigmoid')['max_accuracy_per_seed']
  ours = (
    f'max accuracy BN-x5-Sigmoid {_range(bn)} ({_seeds(bn)}), Inception with sigmoid '
    f'{_range(plain)} ({_seeds(plain)})'
  )
  trains, fails = min(bn) > 0.5, max(plain) < 0.2
  return ours, REPRODUCED if trains and fails else (PARTLY if trains or fails else NOT_REPRODUCED)


def _stats_in_gradient(summary: dict) -> tuple[str, str]:
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


def _higher_rates(summary: dict) -> tuple[str, str]:
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


def _weight_scale(summary: dict) -> tuple[str, str]:
  changes = [v['logits'] for v in summary['weight_scale']['bn, epsilon 0'].values()]
  worst = max(changes)
  ours = f'largest relative change of the logits for a in 0.01..100, epsilon 0: {worst:.2g}'
  return ours, REPRODUCED if worst < 1e-5 else NOT_REPRODUCED


def _population_statistics(summary: dict) -> tuple[str, str]:
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


def _noisy_bn(summary: dict) -> tuple[str, str]:
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


def _santurkar_study(summary: dict) -> tuple[str, str]:
  """Studies 11 and 12, whose summaries carry their own rule's verdict."""
  if 'pairs' in summary:
    reduced = summary['pairs_where_bn_reduces_ics']
    detail = f'BN reduces ICS in {reduced} of {summary["pairs"]} (learning rate, layer) pairs'
  else:
    smoother = sum(bool(r['bn_smoother']) for r in summary['rows'])
    detail = f'BN smoother at {smoother} of {len(summary["rows"])} learning rates'
  verdict = REPRODUCED if summary['santurkar_claim_holds'] else NOT_REPRODUCED
  return f'{detail} (3 seeds)', verdict


def _count_verdict(successes: int, total: int) -> str:
  return REPRODUCED if successes == total else (PARTLY if successes else NOT_REPRODUCED)


def _seeds(values: list[object]) -> str:
  return f'{len(values)} seed{"s" if len(values) > 1 else ""}'


def _range(values: list[float]) -> str:
  return f'{min(values):.4f}' if len(values) == 1 else f'{min(values):.4f}-{max(values):.4f}'


CLAIMS = (
  Claim(
    'Fig. 1(a)',
    'With BN the MNIST network reaches higher test accuracy, faster',
    'BN ahead throughout 50k steps (read off the figure)',
    'mnist/summary.json',
    'reproduced if, at every learning rate of reproduce_mnist.sh, BN leads by more than 2 '
    'standard errors of the seed-mean gap at >= 3 of the 10k..50k marks; partly if at some',
    _fig1a,
  ),
  Claim(
    'Fig. 1(b, c)',
    "Without BN a sigmoid's input distribution moves over training; with BN it stays",
    'a visible drift without BN, none with (one unit, read off the figure)',
    'studies/fig1_regimes/summary.json',
    "study 9's per-cell rule (its docstring); reproduced if it holds in every cell, partly "
    'if in some',
    _fig1bc,
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'BN-Baseline matches Inception in fewer steps',
    '13.3M vs 31.0M steps (2.3x)',
    'inception_small/summary.json',
    'reproduced if every BN-Baseline seed reaches the target at least 2x sooner than '
    "Inception's median; partly if its median is sooner",
    _inception_faster('bn_baseline', 2.0),
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'BN-x5 matches Inception with far fewer steps',
    '2.1M vs 31.0M steps (14.8x)',
    'inception_small/summary.json',
    "reproduced if every BN-x5 seed reaches the target at least 5x sooner than Inception's "
    'median; partly if its median is sooner',
    _inception_faster('bn_x5', 5.0),
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'BN-x30 reaches a higher accuracy than Inception',
    '74.8% vs 72.2% max',
    'inception_small/summary.json',
    "reproduced if BN-x30's worst seed beats Inception's best; partly if its median does",
    _bn_x30_higher,
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'With BN, sigmoid Inception trains; without, it does not',
    '69.8% (BN-x5-Sigmoid) vs chance',
    'inception_small/summary.json',
    'reproduced if BN-x5-Sigmoid exceeds 50% and Inception with sigmoid stays below 20%',
    _sigmoid,
  ),
  Claim(
    'Table (Sec. 4.2.3)',
    'An ensemble of 6 BN networks: 4.82% top-5 error on ImageNet',
    '4.82% top-5 test error',
    None,
    'needs ImageNet and days of accelerator time; not testable on this machine',
  ),
  Claim(
    'Sec. 2',
    'With the normalization outside the gradient, the bias b grows without bound',
    'b grows indefinitely while the loss stays fixed',
    'studies/stats_in_gradient/summary.json',
    'reproduced if, in every seed, with the mean held out the norm of b exceeds 1 after 1k '
    'steps and grows to the end, and stays below 1e-3 with the mean inside',
    _stats_in_gradient,
  ),
  Claim(
    'Sec. 3.3',
    'BN allows higher learning rates',
    'x5 and x30 rates train (BN-x5, BN-x30)',
    'studies/learning_rates/summary.json',
    'reproduced if the largest rate that trains is higher with BN for the MLP and the '
    'Inception proxy; partly if for one',
    _higher_rates,
  ),
  Claim(
    'Sec. 3.3',
    'BN is invariant to the scale of the weights',
    'BN((aW)u) = BN(Wu)',
    'studies/learning_rates/summary.json',
    'reproduced if the logits change by < 1e-5 (relative) for a in 0.01..100 with epsilon 0',
    _weight_scale,
  ),
  Claim(
    'Algorithm 2',
    'Inference with population statistics (unbiased variance) is deterministic and accurate',
    'used for all inference',
    'studies/inference_statistics/summary.json',
    'reproduced if population statistics are within 0.3 points (2 SE of a 10k test set) of the '
    'moving averages and beat mini-batch statistics over test batches of 50 (seed means)',
    _population_statistics,
  ),
  Claim(
    'Santurkar et al. 2018',
    'BN with noise injected after it trains about as well as BN',
    'noisy BN ~ BN (their Fig. 2)',
    'studies/noisy_bn/summary.json',
    "study 10's rule per setting (its docstring); reproduced if it holds at every setting, "
    'partly if at some',
    _noisy_bn,
  ),
  Claim(
    'Santurkar et al. 2018',
    'BN does not reduce internal covariate shift (their gradient measure)',
    'ICS not smaller with BN (their Fig. 3)',
    'studies/ics_measure/summary.json',
    "study 11's rule (its docstring)",
    _santurkar_study,
  ),
  Claim(
    'Santurkar et al. 2018',
    'BN makes the loss landscape smoother along the gradient',
    'smaller loss variation, gradient change, beta-smoothness (their Fig. 4)',
    'studies/loss_landscape/summary.json',
    "study 12's rule (its docstring)",
    _santurkar_study,
  ),
)
