"""What happens at an evaluation step: test metrics, Figure 1's percentiles, the best
checkpoint, and Algorithm 2's population statistics."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from bn_repro.analysis import unit_drift
from bn_repro.distributed import replicated_to_host
from bn_repro.heartbeat import heartbeat
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.evaluate import Evaluator, preactivation_percentiles
from bn_repro.training.faults import kill_point
from bn_repro.training.seeds import seed_states, seed_tag, spread_tag
from bn_repro.training.setup import Run
from bn_repro.training.state import TrainState


def periodic_evaluation(
  run: Run, step: int, best_accuracy: float
) -> tuple[dict[str, float], float]:
  """Evaluates at `step`: test metrics, Figure 1's percentiles, the best checkpoint, and
  (if configured) Algorithm 2's population statistics. Returns the metrics (means over
  seeds, with `seed_accuracies` for several seeds and `population_accuracy` when the
  population statistics were evaluated) and the best accuracy so far."""
  config = run.config
  # Each run's state on the host, copied once: slicing every leaf on the device costs a
  # dispatch each, and every part below reads them.
  runs = seed_states(replicated_to_host(run.state), config.num_seeds)
  with heartbeat(f'evaluating at step {step}'):
    eval_metrics, scalars, preactivations, seed_metrics = evaluate_runs(run.evaluate, runs, 'eval')
  kill_point('evaluation', step)
  record_units = run.is_chief and config.eval.get('unit_percentiles', False)
  if record_units:
    record_unit_percentiles(run, step, preactivations, runs, 'moving_average')
  # Compared as logged (float32), so a resumed run, which reads the best so far back from
  # the event files, picks the same best checkpoint as an uninterrupted one.
  accuracy = float(np.float32(eval_metrics['accuracy']))
  if accuracy > best_accuracy:
    best_accuracy = accuracy
    run.best_checkpointer.save(run.state)
    kill_point('best_checkpoint', step)
  run.writer.write_scalars(
    step,
    {
      **scalars,
      'eval/best_accuracy': best_accuracy,
      **preactivation_percentiles(
        preactivations[0], config.eval.typical_unit, config.eval.percentiles
      ),
    },
  )
  params = [r.params for r in runs]
  run.dashboards.write_evaluation(step, 'eval', seed_metrics, preactivations, params)
  if config.num_seeds > 1:
    eval_metrics['seed_accuracies'] = [
      scalars[seed_tag('eval/accuracy', i)] for i in range(config.num_seeds)
    ]
  if run.population_stats and (config.population_stats.every_eval or step == config.num_steps):
    population_runs = [
      r.replace(batch_stats=run.population_stats(r, i)) for i, r in enumerate(runs)
    ]
    population_metrics, scalars, population_preactivations, _ = evaluate_runs(
      run.evaluate, population_runs, 'eval_population'
    )
    eval_metrics['population_accuracy'] = population_metrics['accuracy']
    run.writer.write_scalars(step, scalars)
    if record_units:
      record_unit_percentiles(run, step, population_preactivations, population_runs, 'population')
    if step == config.num_steps:
      save_population_checkpoint(
        run.workdir / 'population_checkpoint', with_batch_stats(run.state, population_runs)
      )
  return eval_metrics, best_accuracy


def record_unit_percentiles(
  run: Run,
  step: int,
  preactivations: list[dict[str, np.ndarray]],
  runs: list[TrainState],
  statistics: str,
) -> None:
  """Appends every unit's percentiles of the last hidden layer (Figure 1's), per seed, to
  the workdir's `unit_drift.RECORDS_FILE`, with BN's gamma and beta where it has them.

  One layer only: exact percentiles of 10,000 examples x 100 units cost tens of
  milliseconds each, the largest part of an MLP evaluation; every layer's percentiles over
  all its units and of the tracked unit are logged as scalars (`preactivation_percentiles`).
  """
  records = []
  for seed, layers in enumerate(preactivations):
    if not layers:
      continue
    name = max(layers, key=lambda n: int(n.removeprefix('preactivation')))
    layer = name.removeprefix('preactivation')
    bn = runs[seed].params.get(f'bn{layer}', {})
    records.append(
      {
        'step': step,
        'seed': seed,
        'statistics': statistics,
        'layer': layer,
        'percentiles': list(unit_drift.PERCENTILES),
        'values': unit_drift.unit_percentiles(layers[name]).tolist(),
        **{
          key: np.asarray(bn[field]).tolist() if field in bn else None
          for key, field in (('gamma', 'scale'), ('beta', 'bias'))
        },
      }
    )
  unit_drift.append_records(run.workdir, records)


def evaluate_runs(
  evaluate: Evaluator, runs: list[TrainState], prefix: str
) -> tuple[dict[str, float], dict[str, float], list[dict[str, np.ndarray]], list[dict[str, float]]]:
  """Evaluates every run (the single-run states of one, possibly multi-seed, state).

  Returns:
    The metrics averaged over the runs; the scalars to log: `PREFIX/NAME` (averages)
    and, for several seeds, `PREFIX_seed_sd/NAME` (their standard deviation) and
    `PREFIX_seedI/NAME` per run (metrics.jsonl only; TensorBoard shows each in the seed's
    own run); each run's preactivations
    (Figure 1's single-unit percentiles follow the first, seeded `config.seed`); and each
    run's metrics.
  """
  results = [evaluate(r) for r in runs]
  per_run = [metrics for metrics, _ in results]
  means = {name: float(np.mean([m[name] for m in per_run])) for name in per_run[0]}
  scalars = {f'{prefix}/{name}': value for name, value in means.items()}
  if len(runs) > 1:
    for i, metrics in enumerate(per_run):
      scalars.update({seed_tag(f'{prefix}/{name}', i): value for name, value in metrics.items()})
    # The seeds' spread beside their mean (the standard deviation, n - 1).
    scalars.update(
      {
        spread_tag(f'{prefix}/{name}'): float(np.std([m[name] for m in per_run], ddof=1))
        for name in means
      }
    )
  return means, scalars, [preactivations for _, preactivations in results], per_run


def with_batch_stats(state: TrainState, runs: list[TrainState]) -> TrainState:
  """`state` (one run, or several seeds side by side) with the runs' `batch_stats`."""
  if len(runs) > 1:
    return state.replace(
      batch_stats=jax.tree.map(lambda *b: jnp.stack(b), *[r.batch_stats for r in runs])
    )
  return state.replace(batch_stats=runs[0].batch_stats)


def save_population_checkpoint(directory: pathlib.Path, state: TrainState) -> None:
  """The final state with population statistics in place of the moving averages."""
  checkpointer = Checkpointer(directory, 1)
  checkpointer.save(state)
  checkpointer.close()
