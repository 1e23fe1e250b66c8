"""Input pipeline for small image datasets held in device memory (MNIST).

Small datasets are loaded once with `tfds.load(..., download=False)` into uint8
arrays; the training loop gathers each mini-batch on device from indices drawn
on the host (`batch_indices`), so the data order is a pure function of
(seed, step) and a resumed run continues it exactly. TensorFlow and TFDS are
imported only inside `load_dataset`, so models and steps import without them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
  import ml_collections


@dataclasses.dataclass(frozen=True)
class InMemoryDataset:
  """A classification dataset as host arrays.

  Attributes:
    train_images: uint8 `(N_train, H, W, C)`.
    train_labels: int32 `(N_train,)`.
    test_images: uint8 `(N_test, H, W, C)`.
    test_labels: int32 `(N_test,)`.
    num_classes: number of classes.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int

  @property
  def pixel_mean(self) -> np.ndarray:
    """float32 `(C,)`: the training images' mean per channel, in [0, 1] units."""
    return (self.train_images.mean(axis=(0, 1, 2), dtype=np.float64) / 255.0).astype(np.float32)


def _prepare_mnist(tfds_data_dir: pathlib.Path, cache_dir: pathlib.Path | None) -> None:
  from bn_repro.data import mnist_fetch

  mnist_fetch.ensure_mnist(tfds_data_dir, cache_dir)


def _prepare_fashion_mnist(tfds_data_dir: pathlib.Path, cache_dir: pathlib.Path | None) -> None:
  from bn_repro.data import fashion_mnist_fetch

  fashion_mnist_fetch.ensure_fashion_mnist(tfds_data_dir, cache_dir)


# Name -> function(tfds_data_dir, download_cache_dir) that makes the dataset loadable
# offline from the TFDS data dir.
DATASETS: dict[str, Callable[[pathlib.Path, pathlib.Path | None], None]] = {
  'mnist': _prepare_mnist,
  'fashion_mnist': _prepare_fashion_mnist,
}


# Datasets too large for device memory, streamed by bn_repro.data.imagenet.
STREAMING_DATASETS = ('imagenet2012',)


def default_tfds_data_dir() -> pathlib.Path:
  """TFDS's own default: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
  return pathlib.Path(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')).expanduser()


def load_dataset(input_config: ml_collections.ConfigDict) -> InMemoryDataset:
  """Loads TFDS image dataset `input_config.dataset` (train and test splits) into memory.

  Any TFDS image-classification dataset prepared in `input_config.tfds_data_dir`
  (TFDS's default if unset) works; those in `DATASETS` are fetched offline into
  it when missing.
  """
  name = input_config.dataset
  data_dir = (
    pathlib.Path(input_config.tfds_data_dir).expanduser()
    if input_config.tfds_data_dir
    else default_tfds_data_dir()
  )
  try:
    splits = _load_splits(name, data_dir)
  except _dataset_not_found_errors() as error:
    if name not in DATASETS:
      raise FileNotFoundError(
        f'TFDS dataset {name!r} is not prepared in {data_dir} ({error}). Prepare it with '
        f'`tfds build {name} --data_dir={data_dir}`, or use one that bn_repro fetches '
        f'offline: {sorted(DATASETS)}.'
      ) from error
    cache_dir = input_config.download_cache_dir
    DATASETS[name](data_dir, pathlib.Path(cache_dir).expanduser() if cache_dir else None)
    splits = _load_splits(name, data_dir)
  return InMemoryDataset(*splits['train'], *splits['test'], num_classes=splits['num_classes'])


def _dataset_not_found_errors() -> tuple[type[Exception], ...]:
  import tensorflow_datasets as tfds

  # tfds.load(download=False) raises a bare AssertionError when the data is absent.
  return (AssertionError, tfds.core.registered.DatasetNotFoundError)


def _load_splits(name: str, data_dir: pathlib.Path) -> dict:
  """Reads the train and test splits whole into uint8 images and int32 labels."""
  import tensorflow_datasets as tfds

  out = {}
  for split in ('train', 'test'):
    dataset, info = tfds.load(
      name, split=split, data_dir=str(data_dir), download=False, as_supervised=True, with_info=True
    )
    batches = list(tfds.as_numpy(dataset.batch(1 << 20)))
    out[split] = (
      np.concatenate([b[0] for b in batches]).astype(np.uint8),
      np.concatenate([b[1] for b in batches]).astype(np.int32),
    )
    out['num_classes'] = info.features['label'].num_classes
  return out


def _binary(images: jax.Array) -> jax.Array:
  # The paper feeds "a 28x28 binary image": a pixel is on when its intensity exceeds 1/2.
  return (images > 127).astype(jnp.float32)


def _scaled(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32) / 255.0


# Name -> what it does, for summaries and --help.
PREPROCESSORS = {
  'binary': 'binarized at 1/2',
  'scaled': 'intensities scaled to [0, 1]',
  'mean_subtracted': (
    "intensities scaled to [0, 1] minus the training set's mean per channel (GoogLeNet's input)"
  ),
}


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """uint8 images `(..., C)` -> float32 model inputs of the same shape.

  Pixels go to [0, 1] (`to_unit`), training may distort them photometrically there
  (`distort_photometric`, which keeps [0, 1]), and `pixel_mean` `(C,)`, if any, is
  subtracted last, so distortion never sees centred values.
  """

  to_unit: Callable[[jax.Array], jax.Array]
  pixel_mean: np.ndarray | None = None

  def __call__(
    self, images: jax.Array, distort_key: jax.Array | None = None, distortion_strength: float = 0.0
  ) -> jax.Array:
    x = self.to_unit(images)
    if distort_key is not None and distortion_strength:
      x = distort_photometric(x, distort_key, distortion_strength)
    return x if self.pixel_mean is None else x - jnp.asarray(self.pixel_mean, jnp.float32)


def get_preprocessor(name: str, pixel_mean: np.ndarray | None = None) -> Preprocessor:
  """The preprocessing called `name` (`PREPROCESSORS`).

  'mean_subtracted' needs `pixel_mean`, float32 `(C,)` in [0, 1] units (the training
  set's, `InMemoryDataset.pixel_mean` or `imagenet.PIXEL_MEAN`).
  """
  if name == 'binary':
    return Preprocessor(_binary)
  if name == 'scaled':
    return Preprocessor(_scaled)
  if name == 'mean_subtracted':
    if pixel_mean is None:
      raise ValueError("Preprocessing 'mean_subtracted' needs the training set's pixel_mean.")
    return Preprocessor(_scaled, np.asarray(pixel_mean, np.float32))
  raise ValueError(f'Unknown preprocessing {name!r}; expected one of {sorted(PREPROCESSORS)}.')


def distort_photometric(images: jax.Array, key: jax.Array, strength: float) -> jax.Array:
  """Random brightness and contrast per image, scaled by `strength` in [0, 1].

  Images `(N, H, W, C)` float32 in [0, 1]; brightness shifts by U(-0.25, 0.25) *
  strength, contrast scales about the image mean by 1 + U(-0.5, 0.5) * strength.
  The paper's BN runs use weaker distortions than Inception's (Sec. 4.2.1).
  """
  brightness_key, contrast_key = jax.random.split(key)
  shape = (images.shape[0],) + (1,) * (images.ndim - 1)
  brightness = jax.random.uniform(brightness_key, shape, minval=-0.25, maxval=0.25) * strength
  contrast = 1.0 + jax.random.uniform(contrast_key, shape, minval=-0.5, maxval=0.5) * strength
  mean = jnp.mean(images, axis=tuple(range(1, images.ndim)), keepdims=True)
  return jnp.clip((images - mean) * contrast + mean + brightness, 0.0, 1.0)


SHUFFLES = ('full', 'shards', 'within_shards')


def epoch_order(
  num_examples: int, seed: int, epoch: int, shuffle: str = 'full', num_shards: int = 1
) -> np.ndarray:
  """The order in which epoch `epoch` visits the examples.

  'full': a uniform permutation. 'shards': the examples, in their stored order,
  cut into `num_shards` contiguous shards; the shards are visited in random order,
  each in its fixed internal order (so the same examples always share a mini-batch,
  as in the paper's original Inception input). 'within_shards': the same, with each
  shard also shuffled (the paper's Sec. 4.2.1 change).
  """
  rng = np.random.default_rng([seed, epoch])
  if shuffle == 'full':
    return rng.permutation(num_examples)
  if shuffle not in SHUFFLES:
    raise ValueError(f'Unknown shuffle {shuffle!r}; expected one of {SHUFFLES}.')
  shards = np.array_split(np.arange(num_examples), num_shards)
  if shuffle == 'within_shards':
    shards = [rng.permutation(shard) for shard in shards]
  return np.concatenate([shards[i] for i in rng.permutation(num_shards)])


def batch_indices(
  num_examples: int,
  batch_size: int,
  seed: int,
  first_step: int,
  num_steps: int,
  shuffle: str = 'full',
  num_shards: int = 1,
) -> np.ndarray:
  """Example indices of the mini-batches of steps `[first_step, first_step + num_steps)`.

  Each epoch visits the examples in `epoch_order(..., epoch, shuffle, num_shards)`;
  the last partial batch of an epoch is dropped, so every step's batch is a
  function of (seed, step) alone.

  Returns:
    int32 array `(num_steps, batch_size)`.
  """
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'batch_size={batch_size} exceeds the {num_examples} training examples.')
  out = np.empty((num_steps, batch_size), np.int32)
  orders: dict[int, np.ndarray] = {}
  for i, step in enumerate(range(first_step, first_step + num_steps)):
    epoch, position = divmod(step, steps_per_epoch)
    if epoch not in orders:
      orders[epoch] = epoch_order(num_examples, seed, epoch, shuffle, num_shards)
    out[i] = orders[epoch][position * batch_size : (position + 1) * batch_size]
  return out
