"""Study 15: moving averages vs population statistics over training (Wu & Johnson 2021).

BN's inference statistics are usually exponential moving averages (EMA) of batch
statistics, which lag the weights they were computed under. Wu & Johnson (2021, "Rethinking
'Batch' in BatchNorm", Sec. 3) find that recomputing them with the weights frozen (PreciseBN:
the population statistics of the paper's Algorithm 2) is at least as accurate and steadier,
most so at large batch (few updates per epoch) and early in training, and that 10^3-10^4
samples suffice.

Design, fixed before the runs:
- Model and data: the MNIST BN MLP (`configs/mnist.py:bn`: 3x100 sigmoid, plain SGD,
  binarized real MNIST), batch B in {32, 256, 1024} with the learning rate 0.25 x B/32
  (linear scaling: 0.25, 2, 8; study 6 trains this network at 8 and 32), 614,400 training
  examples (19,200 / 2,400 / 600 steps), a checkpoint at every tenth of the run, 3 seeds
  side by side. The EMA's momentum only touches inference, so an arm with momentum 0.9 next
  to each 0.99 arm retrains the same weights (checked: equal parameters).
- Measured at each of the 10 checkpoints, per seed: test error (points) with the EMA at
  momentum 0.99 and 0.9, and with population statistics (fvcore's pooled estimator,
  `population_stats.estimator='pooled'`) from N in {10^2, 10^3, 10^4} training samples:
  ceil(N / B) training batches of the training size B (the normalization batch is B, as
  in training), so at B = 1024 the smallest N uses one batch of 1,024.
- Rules (seed means; tolerance 0.1 points: the two statistics are compared on the same
  weights and test set, so their difference is not a different network's):
  * "Population statistics are at least as accurate as the EMA" HOLDS if at every B the
    test error with N = 10^4 averaged over the checkpoints is at most the EMA's (0.99) + 0.1;
    PARTLY if at some B; else DOES NOT HOLD.
  * "The gain is largest at large batch and early": the EMA's excess error (EMA 0.99 minus
    population N = 10^4) at the first checkpoint is larger at B = 1024 than at B = 32, and at
    B = 1024 larger at the first checkpoint than at the last; HOLDS if both, PARTLY if one.
  * "Population statistics are steadier": the mean absolute change of the test error between
    consecutive checkpoints over the last half of the run is at most the EMA's (0.99) at
    every B: HOLDS; PARTLY if at some B; else DOES NOT HOLD.
  * "10^3-10^4 samples suffice": at the last checkpoint |error(N = 10^3) - error(N = 10^4)|
    <= 0.1 at every B: HOLDS; PARTLY if at some B; else DOES NOT HOLD.
- Not in this design: the train-test inconsistency at small normalization batch and a
  FrozenBN tail (study 8 measures batch-statistics evaluation over small groups).
Nothing here is tuned after seeing the outcome.
"""

import dataclasses
import math
import pathlib
import time

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from bn_repro.data import ordering
from bn_repro.nn.population_stats import population_statistics_fn
from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds
from bn_repro.reports.study_results import plain_log_axis, write_results
from bn_repro.studies.common import (
  NUM_SEEDS,
  StudyContext,
  TrainedNetwork,
  count_verdict,
  initial_network,
  train_arms,
  verdict_lines,
)
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.evaluate import running_statistics_accuracy

BATCH_SIZES = (32, 256, 1024)
EXAMPLES = 614_400
LEARNING_RATE_AT_32 = 0.25
MOMENTA = (0.99, 0.9)
SAMPLES = (100, 1_000, 10_000)
CHECKPOINTS = 10
TOLERANCE = 0.1  # Points of test error.


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """{'bB_mM': config} for every batch size and EMA momentum."""
  configs = {}
  for batch in BATCH_SIZES:
    steps = EXAMPLES // batch
    period = max(1, steps // CHECKPOINTS)
    if context.smoke:
      steps, period = 20, 10
    log_every = max(1, period // 6) if not context.smoke else 10
    for momentum in MOMENTA:
      configs[f'b{batch}_m{momentum}'] = context.config(
        'configs/mnist.py:bn',
        num_steps=steps,
        batch_size=batch,
        num_seeds=NUM_SEEDS,
        log_every=log_every,
        steps_per_call=log_every,
        eval_every=period,
        checkpoint_every=period,
        keep_checkpoints=CHECKPOINTS + 1,
        optimizer__learning_rate=LEARNING_RATE_AT_32 * batch / 32,
        eval__unit_percentiles=False,
        model__norm__momentum=momentum,
        population_stats__estimator='pooled',
      )
  return configs


def _error(network: TrainedNetwork, batch_stats: object, images: object, labels: object) -> float:
  """Test error in points of `network` with the inference statistics `batch_stats`."""
  accuracy = running_statistics_accuracy(network.model, network.params, batch_stats, images, labels)
  return 100.0 * (1.0 - accuracy)


def _population_batches(config: ml_collections.ConfigDict, network: TrainedNetwork) -> list:
  """Per seed: its first ceil(max(SAMPLES) / B) training batches, preprocessed, stacked
  `(K, B, ...)` (seed s draws its own order, as in training)."""
  dataset, k = network.dataset, math.ceil(max(SAMPLES) / config.batch_size)
  return [
    network.preprocess(
      dataset.train_images[
        ordering.batch_indices(len(dataset.train_labels), config.batch_size, config.seed + s, 0, k)
      ]
    )
    for s in range(NUM_SEEDS)
  ]


def checkpoint_errors(
  config: ml_collections.ConfigDict, workdir: pathlib.Path, population: bool
) -> dict[str, object]:
  """Test errors in points at every checkpoint of the arm in `workdir`: {'steps': [...],
  'ema': [checkpoint][seed], 'population': {N: [checkpoint][seed]} (if `population`),
  'last_params'}."""
  network, template = initial_network(config)
  images, labels = network.test_inputs()
  statistics = population_statistics_fn(network.model, 'pooled')
  batches = _population_batches(config, network) if population else []
  checkpointer = Checkpointer(workdir / 'checkpoints', read_only=True)
  out = {'steps': [], 'ema': [], 'population': {n: [] for n in SAMPLES} if population else {}}
  for step in checkpointer.all_steps():
    if step == 0:
      continue  # The initialization: nothing to average yet.
    state = checkpointer.restore(step, template)
    seeds = dataclasses.replace(network, params=state.params, batch_stats=state.batch_stats).seeds(
      NUM_SEEDS
    )
    out['steps'].append(step)
    out['ema'].append([_error(n, n.batch_stats, images, labels) for n in seeds])
    for samples in out['population']:
      k = math.ceil(samples / config.batch_size)
      out['population'][samples].append(
        [
          _error(n, statistics(n.params, n.batch_stats, batches[i][:k]), images, labels)
          for i, n in enumerate(seeds)
        ]
      )
    out['last_params'] = state.params
  checkpointer.close()
  return out


def measure(context: StudyContext) -> dict[int, dict[str, object]]:
  """{B: {'steps', 'ema': {momentum: [checkpoint][seed]}, 'population': {N: ...},
  'momentum_arms_parameter_gap'}}."""
  configs = arm_configs(context)
  arms = train_arms(context, configs)
  out = {}
  for batch in BATCH_SIZES:
    main, other = (f'b{batch}_m{m}' for m in MOMENTA)
    errors = checkpoint_errors(configs[main], arms[main].workdir, population=True)
    second = checkpoint_errors(configs[other], arms[other].workdir, population=False)
    gap = jax.tree.map(
      lambda a, b: float(np.max(np.abs(a - b))), errors['last_params'], second['last_params']
    )
    out[batch] = {
      'steps': errors['steps'],
      'ema': {MOMENTA[0]: errors['ema'], MOMENTA[1]: second['ema']},
      'population': errors['population'],
      'momentum_arms_parameter_gap': max(jax.tree.leaves(gap)),
    }
  return out


def _curve(per_checkpoint: list[list[float]]) -> np.ndarray:
  """Seed means per checkpoint."""
  return np.array([np.mean(seeds) for seeds in per_checkpoint])


def judge(measured: dict[int, dict[str, object]]) -> dict[str, dict[str, object]]:
  """The module docstring's rules on `measure`'s output."""
  ema = {b: _curve(m['ema'][MOMENTA[0]]) for b, m in measured.items()}
  pop = {b: _curve(m['population'][max(SAMPLES)]) for b, m in measured.items()}
  mid = {b: _curve(m['population'][sorted(SAMPLES)[-2]]) for b, m in measured.items()}
  small, large = min(measured), max(measured)
  accurate = {b: float(pop[b].mean() - ema[b].mean()) for b in measured}
  excess = {b: (float(ema[b][0] - pop[b][0]), float(ema[b][-1] - pop[b][-1])) for b in measured}
  late = {b: min(len(ema[b]) // 2, len(ema[b]) - 2) for b in measured}  # >= 2 checkpoints.
  roughness = {
    b: (
      float(np.abs(np.diff(pop[b][late[b] :])).mean()),
      float(np.abs(np.diff(ema[b][late[b] :])).mean()),
    )
    for b in measured
  }
  enough = {b: float(abs(mid[b][-1] - pop[b][-1])) for b in measured}
  early_large = [excess[large][0] > excess[small][0], excess[large][0] > excess[large][1]]

  def per_batch(values: dict, pattern: str = '{:+.2f}') -> str:
    return ', '.join(f'B={b} ' + pattern.format(v) for b, v in values.items())

  return {
    'population_as_accurate': {
      'verdict': count_verdict(sum(v <= TOLERANCE for v in accurate.values()), len(accurate)),
      'said': f'population (10^4) minus EMA (0.99) test error, mean over the checkpoints: '
      f'{per_batch(accurate)} points',
      'population_minus_ema': accurate,
    },
    'gain_large_batch_early': {
      'verdict': count_verdict(sum(early_large), 2),
      'said': 'EMA minus population at the first and last checkpoint: '
      + ', '.join(f'B={b} {e[0]:+.2f} then {e[1]:+.2f}' for b, e in excess.items()),
      'ema_excess_first_last': excess,
    },
    'population_steadier': {
      'verdict': count_verdict(sum(r[0] <= r[1] for r in roughness.values()), len(roughness)),
      'said': 'mean change between checkpoints over the last half, population vs EMA: '
      + ', '.join(f'B={b} {r[0]:.2f} vs {r[1]:.2f}' for b, r in roughness.items()),
      'roughness_population_ema': roughness,
    },
    'thousand_samples_suffice': {
      'verdict': count_verdict(sum(v <= TOLERANCE for v in enough.values()), len(enough)),
      'said': '|error(10^3) - error(10^4)| at the last checkpoint: '
      f'{per_batch(enough, "{:.2f}")} points',
      'difference': enough,
    },
  }


def _series(measured: dict) -> dict[str, dict[int, list[list[float]]]]:
  """{label: {B: [checkpoint][seed]}} of every inference statistic measured."""
  series = {f'EMA {m}': {b: x['ema'][m] for b, x in measured.items()} for m in MOMENTA}
  for n in SAMPLES:
    series[f'population, N={n:,}'] = {b: x['population'][n] for b, x in measured.items()}
  return series


def render(context: StudyContext, measured: dict, verdicts: dict, started: float) -> None:
  """figure.png (test error over training per B and statistic), table.md, summary.json."""
  series = _series(measured)
  figure, axes = plt.subplots(1, len(measured), figsize=(4.2 * len(measured), 3.8))
  for ax, (batch, x) in zip(np.atleast_1d(axes), measured.items(), strict=True):
    for label, by_batch in series.items():
      ax.plot(x['steps'], _curve(by_batch[batch]), 'o-' if 'EMA' in label else '.--', label=label)
    ax.set(title=f'B={batch}, lr {LEARNING_RATE_AT_32 * batch / 32:g}', xlabel='step')
    plain_log_axis(ax)
  np.atleast_1d(axes)[0].set_ylabel('test error (%), mean of 3 seeds')
  np.atleast_1d(axes)[0].legend(fontsize=7)
  figure.suptitle(
    f'Study 15: EMA vs population statistics over training, MNIST BN MLP, {EXAMPLES:,} examples'
  )
  figure.tight_layout()
  table = [
    f'MNIST BN MLP, {EXAMPLES:,} training examples at batch B (lr 0.25 x B/32), '
    f'{NUM_SEEDS} seeds side by side: test error in points at the first, middle and last of '
    f'{CHECKPOINTS} checkpoints, mean (min to max) over the seeds; population statistics by '
    "fvcore's pooled estimator from ceil(N / B) training batches of B.",
    '',
    '| B | statistic | ' + ' | '.join(['first', 'middle', 'last']) + ' |',
    '|---|---|---|---|---|',
  ]
  for batch, x in measured.items():
    picks = (0, len(x['steps']) // 2, len(x['steps']) - 1)
    for label, by_batch in series.items():
      cells = [f'{fmt_seeds(by_batch[batch][i], "{:.2f}")} (step {x["steps"][i]})' for i in picks]
      table.append(f'| {batch} | {label} | ' + ' | '.join(cells) + ' |')
  table += ['', *verdict_lines(verdicts)]
  record = {
    'num_seeds': NUM_SEEDS,
    'examples': EXAMPLES,
    'steps': {b: x['steps'] for b, x in measured.items()},
    'test_error': series,
    'momentum_arms_parameter_gap': {
      b: x['momentum_arms_parameter_gap'] for b, x in measured.items()
    },
    'verdicts': verdicts,
  }
  write_results(context, figure, table, record, started, MNIST_DATA)


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  measured = measure(context)
  render(context, measured, judge(measured), started)
