"""Study 10: does BN still help when its outputs' distributions are made unstable on purpose?

Santurkar et al. (2018, Sec. 2.1, Fig. 2) add noise after every BN layer whose mean and
spread per unit are redrawn at every step ("noisy BN", `bn_repro.nn.batch_norm`), a
covariate shift larger than any the plain network has, and find it trains about as well as
BN. The paper's explanation (BN helps by reducing internal covariate shift) predicts it
should not. Their appendix gives the exact form of their noise; the public material this
project can search did not hold it, so the form here (mean ~ U(-n, n), std ~ U(0, n) per
unit, redrawn every step, added after gamma and beta) is our reading of their Sec. 2.1,
labelled as such in the report.

Design, fixed before the runs of this design (`bn_repro.studies.santurkar_arms`, whose MLP
arms studies 11 and 12 share):
- MNIST MLP (`configs/mnist.py`: 3x100 sigmoid, SGD batch 60, binarized real MNIST), 3 seeds
  side by side, 10,000 steps: baseline, BN, noisy BN at n = 1 and its fixed-noise control
  (the same noise, its mean and std per unit drawn once at initialization: no shift) at the
  learning rates of the Figure 1 regime map {0.05, 0.2, 0.5, 2.0}; noisy BN at n = 0.3 and
  0.1 at 0.2 (where n = 1 cost accuracy in this study's earlier design) and 2.0 (where it
  did not).
- Inception proxy (`configs/inception.py:bn_baseline,small` on real Fashion-MNIST, constant
  LR 0.01, 3,000 steps, seeds 0, 1, 2 as separate runs): baseline (no normalization, conv
  biases back), BN, noisy BN at n = 1 and its fixed-noise control.
- Measured per seed: final test accuracy with the running averages (as trained: in a noisy
  arm they carry the noise of the layers below, which the test pass lacks) and with
  noise-free population statistics (Algorithm 2 over 100 training batches, no noise); the
  training loss under noise (mean of the last 5 logged values; the MLP logs the seed mean);
  the Figure 1 drift of the last hidden layer (MLP; `bn_repro.analysis.unit_drift`).
- Rules:
  * "Noisy BN trains about as well as BN" HOLDS at a setting (model, rate, n) if noisy BN's
    seed-mean final test accuracy with population statistics is at most TOLERANCE below
    BN's with population statistics (0.5 points for the MLP, 1 point for the proxy). The
    claim's verdict is over the n = 1 settings (4 MLP rates and the proxy): reproduced if
    it holds at every one, partly if at some.
  * "BN still helps under noise" at a setting if noisy BN's mean is above the baseline's.
  * The control, where noisy BN (n = 1) falls more than TOLERANCE short of BN: the shift's
    share of the cost is (fixed - noisy) / (BN - noisy), seed means with population
    statistics; "the shift costs most" if the share is above 1/2, "the noise itself costs
    most" if below.
  * The earlier reading (running averages instead of population statistics) is computed
    too and reported beside it.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.analysis import unit_drift
from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies import santurkar_arms
from bn_repro.studies.common import Arm, StudyContext

LEARNING_RATES = (0.05, 0.2, 0.5, 2.0)
SWEEP_RATES = (0.2, 2.0)
MAIN_ARMS = ('baseline', 'bn', 'bn_noisy', 'bn_noisy_fixed')
SWEEP_ARMS = ('bn_noisy_0.3', 'bn_noisy_0.1')
MAGNITUDE = {'bn_noisy': 1.0, 'bn_noisy_0.3': 0.3, 'bn_noisy_0.1': 0.1}
TOLERANCE = {'mlp': 0.005, 'proxy': 0.01}
WINDOW = 5
LAST_LOSSES = 5
RULE = (
  "Santurkar's 'BN with noise trains about as well as BN' holds at a setting if noisy BN's "
  'seed-mean final test accuracy with noise-free population statistics is at most 0.5 points '
  "(MLP; 1 point for the Inception proxy) below BN's; 'BN still helps under noise' if it is "
  "above the baseline's; where noisy BN falls short, the fixed-noise control gives the "
  "shift's share of the cost, (fixed - noisy) / (BN - noisy)."
)
ACCURACY_TAGS = {'running': 'eval/accuracy', 'population': 'eval_population/accuracy'}


def _seed_count(arm: Arm) -> int:
  return len(arm.seed_curves('eval/accuracy')) or 1


def _measures(arms: list[Arm]) -> dict:
  """Per-seed final accuracies (running averages, population statistics; 0 for a diverged
  seed, population = running for arms without BN) and the final training loss per arm
  (NaN if diverged) of `arms`: one arm of seeds side by side, or one arm per seed."""
  measures = {'running': [], 'population': [], 'train_loss': []}
  for arm in arms:
    seeds = _seed_count(arm)
    if arm.diverged_at is not None:
      measures['running'] += [0.0] * seeds
      measures['population'] += [0.0] * seeds
      measures['train_loss'].append(float('nan'))
      continue
    running = arm.seed_finals(ACCURACY_TAGS['running'])
    measures['running'] += running
    measures['population'] += arm.seed_finals(ACCURACY_TAGS['population']) or running
    losses = [v for _, v in arm.curve('train/loss')[-LAST_LOSSES:]]
    measures['train_loss'].append(float(np.mean(losses)))  # The seed mean side by side.
  return measures


def _drift(arm: Arm) -> dict[str, float] | None:
  """Median and IQR over units and seeds of the last layer's location drift, or None."""
  records = unit_drift.read_records(arm.workdir)
  if arm.diverged_at is not None or not records:
    return None
  runs = unit_drift.last_layer_trajectories(records)
  if len(runs[0]['p50']) < 2 * WINDOW:
    return None
  stats = [unit_drift.drift_statistics(t['p15'], t['p50'], t['p85'], WINDOW) for t in runs]
  return unit_drift.summarize([s['location_drift'] for s in stats])


def _mean(values: list[float]) -> float:
  return float(np.mean(values))


def _setting(measures: dict[str, dict], tolerance: float) -> dict:
  """The rules at one setting: {arm: measures} -> verdicts per noisy arm."""
  verdicts = {}
  for noisy in (a for a in measures if a in MAGNITUDE):
    verdict = {}
    for statistics in ('population', 'running'):
      bn, ours = (_mean(measures[a][statistics]) for a in ('bn', noisy))
      verdict[statistics] = {
        'noisy_minus_bn': ours - bn,
        'about_as_well_as_bn': bool(ours >= bn - tolerance),
      }
      if 'baseline' in measures:
        verdict[statistics]['bn_still_helps'] = bool(ours > _mean(measures['baseline'][statistics]))
    verdicts[noisy] = verdict
  share = None
  if 'bn_noisy_fixed' in measures:
    bn, noisy, fixed = (
      _mean(measures[a]['population']) for a in ('bn', 'bn_noisy', 'bn_noisy_fixed')
    )
    if bn - noisy > tolerance:
      share = (fixed - noisy) / (bn - noisy)
  return {
    'measures': measures,
    'verdicts': verdicts,
    'shift_share_of_cost': share,
    'cost_attributed_to': None if share is None else ('shift' if share > 0.5 else 'noise'),
  }


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  mlp_keys = [(a, lr) for lr in LEARNING_RATES for a in MAIN_ARMS]
  mlp_keys += [(a, lr) for lr in SWEEP_RATES for a in SWEEP_ARMS]
  trained = santurkar_arms.train(context, mlp=mlp_keys, proxy=MAIN_ARMS)
  mlp = {}
  for lr in LEARNING_RATES:
    arms = {a: trained.mlp[a, r][1] for a, r in trained.mlp if r == lr}
    setting = _setting({a: _measures([arm]) for a, arm in arms.items()}, TOLERANCE['mlp'])
    setting['drift'] = {a: _drift(arm) for a, arm in arms.items()}
    mlp[f'{lr:g}'] = setting
  proxy = _setting(
    {a: _measures([arm for _, arm in runs]) for a, runs in trained.proxy.items()},
    TOLERANCE['proxy'],
  )
  summary = {
    'rule': RULE,
    'noise': 'our reading of Santurkar et al. Sec. 2.1 (their appendix not found here)',
    'mlp': mlp,
    'inception_proxy': proxy,
  }
  figure = _figure(trained)
  write_results(
    context, figure, _table(mlp, proxy), summary, started, f'{MNIST_DATA}; {FASHION_DATA}'
  )


def _seed_curves(arm: Arm, tag: str) -> tuple[np.ndarray, np.ndarray]:
  """Steps `(E,)` and each seed's `tag` `(E, S)` of an arm (S = 1 for one seed)."""
  curves = arm.seed_curves(tag)
  if not curves:
    return np.array([]), np.zeros((0, 1))
  return np.array([s for s, _ in curves[0]]), np.array([[v for _, v in c] for c in curves]).T


COLORS = {
  'baseline': 'tab:blue',
  'bn': 'tab:red',
  'bn_noisy': 'tab:green',
  'bn_noisy_fixed': 'tab:purple',
  'bn_noisy_0.3': 'tab:olive',
  'bn_noisy_0.1': 'tab:cyan',
}


def _band(ax, steps: np.ndarray, values: np.ndarray, arm: str) -> None:
  ax.plot(steps, np.median(values, 1), color=COLORS[arm], label=arm)
  ax.fill_between(steps, values.min(1), values.max(1), color=COLORS[arm], alpha=0.2)


def _figure(trained: santurkar_arms.SanturkarArms) -> object:
  panels = len(LEARNING_RATES) + 1
  figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2))
  for ax, lr in zip(axes, LEARNING_RATES, strict=False):
    for (arm, rate), (_, trained_arm) in trained.mlp.items():
      steps, values = _seed_curves(trained_arm, ACCURACY_TAGS['running'])
      if rate == lr and len(steps):
        _band(ax, steps, values, arm)
    ax.set(title=f'MNIST MLP, lr {lr:g}', xlabel='step', ylim=(0.9, 0.99))
  axes[0].set_ylabel('test accuracy, running averages\n(median, band: min-max of 3 seeds)')
  ax = axes[-1]
  for arm, runs in trained.proxy.items():
    curves = [_seed_curves(a, ACCURACY_TAGS['running']) for _, a in runs]
    length = min(len(s) for s, _ in curves)
    if length:
      _band(ax, curves[0][0][:length], np.concatenate([v[:length] for _, v in curves], 1), arm)
  ax.set(title='Inception proxy, Fashion-MNIST, lr 0.01', xlabel='step')
  handles, labels = axes[-2].get_legend_handles_labels()
  figure.legend(handles, labels, loc='lower center', ncol=len(labels), fontsize=9)
  figure.suptitle('Study 10: noisy BN (noise after every BN layer, training only)', y=0.99)
  figure.tight_layout(rect=(0, 0.07, 1, 0.95))
  return figure


def _cell(values: list[float]) -> str:
  return f'{np.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})'


def _setting_rows(name: str, setting: dict) -> list[str]:
  measures, verdicts = setting['measures'], setting['verdicts']
  lines = []
  for arm, m in measures.items():
    v = verdicts.get(arm, {})
    population, running = v.get('population', {}), v.get('running', {})
    about = {True: 'yes', False: 'no'}
    lines.append(
      f'| {name} | {arm} | {_cell(m["population"])} | {_cell(m["running"])} | '
      f'{fmt(_mean(m["train_loss"]), "{:.4f}")} | '
      f'{about.get(population.get("about_as_well_as_bn"), "—")} | '
      f'{about.get(population.get("bn_still_helps"), "—")} | '
      f'{about.get(running.get("about_as_well_as_bn"), "—")} |'
    )
  share = setting['shift_share_of_cost']
  if share is not None:
    lines.append(
      f"| {name} | control | shift share of noisy BN's cost: {share:.2f} "
      f'({setting["cost_attributed_to"]} costs most) | | | | | |'
    )
  return lines


def _table(mlp: dict, proxy: dict) -> list[str]:
  lines = [
    'Final test accuracy, mean over 3 seeds (range in brackets), with noise-free population '
    'statistics (Algorithm 2, 100 training batches) and with the running averages (which in '
    'a noisy arm carry the noise of the layers below); training loss under noise (mean of the '
    'last 5 logged values; MLP: the seed mean). MLP: 10,000 steps of 60, SGD. Inception '
    'proxy: 3,000 steps of 32, momentum 0.9, LR 0.01. bn_noisy: n_mu = n_sigma = 1; '
    'bn_noisy_0.3, _0.1: smaller n; bn_noisy_fixed: n = 1, noise parameters drawn once (no '
    'shift). Chance is 0.10.',
    '',
    f'Rule: {RULE}',
    '',
    '| setting | arm | accuracy, population statistics | accuracy, running averages | '
    'train loss | ≈ BN (population) | BN still helps | ≈ BN (running, earlier reading) |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for lr, setting in mlp.items():
    lines += _setting_rows(f'MLP, lr {lr}', setting)
  lines += _setting_rows('Inception proxy, lr 0.01', proxy)
  lines += [
    '',
    'Location drift of the last hidden layer (median over 100 units x 3 seeds, '
    'IQR in brackets; test set, no noise):',
    '',
    '| lr | ' + ' | '.join(MAIN_ARMS) + ' |',
    '|---|' + '---|' * len(MAIN_ARMS),
  ]
  for lr, setting in mlp.items():
    cells = []
    for arm in MAIN_ARMS:
      d = setting['drift'].get(arm)
      cells.append('—' if d is None else f'{d["median"]:.3f} ({d["q25"]:.3f}-{d["q75"]:.3f})')
    lines.append(f'| {lr} | ' + ' | '.join(cells) + ' |')
  return lines
