"""Shared setup of the benchmarks: a training step of a config on SYNTHETIC data, timed."""

import time

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro import models
from bn_repro.data import transforms
from bn_repro.data.pipeline import InMemoryTrainInput
from bn_repro.distributed import AXIS, create_mesh
from bn_repro.training.state import create_train_state
from bn_repro.training.steps import make_train_chunk_fn


class TrainingBench:
  """A config's fused training loop on SYNTHETIC uint8 images (timing only), one device.

  Attributes:
    state: the initial TrainState (seeded by the config).
    images, labels: the synthetic training set, uint8 `(N, H, W, C)` and int32 `(N,)`.
    train_input: `bn_repro.data.pipeline.InMemoryTrainInput` over them (batch order of seed 0).
    chunk: `bn_repro.training.steps.make_train_chunk_fn`'s jitted function.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    image_shape: tuple[int, ...],
    num_classes: int,
    scan_unroll: int,
  ):
    mesh = create_mesh(1)
    rng = np.random.default_rng(0)
    num_examples = max(2 * config.batch_size, 1000)
    self.images = rng.integers(0, 256, (num_examples, *image_shape), dtype=np.uint8)
    self.labels = rng.integers(0, num_classes, num_examples).astype(np.int32)
    model = models.create_model(config.model, num_classes, axis_name=AXIS)
    self.state = jax.device_put(
      create_train_state(config, model, np.zeros((1,) + image_shape, np.float32)),
      NamedSharding(mesh, P()),
    )
    self.train_input = InMemoryTrainInput(
      self.images, self.labels, config.input, config.batch_size, 0, mesh, config.num_seeds
    )
    self.chunk = make_train_chunk_fn(
      model,
      transforms.get_preprocessor(
        config.input.preprocess, self.images.mean(axis=(0, 1, 2), dtype=np.float32) / 255.0
      ),
      mesh,
      self.train_input,
      seed=0,
      distortion_strength=config.input.distortion_strength,
      scan_unroll=scan_unroll,
      num_seeds=config.num_seeds,
    )

  def time_calls(self, per_steps: list, repeats: int) -> tuple[float, float]:
    """(compile seconds, best seconds per step): `per_steps[0]`'s call compiles, then each
    of `repeats` timed passes calls the chunk once per remaining entry.

    Training continues from `self.state`, which the chunk consumes (donates).
    """
    state, resident = self.state, self.train_input.resident
    start = time.perf_counter()
    state, metrics = self.chunk(state, resident, per_steps[0])
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    steps = sum(jax.tree.leaves(p)[0].shape[0] for p in per_steps[1:])
    best = float('inf')
    for _ in range(repeats):
      start = time.perf_counter()
      for per_step in per_steps[1:]:
        state, metrics = self.chunk(state, resident, per_step)
      jax.block_until_ready(metrics)
      best = min(best, (time.perf_counter() - start) / steps)
    return compile_s, best


def time_training_steps(
  config: ml_collections.ConfigDict,
  image_shape: tuple[int, ...],
  num_classes: int,
  steps_per_call: int,
  calls: int,
  scan_unroll: int,
  repeats: int = 1,
) -> tuple[float, float, int]:
  """Times `calls` calls of `steps_per_call` fused steps on synthetic uint8 images.

  Returns:
    (compile seconds, best seconds per step over `repeats`, number of parameters).
  """
  bench = TrainingBench(config, image_shape, num_classes, scan_unroll)
  num_params = sum(p.size for p in jax.tree.leaves(bench.state.params))
  per_steps = [
    bench.train_input.per_steps(i * steps_per_call, steps_per_call) for i in range(calls + 1)
  ]
  compile_s, seconds = bench.time_calls(per_steps, repeats)
  return compile_s, seconds, num_params


def best_milliseconds(call: object, *args: object, repeats: int) -> float:
  """Best wall time of `call(*args)` over `repeats` calls, after one warm-up (compiling) call."""
  call(*args)
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    call(*args)
    best = min(best, time.perf_counter() - start)
  return best * 1e3


def run_jax(fn: object, *args: object) -> None:
  """Calls `fn(*args)` and waits for its device work: a JAX call to time."""
  jax.block_until_ready(fn(*args))
