"""The training loop: `train_and_evaluate(config, workdir)`.

Trains `config.model` on `config.input` with SGD, fusing `config.steps_per_call`
steps per host call, logging training metrics every `config.log_every` steps,
evaluating every `config.eval_every` steps and at `config.eval.extra_steps`, writing
TensorBoard events under `workdir`, and checkpointing with auto-resume.

The run is built once (`bn_repro.training.setup`); this module is the chunk loop; what
happens at an evaluation step is `bn_repro.training.periodic`.
"""

import contextlib
import pathlib
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from bn_repro.distributed import replicated_to_host
from bn_repro.heartbeat import heartbeat
from bn_repro.training.diagnostics import TrainingDivergedError, first_nonfinite, parameter_norms
from bn_repro.training.faults import kill_point
from bn_repro.training.periodic import periodic_evaluation
from bn_repro.training.preemption import PreemptedError, StopRequest
from bn_repro.training.progress import Progress
from bn_repro.training.seeds import seed_state, seed_tag
from bn_repro.training.setup import Run, set_up
from bn_repro.training.state import TrainState


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

  The workdir is locked for the run's lifetime (`bn_repro.training.workdir.WorkdirLock`). A
  workdir holding a run with a different config is refused (`bn_repro.training.workdir`) unless
  `overwrite`, which deletes everything the run wrote there. `defaults` (the config
  file's own values) let the guard accept fields added to the code since the run began.

  Returns:
    The final evaluation metrics {'accuracy', 'top5_accuracy', 'loss'} (means over
    seeds), with 'seed_accuracies' and 'population_accuracy' where computed.

  Raises:
    TrainingDivergedError: the training loss became non-finite; the message and
      its `step` name the step. The last good checkpoint is kept.
    PreemptedError: SIGTERM or SIGINT arrived (at any process); a checkpoint of the
      current step was saved.
    WorkdirError: the workdir is busy, not a directory, or holds another config.
  """
  with contextlib.ExitStack() as cleanup:
    with heartbeat('setting up the run'):
      run = set_up(config, pathlib.Path(workdir), overwrite, defaults, cleanup)
    stop = cleanup.enter_context(StopRequest())
    with heartbeat('training'):
      return _train(run, stop)


def _train(run: Run, stop: StopRequest) -> dict[str, float]:
  """The chunk loop: train to the next log step, then the periodic actions due there."""
  config = run.config
  step = int(run.state.step)
  start_time, start_step = time.perf_counter(), step
  elapsed_before = dict(run.logged.get('train/elapsed_s', [])).get(step, 0.0)
  best_accuracy = max(
    (a for s, a in run.logged.get('eval/accuracy', []) if s <= step), default=-1.0
  )
  eval_metrics: dict[str, float] = {}
  progress = Progress(step, config.num_steps)
  if step < config.num_steps:
    logging.info(
      'Compiling the training step and running it from step %d (a config new to this '
      "machine's compilation cache compiles for a while; later runs of it load it)...",
      step,
    )
  evaluated = dict(run.logged.get('eval/accuracy', []))
  if (
    step and _evaluation_due(config, step) and (step not in evaluated or run.reevaluate_final_step)
  ):
    # A run stopped by a signal checkpoints before the evaluation due at that step; a
    # finished run resumed with other evaluation fields evaluates its last step again.
    eval_metrics, best_accuracy = periodic_evaluation(run, step, best_accuracy)
  while step < config.num_steps:
    num = _next_stop(config, step) - step
    with heartbeat(
      f'training steps {step + 1}-{step + num}'
      + (' (the first call compiles the step)' if step == start_step else '')
    ):
      metrics = _train_steps(run, step, num)
    step += num
    kill_point('train_chunk', step)
    elapsed = time.perf_counter() - start_time
    steps_per_sec = (step - start_step) / elapsed
    progress.update(step)
    seed_norms = _seed_parameter_norms(run.state, config)
    run.writer.write_scalars(
      step,
      {
        'train/loss': float(metrics['loss'].mean()),
        'train/accuracy': float(metrics['accuracy'].mean()),
        # The rate of the step just taken (step `step - 1`, counting from 0).
        'train/learning_rate': float(run.learning_rate(step - 1)),
        'train/steps_per_sec': steps_per_sec,
        'train/elapsed_s': elapsed_before + elapsed,
        **_parameter_norms(seed_norms),
      },
    )
    if config.num_seeds > 1:
      per_seed = {f'train/{k}': metrics[k].mean(axis=0) for k in ('loss', 'accuracy')}
      per_seed |= {tag: np.array([n[tag] for n in seed_norms]) for tag in seed_norms[0]}
      run.dashboards.write_train_scalars(step, per_seed)
    stop_signal = _stop_agreed(stop)
    if stop_signal:  # Checkpoint first: the grace period is not spent evaluating.
      run.checkpointer.save(run.state)
      raise PreemptedError(step, stop_signal)
    if _evaluation_due(config, step):
      eval_metrics, best_accuracy = periodic_evaluation(run, step, best_accuracy)
      logging.info(
        'step %d/%d | train loss %.4f | %s | %s',
        step,
        config.num_steps,
        metrics['loss'].mean(),
        describe_evaluation(eval_metrics),
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


def _seed_parameter_norms(state: TrainState, config: ml_collections.ConfigDict) -> list[dict]:
  """Each seed's `params/LAYER/NAME` norms if `config.log_param_norms`, else [{}]."""
  if not config.log_param_norms:
    return [{}]
  return [
    parameter_norms(seed_state(state, i, config.num_seeds).params) for i in range(config.num_seeds)
  ]


def _parameter_norms(seed_norms: list[dict]) -> dict[str, float]:
  """The run's log of `seed_norms`: `params/LAYER/NAME` of the first seed and, with several
  seeds side by side, `params_seedI/LAYER/NAME` of every seed's (metrics.jsonl only: each
  seed's TensorBoard run shows its own as `params/...`)."""
  norms = dict(seed_norms[0])
  if len(seed_norms) > 1:
    for index, norms_of_seed in enumerate(seed_norms):
      norms.update({seed_tag(k, index): v for k, v in norms_of_seed.items()})
  return norms


def describe_evaluation(metrics: dict) -> str:
  """'test accuracy A' (the mean over seeds), each seed's, and with population statistics."""
  text = f'test accuracy {metrics["accuracy"]:.4f}'
  if 'seed_accuracies' in metrics:
    text += f' (seeds {" ".join(f"{a:.4f}" for a in metrics["seed_accuracies"])})'
  if 'population_accuracy' in metrics:
    text += f', population statistics {metrics["population_accuracy"]:.4f}'
  return text


def _evaluation_due(config: ml_collections.ConfigDict, step: int) -> bool:
  return (
    step % config.eval_every == 0 or step == config.num_steps or step in config.eval.extra_steps
  )


def _next_stop(config: ml_collections.ConfigDict, step: int) -> int:
  """The first step after `step` at which the loop logs, evaluates or ends."""
  extra = [s for s in config.eval.extra_steps if s > step]
  return min([step + config.log_every - step % config.log_every, config.num_steps, *extra])


def _train_steps(run: Run, step: int, num: int) -> dict[str, np.ndarray]:
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
  bad_value = first_nonfinite(run.state)
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
