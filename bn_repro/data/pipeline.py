"""Where training and evaluation examples come from: device-resident arrays or a stream.

Small datasets (MNIST, Fashion-MNIST) live whole on device and each step gathers
its examples by index, so the data order is a function of (seed, step). Large
ones (ImageNet) stream from `tf.data` through the host. Both feed the same
training loop and step (`bn_repro.training.steps.make_train_chunk_fn`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.data import datasets, ordering
from bn_repro.distributed import AXIS, put_global, put_process_local

if TYPE_CHECKING:
  import ml_collections

EvalBatch = tuple[jax.Array, jax.Array, jax.Array]  # images, labels, mask (False: padding)


class TrainInput(Protocol):
  """Where a training step's examples come from, as the compiled chunk sees it
  (`bn_repro.training.steps.make_train_chunk_fn`).

  `resident`: arrays kept on device across calls (the whole dataset, or nothing);
  `per_steps(first_step, num_steps)`: a pytree with a leading `num_steps` axis naming each
  step's examples (indices, or the streamed batches themselves); `fetch(resident,
  per_step)`: one step's uint8 images `(B, H, W, C)` and int32 labels `(B,)` on this
  device. The specs place `resident` and `per_steps` on the mesh.
  """

  resident: tuple
  resident_specs: tuple
  per_step_specs: object

  @staticmethod
  def fetch(resident: tuple, per_step: object) -> tuple[jax.Array, jax.Array]: ...

  def per_steps(self, first_step: int, num_steps: int) -> object: ...


class InMemoryTrainInput:
  """The whole training set on device (replicated); a step gathers its examples by index.

  With `num_seeds` > 1, run s of a multi-seed program (`bn_repro.training.steps`) draws its
  batches in the order of seed `seed + s`, as a single run of that seed would.
  """

  resident_specs = (P(), P())

  def __init__(
    self,
    images: np.ndarray,
    labels: np.ndarray,
    input_config: ml_collections.ConfigDict,
    batch_size: int,
    seed: int,
    mesh: Mesh,
    num_seeds: int = 1,
  ):
    self.resident = put_global((images, labels), NamedSharding(mesh, P()))
    self._num_examples, self._labels = len(labels), np.asarray(labels)
    self._input_config, self._batch_size, self._seed = input_config, batch_size, seed
    self._num_seeds = num_seeds
    # Indices (steps, batch), or (steps, seeds, batch): the batch axis is split over devices.
    self.per_step_specs = P(None, AXIS) if num_seeds == 1 else P(None, None, AXIS)
    self._sharding = NamedSharding(mesh, self.per_step_specs)

  @staticmethod
  def fetch(resident: tuple[jax.Array, jax.Array], indices: jax.Array):
    images, labels = resident
    return images[indices], labels[indices]

  def per_steps(self, first_step: int, num_steps: int) -> jax.Array:
    """Example indices `(num_steps, [seeds,] batch)` of those steps, sharded over the batch."""
    per_seed = [
      ordering.batch_indices(
        self._num_examples,
        self._batch_size,
        self._seed + s,
        first_step,
        num_steps,
        self._input_config.shuffle,
        self._input_config.num_shards,
        self._labels,
        self._input_config.class_chunk,
      )
      for s in range(self._num_seeds)
    ]
    indices = per_seed[0] if self._num_seeds == 1 else np.stack(per_seed, axis=1)
    return put_global(indices, self._sharding)  # Every process draws the same indices.


class StreamingTrainInput:
  """Global batches streamed from the host: (uint8 images `(B, H, W, C)`, labels `(B,)`)."""

  resident: tuple = ()
  resident_specs: tuple = ()
  per_step_specs = (P(None, AXIS), P(None, AXIS))

  def __init__(self, batches: Iterator[tuple[np.ndarray, np.ndarray]], mesh: Mesh):
    self._batches = batches
    self._sharding = NamedSharding(mesh, P(None, AXIS))

  @staticmethod
  def fetch(resident: tuple, batch: tuple[jax.Array, jax.Array]):
    del resident
    return batch

  def per_steps(self, first_step: int, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """The next `num_steps` batches, stacked to `(num_steps, B, ...)` and sharded."""
    del first_step  # The stream was positioned at the run's first step when it was built.
    batches = [next(self._batches) for _ in range(num_steps)]
    stacked = tuple(np.stack(parts) for parts in zip(*batches, strict=True))
    return put_process_local(stacked, self._sharding)  # Each process streams its part.


@dataclasses.dataclass
class Inputs:
  """Everything the loop needs to know about the data of a config.

  Attributes:
    num_classes, image_shape: for building and initializing the model.
    pixel_mean: float32 `(C,)`, the training images' mean per channel in [0, 1] units.
    num_eval_examples: examples in the evaluation split (each counted once).
    eval_batches: a fresh iterable of sharded (images, labels, mask) batches.
    create_train_input: `start_step -> train input` positioned at that step.
    train_batches: `(K, s) -> ` the uint8 images `(batch, H, W, C)` of the first K training
      batches of run s of the seeds side by side (seed `config.seed + s`, the batches a
      separate run of that seed draws), on the host (data-dependent initialization,
      population statistics).
  """

  num_classes: int
  image_shape: tuple[int, ...]
  pixel_mean: np.ndarray
  num_eval_examples: int
  eval_batches: Callable[[], Iterable[EvalBatch]]
  create_train_input: Callable[[int], TrainInput]
  train_batches: Callable[[int, int], Iterator[np.ndarray]]


def _shard(batch: tuple[np.ndarray, ...], sharding: NamedSharding) -> EvalBatch:
  return tuple(put_global(part, sharding) for part in batch)


def create_inputs(config: ml_collections.ConfigDict, mesh: Mesh) -> Inputs:
  """Builds the inputs of `config.input.dataset`, in memory or streamed."""
  if config.eval.batch_size % mesh.size:
    raise ValueError(
      f'eval.batch_size={config.eval.batch_size} is not a multiple of the {mesh.size} devices.'
    )
  sharding = NamedSharding(mesh, P(AXIS))
  if config.input.dataset in datasets.STREAMING_DATASETS:
    from bn_repro.data import imagenet

    source = imagenet.ImageNet(config.input, config.batch_size, config.seed)
    return Inputs(
      num_classes=source.num_classes,
      image_shape=source.image_shape,
      pixel_mean=source.pixel_mean,
      num_eval_examples=source.num_eval_examples,
      eval_batches=lambda: (
        _shard(b, sharding)
        # eval.batch_size counts the images the model sees per call, crops included.
        for b in source.eval_batches(config.eval.batch_size // config.eval.crops, config.eval.crops)
      ),
      create_train_input=lambda step: StreamingTrainInput(source.train_batches(step), mesh),
      # One run per program for streamed data (config_checks: num_seeds == 1).
      train_batches=lambda k, s=0: (
        images for images, _ in itertools.islice(source.train_batches(0), k)
      ),
    )
  dataset = datasets.load_dataset(config.input)

  def train_batches(num_batches: int, seed_index: int = 0) -> Iterator[np.ndarray]:
    indices = ordering.batch_indices(
      len(dataset.train_labels),
      config.batch_size,
      config.seed + seed_index,
      0,
      num_batches,
      config.input.shuffle,
      config.input.num_shards,
      dataset.train_labels,
      config.input.class_chunk,
    )
    return (dataset.train_images[step_indices] for step_indices in indices)

  num_eval = config.eval.num_examples or len(dataset.test_labels)
  eval_batches = [
    _shard(b, sharding)
    for b in ordering.padded_batches(
      dataset.test_images[:num_eval], dataset.test_labels[:num_eval], config.eval.batch_size
    )
  ]
  return Inputs(
    num_classes=dataset.num_classes,
    image_shape=dataset.train_images.shape[1:],
    pixel_mean=dataset.pixel_mean,
    num_eval_examples=min(num_eval, len(dataset.test_labels)),
    eval_batches=lambda: eval_batches,
    create_train_input=lambda step: InMemoryTrainInput(
      dataset.train_images,
      dataset.train_labels,
      config.input,
      config.batch_size,
      config.seed,
      mesh,
      config.num_seeds,
    ),
    train_batches=train_batches,
  )
