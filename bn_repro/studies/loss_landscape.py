"""Study 12: is the loss landscape smoother with BN, as Santurkar et al. find?

Santurkar et al. (2018, Sec. 3.1, Fig. 4) move from the current parameters along the
gradient by several step sizes and find, with BN, a smaller range of the loss ("loss
variation"), a gradient that changes less ("gradient predictiveness", the L2 change of the
gradient) and a smaller effective beta-smoothness (the largest gradient change per unit
distance moved), `bn_repro.analysis.optimization_probes.landscape_along_gradient`.

Design, fixed before any run of this study:
- MNIST MLP arms baseline and bn (`bn_repro.studies.santurkar_arms`, shared with studies 10
  and 11) at learning rates 0.5 and 2.0, 3 seeds, 10,000 steps.
- Probe: at step 0 and every 1,000 steps, per seed, on a training batch of 60, step sizes
  {0.5, 1, 2, 4} x the arm's learning rate (Santurkar et al. move up to 4x their rate).
- Rule: BN's landscape IS SMOOTHER at a learning rate if, in at least 2 of 3 seeds, BN's
  medians over the probe steps 1,000-10,000 of all three statistics are below the
  baseline's (same seed). Santurkar's claim holds here if so at both learning rates.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.analysis.optimization_probes import landscape_along_gradient
from bn_repro.reports.formatting import MNIST_DATA
from bn_repro.reports.study_results import write_results
from bn_repro.studies import santurkar_arms
from bn_repro.studies.common import StudyContext

LEARNING_RATES = (0.5, 2.0)
VARIANTS = ('baseline', 'bn')
STEP_MULTIPLES = (0.5, 1.0, 2.0, 4.0)
STATISTICS = {
  'loss_variation': 'loss variation',
  'gradient_predictiveness': 'gradient predictiveness (L2 change)',
  'beta_smoothness': 'effective beta-smoothness',
}
SEEDS_REQUIRED = 2
RULE = (
  "BN's landscape is smoother at a learning rate if, in at least 2 of 3 seeds, its medians "
  'over steps 1,000-10,000 of loss variation, gradient predictiveness and effective '
  "beta-smoothness are all below the baseline's; Santurkar's claim holds if so at both rates."
)


def _landscape_probe(learning_rate: float):
  step_sizes = tuple(m * learning_rate for m in STEP_MULTIPLES)

  def probe(loss_fn, params):
    result = landscape_along_gradient(loss_fn, params, step_sizes)
    return {name: result[name] for name in STATISTICS}

  return probe


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = santurkar_arms.train_mlp_arms(context, VARIANTS, LEARNING_RATES)
  trajectories = {
    key: santurkar_arms.probe_trajectories(config, arm, _landscape_probe(key[1]))
    for key, (config, arm) in arms.items()
    if arm.diverged_at is None
  }
  rows = []
  for lr in LEARNING_RATES:
    medians = {
      v: {s: np.median(t[s][t['steps'] > 0], axis=0) for s in STATISTICS}
      for v in VARIANTS
      if (t := trajectories.get((v, lr))) is not None
    }
    smoother = None
    if len(medians) == len(VARIANTS):
      below = np.all([medians['bn'][s] < medians['baseline'][s] for s in STATISTICS], axis=0)
      smoother = bool(np.sum(below) >= SEEDS_REQUIRED)
    rows.append(
      {
        'learning_rate': lr,
        'bn_smoother': smoother,
        **{v: {s: [float(x) for x in m[s]] for s in STATISTICS} for v, m in medians.items()},
      }
    )
  claim_holds = all(row['bn_smoother'] for row in rows)
  summary = {'rule': RULE, 'rows': rows, 'santurkar_claim_holds': claim_holds}
  table = _table(rows, claim_holds)
  write_results(context, _figure(trajectories), table, summary, started, MNIST_DATA)


def _figure(trajectories: dict) -> object:
  figure, axes = plt.subplots(
    len(LEARNING_RATES), len(STATISTICS), figsize=(15, 3.6 * len(LEARNING_RATES))
  )
  colors = {'baseline': 'tab:blue', 'bn': 'tab:red'}
  for row, lr in enumerate(LEARNING_RATES):
    for col, (key, label) in enumerate(STATISTICS.items()):
      ax = axes[row, col]
      for variant in VARIANTS:
        if (variant, lr) not in trajectories:
          continue
        t = trajectories[variant, lr]
        median, low, high = santurkar_arms.seed_band(t[key])
        ax.plot(t['steps'], median, 'o-', ms=3, color=colors[variant], label=variant)
        ax.fill_between(t['steps'], low, high, color=colors[variant], alpha=0.25)
      ax.set(title=f'lr {lr:g}: {label}', xlabel='step', yscale='log')
  axes[0, 0].legend(fontsize=8)
  figure.suptitle(
    'Study 12: the landscape along the gradient, step sizes '
    f'{", ".join(f"{m:g}" for m in STEP_MULTIPLES)} x lr (median and min-max of 3 seeds)'
  )
  figure.tight_layout()
  return figure


def _table(rows: list[dict], claim_holds: bool) -> list[str]:
  lines = [
    'Median over steps 1,000-10,000, median over 3 seeds (range in brackets). MNIST MLP, SGD '
    f'batch 60, 10,000 steps; probe batch 60, step sizes {STEP_MULTIPLES} x lr.',
    '',
    f'Rule: {RULE}',
    '',
    '| lr | statistic | baseline | BN | BN smoother (all three) |',
    '|---|---|---|---|---|',
  ]
  for row in rows:
    verdict = '—' if row['bn_smoother'] is None else ('yes' if row['bn_smoother'] else 'no')
    for key, label in STATISTICS.items():
      cells = [
        f'{np.median(v):.3g} ({min(v):.3g}-{max(v):.3g})'
        if (v := row.get(variant, {}).get(key))
        else '—'
        for variant in VARIANTS
      ]
      lines.append(f'| {row["learning_rate"]:g} | {label} | {" | ".join(cells)} | {verdict} |')
  lines += ['', f"Santurkar's claim {'holds' if claim_holds else 'does not hold'} here."]
  return lines
