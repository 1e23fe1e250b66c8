"""A numpy copy of a small TFDS dataset's splits, so a run starts without TensorFlow.

Reading MNIST's 70,000 images through `tfds.load` takes 8-9 s on the 2-core CPU (half of
it importing TensorFlow), paid by every run of a study; `np.load` of the same arrays
takes a fraction of a second. The copy lives in `TFDS_DATA_DIR/bn_repro_arrays/NAME.npz`
and records a stamp of the TFDS files it was read from (each file's path, size and
modification time under `TFDS_DATA_DIR/NAME/`): a dataset prepared again, or another
version prepared beside it, changes the stamp and the copy is read afresh from TFDS.
Writers replace the file whole (`write_atomically`), so processes starting together never
read a half-written copy.
"""

import io
import pathlib
import zipfile

import numpy as np

from bn_repro.records import write_atomically

CACHE_FOLDER = 'bn_repro_arrays'
_KEYS = ('train_images', 'train_labels', 'test_images', 'test_labels', 'num_classes')


def source_stamp(name: str, data_dir: pathlib.Path) -> str:
  """'path size mtime_ns' per file under `data_dir/name`, one per line, sorted; '' if none."""
  root = data_dir / name
  if not root.is_dir():
    return ''
  lines = []
  for path in sorted(p for p in root.rglob('*') if p.is_file()):
    stat = path.stat()
    lines.append(f'{path.relative_to(root)} {stat.st_size} {stat.st_mtime_ns}')
  return '\n'.join(lines)


def cache_path(name: str, data_dir: pathlib.Path) -> pathlib.Path:
  return data_dir / CACHE_FOLDER / f'{name}.npz'


def read(name: str, data_dir: pathlib.Path) -> dict[str, np.ndarray] | None:
  """The cached splits {'train_images', ..., 'num_classes'}, or None when there is no
  copy, it is unreadable, or the TFDS files it was made from have changed since."""
  path = cache_path(name, data_dir)
  stamp = source_stamp(name, data_dir)
  if not stamp or not path.is_file():
    return None
  try:
    with np.load(path) as stored:
      if str(stored['stamp']) != stamp:
        return None
      return {key: stored[key] for key in _KEYS}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
    return None  # Unreadable (e.g. a disk filled while writing): read from TFDS again.


def write(name: str, data_dir: pathlib.Path, splits: dict[str, np.ndarray], stamp: str) -> None:
  """Stores `splits` (the keys `read` returns) with the `source_stamp` taken before they
  were read; nothing is written for a dataset without TFDS files (e.g. TFDS's mock data)."""
  if not stamp:
    return
  path = cache_path(name, data_dir)
  path.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  np.savez(buffer, stamp=np.array(stamp), **{key: splits[key] for key in _KEYS})
  write_atomically(path, buffer.getvalue())
