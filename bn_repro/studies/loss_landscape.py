"""Study 12: is the loss landscape smoother with BN, as Santurkar et al. find?

Santurkar et al. (2018, Sec. 3.1, Fig. 4) move from the current parameters along the
gradient by several step sizes and find, with BN, a smaller range of the loss ("loss
variation"), a gradient that changes less ("gradient predictiveness", the L2 change of the
gradient) and a smaller effective beta-smoothness (the largest gradient change per unit
distance moved), `bn_repro.analysis.optimization_probes.landscape_along_gradient`. These are
absolute: they shrink with ‖g‖ and with training progress, and raw beta is not invariant to
the scale of weights that feed BN.

Design, fixed before the runs of this design:
- MNIST MLP arms baseline and bn (`bn_repro.studies.santurkar_arms`, shared with studies 10
  and 11) at learning rates 0.5 and 2.0, 3 seeds side by side, 10,000 steps; probes at step
  0, every 50 steps to 500 (early window, from 500-step runs of the same config, seeds and
  batches) and every 1,000 to 10,000 (later window), on a training batch of 60, step sizes
  {0.5, 1, 2, 4} x the arm's learning rate (Santurkar et al. move up to 4x their rate).
- Inception proxy arms baseline and bn at a shared rate (study 10's: constant LR 0.01,
  momentum 0.9, 3,000 steps, seeds 0, 1, 2), probes at 0 and every 500 steps on a batch of
  32, step sizes {0.5, 1, 2, 4} x the effective rate 0.01 / (1 - 0.9) = 0.1.
- Measures, each its own verdict: Santurkar's three (absolute) and three normalized ones:
  loss variation / (4 lr ‖g‖²), ‖Δg‖ / ‖g‖, and the scale-invariant beta (per hidden layer
  of the MLP, beta_l ‖W_l‖², moving W_l alone; median over the 3 hidden layers; not on the
  proxy, where it would cost a gradient per layer and step size).
- Rule per measure: in a cell (model, learning rate, window) BN is SMOOTHER if, in at least
  2 of 3 seeds, BN's median over the window's probe steps is below the baseline's (same
  seed); effect size = the median over seeds of log10(BN / baseline). Santurkar's claim holds
  by a measure if BN is smoother in every cell it is measured in (5; the scale-invariant beta
  4). Overall, from the three normalized measures: holds if by all three, does not hold if
  by none, mixed otherwise.
- The earlier reading (smoother at a rate if all three absolute medians over steps
  1,000-10,000 are below the baseline's in 2 of 3 seeds; holds if so at both rates) is
  computed too and reported beside it.
Nothing here is tuned after seeing the outcome.
"""

import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from bn_repro.analysis.optimization_probes import landscape_along_gradient, scale_invariant_beta
from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA
from bn_repro.reports.study_results import write_results
from bn_repro.studies import santurkar_arms
from bn_repro.studies.common import StudyContext

LEARNING_RATES = (0.5, 2.0)
VARIANTS = ('baseline', 'bn')
STEP_MULTIPLES = (0.5, 1.0, 2.0, 4.0)
PROXY_MOMENTUM = 0.9
ABSOLUTE = {
  'loss_variation': 'loss variation',
  'gradient_predictiveness': 'gradient predictiveness ‖Δg‖',
  'beta_smoothness': 'effective beta-smoothness',
}
NORMALIZED = {
  'normalized_loss_variation': 'loss variation / (η_max ‖g‖²)',
  'relative_gradient_change': '‖Δg‖ / ‖g‖',
  'scale_invariant_beta': 'scale-invariant beta (β_l ‖W_l‖²)',
}
MEASURES = {**ABSOLUTE, **NORMALIZED}
PROXY_KEY = 'proxy_0.01'
WINDOWS = ('early', 'later')  # Steps 50-500 and 1,000-10,000 (the MLP's checkpoints).
SEEDS_REQUIRED = 2
RULE = (
  'Per measure, BN is smoother in a (model, learning rate, window) cell if in at least 2 of 3 '
  "seeds its median over the window is below the baseline's; Santurkar's claim holds by a "
  'measure if BN is smoother in every cell; overall, from the normalized measures (loss '
  'variation / (η_max ‖g‖²), ‖Δg‖ / ‖g‖, scale-invariant beta): by all three, none, or mixed.'
)


def _landscape_probe(step_sizes: tuple[float, ...], hidden_layers: list[str] | None):
  def probe(value_and_grad, params):
    result = landscape_along_gradient(value_and_grad, params, step_sizes)
    out = {name: result[name] for name in MEASURES if name in result}
    if hidden_layers:
      betas = scale_invariant_beta(value_and_grad, params, step_sizes, hidden_layers)
      out['scale_invariant_beta'] = jnp.median(betas)
    return out

  return probe


def _hidden_layers(config) -> list[str]:
  return [f'dense{i}' for i in range(len(config.model.hidden_sizes))]


def _medians(trajectory: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per seed `(S,)`: each measure's median over the probe steps after step 0."""
  later = trajectory['steps'] > 0
  return {k: np.median(trajectory[k][later], axis=0) for k in MEASURES if k in trajectory}


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  keys = [(v, lr) for v in VARIANTS for lr in LEARNING_RATES]
  trained = santurkar_arms.train(context, mlp=keys, early=keys, proxy=VARIANTS)
  trajectories = {}
  for window, arms in (('early', trained.early), ('later', trained.mlp)):
    for (variant, lr), (config, arm) in arms.items():
      if arm.diverged_at is None:
        probe = _landscape_probe(tuple(m * lr for m in STEP_MULTIPLES), _hidden_layers(config))
        trajectories[window, variant, f'{lr:g}'] = santurkar_arms.probe_trajectories(
          config, arm, probe
        )
  proxy_rate = santurkar_arms.PROXY_LEARNING_RATE / (1 - PROXY_MOMENTUM)
  proxy_probe = _landscape_probe(tuple(m * proxy_rate for m in STEP_MULTIPLES), None)
  for variant, runs in trained.proxy.items():
    if all(arm.diverged_at is None for _, arm in runs):
      per_seed = [santurkar_arms.probe_trajectories(c, a, proxy_probe) for c, a in runs]
      trajectories['later', variant, PROXY_KEY] = {
        'steps': per_seed[0]['steps'],
        **{k: np.concatenate([t[k] for t in per_seed], 1) for k in per_seed[0] if k != 'steps'},
      }
  medians = {key: _medians(t) for key, t in trajectories.items()}
  summary = _summarize(medians)
  table = _table(summary)
  write_results(
    context, _figure(trajectories), table, summary, started, f'{MNIST_DATA}; {FASHION_DATA}'
  )


def _summarize(medians: dict) -> dict:
  settings = [f'{lr:g}' for lr in LEARNING_RATES]
  cells = [(w, s) for w in WINDOWS for s in settings] + [('later', PROXY_KEY)]
  measures = {'early': {}, 'later': {}}
  verdicts = {}
  for name in MEASURES:
    for window in measures:
      measures[window][name] = {
        setting: {v: [float(x) for x in medians[window, v, setting][name]] for v in VARIANTS}
        for w, setting in cells
        if w == window and all(name in medians.get((window, v, setting), {}) for v in VARIANTS)
      }
    per_cell = []
    for window, setting in cells:
      values = measures[window][name].get(setting)
      if values is None:
        continue
      bn, base = np.array(values['bn']), np.array(values['baseline'])
      per_cell.append(
        {
          'window': window,
          'setting': setting,
          'bn_smoother': bool(np.sum(bn < base) >= SEEDS_REQUIRED),
          'seeds': len(bn),
          'log10_ratio_median': float(np.median(np.log10(bn / base))),
        }
      )
    verdicts[name] = {
      'cells': per_cell,
      'claim_holds': all(c['bn_smoother'] for c in per_cell),
    }
  normalized = [verdicts[n]['claim_holds'] for n in NORMALIZED]
  overall = 'holds' if all(normalized) else ('does not hold' if not any(normalized) else 'mixed')
  return {
    'rule': RULE,
    'measures': measures['later'],
    'early_measures': measures['early'],
    'verdicts': verdicts,
    'santurkar_claim': overall,
    'earlier_reading': _earlier_reading(medians, settings),
  }


def _earlier_reading(medians: dict, settings: list[str]) -> dict:
  """The earlier design's rule on these runs (module docstring)."""
  smoother = {}
  for setting in settings:
    bn, base = medians['later', 'bn', setting], medians['later', 'baseline', setting]
    below = np.all([bn[s] < base[s] for s in ABSOLUTE], axis=0)
    smoother[setting] = bool(np.sum(below) >= SEEDS_REQUIRED)
  return {'bn_smoother': smoother, 'santurkar_claim_holds': all(smoother.values())}


def _figure(trajectories: dict) -> object:
  settings = [f'{lr:g}' for lr in LEARNING_RATES] + [PROXY_KEY]
  names = list(NORMALIZED) + ['beta_smoothness']
  figure, axes = plt.subplots(
    len(settings), len(names), figsize=(4.6 * len(names), 3.4 * len(settings))
  )
  colors = {'baseline': 'tab:blue', 'bn': 'tab:red'}
  for row, setting in enumerate(settings):
    for col, name in enumerate(names):
      ax = axes[row, col]
      title = 'proxy, lr 0.01' if setting == PROXY_KEY else f'MLP, lr {setting}'
      ax.set_title(f'{title}: {MEASURES[name]}', fontsize=9)
      if not any(name in trajectories.get((w, v, setting), {}) for w in WINDOWS for v in VARIANTS):
        ax.text(0.5, 0.5, 'not measured for this model', ha='center', transform=ax.transAxes)
        ax.set_axis_off()
        continue
      for variant in VARIANTS:
        parts = [trajectories.get((w, variant, setting)) for w in WINDOWS]
        parts = [p for p in parts if p is not None and name in p]
        if not parts:
          continue
        steps = np.concatenate([p['steps'] for p in parts])
        values = np.concatenate([p[name] for p in parts])
        order = np.argsort(steps, kind='stable')
        steps, values = steps[order], values[order]
        keep = np.concatenate([[True], np.diff(steps) > 0])
        median, low, high = santurkar_arms.seed_band(values[keep])
        ax.plot(steps[keep], median, 'o-', ms=3, color=colors[variant], label=variant)
        ax.fill_between(steps[keep], low, high, color=colors[variant], alpha=0.25)
      ax.set(xlabel='step (symlog)', yscale='log')
      ax.set_xscale('symlog', linthresh=50)
      ax.set_xlim(left=0)
  axes[0, 0].legend(fontsize=8)
  figure.suptitle(
    'Study 12: the landscape along the gradient, step sizes '
    f'{", ".join(f"{m:g}" for m in STEP_MULTIPLES)} x lr (median and min-max of 3 seeds)'
  )
  figure.tight_layout()
  return figure


def _cell(values: list[float]) -> str:
  return f'{np.median(values):.3g} ({min(values):.3g}-{max(values):.3g})'


def _table(summary: dict) -> list[str]:
  lines = [
    'Median over the window, median over 3 seeds (range in brackets); effect = median over '
    'seeds of log10(BN / baseline) (negative: BN smoother). MLP: MNIST, SGD batch 60, '
    '10,000 steps, windows early = steps 50-500 and later = 1,000-10,000, step sizes '
    f'{STEP_MULTIPLES} x lr. Proxy: Fashion-MNIST, LR 0.01, momentum 0.9, steps 500-3,000, '
    'step sizes x 0.1.',
    '',
    f'Rule: {RULE}',
    '',
    '| measure | window | setting | baseline | BN | effect | seeds | BN smoother |',
    '|---|---|---|---|---|---|---|---|',
  ]
  windows = {'early': summary['early_measures'], 'later': summary['measures']}
  for name, label in MEASURES.items():
    for cell in summary['verdicts'][name]['cells']:
      values = windows[cell['window']][name][cell['setting']]
      lines.append(
        f'| {label} | {cell["window"]} | {cell["setting"]} | {_cell(values["baseline"])} | '
        f'{_cell(values["bn"])} | {cell["log10_ratio_median"]:+.2f} | {cell["seeds"]} | '
        f'{"yes" if cell["bn_smoother"] else "no"} |'
      )
  lines.append('')
  for name, label in MEASURES.items():
    verdict = summary['verdicts'][name]
    smoother = sum(c['bn_smoother'] for c in verdict['cells'])
    lines.append(
      f'- {label}: BN smoother in {smoother} of {len(verdict["cells"])} cells; the claim '
      f'{"holds" if verdict["claim_holds"] else "does not hold"} by this measure.'
    )
  earlier = summary['earlier_reading']
  lines += [
    '',
    f"Overall (normalized measures): Santurkar's claim {summary['santurkar_claim']} here.",
    '',
    'Earlier reading (all three absolute statistics below, steps 1,000-10,000): BN smoother '
    f'at {sum(earlier["bn_smoother"].values())} of {len(earlier["bn_smoother"])} rates; the '
    f'claim {"holds" if earlier["santurkar_claim_holds"] else "does not hold"}.',
  ]
  return lines
