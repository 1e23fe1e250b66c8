"""TensorBoard event files: writing summaries during training and reading scalars back.

Event files are TFRecord files of `Event` protos. A record is
`length (uint64 LE) | masked crc32c(length) | data | masked crc32c(data)`; a writer killed
mid-write (SIGKILL, OOM, full disk) leaves a torn last record. Every reader here keeps the
whole records and drops a torn tail, so a live event file (still being written by another
process) and a killed run's file both read back cleanly. Reading needs neither TensorFlow
nor its warnings: the records are parsed with the `tensorboard` package's protos.
Writing (`SummaryWriter`: scalars, histograms, text, hparams) uses `tf.summary`, imported
only when used; what a run shows in each dashboard is `bn_repro.training.dashboards`.
"""

import collections
import os
import pathlib
import struct
from collections.abc import Iterator

import numpy as np

from bn_repro import records
from bn_repro.training.seeds import SEED_TAG

EVENT_FILE_PATTERN = 'events.out.tfevents.*'
_REWRITE_PREFIX = '.rewrite.'  # Temporary files of `truncate_events`: no reader matches them.


class SummaryWriter:
  """Writes summaries to event files in `logdir`, and the scalars, the same values, to
  `logdir/metrics.jsonl` (`bn_repro.records`) if `metrics_file`; a no-op unless
  `enabled`. Per-seed copies of scalars (`seeds.SEED_TAG`) go to metrics.jsonl only: in
  TensorBoard each number has one place, its seed's run.

  In a multi-process job only process 0 writes (`enabled=False` elsewhere).
  """

  def __init__(self, logdir: pathlib.Path, enabled: bool = True, metrics_file: bool = True):
    import tensorflow as tf

    self._tf = tf
    self._writer = tf.summary.create_file_writer(str(logdir)) if enabled else None
    self._metrics = pathlib.Path(logdir) / records.METRICS_FILE if metrics_file else None

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if self._writer is None:
      return
    with self._writer.as_default():
      for name, value in scalars.items():
        if not SEED_TAG.match(name):
          self._tf.summary.scalar(name, value, step=step)
    self._writer.flush()
    if self._metrics is not None:
      # Rounded to float32 as the event files store them, so both read back the same values.
      values = {name: float(np.float32(value)) for name, value in scalars.items()}
      records.append(self._metrics, [{'step': step, **values}])

  def write_histograms(self, step: int, histograms: dict[str, np.ndarray]) -> None:
    """Each array's values as a histogram of 30 buckets (TensorBoard's Histograms and
    Distributions), binned by numpy: about 5 ms per 100,000 values, where `tf.summary`
    takes 0.2 s per million."""
    if self._writer is None:
      return
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.histogram import summary_v2

    summary = summary_pb2.Summary()
    for name, values in histograms.items():
      summary.value.extend(summary_v2.histogram_pb(name, np.ravel(values)).value)
    with self._writer.as_default():
      self._tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
    self._writer.flush()

  def write_text(self, step: int, texts: dict[str, str]) -> None:
    """Markdown texts (TensorBoard's Text dashboard)."""
    if self._writer is None:
      return
    with self._writer.as_default():
      for name, text in texts.items():
        self._tf.summary.text(name, text, step=step)
    self._writer.flush()

  def write_hparams(self, hparams: dict[str, bool | int | float | str]) -> None:
    """The run's hyperparameters (TensorBoard's HParams dashboard: one row per run, named
    by the run's folder relative to the logdir: an empty trial id)."""
    if self._writer is None:
      return
    from tensorboard.plugins.hparams import api as hp

    with self._writer.as_default():
      hp.hparams(hparams, trial_id='')
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
  """TFRecord's checksum: CRC-32C (Castagnoli) of `data`, rotated and offset ("masked")."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: pathlib.Path) -> tuple[list[bytes], int]:
  """The whole records of the TFRecord file at `path`, and the byte size they span.

  Reading stops at the first record that is incomplete or fails its checksums: the torn
  tail a killed writer leaves (or the part still being written by a live one).
  """
  data = pathlib.Path(path).read_bytes()
  records, offset = [], 0
  while offset + 12 <= len(data):
    header = data[offset : offset + 8]
    (length,) = struct.unpack('<Q', header)
    (length_crc,) = struct.unpack('<I', data[offset + 8 : offset + 12])
    end = offset + 12 + length + 4
    if length_crc != masked_crc32c(header) or end > len(data):
      break
    payload = data[offset + 12 : offset + 12 + length]
    if struct.unpack('<I', data[end - 4 : end])[0] != masked_crc32c(payload):
      break
    records.append(payload)
    offset = end
  return records, offset


def encode_record(payload: bytes) -> bytes:
  header = struct.pack('<Q', len(payload))
  return (
    header
    + struct.pack('<I', masked_crc32c(header))
    + payload
    + struct.pack('<I', masked_crc32c(payload))
  )


def event_files(logdir: pathlib.Path) -> list[pathlib.Path]:
  """The event files of `logdir` (not its subfolders), oldest first."""
  paths = [p for p in pathlib.Path(logdir).glob(EVENT_FILE_PATTERN) if p.is_file()]
  return sorted(paths, key=lambda p: (p.stat().st_mtime, p.name))


def read_events(logdir: pathlib.Path) -> Iterator[object]:
  """Every whole `Event` proto in the event files of `logdir`, file by file, oldest first."""
  from tensorboard.compat.proto import event_pb2

  for path in event_files(logdir):
    for record in read_records(path)[0]:
      yield event_pb2.Event.FromString(record)


def read_scalars(logdir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """Reads every scalar in the event files of `logdir` (not its subfolders); histograms,
  texts and hparams are skipped.

  Returns:
    {tag: [(step, value), ...]} sorted by step; where a resumed run logged a
    step twice, the value written last wins. A torn last record is ignored.
  """
  from tensorboard.util import tensor_util

  values: dict[str, dict[int, float]] = collections.defaultdict(dict)
  for event in read_events(logdir):
    for value in event.summary.value:
      if value.HasField('tensor') and value.metadata.plugin_data.plugin_name == 'scalars':
        values[value.tag][event.step] = float(tensor_util.make_ndarray(value.tensor))
      elif value.HasField('simple_value'):
        values[value.tag][event.step] = float(value.simple_value)
  return {tag: sorted(by_step.items()) for tag, by_step in values.items()}


def rewrite_path(path: pathlib.Path) -> pathlib.Path:
  """The temporary file of an event file's rewrite. Neither our readers nor TensorBoard
  (which reads any file whose name contains 'tfevents') read it if a kill leaves it."""
  return path.with_name(_REWRITE_PREFIX + path.name.replace('tfevents', 'events-rewrite'))


def truncate_events(logdir: pathlib.Path, last_step: int) -> None:
  """Drops every event after `last_step`, and any torn tail, from the event files of `logdir`.

  A run killed after its last checkpoint has logged steps it will redo on resume;
  rewriting the files without them keeps every curve free of duplicated and
  reordered steps. Each file is rewritten, whole records only, to a temporary file
  (whose name no reader matches) and renamed over it; temporaries of a rewrite that was
  itself killed are deleted.
  """
  from tensorboard.compat.proto import event_pb2

  logdir = pathlib.Path(logdir)
  for leftover in logdir.glob(_REWRITE_PREFIX + '*'):
    leftover.unlink()
  for path in event_files(logdir):
    records, whole_size = read_records(path)
    kept = [r for r in records if event_pb2.Event.FromString(r).step <= last_step]
    if len(kept) == len(records) and whole_size == path.stat().st_size:
      continue
    rewrite = rewrite_path(path)
    with open(rewrite, 'wb') as f:
      f.write(b''.join(encode_record(r) for r in kept))
      f.flush()
      os.fsync(f.fileno())
    rewrite.replace(path)
