"""Everything a run needs, built once: workdir guard, inputs, model, state, writers."""

import contextlib
import dataclasses
import pathlib
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro import models, records
from bn_repro.analysis import unit_drift
from bn_repro.configuration.checks import validate_config
from bn_repro.data import datasets, transforms
from bn_repro.data.pipeline import TrainInput, create_inputs
from bn_repro.distributed import AXIS, create_mesh, put_global
from bn_repro.heartbeat import heartbeat
from bn_repro.nn import normalization as norm_lib
from bn_repro.nn.population_stats import population_statistics_fn
from bn_repro.training import optim
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.dashboards import Dashboards
from bn_repro.training.evaluate import Evaluator
from bn_repro.training.run_info import write_run_info
from bn_repro.training.state import TrainState, create_train_state, init_batch
from bn_repro.training.steps import make_eval_fn, make_train_chunk_fn
from bn_repro.training.tensorboard import SummaryWriter, truncate_events
from bn_repro.training.workdir import (
  WorkdirLock,
  check_config,
  clear_run_outputs,
  record_config_changes,
  reevaluate_finished_run,
)


@dataclasses.dataclass
class Run:
  """Everything the loop needs, built once by `set_up`."""

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  is_chief: bool
  state: TrainState
  train_input: TrainInput
  train_chunk: Callable
  learning_rate: Callable[[int], float]
  evaluate: Evaluator
  population_stats: Callable | None
  checkpointer: Checkpointer
  best_checkpointer: Checkpointer
  writer: SummaryWriter
  dashboards: Dashboards
  logged: dict[str, list[tuple[int, float]]]  # What earlier runs logged, up to the start step.
  # A finished run resumed with other evaluation fields: its final evaluation runs again.
  reevaluate_final_step: bool = False


def set_up(
  config: ml_collections.ConfigDict,
  workdir: pathlib.Path,
  overwrite: bool,
  defaults: dict | None,
  cleanup: contextlib.ExitStack,
) -> Run:
  """Guards the workdir, builds the inputs, model, state and writers; restores a checkpoint."""
  mesh = create_mesh(config.num_devices)
  validate_config(config, mesh.size)
  config_json = config.to_json_best_effort(indent=2)
  is_chief = jax.process_index() == 0  # Process 0 holds the lock and writes logs and records.
  if is_chief:
    cleanup.enter_context(WorkdirLock(workdir))
    if overwrite:
      clear_run_outputs(workdir)
  sync_processes('workdir prepared')  # Nobody reads the workdir before process 0 cleared it.
  config_changes = check_config(workdir, config_json, defaults)
  _log_start(config, workdir, mesh.size)
  inputs = create_inputs(config, mesh)
  preprocess = transforms.get_preprocessor(config.input.preprocess, inputs.pixel_mean)
  model = models.create_model(config.model, inputs.num_classes, axis_name=AXIS)
  # Flax's init runs op by op: on a config new to the compilation cache, BN-Inception's
  # hundreds of small programs compile for a while, and nothing else would be printed.
  logging.info('Initializing the parameters (seed %d)...', config.seed)
  with heartbeat('initializing the parameters'):
    state = create_train_state(config, model, init_batch(config, inputs, preprocess))
  state = put_global(state, NamedSharding(mesh, P()))
  checkpointer = Checkpointer(
    workdir / 'checkpoints', config.keep_checkpoints, every=config.checkpoint_every
  )
  # The best test accuracy's checkpoint, kept apart from the last `keep_checkpoints`.
  best_checkpointer = Checkpointer(workdir / 'best_checkpoint', 1)
  state = checkpointer.restore_latest(state)
  step = int(state.step)
  # A best checkpoint after the resumed step was chosen by evaluations that are about to be
  # replayed (and whose records are dropped below): forget it.
  best_checkpointer.delete_after(step)
  if step:
    logging.info('Resumed from the checkpoint at step %d.', step)
  reevaluate = step >= config.num_steps and reevaluate_finished_run(workdir, config_changes)
  if is_chief:
    _prepare_records(workdir, config_changes, config_json, step, config.num_steps)
  writer, dashboards = _writers(workdir, config_json, step, is_chief)
  for resource in (writer, dashboards, checkpointer, best_checkpointer):
    cleanup.callback(resource.close)
  train_input = inputs.create_train_input(step)
  return Run(
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
      make_eval_fn(model, preprocess, mesh, config.eval.batch_statistics),
      inputs.eval_batches,
      inputs.num_eval_examples,
      mesh,
    ),
    population_stats=population_stats_fn(config, inputs, preprocess),
    checkpointer=checkpointer,
    best_checkpointer=best_checkpointer,
    writer=writer,
    dashboards=dashboards,
    logged=records.read_metrics(workdir) if step else {},
    reevaluate_final_step=reevaluate,
  )


def _log_start(config: ml_collections.ConfigDict, workdir: pathlib.Path, devices: int) -> None:
  logging.info(
    '%s into %s: %d steps of %d on %d %s device(s)%s; the full config goes to config.json.',
    config.get('variant', 'run'),
    workdir,
    config.num_steps,
    config.batch_size,
    devices,
    jax.default_backend(),
    f', {config.num_seeds} seeds side by side' if config.num_seeds > 1 else '',
  )
  logging.info('Loading %s...', config.input.dataset)


def _prepare_records(
  workdir: pathlib.Path, config_changes: list[str], config_json: str, step: int, num_steps: int
) -> None:
  """Process 0's records at a (re)start: config changes, config and run record, and what a
  killed run logged after its checkpoint forgotten."""
  record_config_changes(workdir, config_changes, step)
  write_run_info(workdir, config_json, step, num_steps)
  truncate_events(workdir, step)
  unit_drift.truncate_records(workdir, step)
  records.truncate(workdir / records.METRICS_FILE, step)


def _writers(
  workdir: pathlib.Path, config_json: str, step: int, is_chief: bool
) -> tuple[SummaryWriter, Dashboards]:
  """The run's event-file writer and its TensorBoard dashboards (writing on process 0 only)."""
  writer = SummaryWriter(workdir, enabled=is_chief)
  run_info = (workdir / 'run_info.json').read_text() if is_chief else '{}'
  return writer, Dashboards(writer, workdir, config_json, run_info, step, enabled=is_chief)


def population_stats_fn(
  config: ml_collections.ConfigDict, inputs: object, preprocess: object
) -> object | None:
  """`(state, s) -> batch_stats` of Algorithm 2 over `population_stats.num_batches` batches,
  or None: `state` is run s of the seeds side by side, whose statistics come from its own
  first training batches (those a separate run of seed `config.seed + s` draws).

  Every process computes them from the same first training batches, on its own. The K
  batches are stacked and preprocessed at once (K x batch x image floats in memory: 1.9 GB
  for 100 ImageNet batches of 32 at 224x224).
  """
  num_batches = config.population_stats.num_batches
  if not num_batches or not norm_lib.get_norm(config.model.norm.kind).running_statistics:
    return None
  if jax.process_count() > 1 and config.input.dataset in datasets.STREAMING_DATASETS:
    raise ValueError(
      f'population_stats.num_batches={num_batches} with the streamed '
      f'{config.input.dataset!r} on {jax.process_count()} processes is not supported: each '
      'process streams different batches. Set it to 0.'
    )
  single_device_model = models.create_model(config.model, inputs.num_classes)
  statistics = population_statistics_fn(single_device_model, config.population_stats.estimator)

  def population_stats(state: TrainState, seed_index: int) -> object:
    batches = preprocess(np.stack(list(inputs.train_batches(num_batches, seed_index))))
    return statistics(state.params, state.batch_stats, batches)

  return population_stats


def sync_processes(name: str) -> None:
  """A barrier across the processes of a multi-process job; a no-op in one process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
