"""Study 9: where the paper's Figure 1 picture holds: a learning rate x init scale map.

The paper's Fig. 1(b, c): without BN the input distribution of a typical last-layer sigmoid
moves over training; with BN it stays put. The paper states neither its learning rate nor its
initialization scale. This study maps both, measuring every unit of the last hidden layer in
every seed (`bn_repro.analysis.unit_drift`, whose docstring defines location drift, spread drift and
jitter), on the MNIST MLP of `configs/mnist.py` (3x100 sigmoid, SGD batch 60, binarized
real MNIST).

Design, fixed before any run of this study:
- Grid: learning rate {0.05, 0.2, 0.5, 2.0} x init std {0.01, 0.1, 1.0} x {no BN, BN}; each
  arm trains 3 seeds side by side (seeds 0, 1, 2: the same data order across cells for a
  given seed), 50,000 steps, evaluation every 500 steps (100 evaluations, drift windows of
  5). BN arms also evaluate with Algorithm 2's population statistics (50 training batches)
  at every evaluation, so the jitter of the moving averages can be told from the network's.
- Rule for Fig. 1(b, c), per cell: the paper's picture HOLDS if (1) in at least 2 of the 3
  seeds the ratio (baseline's median location drift over the 100 units) / (BN's) exceeds
  1.5, with moving-average statistics, and (2) BN's final test accuracy (mean over seeds) is
  not below the baseline's. A cell where either arm diverged does not hold.
- Fig. 1(a), per cell: BN minus baseline test accuracy at 10k, 20k, 30k, 40k and 50k steps,
  mean and standard deviation over the seeds' paired differences.
- The cell drawn with the paper's three panels, besides lr 2.0 (the baseline's best in the
  learning-rate sweep, `results/mnist/lr_sweep.md`): lr 0.5, init std 0.1, the sweep's rate
  with BN's largest accuracy lead (0.9783 vs 0.9709); chosen from accuracies measured before
  this study, never from its drift outcome.
Nothing here is tuned after seeing the outcome; the verdict is reported whichever way it falls.
"""

import itertools
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, LogNorm, SymLogNorm
from matplotlib.patches import Patch

from bn_repro.analysis import unit_drift
from bn_repro.records import read_metrics
from bn_repro.reports import figure1, judges
from bn_repro.reports.formatting import MNIST_DATA, fmt
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import StudyContext, train_arms

LEARNING_RATES = (0.05, 0.2, 0.5, 2.0)
INIT_STDS = (0.01, 0.1, 1.0)
ARMS = {'baseline': 'configs/mnist.py:baseline', 'bn': 'configs/mnist.py:bn'}
NUM_SEEDS = 3
NUM_STEPS = 50_000
EVAL_EVERY = 500
WINDOW = 5
POPULATION_BATCHES = 50
MARKS = (10_000, 20_000, 30_000, 40_000, 50_000)
DRIFT_RATIO_THRESHOLD = 1.5
SEEDS_REQUIRED = 2
PANEL_CELLS = ((0.5, 0.1), (2.0, 0.1))
RULE = (
  'Fig. 1(b, c) holds in a cell if, in at least 2 of 3 seeds, the baseline/BN ratio of the '
  'median (over the 100 last-layer units) location drift exceeds 1.5 (moving averages), and '
  "BN's seed-mean final test accuracy is not below the baseline's; a diverged arm fails it."
)


def _arm_measures(arm, seeds: int, window: int, statistics: str = 'moving_average') -> dict:
  """Per-seed drift statistics (per unit) and test accuracies of one trained arm."""
  runs = unit_drift.last_layer_trajectories(unit_drift.read_records(arm.workdir), statistics)
  per_seed, x_hat, gamma = [], [], []
  for t in runs:
    per_seed.append(unit_drift.drift_statistics(t['p15'], t['p50'], t['p85'], window))
    if 'gamma' in t:  # BN: how much of the movement is x_hat's, how much gamma's.
      percentiles = np.stack([t['p15'], t['p50'], t['p85']], axis=1)  # (E, 3, U)
      normalized = np.stack(
        [
          unit_drift.normalized_percentiles(p, g, b)
          for p, g, b in zip(percentiles, t['gamma'], t['beta'], strict=True)
        ]
      )
      x_hat.append(unit_drift.drift_statistics(*normalized.transpose(1, 0, 2), window))
      g = np.abs(t['gamma'])
      gamma.append(np.abs(np.log(g[-window:].mean(0) / g[:window].mean(0))))
  accuracy = [dict(c) for c in arm.seed_curves('eval/accuracy')]
  return {'drift': per_seed, 'accuracy': accuracy, 'x_hat': x_hat, 'gamma_log_ratio': gamma}


def _summary(measures: dict) -> dict:
  out = {
    name: unit_drift.summarize([d[name] for d in measures['drift']])
    for name in ('location_drift', 'spread_drift', 'jitter')
  }
  out['final_test_accuracy'] = float(np.mean([a[max(a)] for a in measures['accuracy']]))
  if measures['x_hat']:  # BN: x_hat's own drift, and |log| of gamma's late/early ratio.
    out['x_hat'] = {
      name: unit_drift.summarize([d[name] for d in measures['x_hat']])
      for name in ('location_drift', 'spread_drift')
    }
    out['gamma_log_ratio'] = unit_drift.summarize(measures['gamma_log_ratio'])
  return out


def _arm_name(learning_rate: float, init_std: float, arm: str) -> str:
  return f'lr{learning_rate:g}_init{init_std:g}_{arm}'


def _arm_configs(context: StudyContext) -> dict[str, object]:
  """Every arm of the grid: {arm name: config}."""
  steps, evaluate_every = context.steps(NUM_STEPS), context.steps(EVAL_EVERY)
  configs = {}
  for learning_rate, init_std in _grid():
    for name, spec in ARMS.items():
      bn = name == 'bn'
      configs[_arm_name(learning_rate, init_std, name)] = context.config(
        spec,
        num_steps=steps,
        num_seeds=_seeds(context),
        eval_every=evaluate_every if not context.smoke else 5,
        checkpoint_every=steps,
        optimizer__learning_rate=learning_rate,
        model__init_std=init_std,
        eval__unit_percentiles=True,
        population_stats__num_batches=POPULATION_BATCHES if bn else 0,
        population_stats__every_eval=bn,
      )
  return configs


def _grid() -> list[tuple[float, float]]:
  """(learning rate, init std) of every cell, init std major."""
  return [(lr, std) for std, lr in itertools.product(INIT_STDS, LEARNING_RATES)]


def _seeds(context: StudyContext) -> int:
  return NUM_SEEDS if not context.smoke else 2


def _cell(context: StudyContext, learning_rate: float, init_std: float, arms: dict) -> dict:
  """One cell's drift, accuracy and verdict from its trained arms (`train_arms`)."""
  window = WINDOW if not context.smoke else 1
  seeds = _seeds(context)
  out = {'learning_rate': learning_rate, 'init_std': init_std, 'seeds': seeds}
  measures = {}
  for name in ARMS:
    arm = arms[_arm_name(learning_rate, init_std, name)]
    if arm.diverged_at:
      out[name] = {'diverged_at': arm.diverged_at}
      continue
    measures[name] = _arm_measures(arm, seeds, window)
    out[name] = _summary(measures[name])
    if name == 'bn':
      population = _arm_measures(arm, seeds, window, 'population')
      out[name]['population_statistics'] = _summary(population)
  if len(measures) < 2:
    out['paper_picture_holds'] = False
    return out
  ratios = [
    float(np.median(b['location_drift']) / np.median(n['location_drift']))
    for b, n in zip(measures['baseline']['drift'], measures['bn']['drift'], strict=True)
  ]
  accuracy_ok = out['bn']['final_test_accuracy'] >= out['baseline']['final_test_accuracy']
  out['location_drift_ratio_by_seed'] = ratios
  out['paper_picture_holds'] = bool(
    sum(r > DRIFT_RATIO_THRESHOLD for r in ratios) >= min(SEEDS_REQUIRED, seeds) and accuracy_ok
  )
  gaps = {}
  for mark in MARKS if not context.smoke else (context.steps(NUM_STEPS),):
    differences = [
      bn_acc[mark] - base_acc[mark]
      for bn_acc, base_acc in zip(
        measures['bn']['accuracy'], measures['baseline']['accuracy'], strict=True
      )
      if mark in bn_acc and mark in base_acc
    ]
    if differences:
      gaps[str(mark)] = {'mean': float(np.mean(differences)), 'std': float(np.std(differences))}
  out['bn_minus_baseline_accuracy'] = gaps
  return out


def _heatmap(ax, values: np.ndarray, title: str, labels: np.ndarray, norm, cmap: str) -> None:
  """A learning rate x init std map of `values` coloured through `norm`, each cell labelled."""
  image = ax.imshow(values, cmap=cmap, norm=norm, origin='lower')
  _grid_axes(ax, title)
  for (i, j), label in np.ndenumerate(labels):
    ax.text(j, i, label, ha='center', va='center', fontsize=8)
  plt.colorbar(image, ax=ax)


def _grid_axes(ax, title: str) -> None:
  ax.set_xticks(range(len(LEARNING_RATES)), [f'{r:g}' for r in LEARNING_RATES])
  ax.set_yticks(range(len(INIT_STDS)), [f'{s:g}' for s in INIT_STDS])
  ax.set(xlabel='learning rate', ylabel='init std')
  ax.set_title(title, fontsize=9)


VERDICT_COLORS = {'holds': 'tab:green', 'does not hold': 'tab:orange', 'untrained': 'lightgray'}


def _verdict_map(ax, verdicts: list[list[str]]) -> None:
  """The location-and-spread verdict per cell, a categorical map with its legend."""
  names = list(VERDICT_COLORS)
  codes = np.array([[names.index(v) for v in row] for row in verdicts])
  colors = ListedColormap(list(VERDICT_COLORS.values()))
  ax.imshow(codes, cmap=colors, vmin=0, vmax=len(names) - 1, origin='lower')
  _grid_axes(ax, 'Fig. 1(b, c) by location AND spread\n(untrained cells excluded)')
  ax.legend(
    handles=[Patch(color=c, label=v) for v, c in VERDICT_COLORS.items()],
    loc='upper left',
    bbox_to_anchor=(1.02, 1.0),
    fontsize=8,
  )


def _median_ratio(cell: dict, measure: str) -> float:
  """Baseline / BN median `measure` drift ('location', 'spread') of a cell; NaN if an arm
  diverged."""
  if any(f'{measure}_drift' not in cell[arm] for arm in ('baseline', 'bn')):
    return np.nan
  return judges.drift_ratio(cell, f'{measure}_drift')


def _panels(axes, context: StudyContext, learning_rate: float, init_std: float) -> None:
  """Fig. 1(a, b, c) for one cell: accuracy with seed bands; the 15/50/85th percentiles of
  the last layer's sigmoid inputs, median over units with the units' interquartile band."""
  for name, color in (('baseline', 'tab:blue'), ('bn', 'tab:red')):
    workdir = context.workdir / context.name / _arm_name(learning_rate, init_std, name)
    records = unit_drift.read_records(workdir)
    if not records:
      continue
    runs = unit_drift.last_layer_trajectories(records)
    steps = runs[0]['steps']
    accuracy = figure1.seed_accuracies(read_metrics(workdir))
    axes[0].plot(steps, accuracy.mean(0), color=color, label=name)
    axes[0].fill_between(steps, accuracy.min(0), accuracy.max(0), color=color, alpha=0.2)
    ax = axes[1 if name == 'baseline' else 2]
    figure1.plot_unit_percentiles(ax, runs, color)
    ax.set_title(f'{name}: sigmoid input p15/p50/p85 (units IQR)', fontsize=9)
    ax.set_xlabel('training steps')
  axes[0].set_title(f'lr {learning_rate:g}, init {init_std:g}: test accuracy', fontsize=9)
  axes[0].legend(fontsize=8)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  arms = train_arms(context, _arm_configs(context))
  cells = [_cell(context, lr, std, arms) for lr, std in _grid()]
  figure = _figure(context, cells)
  table = _table(context, cells)
  write_results(context, figure, table, {'rule': RULE, 'cells': cells}, started, MNIST_DATA)


def _figure(context: StudyContext, cells: list[dict]) -> object:
  """The map of the grid (ratios, accuracy gap, verdicts) over the tuned-rate cells' panels."""
  by_key = {(c['learning_rate'], c['init_std']): c for c in cells}

  def grid(value) -> np.ndarray:
    return np.array([[value(by_key[lr, std]) for lr in LEARNING_RATES] for std in INIT_STDS])

  def final_gap(cell):
    gaps = cell.get('bn_minus_baseline_accuracy') or {}
    return gaps[max(gaps, key=int)]['mean'] if gaps else np.nan

  figure, axes = plt.subplots(3, 3, figsize=(15, 12.5))
  location, spread = (grid(lambda c, m=m: _median_ratio(c, m)) for m in ('location', 'spread'))
  _heatmap(
    axes[0, 0],
    location,
    'drift ratio baseline/BN: location (colour), spread\n(medians over units and seeds)',
    np.vectorize(lambda a, b: f'{a:.2f}\n{b:.2f}')(location, spread),
    LogNorm(),
    'viridis',
  )
  gap = 100 * grid(final_gap)
  largest = np.nanmax(np.abs(gap))
  _heatmap(
    axes[0, 1],
    gap,
    'BN - baseline final test accuracy, points\n(symmetric log colour: one cell dominates)',
    np.vectorize(lambda v: f'{v:+.2f}')(gap),
    SymLogNorm(linthresh=1.0, vmin=-largest, vmax=largest),
    'RdBu',
  )
  _verdict_map(
    axes[0, 2],
    [[judges.fig1bc_cell(by_key[lr, std]) for lr in LEARNING_RATES] for std in INIT_STDS],
  )
  for row, (lr, std) in zip(axes[1:], PANEL_CELLS, strict=True):
    _panels(row, context, lr, std)
  figure.suptitle(
    'Study 9: where Figure 1(b, c) holds (rows 2-3: the tuned-rate cells, medians over units '
    "and seeds, band: the units' IQR)",
    fontsize=11,
  )
  figure.tight_layout(rect=(0, 0, 1, 0.97))
  return figure


def _table(context: StudyContext, cells: list[dict]) -> list[str]:
  """Every cell's drift, accuracies and both readings' verdicts, and the counts."""
  table = [
    f'MNIST MLP (3x100 sigmoid, SGD batch 60), {context.steps(NUM_STEPS)} steps, '
    f"{cells[0]['seeds']} seeds per arm. Drift of the last hidden layer's sigmoid inputs, "
    'medians over units and seeds [interquartile range] (`bn_repro/analysis/unit_drift.py`). '
    f'Rule: {RULE}',
    '',
    '| lr | init std | location drift: baseline | BN | ratio by seed | spread drift: baseline | '
    'BN | jitter: baseline | BN | final accuracy: baseline | BN | BN - baseline at 10k..50k '
    '(mean ± sd, points) | holds (location) | location AND spread |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for c in cells:

    def part(arm, name, c=c):
      values = c[arm]
      if 'diverged_at' in values:
        return f'div@{values["diverged_at"]}'
      s = values[name]
      return f'{s["median"]:.3g} [{s["q25"]:.3g}, {s["q75"]:.3g}]'

    def accuracy(arm, c=c):
      values = c[arm]
      return (
        f'div@{values["diverged_at"]}'
        if 'diverged_at' in values
        else fmt(values['final_test_accuracy'])
      )

    gaps = ' / '.join(
      f'{100 * g["mean"]:+.2f}±{100 * g["std"]:.2f}'
      for g in (c.get('bn_minus_baseline_accuracy') or {}).values()
    )
    ratios = ', '.join(f'{r:.2f}' for r in c.get('location_drift_ratio_by_seed', []))
    table.append(
      f'| {c["learning_rate"]:g} | {c["init_std"]:g} | {part("baseline", "location_drift")} | '
      f'{part("bn", "location_drift")} | {ratios or "—"} | {part("baseline", "spread_drift")} | '
      f'{part("bn", "spread_drift")} | {part("baseline", "jitter")} | {part("bn", "jitter")} | '
      f'{accuracy("baseline")} | {accuracy("bn")} | {gaps or "—"} | '
      f'{"yes" if c["paper_picture_holds"] else "no"} | {judges.fig1bc_cell(c)} |'
    )
  holds = sum(c['paper_picture_holds'] for c in cells)
  verdicts = [judges.fig1bc_cell(c) for c in cells]
  trained = len(cells) - verdicts.count('untrained')
  table += [
    '',
    f"By this study's rule (location drift only) the paper's Fig. 1(b, c) picture holds in "
    f'{holds} of {len(cells)} cells. By location AND spread drift, untrained cells (an arm '
    f'below {judges.TRAINED_ACCURACY} final test accuracy) excluded, the reading REPORT.md '
    f'judges (`bn_repro/reports/claims.py`, a rule written after these results were first '
    f'seen), it holds in {verdicts.count("holds")} of {trained} cells.',
  ]
  return table
