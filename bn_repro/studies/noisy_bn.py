"""Study 10: does BN still help when its outputs' distributions are made unstable on purpose?

Santurkar et al. (2018, Sec. 2.1, Fig. 2) add noise after every BN layer whose mean and
spread per unit are redrawn at every step ("noisy BN", `bn_repro.models.batch_norm`), a
covariate shift larger than any the plain network has, and find it trains about as well as
BN. The paper's explanation (BN helps by reducing internal covariate shift) predicts it
should not.

Design, fixed before any run of this study:
- MNIST MLP (`configs/mnist.py`: 3x100 sigmoid, SGD batch 60, binarized real MNIST): arms
  baseline, bn and bn_noisy (n_mu = n_sigma = 1: per step and unit the noise mean is drawn
  from U(-1, 1) and its std from U(0, 1)) at the learning rates of the Figure 1 regime map
  {0.05, 0.2, 0.5, 2.0}, 3 seeds side by side, 10,000 steps, evaluation every 500 steps
  (`bn_repro.studies.santurkar_arms`, shared with studies 11 and 12).
- Inception proxy (`configs/inception.py:bn_baseline,small`, real Fashion-MNIST, constant
  LR 0.01, 600 steps, whole test set every 200 steps): the same config with normalization
  none (conv biases back, GoogLeNet's g(Wu + b)), BN, and noisy BN with the same n_mu and
  n_sigma; seeds 0, 1, 2 as separate runs.
- Shift measured: the Figure 1 drift statistics of the last hidden layer's sigmoid inputs
  (`bn_repro.analysis.unit_drift`; on the test set, without the noise, which only training
  adds), median over the 100 units and 3 seeds, windows of 5 evaluations. The noise's own
  step-to-step shift of each unit's mean is 2 n_mu / 3 = 0.67 on average, by construction.
- Rule: Santurkar's "BN with noise trains about as well as BN" HOLDS at a setting if noisy
  BN's seed-mean final test accuracy is at most TOLERANCE below BN's (0.5 points for the
  MLP, whose seed spread is about 0.1-0.2; 1 point for the short Inception runs); "BN still
  helps under the noise" if noisy BN's is also above the baseline's. Diverged arms count as
  accuracy 0.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.analysis import unit_drift
from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies import santurkar_arms
from bn_repro.studies.common import Arm, StudyContext, train_arms

LEARNING_RATES = (0.05, 0.2, 0.5, 2.0)
VARIANTS = ('baseline', 'bn', 'bn_noisy')
INCEPTION_ARMS = {  # arm -> config fields over configs/inception.py:bn_baseline,small
  'baseline': {'model__normalization': 'none', 'model__conv_bias': True},
  'bn': {},
  'bn_noisy': {'model__bn__noise_mean': 1.0, 'model__bn__noise_std': 1.0},
}
INCEPTION_STEPS = 600
INCEPTION_EVAL_EVERY = 200
INCEPTION_SEEDS = (0, 1, 2)
TOLERANCE = {'mlp': 0.005, 'inception': 0.01}
WINDOW = 5
RULE = (
  "Santurkar's 'BN with noise trains about as well as BN' holds at a setting if noisy BN's "
  'seed-mean final test accuracy is at most 0.5 points (MLP; 1 point for the Inception proxy) '
  "below BN's; 'BN still helps under noise' if it is also above the baseline's."
)


def _final_accuracies(arm: Arm, seeds: int) -> list[float]:
  """Each seed's final test accuracy; a diverged arm's are 0."""
  if arm.diverged_at is not None:
    return [0.0] * seeds
  return arm.seed_finals('eval/accuracy')


def _drift(arm: Arm) -> dict[str, float] | None:
  """Median and IQR over units and seeds of the last layer's location drift, or None."""
  records = unit_drift.read_records(arm.workdir)
  if arm.diverged_at is not None or not records:
    return None
  runs = unit_drift.last_layer_trajectories(records)
  if len(runs[0]['p50']) < 2 * WINDOW:
    return None
  stats = [unit_drift.drift_statistics(t['p15'], t['p50'], t['p85'], WINDOW) for t in runs]
  return {
    name: unit_drift.summarize([s[name] for s in stats])
    for name in ('location_drift', 'spread_drift', 'jitter')
  }


def _inception_arms(context: StudyContext) -> dict[str, list[Arm]]:
  configs = {
    f'inception_{name}_seed{seed}': context.config(
      'configs/inception.py:bn_baseline,small',
      num_steps=context.steps(INCEPTION_STEPS),
      eval_every=context.steps(INCEPTION_EVAL_EVERY),
      checkpoint_every=context.steps(INCEPTION_STEPS),
      seed=seed,
      **fields,
    )
    for name, fields in INCEPTION_ARMS.items()
    for seed in INCEPTION_SEEDS
  }
  arms = train_arms(context, configs)
  return {
    name: [arms[f'inception_{name}_seed{seed}'] for seed in INCEPTION_SEEDS]
    for name in INCEPTION_ARMS
  }


def _row(accuracies: dict[str, list[float]], tolerance: float) -> dict:
  means = {name: float(np.mean(a)) for name, a in accuracies.items()}
  holds = means['bn_noisy'] >= means['bn'] - tolerance
  return {
    'final_test_accuracy': {n: {'per_seed': a, 'mean': means[n]} for n, a in accuracies.items()},
    'noisy_about_as_well_as_bn': bool(holds),
    'bn_still_helps_under_noise': bool(means['bn_noisy'] > means['baseline']),
  }


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  mlp = santurkar_arms.train_mlp_arms(context, VARIANTS, LEARNING_RATES)
  inception = _inception_arms(context)
  seeds = santurkar_arms.NUM_SEEDS
  mlp_rows = {}
  for lr in LEARNING_RATES:
    arms = {v: mlp[v, lr][1] for v in VARIANTS}
    row = _row({v: _final_accuracies(a, seeds) for v, a in arms.items()}, TOLERANCE['mlp'])
    row['drift'] = {v: _drift(a) for v, a in arms.items()}
    mlp_rows[lr] = row
  inception_row = _row(
    {n: [_final_accuracies(a, 1)[0] for a in arms] for n, arms in inception.items()},
    TOLERANCE['inception'],
  )
  figure = _figure(mlp, inception)
  table = _table(mlp_rows, inception_row)
  summary = {
    'rule': RULE,
    'mlp': {f'{lr:g}': row for lr, row in mlp_rows.items()},
    'inception_proxy': inception_row,
  }
  write_results(context, figure, table, summary, started, f'{MNIST_DATA}; {FASHION_DATA}')


def _seed_curves(arm: Arm) -> tuple[np.ndarray, np.ndarray]:
  """Steps `(E,)` and each seed's test accuracy `(E, S)` of an arm (S = 1 for one seed)."""
  curves = arm.seed_curves('eval/accuracy')
  if not curves:
    return np.array([]), np.zeros((0, 1))
  return np.array([s for s, _ in curves[0]]), np.array([[v for _, v in c] for c in curves]).T


def _figure(mlp: dict, inception: dict[str, list[Arm]]) -> object:
  panels = len(LEARNING_RATES) + 1
  figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6))
  colors = {'baseline': 'tab:blue', 'bn': 'tab:red', 'bn_noisy': 'tab:green'}
  for ax, lr in zip(axes, LEARNING_RATES, strict=False):
    for variant in VARIANTS:
      steps, values = _seed_curves(mlp[variant, lr][1])
      if len(steps):
        ax.plot(steps, np.median(values, 1), color=colors[variant], label=variant)
        ax.fill_between(steps, values.min(1), values.max(1), color=colors[variant], alpha=0.25)
    ax.set(title=f'MNIST MLP, lr {lr:g}', xlabel='step', ylim=(0.9, 0.99))
  axes[0].set_ylabel('test accuracy (median, band: min-max of 3 seeds)')
  ax = axes[-1]
  for name, arms in inception.items():
    curves = [_seed_curves(a) for a in arms]
    length = min(len(s) for s, _ in curves)
    if length:
      values = np.concatenate([v[:length] for _, v in curves], axis=1)
      steps = curves[0][0][:length]
      ax.plot(steps, np.median(values, 1), color=colors[name], label=name)
      ax.fill_between(steps, values.min(1), values.max(1), color=colors[name], alpha=0.25)
  ax.set(title='Inception proxy, Fashion-MNIST', xlabel='step')
  ax.legend(fontsize=8)
  figure.suptitle('Study 10: noisy BN (shifting noise after every BN layer, training only)')
  return figure


def _accuracy_cell(row: dict, name: str) -> str:
  values = row['final_test_accuracy'][name]['per_seed']
  return f'{np.mean(values):.4f} ± {np.std(values):.4f}'


def _drift_cell(drift: dict | None) -> str:
  if drift is None:
    return '—'
  d = drift['location_drift']
  return f'{fmt(d["median"], "{:.3f}")} ({fmt(d["q25"], "{:.3f}")}-{fmt(d["q75"], "{:.3f}")})'


def _table(mlp_rows: dict, inception_row: dict) -> list[str]:
  yes_no = {True: 'yes', False: 'no'}
  lines = [
    'Final test accuracy, mean ± std over 3 seeds; last hidden layer location drift (median '
    'over 100 units x 3 seeds, IQR in brackets; test set, no noise). MLP: '
    f'{santurkar_arms.NUM_STEPS} steps of 60, SGD. Inception proxy: {INCEPTION_STEPS} steps '
    'of 32, momentum 0.9, LR 0.01.',
    '',
    f'Rule: {RULE}',
    '',
    '| model, lr | baseline | BN | noisy BN | drift: baseline | drift: BN | drift: noisy BN '
    '| noisy ≈ BN | BN still helps |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for lr, row in mlp_rows.items():
    lines.append(
      f'| MLP, {lr:g} | '
      + ' | '.join(_accuracy_cell(row, v) for v in VARIANTS)
      + ' | '
      + ' | '.join(_drift_cell(row['drift'][v]) for v in VARIANTS)
      + f' | {yes_no[row["noisy_about_as_well_as_bn"]]}'
      + f' | {yes_no[row["bn_still_helps_under_noise"]]} |'
    )
  lines.append(
    '| Inception proxy, 0.01 | '
    + ' | '.join(_accuracy_cell(inception_row, v) for v in VARIANTS)
    + ' | — | — | — | '
    + f'{yes_no[inception_row["noisy_about_as_well_as_bn"]]} | '
    + f'{yes_no[inception_row["bn_still_helps_under_noise"]]} |'
  )
  return lines
