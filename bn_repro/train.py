"""The training loop: `train_and_evaluate(config, workdir)`.

Trains `config.model` on `config.input` with SGD, fusing `config.steps_per_call`
steps per host call, logging training metrics every `config.log_every` steps,
evaluating exactly every `config.eval_every` steps, writing TensorBoard events
under `workdir`, and checkpointing with auto-resume.
"""

import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro import data as data_lib
from bn_repro import models, optim, unit_drift
from bn_repro.checkpointing import Checkpointer
from bn_repro.config_checks import validate_config
from bn_repro.evaluate import Evaluator, preactivation_percentiles
from bn_repro.faults import kill_point
from bn_repro.inputs import create_inputs
from bn_repro.models import normalization as norm_lib
from bn_repro.population_stats import population_statistics_fn
from bn_repro.preemption import PreemptedError, StopRequest
from bn_repro.run_info import write_run_info
from bn_repro.sharding import put_global, replicated_to_host
from bn_repro.steps import (
  AXIS,
  TrainState,
  create_mesh,
  make_eval_fn,
  make_train_chunk_fn,
  seed_state,
  seed_states,
)
from bn_repro.tensorboard import SummaryWriter, read_scalars, truncate_events
from bn_repro.workdir import (
  WorkdirLock,
  check_config,
  clear_run_outputs,
  record_config_changes,
)


def create_train_state(
  config: ml_collections.ConfigDict, model: nn.Module, init_batch: jax.Array | np.ndarray
) -> TrainState:
  """Initializes parameters (seeded by `config.seed`), BN statistics and optimizer state.

  `init_batch` `(n, H, W, C)`, preprocessed, is what the model sees at `init`: only
  weight normalization's data-dependent initialization depends on its values, and it
  sees any BN layers (mean-only BN after WN) normalize with that batch's statistics, as
  in training (Salimans & Kingma 2016, Sec. 3). With
  `config.num_seeds` = S > 1, the S runs seeded `seed`..`seed + S - 1` are stacked on a
  leading axis of every array but the step (`bn_repro.steps.seed_axes`).
  """

  data_dependent = norm_lib.uses_weight_norm(config.model.normalization)

  def init(seed: int | jax.Array) -> TrainState:
    variables = model.init(
      jax.random.key(seed), init_batch, train=False, batch_statistics=data_dependent
    )
    return TrainState.create(
      apply_fn=model.apply,
      params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=optim.create_optimizer(config),
    )

  if config.num_seeds == 1:
    return init(config.seed)
  states = jax.vmap(init)(config.seed + jnp.arange(config.num_seeds))
  return states.replace(step=states.step[0])


# Examples behind weight normalization's data-dependent initialization: "a minibatch of
# data" of a few hundred examples, as in Salimans & Kingma (2016)'s experiments.
WN_INIT_EXAMPLES = 256


class TrainingDivergedError(FloatingPointError):
  """The loss or the state became non-finite at `step` (a FloatingPointError)."""

  def __init__(self, step: int, message: str):
    super().__init__(message)
    self.step = step


class _Progress:
  """Training speed for the console: the first logging period (which holds the
  compilation) is left out of the rate and the ETA once a later period has run."""

  def __init__(self, start_step: int, num_steps: int):
    self._num_steps = num_steps
    self._start = (time.perf_counter(), start_step)
    self._steady: tuple[float, int] | None = None

  def update(self, step: int) -> None:
    if self._steady is None:
      self._steady = (time.perf_counter(), step)

  def rate(self, step: int) -> float:
    """Steps per second since the first logging period, or since the start before then."""
    start_time, start_step = (
      self._steady if self._steady and step > self._steady[1] else self._start
    )
    return (step - start_step) / max(time.perf_counter() - start_time, 1e-9)

  def describe(self, step: int) -> str:
    rate = self.rate(step)
    return f'{rate:.3g} steps/s | ETA {_format_eta((self._num_steps - step) / max(rate, 1e-9))}'


def _format_eta(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'


@dataclasses.dataclass
class _Run:
  """Everything the loop needs, built once by `_set_up`."""

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  is_chief: bool
  state: TrainState
  train_input: object
  train_chunk: Callable
  learning_rate: Callable[[int], float]
  evaluate: Evaluator
  population_stats: Callable | None
  checkpointer: Checkpointer
  best_checkpointer: Checkpointer
  writer: SummaryWriter
  logged: dict[str, list[tuple[int, float]]]  # What earlier runs logged, up to the start step.


def _set_up(
  config: ml_collections.ConfigDict,
  workdir: pathlib.Path,
  overwrite: bool,
  defaults: dict | None,
  cleanup: contextlib.ExitStack,
) -> _Run:
  """Guards the workdir, builds the inputs, model, state and writers; restores a checkpoint."""
  mesh = create_mesh(config.num_devices)
  validate_config(config, mesh.size)
  config_json = config.to_json_best_effort(indent=2)
  is_chief = jax.process_index() == 0  # Process 0 holds the lock and writes logs and records.
  if is_chief:
    cleanup.enter_context(WorkdirLock(workdir))
    if overwrite:
      clear_run_outputs(workdir)
  _sync_processes('workdir prepared')  # Nobody reads the workdir before process 0 cleared it.
  config_changes = check_config(workdir, config_json, defaults)
  inputs = create_inputs(config, mesh)
  preprocess = data_lib.get_preprocessor(config.input.preprocess, inputs.pixel_mean)
  model = models.create_model(config.model, inputs.num_classes, axis_name=AXIS)
  state = create_train_state(config, model, _init_batch(config, inputs, preprocess))
  state = put_global(state, NamedSharding(mesh, P()))
  checkpointer = Checkpointer(workdir / 'checkpoints', config.keep_checkpoints)
  # The best test accuracy's checkpoint, kept apart from the last `keep_checkpoints`.
  best_checkpointer = Checkpointer(workdir / 'best_checkpoint', 1)
  state = checkpointer.restore_latest(state)
  step = int(state.step)
  # A best checkpoint after the resumed step was chosen by evaluations that are about to be
  # replayed (and whose records are dropped below): forget it.
  best_checkpointer.delete_after(step)
  if step:
    logging.info('Resumed from the checkpoint at step %d.', step)
  if is_chief:
    record_config_changes(workdir, config_changes, step)
    write_run_info(workdir, config_json)
    truncate_events(workdir, step)  # Forget what a killed run logged after its checkpoint.
    unit_drift.truncate_records(workdir, step)
  writer = SummaryWriter(workdir, enabled=is_chief)
  for resource in (writer, checkpointer, best_checkpointer):
    cleanup.callback(resource.close)
  train_input = inputs.create_train_input(step)
  return _Run(
    config=config,
    workdir=workdir,
    is_chief=is_chief,
    state=state,
    train_input=train_input,
    train_chunk=make_train_chunk_fn(
      model,
      preprocess,
      mesh,
      train_input,
      seed=config.seed,
      distortion_strength=config.input.distortion_strength,
      scan_unroll=config.scan_unroll,
      num_seeds=config.num_seeds,
    ),
    learning_rate=optim.create_learning_rate_schedule(config),
    evaluate=Evaluator(
      make_eval_fn(model, preprocess, mesh), inputs.eval_batches, inputs.num_eval_examples, mesh
    ),
    population_stats=_population_stats_fn(config, inputs, preprocess),
    checkpointer=checkpointer,
    best_checkpointer=best_checkpointer,
    writer=writer,
    logged=read_scalars(workdir) if step else {},
  )


def _init_batch(
  config: ml_collections.ConfigDict, inputs: object, preprocess: Callable
) -> np.ndarray:
  """What the model sees at `init`: for weight normalization's data-dependent
  initialization the first WN_INIT_EXAMPLES training examples (process 0's, on every
  process, so the replicated parameters agree), else one zero image."""
  if not norm_lib.uses_weight_norm(config.model.normalization):
    return np.zeros((1,) + inputs.image_shape, np.float32)
  num_batches = -(-WN_INIT_EXAMPLES // config.batch_size)
  images = np.concatenate(list(inputs.train_batches(num_batches)))[:WN_INIT_EXAMPLES]
  batch = np.asarray(preprocess(images))
  if jax.process_count() > 1:
    batch = multihost_utils.broadcast_one_to_all(batch)
  return batch


def _sync_processes(name: str) -> None:
  """A barrier across the processes of a multi-process job; a no-op in one process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _stop_agreed(stop: StopRequest) -> int | None:
  """The stop signal if any process received one, agreed by all processes.

  Every process must leave the training collectives at the same chunk boundary, or
  the ones still training wait forever for the ones saving.
  """
  requested = stop.requested or 0
  if jax.process_count() > 1:
    requested = int(np.max(multihost_utils.process_allgather(np.int32(requested))))
  return requested or None


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str | pathlib.Path,
  overwrite: bool = False,
  defaults: dict | None = None,
) -> dict[str, float]:
  """Trains and evaluates; resumes from the newest checkpoint in `workdir`.

  The workdir is locked for the run's lifetime (`bn_repro.workdir.WorkdirLock`). A
  workdir holding a run with a different config is refused (`bn_repro.workdir`) unless
  `overwrite`, which deletes everything the run wrote there. `defaults` (the config
  file's own values) let the guard accept fields added to the code since the run began.

  Returns:
    The final evaluation metrics {'accuracy', 'top5_accuracy', 'loss'}.

  Raises:
    TrainingDivergedError: the training loss became non-finite; the message and
      its `step` name the step. The last good checkpoint is kept.
    PreemptedError: SIGTERM or SIGINT arrived (at any process); a checkpoint of the
      current step was saved.
    WorkdirError: the workdir is busy, not a directory, or holds another config.
  """
  with contextlib.ExitStack() as cleanup:
    run = _set_up(config, pathlib.Path(workdir), overwrite, defaults, cleanup)
    stop = cleanup.enter_context(StopRequest())
    return _train(run, stop)


def _train(run: _Run, stop: StopRequest) -> dict[str, float]:
  """The chunk loop: train to the next log step, then the periodic actions due there."""
  config = run.config
  step = int(run.state.step)
  start_time, start_step = time.perf_counter(), step
  elapsed_before = dict(run.logged.get('train/elapsed_s', [])).get(step, 0.0)
  best_accuracy = max(
    (a for s, a in run.logged.get('eval/accuracy', []) if s <= step), default=-1.0
  )
  eval_metrics: dict[str, float] = {}
  progress = _Progress(step, config.num_steps)
  if step < config.num_steps:
    logging.info('Compiling the training step and running it from step %d...', step)
  if (
    step and _evaluation_due(config, step) and step not in dict(run.logged.get('eval/accuracy', []))
  ):
    # A run stopped by a signal checkpoints before the evaluation due at that step.
    eval_metrics, best_accuracy = _periodic_evaluation(run, step, best_accuracy)
  while step < config.num_steps:
    num = _next_stop(config, step) - step
    metrics = _train_steps(run, step, num)
    step += num
    kill_point('train_chunk', step)
    elapsed = time.perf_counter() - start_time
    steps_per_sec = (step - start_step) / elapsed
    progress.update(step)
    run.writer.write_scalars(
      step,
      {
        'train/loss': float(metrics['loss'].mean()),
        'train/accuracy': float(metrics['accuracy'].mean()),
        # The rate of the step just taken (step `step - 1`, counting from 0).
        'train/learning_rate': float(run.learning_rate(step - 1)),
        'train/steps_per_sec': steps_per_sec,
        'train/elapsed_s': elapsed_before + elapsed,
        **(
          _parameter_norms(seed_state(run.state, 0, config.num_seeds).params)
          if config.log_param_norms
          else {}
        ),
      },
    )
    stop_signal = _stop_agreed(stop)
    if stop_signal:  # Checkpoint first: the grace period is not spent evaluating.
      run.checkpointer.save(run.state)
      raise PreemptedError(step, stop_signal)
    if _evaluation_due(config, step):
      eval_metrics, best_accuracy = _periodic_evaluation(run, step, best_accuracy)
      logging.info(
        'step %d/%d | train loss %.4f | test accuracy %.4f | %s',
        step,
        config.num_steps,
        metrics['loss'].mean(),
        eval_metrics['accuracy'],
        progress.describe(step),
      )
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      run.checkpointer.save(run.state)
      kill_point('checkpoint', step)
  fingerprint = float(
    sum(np.sum(np.abs(x)) for x in jax.tree.leaves(replicated_to_host(run.state.params)))
  )
  logging.info(
    'Finished at step %d; parameter fingerprint (sum of |params|) %.10e', step, fingerprint
  )
  return eval_metrics


def _evaluation_due(config: ml_collections.ConfigDict, step: int) -> bool:
  return (
    step % config.eval_every == 0 or step == config.num_steps or step in config.eval.extra_steps
  )


def _next_stop(config: ml_collections.ConfigDict, step: int) -> int:
  """The first step after `step` at which the loop logs, evaluates or ends."""
  extra = [s for s in config.eval.extra_steps if s > step]
  return min([step + config.log_every - step % config.log_every, config.num_steps, *extra])


def _train_steps(run: _Run, step: int, num: int) -> dict[str, np.ndarray]:
  """Trains `num` steps from `step` in calls of `steps_per_call`; stops on divergence.

  Returns:
    {'loss', 'accuracy'}: `(num,)`, or `(num, seeds)`.

  Raises:
    TrainingDivergedError: naming the first step whose loss is not finite.
  """
  calls = []
  for first in range(step, step + num, run.config.steps_per_call):
    length = min(run.config.steps_per_call, step + num - first)
    run.state, call_metrics = run.train_chunk(
      run.state, run.train_input.resident, run.train_input.per_steps(first, length)
    )
    calls.append(call_metrics)
  calls = replicated_to_host(calls)
  metrics = {k: np.concatenate([c[k] for c in calls]) for k in calls[0]}
  losses = metrics['loss']
  bad_value = _first_nonfinite(run.state)
  if bad_value or not np.all(np.isfinite(losses)):
    finite = np.isfinite(losses).reshape(num, -1).all(axis=1)
    bad_step = step + (num if finite.all() else int(np.argmin(finite)) + 1)
    raise TrainingDivergedError(
      bad_step,
      f'Training diverged at step {bad_step} (loss {losses[bad_step - step - 1]}; '
      f'first non-finite value: {bad_value or "none in the state yet"}); stopping. '
      f'The last good checkpoint (step {run.checkpointer.latest_step()}) is kept in '
      f'{run.workdir / "checkpoints"}.',
    )
  return metrics


def _periodic_evaluation(
  run: _Run, step: int, best_accuracy: float
) -> tuple[dict[str, float], float]:
  """Evaluates at `step`: test metrics, Figure 1's percentiles, the best checkpoint, and
  (if configured) Algorithm 2's population statistics. Returns the metrics and the best
  accuracy so far."""
  config = run.config
  eval_metrics, scalars, preactivations = _evaluate_runs(
    run.evaluate, run.state, config.num_seeds, 'eval'
  )
  kill_point('evaluation', step)
  record_units = run.is_chief and config.eval.get('unit_percentiles', False)
  if record_units:
    _record_unit_percentiles(run, step, preactivations, run.state, 'moving_average')
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
      **preactivation_percentiles(
        preactivations[0], config.eval.typical_unit, config.eval.percentiles
      ),
    },
  )
  if run.population_stats and (config.population_stats.every_eval or step == config.num_steps):
    population_state = _with_population_stats(run.state, run.population_stats, config.num_seeds)
    _, scalars, population_preactivations = _evaluate_runs(
      run.evaluate, population_state, config.num_seeds, 'eval_population'
    )
    run.writer.write_scalars(step, scalars)
    if record_units:
      _record_unit_percentiles(run, step, population_preactivations, population_state, 'population')
    if step == config.num_steps:
      _save_population_checkpoint(run.workdir / 'population_checkpoint', population_state)
  return eval_metrics, best_accuracy


def _population_stats_fn(
  config: ml_collections.ConfigDict, inputs: object, preprocess: object
) -> object | None:
  """`state -> batch_stats` of Algorithm 2 over `population_stats.num_batches` batches, or None.

  Every process computes them from the same first training batches, on its own.
  """
  num_batches = config.population_stats.num_batches
  if not num_batches or not norm_lib.uses_batch_norm(config.model.normalization):
    return None
  if jax.process_count() > 1 and config.input.dataset in data_lib.STREAMING_DATASETS:
    raise ValueError(
      f'population_stats.num_batches={num_batches} with the streamed '
      f'{config.input.dataset!r} on {jax.process_count()} processes is not supported: each '
      'process streams different batches. Set it to 0.'
    )
  single_device_model = models.create_model(config.model, inputs.num_classes)
  statistics = population_statistics_fn(single_device_model)

  def population_stats(state: TrainState) -> object:
    batches = (preprocess(images) for images in inputs.train_batches(num_batches))
    return statistics(state.params, state.batch_stats, batches)

  return population_stats


def _record_unit_percentiles(
  run: _Run,
  step: int,
  preactivations: list[dict[str, np.ndarray]],
  state: TrainState,
  statistics: str,
) -> None:
  """Appends every unit's percentiles of every hidden layer, per seed, to the workdir's
  `unit_drift.RECORDS_FILE`, with BN's gamma and beta where the layer has them."""
  records = []
  for seed, layers in enumerate(preactivations):
    params = seed_state(state, seed, run.config.num_seeds).params
    for name, values in sorted(layers.items()):
      layer = name.removeprefix('preactivation')
      bn = params.get(f'bn{layer}', {})
      records.append(
        {
          'step': step,
          'seed': seed,
          'statistics': statistics,
          'layer': layer,
          'percentiles': list(unit_drift.PERCENTILES),
          'values': unit_drift.unit_percentiles(values).tolist(),
          **{
            key: np.asarray(bn[field]).tolist() if field in bn else None
            for key, field in (('gamma', 'scale'), ('beta', 'bias'))
          },
        }
      )
  unit_drift.append_records(run.workdir, records)


def _evaluate_runs(
  evaluate: Evaluator, state: TrainState, num_seeds: int, prefix: str
) -> tuple[dict[str, float], dict[str, float], list[dict[str, np.ndarray]]]:
  """Evaluates every run of a (multi-seed) state.

  Returns:
    The metrics averaged over the runs; the scalars to log: `PREFIX/NAME` (averages)
    and, for several seeds, `PREFIX_seedI/NAME` per run; and each run's preactivations
    (Figure 1's single-unit percentiles follow the first, seeded `config.seed`).
  """
  runs = [evaluate(run) for run in seed_states(state, num_seeds)]
  means = {name: float(np.mean([m[name] for m, _ in runs])) for name in runs[0][0]}
  scalars = {f'{prefix}/{name}': value for name, value in means.items()}
  if num_seeds > 1:
    for i, (metrics, _) in enumerate(runs):
      scalars.update({f'{prefix}_seed{i}/{name}': value for name, value in metrics.items()})
  return means, scalars, [preactivations for _, preactivations in runs]


def _with_population_stats(
  state: TrainState, population_stats: object, num_seeds: int
) -> TrainState:
  """`state` with every run's moving averages replaced by its population statistics."""
  stats = [population_stats(run) for run in seed_states(state, num_seeds)]
  if num_seeds > 1:
    return state.replace(batch_stats=jax.tree.map(lambda *runs: jnp.stack(runs), *stats))
  return state.replace(batch_stats=stats[0])


def _save_population_checkpoint(directory: pathlib.Path, state: TrainState) -> None:
  """The final state with population statistics in place of the moving averages."""
  checkpointer = Checkpointer(directory, 1)
  checkpointer.save(state)
  checkpointer.close()


@jax.jit
def _norms(tree: object) -> list[jax.Array]:
  return [jnp.linalg.norm(leaf.ravel()) for leaf in jax.tree.leaves(tree)]


def _parameter_norms(params: object) -> dict[str, float]:
  """{'params/LAYER/NAME': L2 norm} of every parameter array."""
  norms = replicated_to_host(_norms(params))
  paths = [
    '/'.join(str(getattr(k, 'key', k)) for k in path)
    for path, _ in jax.tree_util.tree_leaves_with_path(params)
  ]
  return {f'params/{path}': float(n) for path, n in zip(paths, norms, strict=True)}


@jax.jit
def _finite_leaves(tree: object) -> list[jax.Array]:
  return [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]


def _first_nonfinite(state: object) -> str | None:
  """The path of the first parameter or BN statistic holding inf or nan, or None."""
  tree = {'params': state.params, 'batch_stats': state.batch_stats}
  finite = replicated_to_host(_finite_leaves(tree))
  if all(bool(f) for f in finite):
    return None
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]
  return next(path for path, ok in zip(paths, finite, strict=True) if not bool(ok))
