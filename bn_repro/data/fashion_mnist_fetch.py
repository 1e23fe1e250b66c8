"""Offline Fashion-MNIST (Xiao et al. 2017) from Debian's `dataset-fashion-mnist` package.

The package carries the four official IDX files. We `apt-get download` it (no
install), unpack it with `dpkg -x` into the cache, check each file's sha256, and
store train (60k) and test (10k) as the TFDS dataset `fashion_mnist` 3.0.1 (its
registered name and version), read afterwards with `tfds.load(download=False)`.
A fresh machine needs `apt-get update` once before the download.
"""

import gzip
import pathlib
import shutil
import subprocess
import sys

import numpy as np
from absl import logging

from bn_repro.data.offline import (
  DataIntegrityError,
  default_cache_dir,
  exclusive,
  fetch_main,
  is_prepared,
  store_as_tfds,
  verify_sha256,
)

DEBIAN_PACKAGE = 'dataset-fashion-mnist'
IDX_DIR = 'usr/share/datasets/fashion-mnist'
IDX_SHA256 = {
  'train-images-idx3-ubyte.gz': 'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7',
  'train-labels-idx1-ubyte.gz': '0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056',
  't10k-images-idx3-ubyte.gz': 'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa',
  't10k-labels-idx1-ubyte.gz': '8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05',
}
TFDS_NAME = 'fashion_mnist'
TFDS_VERSION = '3.0.1'


def fetch_idx_files(cache_dir: pathlib.Path) -> pathlib.Path:
  """Returns the folder of the verified IDX files, downloading the package if needed."""
  unpacked = cache_dir / 'fashion-mnist-deb'
  idx_dir = unpacked / IDX_DIR
  if not all((idx_dir / name).exists() for name in IDX_SHA256):
    cache_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache_dir.glob(f'{DEBIAN_PACKAGE}_*.deb'))
    if not debs:
      logging.info('Fetching Debian package %s through apt into %s...', DEBIAN_PACKAGE, cache_dir)
      _run_tool(['apt-get', 'download', DEBIAN_PACKAGE], cache_dir)
      debs = sorted(cache_dir.glob(f'{DEBIAN_PACKAGE}_*.deb'))
    logging.info('Unpacking %s...', debs[-1].name)
    try:
      _run_tool(['dpkg', '-x', str(debs[-1]), str(unpacked)], cache_dir)
    except DataIntegrityError as error:
      debs[-1].unlink()  # A corrupt download: the next run fetches it again.
      raise DataIntegrityError(
        f'{error} The cached {debs[-1].name} was deleted; run again.'
      ) from None
  for name, digest in IDX_SHA256.items():
    try:
      verify_sha256(idx_dir / name, digest)
    except DataIntegrityError:
      shutil.rmtree(unpacked, ignore_errors=True)
      for deb in cache_dir.glob(f'{DEBIAN_PACKAGE}_*.deb'):
        deb.unlink()
      raise
  return idx_dir


def _run_tool(command: list[str], cwd: pathlib.Path) -> None:
  """Runs a Debian tool; a missing tool or a failure is a DataIntegrityError naming the fix."""
  fix = (
    f'run `apt-get update` first, or prepare TFDS {TFDS_NAME} yourself in the TFDS data dir '
    '(--config.input.tfds_data_dir).'
  )
  try:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
  except FileNotFoundError:
    raise DataIntegrityError(
      f"`{command[0]}` is not installed: Fashion-MNIST comes from Debian's {DEBIAN_PACKAGE} "
      f'package. On a Debian or Ubuntu machine {fix}'
    ) from None
  if result.returncode:
    raise DataIntegrityError(f'`{" ".join(command)}` failed ({result.stderr.strip()}); {fix}')


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads a gzipped IDX file (uint8 data) into an array of its stated shape."""
  with gzip.open(path, 'rb') as f:
    content = f.read()
  if content[:2] != b'\0\0' or content[2] != 0x08:
    raise DataIntegrityError(f'{path} is not a uint8 IDX file.')
  ndim = content[3]
  shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
  return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def ensure_fashion_mnist(
  tfds_data_dir: pathlib.Path, cache_dir: pathlib.Path | None = None
) -> None:
  """Makes `tfds.load('fashion_mnist', data_dir=tfds_data_dir, download=False)` work offline."""
  if is_prepared(tfds_data_dir, TFDS_NAME, TFDS_VERSION):
    return
  cache_dir = cache_dir or default_cache_dir()
  with exclusive(cache_dir, tfds_data_dir):
    if is_prepared(tfds_data_dir, TFDS_NAME, TFDS_VERSION):  # Another process just did.
      return
    idx_dir = fetch_idx_files(cache_dir)
    splits = {
      split: (
        read_idx(idx_dir / f'{prefix}-images-idx3-ubyte.gz')[..., None],
        read_idx(idx_dir / f'{prefix}-labels-idx1-ubyte.gz'),
      )
      for split, prefix in (('train', 'train'), ('test', 't10k'))
    }
    store_as_tfds(TFDS_NAME, TFDS_VERSION, splits, 10, tfds_data_dir)


def main() -> None:
  fetch_main('fashion_mnist', ensure_fashion_mnist, sys.argv[1:])


if __name__ == '__main__':
  main()
