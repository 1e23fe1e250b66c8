"""Study 11: does BN reduce internal covariate shift, measured as Santurkar et al. do?

Santurkar et al. (2018, Sec. 2.2, Definition 2.1, Fig. 3) define a layer's ICS at a step as
the change of its gradient caused by the update of the layers below it on the same batch:
‖G_i - G'_i‖_2 and cos(G_i, G'_i) (`bn_repro.analysis.optimization_probes`), and find it is
not smaller with BN, often larger.

Design, fixed before any run of this study:
- MNIST MLP arms baseline, bn and bn_noisy (`bn_repro.studies.santurkar_arms`, shared with
  studies 10 and 12) at learning rates 0.5 and 2.0 (the two Figure 1 settings of
  `scripts/reproduce_mnist.sh`), 3 seeds, 10,000 steps.
- Probe: at step 0 and every 1,000 steps, per seed, on a training batch of 60: ICS of
  dense1, dense2 (the hidden layers with layers below them) and the logits layer, the
  lower layers taking the plain SGD step of the arm's learning rate.
- Rule: BN REDUCES ICS at a (learning rate, layer) if, in at least 2 of 3 seeds, BN's median
  over the probe steps 1,000-10,000 of ‖G - G'‖ is below the baseline's (same seed) AND its
  median cosine is above the baseline's. Santurkar's claim "BN does not reduce ICS" holds if
  BN reduces it in at most half of the (learning rate, layer) pairs.
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
SEEDS_REQUIRED = 2
RULE = (
  "BN reduces ICS at a (learning rate, layer) if, in at least 2 of 3 seeds, BN's median over "
  "steps 1,000-10,000 of ‖G - G'‖ is below the baseline's and its median cosine above; "
  "Santurkar's 'BN does not reduce ICS' holds if that happens in at most half of the pairs."
)


def _probed_layers(config) -> list[str]:
  """The layers with layers below them: dense1.. and the logits layer."""
  return [f'dense{i}' for i in range(1, len(config.model.hidden_sizes))] + ['logits']


def _ics_probe(learning_rate: float, layers: list[str]):
  def probe(loss_fn, params):
    groups = santurkar_arms.layer_groups(params)
    return internal_covariate_shift(loss_fn, params, learning_rate, layers, groups)

  return probe


def _medians(trajectory: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per seed and layer `(S, L)`: the median over the probe steps after step 0."""
  later = trajectory['steps'] > 0
  return {k: np.median(trajectory[k][later], axis=0) for k in ('l2', 'cosine')}


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = santurkar_arms.train_mlp_arms(context, VARIANTS, LEARNING_RATES)
  layers = _probed_layers(next(iter(arms.values()))[0])
  trajectories = {
    key: santurkar_arms.probe_trajectories(config, arm, _ics_probe(key[1], layers))
    for key, (config, arm) in arms.items()
    if arm.diverged_at is None
  }
  rows, pairs_reduced = [], 0
  for lr in LEARNING_RATES:
    medians = {v: _medians(trajectories[v, lr]) for v in VARIANTS if (v, lr) in trajectories}
    for i, layer in enumerate(layers):
      reduced = None
      if 'baseline' in medians and 'bn' in medians:
        lower = medians['bn']['l2'][:, i] < medians['baseline']['l2'][:, i]
        closer = medians['bn']['cosine'][:, i] > medians['baseline']['cosine'][:, i]
        reduced = bool(np.sum(lower & closer) >= SEEDS_REQUIRED)
        pairs_reduced += reduced
      rows.append(
        {
          'learning_rate': lr,
          'layer': layer,
          'bn_reduces_ics': reduced,
          **{
            v: {
              'l2': [float(x) for x in m['l2'][:, i]],
              'cosine': [float(x) for x in m['cosine'][:, i]],
            }
            for v, m in medians.items()
          },
        }
      )
  claim_holds = pairs_reduced <= len(rows) / 2
  figure = _figure(trajectories, layers)
  table = _table(rows, pairs_reduced, claim_holds)
  summary = {
    'rule': RULE,
    'rows': rows,
    'pairs_where_bn_reduces_ics': pairs_reduced,
    'pairs': len(rows),
    'santurkar_claim_holds': claim_holds,
  }
  write_results(context, figure, table, summary, started, MNIST_DATA)


def _figure(trajectories: dict, layers: list[str]) -> object:
  figure, axes = plt.subplots(len(LEARNING_RATES), 2, figsize=(11, 3.6 * len(LEARNING_RATES)))
  colors = {'baseline': 'tab:blue', 'bn': 'tab:red', 'bn_noisy': 'tab:green'}
  layer = len(layers) - 2  # The last hidden layer (dense2 in the paper's network).
  for row, lr in enumerate(LEARNING_RATES):
    for col, key in enumerate(('l2', 'cosine')):
      ax = axes[row, col]
      for variant in VARIANTS:
        if (variant, lr) not in trajectories:
          continue
        t = trajectories[variant, lr]
        median, low, high = santurkar_arms.seed_band(t[key][:, :, layer])
        ax.plot(t['steps'], median, 'o-', ms=3, color=colors[variant], label=variant)
        ax.fill_between(t['steps'], low, high, color=colors[variant], alpha=0.25)
      label = "‖G - G'‖" if key == 'l2' else "cos(G, G')"
      ax.set(title=f'lr {lr:g}: {label}, layer {layers[layer]}', xlabel='step')
      if key == 'l2':
        ax.set_yscale('log')
  axes[0, 0].legend(fontsize=8)
  figure.suptitle("Study 11: Santurkar et al.'s ICS (median and min-max of 3 seeds)")
  figure.tight_layout()
  return figure


def _cell(row: dict, variant: str, key: str) -> str:
  if variant not in row:
    return '—'
  values = row[variant][key]
  return f'{np.median(values):.3g} ({min(values):.3g}-{max(values):.3g})'


_VERDICT = {None: '—', True: 'yes', False: 'no'}


def _table(rows: list[dict], pairs_reduced: int, claim_holds: bool) -> list[str]:
  lines = [
    "ICS per layer: median over steps 1,000-10,000 of ‖G - G'‖ and cos(G, G'), median over "
    '3 seeds (range in brackets). MNIST MLP, SGD batch 60, 10,000 steps; probe batch 60.',
    '',
    f'Rule: {RULE}',
    '',
    "| lr | layer | ‖G - G'‖: baseline | BN | noisy BN | cosine: baseline | BN | noisy BN "
    '| BN reduces ICS |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for row in rows:
    lines.append(
      f'| {row["learning_rate"]:g} | {row["layer"]} | '
      + ' | '.join(_cell(row, v, 'l2') for v in VARIANTS)
      + ' | '
      + ' | '.join(_cell(row, v, 'cosine') for v in VARIANTS)
      + f' | {_VERDICT[row["bn_reduces_ics"]]} |'
    )
  lines += [
    '',
    f"BN reduces ICS in {pairs_reduced} of {len(rows)} (learning rate, layer) pairs: Santurkar's "
    f'claim {"holds" if claim_holds else "does not hold"} here.',
  ]
  return lines
