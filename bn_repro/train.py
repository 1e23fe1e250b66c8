"""The training loop: `train_and_evaluate(config, workdir)`.

Trains `config.model` on `config.input` with SGD, fusing `config.log_every`
steps per host call, evaluating exactly every `config.eval_every` steps,
logging to TensorBoard under `workdir`, and checkpointing with auto-resume.
"""

import pathlib
import time

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro import data as data_lib
from bn_repro import models, optim
from bn_repro.checkpointing import Checkpointer
from bn_repro.config_checks import validate_config
from bn_repro.evaluate import Evaluator, preactivation_percentiles
from bn_repro.run_info import write_run_info
from bn_repro.steps import AXIS, TrainState, create_mesh, make_eval_fn, make_train_chunk_fn
from bn_repro.tensorboard import SummaryWriter


def create_train_state(
  config: ml_collections.ConfigDict, model: nn.Module, image_shape: tuple[int, ...]
) -> TrainState:
  """Initializes parameters (seeded by `config.seed`), BN statistics and optimizer state."""
  variables = model.init(
    jax.random.key(config.seed), np.zeros((1,) + image_shape, np.float32), train=False
  )
  return TrainState.create(
    apply_fn=model.apply,
    params=variables['params'],
    batch_stats=variables.get('batch_stats', {}),
    tx=optim.create_optimizer(config),
  )


def _format_eta(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, float]:
  """Trains and evaluates; resumes from the newest checkpoint in `workdir`.

  Returns:
    The final evaluation metrics {'accuracy', 'loss'}.

  Raises:
    FloatingPointError: the training loss became non-finite; the message names
      the step. The last good checkpoint is kept.
  """
  workdir = pathlib.Path(workdir)
  mesh = create_mesh(config.num_devices)
  validate_config(config, mesh.size)
  preprocess = data_lib.get_preprocessor(config.input.preprocess)
  dataset = data_lib.load_dataset(config.input)
  model = models.create_model(config.model, dataset.num_classes, axis_name=AXIS)

  replicated = NamedSharding(mesh, P())
  state = create_train_state(config, model, dataset.train_images.shape[1:])
  state = jax.device_put(state, replicated)
  checkpointer = Checkpointer(workdir / 'checkpoints', config.keep_checkpoints)
  state = checkpointer.restore_latest(state)
  step = int(state.step)
  if step:
    logging.info('Resumed from the checkpoint at step %d.', step)

  write_run_info(workdir, config.to_json_best_effort(indent=2))
  writer = SummaryWriter(workdir)
  train_chunk = make_train_chunk_fn(
    model,
    preprocess,
    mesh,
    seed=config.seed,
    distortion_strength=config.input.distortion_strength,
    scan_unroll=config.scan_unroll,
  )
  learning_rate = optim.create_learning_rate_schedule(config)
  evaluate = Evaluator(
    make_eval_fn(model, preprocess, mesh),
    dataset.test_images,
    dataset.test_labels,
    config.eval.batch_size,
    mesh,
  )
  train_images = jax.device_put(dataset.train_images, replicated)
  train_labels = jax.device_put(dataset.train_labels, replicated)
  index_sharding = NamedSharding(mesh, P(None, AXIS))

  eval_metrics: dict[str, float] = {}
  start_time, start_step = time.perf_counter(), step
  elapsed_before = _elapsed_from_previous_runs(workdir, step)
  while step < config.num_steps:
    num = min(config.log_every - step % config.log_every, config.num_steps - step)
    indices = data_lib.batch_indices(
      len(dataset.train_labels),
      config.batch_size,
      config.seed,
      step,
      num,
      config.input.shuffle,
      config.input.num_shards,
    )
    chunks = []
    for first in range(0, num, config.steps_per_call):
      call_indices = indices[first : first + config.steps_per_call]
      state, call_metrics = train_chunk(
        state, train_images, train_labels, jax.device_put(call_indices, index_sharding)
      )
      chunks.append(call_metrics)
    metrics = {k: np.concatenate([np.asarray(c[k]) for c in chunks]) for k in chunks[0]}
    losses = np.asarray(metrics['loss'])
    if not np.all(np.isfinite(losses)):
      bad_step = step + int(np.argmin(np.isfinite(losses))) + 1
      raise FloatingPointError(
        f'Training loss is {losses[bad_step - step - 1]} at step {bad_step}; stopping. '
        f'The last good checkpoint (step {checkpointer.latest_step()}) is kept in '
        f'{workdir / "checkpoints"}.'
      )
    step += num
    elapsed = time.perf_counter() - start_time
    steps_per_sec = (step - start_step) / elapsed
    writer.write_scalars(
      step,
      {
        'train/loss': float(losses.mean()),
        'train/accuracy': float(metrics['accuracy'].mean()),
        'train/learning_rate': float(learning_rate(step)),
        'train/steps_per_sec': steps_per_sec,
        'train/elapsed_s': elapsed_before + elapsed,
      },
    )
    if step % config.eval_every == 0 or step == config.num_steps:
      eval_metrics, preactivations = evaluate(state)
      writer.write_scalars(
        step,
        {
          **{f'eval/{name}': value for name, value in eval_metrics.items()},
          **preactivation_percentiles(
            preactivations, config.model.typical_unit, config.eval.percentiles
          ),
        },
      )
      logging.info(
        'step %d/%d | train loss %.4f | test accuracy %.4f | %.0f steps/s | ETA %s',
        step,
        config.num_steps,
        losses.mean(),
        eval_metrics['accuracy'],
        steps_per_sec,
        _format_eta((config.num_steps - step) / steps_per_sec),
      )
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      checkpointer.save(state)
  writer.close()
  checkpointer.close()
  return eval_metrics


def _elapsed_from_previous_runs(workdir: pathlib.Path, step: int) -> float:
  """Training seconds logged up to `step` by earlier runs in `workdir` (0 if none)."""
  if step == 0:
    return 0.0
  from bn_repro.tensorboard import read_scalars

  logged = dict(read_scalars(workdir).get('train/elapsed_s', []))
  return logged.get(step, 0.0)
