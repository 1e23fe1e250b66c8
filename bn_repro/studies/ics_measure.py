"""Study 11: does BN reduce internal covariate shift, measured as Santurkar et al. do?

Santurkar et al. (2018, Sec. 2.2, Definition 2.1, Fig. 3) define a layer's ICS at a step as
the change of its gradient caused by the update of the layers below it on the same batch:
‖G_i - G'_i‖_2 and cos(G_i, G'_i) (`bn_repro.analysis.optimization_probes`), and find it is
not smaller with BN, often larger.

Design, fixed before the runs of this design:
- MNIST MLP arms baseline, bn and bn_noisy (`bn_repro.studies.santurkar_arms`, shared with
  studies 10 and 12) at learning rates 0.5 and 2.0 (the two Figure 1 settings of
  `scripts/reproduce_mnist.sh`), 3 seeds side by side, 10,000 steps.
- Probe: per seed, on a training batch of 60, ICS of dense1, dense2 (the hidden layers with
  layers below them) and the logits layer, the lower layers taking the plain SGD step of
  the arm's learning rate; at step 0, every 50 steps to 500 (the early window, from
  500-step runs of the same config, seeds and batches) and every 1,000 steps to 10,000 (the
  later window).
- Measures, each its own verdict: ‖G - G'‖ (L2, absolute: it grows with the gradient),
  the relative change ‖G - G'‖ / ‖G‖, and cos(G, G'). ‖G‖ is reported too.
- Rule per measure: in a cell (window, learning rate, layer) BN has LESS ICS if, in at least
  2 of 3 seeds, BN's median over the window's probe steps is better than the baseline's
  (same seed): lower L2 or relative change, higher cosine. Santurkar's "BN does not reduce
  ICS" holds by a measure if BN has less ICS in at most half of the 12 cells. Overall: the
  claim holds if it holds by all three measures, does not hold if by none, mixed otherwise.
- The earlier reading (BN reduces ICS at a (rate, layer) only if L2 lower AND cosine higher
  in 2 of 3 seeds over steps 1,000-10,000) is computed too and reported beside it.
Nothing here is tuned after seeing the outcome.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from bn_repro.analysis.optimization_probes import internal_covariate_shift
from bn_repro.reports.formatting import MNIST_DATA
from bn_repro.reports.study_results import write_results
from bn_repro.studies import santurkar_arms
from bn_repro.studies.common import StudyContext

LEARNING_RATES = (0.5, 2.0)
VARIANTS = ('baseline', 'bn', 'bn_noisy')
WINDOWS = ('early', 'later')
SEEDS_REQUIRED = 2
# Measure -> (label, True if smaller means less ICS).
MEASURES = {
  'l2': ("‖G - G'‖", True),
  'relative_l2': ("‖G - G'‖ / ‖G‖", True),
  'cosine': ("cos(G, G')", False),
}
RULE = (
  'Per measure (L2, relative L2, cosine), BN has less ICS in a (window, learning rate, layer) '
  "cell if in at least 2 of 3 seeds its median over the window beats the baseline's; "
  "Santurkar's 'BN does not reduce ICS' holds by a measure if that happens in at most half of "
  'the cells; overall: holds by all three measures, not by any, or mixed.'
)


def _probed_layers(config) -> list[str]:
  """The layers with layers below them: dense1.. and the logits layer."""
  return [f'dense{i}' for i in range(1, len(config.model.hidden_sizes))] + ['logits']


def _ics_probe(learning_rate: float, layers: list[str]):
  def probe(value_and_grad, params):
    groups = santurkar_arms.layer_groups(params)
    out = internal_covariate_shift(value_and_grad, params, learning_rate, layers, groups)
    return {**out, 'relative_l2': out['l2'] / out['gradient_norm']}

  return probe


def _window_medians(trajectory: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per seed and layer `(S, L)`: each measure's median over the probe steps after step 0."""
  later = trajectory['steps'] > 0
  names = (*MEASURES, 'gradient_norm')
  return {k: np.median(trajectory[k][later], axis=0) for k in names}


def _less_ics(bn: np.ndarray, baseline: np.ndarray, smaller_is_less: bool) -> np.ndarray:
  return bn < baseline if smaller_is_less else bn > baseline


def _verdict(cells_with_less: int, cells: int) -> bool:
  return cells_with_less <= cells / 2


def probe(context: StudyContext) -> tuple[dict, list[str]]:
  """Trains (or reuses) the arms and probes them: `{(window, variant, lr): trajectory}` of
  every arm that did not diverge, and the probed layers."""
  keys = [(v, lr) for v in VARIANTS for lr in LEARNING_RATES]
  trained = santurkar_arms.train(context, mlp=keys, early=keys)
  windows = {'early': trained.early, 'later': trained.mlp}
  layers = _probed_layers(next(iter(trained.mlp.values()))[0])
  trajectories = {
    (window, *key): santurkar_arms.probe_trajectories(config, arm, _ics_probe(key[1], layers))
    for window, arms in windows.items()
    for key, (config, arm) in arms.items()
    if arm.diverged_at is None
  }
  return trajectories, layers


def measure(medians: dict, layers: list[str]) -> dict:
  """`{measure: {window: {lr: {layer: {variant: [per-seed window median]}}}}`."""
  return {
    name: {
      window: {
        f'{lr:g}': {
          layer: {
            v: [float(x) for x in medians[window, v, lr][name][:, i]]
            for v in VARIANTS
            if (window, v, lr) in medians
          }
          for i, layer in enumerate(layers)
        }
        for lr in LEARNING_RATES
      }
      for window in WINDOWS
    }
    for name in (*MEASURES, 'gradient_norm')
  }


def judge(medians: dict, layers: list[str]) -> dict:
  """The study's record: each cell's verdict per measure by RULE, the counts, the verdict
  per measure and overall, the measures, and the earlier design's reading."""
  cells, counts = [], dict.fromkeys(MEASURES, 0)
  for window in WINDOWS:
    for lr in LEARNING_RATES:
      for i, layer in enumerate(layers):
        cell = {'window': window, 'learning_rate': lr, 'layer': layer}
        for name, (_, smaller) in MEASURES.items():
          pair = [medians.get((window, v, lr)) for v in ('bn', 'baseline')]
          less = None
          if all(m is not None for m in pair):
            seeds = _less_ics(pair[0][name][:, i], pair[1][name][:, i], smaller)
            less = bool(np.sum(seeds) >= SEEDS_REQUIRED)
            counts[name] += less
          cell[name] = less
        cells.append(cell)
  holds = {name: _verdict(counts[name], len(cells)) for name in MEASURES}
  return {
    'rule': RULE,
    'cells': cells,
    'cells_where_bn_has_less_ics': counts,
    'num_cells': len(cells),
    'claim_holds_by_measure': holds,
    'santurkar_claim': (
      'holds' if all(holds.values()) else ('does not hold' if not any(holds.values()) else 'mixed')
    ),
    'measures': measure(medians, layers),
    'earlier_reading': _earlier_reading(medians, layers),
  }


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  trajectories, layers = probe(context)
  summary = judge({key: _window_medians(t) for key, t in trajectories.items()}, layers)
  figure = _figure(trajectories, layers)
  write_results(context, figure, _table(summary), summary, started, MNIST_DATA)


def _earlier_reading(medians: dict, layers: list[str]) -> dict:
  """The earlier design's rule on these runs: L2 lower AND cosine higher in 2 of 3 seeds
  over steps 1,000-10,000, claim holds if at most half of the (rate, layer) pairs."""
  reduced = 0
  for lr in LEARNING_RATES:
    bn, base = medians[('later', 'bn', lr)], medians[('later', 'baseline', lr)]
    for i in range(len(layers)):
      both = (bn['l2'][:, i] < base['l2'][:, i]) & (bn['cosine'][:, i] > base['cosine'][:, i])
      reduced += bool(np.sum(both) >= SEEDS_REQUIRED)
  pairs = len(LEARNING_RATES) * len(layers)
  return {
    'pairs_where_bn_reduces_ics': reduced,
    'pairs': pairs,
    'santurkar_claim_holds': reduced <= pairs / 2,
  }


def _figure(trajectories: dict, layers: list[str]) -> object:
  figure, axes = plt.subplots(
    len(LEARNING_RATES), len(MEASURES), figsize=(5 * len(MEASURES), 3.8 * len(LEARNING_RATES))
  )
  colors = {'baseline': 'tab:blue', 'bn': 'tab:red', 'bn_noisy': 'tab:green'}
  layer = len(layers) - 2  # The last hidden layer (dense2 in the paper's network).
  for row, lr in enumerate(LEARNING_RATES):
    for col, (key, (label, _)) in enumerate(MEASURES.items()):
      ax = axes[row, col]
      for variant in VARIANTS:
        parts = [trajectories.get((w, variant, lr)) for w in WINDOWS]
        if any(p is None for p in parts):
          continue
        early, later = parts
        steps = np.concatenate(
          [early['steps'], later['steps'][later['steps'] > early['steps'][-1]]]
        )
        values = np.concatenate(
          [early[key][:, :, layer], later[key][later['steps'] > early['steps'][-1], :, layer]]
        )
        median, low, high = santurkar_arms.seed_band(values)
        ax.plot(steps, median, 'o-', ms=3, color=colors[variant], label=variant)
        ax.fill_between(steps, low, high, color=colors[variant], alpha=0.25)
      ax.set(title=f'lr {lr:g}: {label}, {layers[layer]}', xlabel='step (symlog)')
      ax.set_xscale('symlog', linthresh=50)
      if key != 'cosine':
        ax.set_yscale('log')
  axes[0, 0].legend(fontsize=8)
  figure.suptitle("Study 11: Santurkar et al.'s ICS (median and min-max of 3 seeds)")
  figure.tight_layout()
  return figure


def _cell(values: list[float] | None) -> str:
  if not values:
    return '—'
  return f'{np.median(values):.3g} ({min(values):.3g}-{max(values):.3g})'


_YES_NO = {None: '—', True: 'yes', False: 'no'}


def _table(summary: dict) -> list[str]:
  measures, cells = summary['measures'], summary['cells']
  counts, holds = summary['cells_where_bn_has_less_ics'], summary['claim_holds_by_measure']
  overall, earlier = summary['santurkar_claim'], summary['earlier_reading']
  lines = [
    'ICS per layer: median over the window of each measure, median over 3 seeds (range in '
    'brackets). Windows: early = steps 50-500, later = 1,000-10,000. MNIST MLP, SGD batch '
    '60; probe batch 60.',
    '',
    f'Rule: {RULE}',
    '',
  ]
  for name, (label, _) in MEASURES.items():
    lines += [
      f"{label}: BN has less ICS in {counts[name]} of {len(cells)} cells; Santurkar's claim "
      f'{"holds" if holds[name] else "does not hold"} by this measure.',
      '',
      '| window | lr | layer | baseline | BN | noisy BN | ‖G‖ baseline | ‖G‖ BN | BN less ICS |',
      '|---|---|---|---|---|---|---|---|---|',
    ]
    for cell in cells:
      window, lr, layer = cell['window'], f'{cell["learning_rate"]:g}', cell['layer']
      values = measures[name][window][lr][layer]
      norms = measures['gradient_norm'][window][lr][layer]
      lines.append(
        f'| {window} | {lr} | {layer} | '
        + ' | '.join(_cell(values.get(v)) for v in VARIANTS)
        + f' | {_cell(norms.get("baseline"))} | {_cell(norms.get("bn"))} | '
        + f'{_YES_NO[cell[name]]} |'
      )
    lines.append('')
  lines += [
    f"Overall (all three measures): Santurkar's claim {overall} here.",
    '',
    f'Earlier reading (L2 lower AND cosine higher, steps 1,000-10,000): BN reduces ICS in '
    f'{earlier["pairs_where_bn_reduces_ics"]} of {earlier["pairs"]} (learning rate, layer) '
    f'pairs; the claim {"holds" if earlier["santurkar_claim_holds"] else "does not hold"}.',
  ]
  return lines
