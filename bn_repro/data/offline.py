"""Shared pieces of the offline data fetchers: cache dir, integrity checks, TFDS storage.

A fetched dataset is stored under its registered TFDS name and version, so the
input pipeline always reads it with `tfds.load(name, download=False)`.
"""

import contextlib
import fcntl
import hashlib
import os
import pathlib
from collections.abc import Iterator

import numpy as np
from absl import logging

CACHE_ENV_VAR = 'BN_REPRO_DATA_DIR'


class DataIntegrityError(RuntimeError):
  """A data file is missing, truncated or does not have the expected hash."""


def default_cache_dir() -> pathlib.Path:
  """`$BN_REPRO_DATA_DIR` if set, else `~/.cache/bn_repro`."""
  return pathlib.Path(os.environ.get(CACHE_ENV_VAR, '~/.cache/bn_repro')).expanduser()


def sha256_of(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify_sha256(path: pathlib.Path, expected: str) -> None:
  """Raises DataIntegrityError naming the file, both hashes and the fix."""
  if not path.is_file():
    raise DataIntegrityError(f'Data file {path} does not exist.')
  actual = sha256_of(path)
  if actual != expected:
    raise DataIntegrityError(
      f'Data file {path} has sha256 {actual}, expected {expected}: it is truncated '
      f'or corrupt. Delete it and run again to fetch a fresh copy.'
    )


@contextlib.contextmanager
def exclusive(directory: pathlib.Path) -> Iterator[None]:
  """Holds an exclusive lock on `directory/.bn_repro_fetch.lock` (created if needed).

  Fetches and TFDS preparations run under it, so several processes starting on a fresh
  machine (a multi-process job, parallel studies) prepare the data once, in turn, and
  never write the same file at the same time. The kernel releases it if a holder dies.
  """
  directory.mkdir(parents=True, exist_ok=True)
  with open(directory / '.bn_repro_fetch.lock', 'a') as lock:
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def is_prepared(tfds_data_dir: pathlib.Path, name: str, version: str) -> bool:
  """Whether TFDS dataset `name` at `version` is prepared in `tfds_data_dir`."""
  return (tfds_data_dir / name / version / 'dataset_info.json').exists()


def store_as_tfds(
  name: str,
  version: str,
  splits: dict[str, tuple[np.ndarray, np.ndarray]],
  num_classes: int,
  tfds_data_dir: pathlib.Path,
) -> None:
  """Writes uint8 images `(N, H, W, C)` and labels `(N,)` per split as TFDS `name`, in order.

  One log line per stage: TFDS's progress bars (dozens of lines of escape codes, with a
  "Downloading ... Unknown size" though nothing is downloaded) are switched off.
  """
  import tensorflow as tf
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  sizes = ', '.join(f'{split} {len(labels):,}' for split, (_, labels) in splits.items())
  logging.info('Writing %s (%s examples) as a TFDS dataset into %s...', name, sizes, tfds_data_dir)

  image_shape = next(iter(splits.values()))[0].shape[1:]
  features = tfds.features.FeaturesDict(
    {
      'image': tfds.features.Image(shape=image_shape),
      'label': tfds.features.ClassLabel(num_classes=num_classes),
    }
  )
  split_datasets = {
    split: tf.data.Dataset.from_tensor_slices({'image': images, 'label': labels})
    for split, (images, labels) in splits.items()
  }
  tfds.dataset_builders.store_as_tfds_dataset(
    name=name,
    version=version,
    features=features,
    split_datasets=split_datasets,
    data_dir=str(tfds_data_dir),
    disable_shuffling=True,
  )


def default_tfds_data_dir() -> pathlib.Path:
  """TFDS's own default: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
  return pathlib.Path(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')).expanduser()
