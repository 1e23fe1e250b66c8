"""TensorBoard scalars: writing them during training and reading them back for figures.

`tf.summary.scalar` stores scalars as tensors, so they are read back from the
event files' tensor values. TensorFlow is imported only when used.
"""

import collections
import pathlib


class SummaryWriter:
  """Writes scalar summaries to event files in `logdir`; a no-op unless `enabled`.

  In a multi-process job only process 0 writes (`enabled=False` elsewhere).
  """

  def __init__(self, logdir: pathlib.Path, enabled: bool = True):
    import tensorflow as tf

    self._tf = tf
    self._writer = tf.summary.create_file_writer(str(logdir)) if enabled else None

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if self._writer is None:
      return
    with self._writer.as_default():
      for name, value in scalars.items():
        self._tf.summary.scalar(name, value, step=step)
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def read_scalars(logdir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """Reads every scalar in the event files of `logdir` (not its subfolders).

  Returns:
    {tag: [(step, value), ...]} sorted by step; where a resumed run logged a
    step twice, the value written last wins.
  """
  import tensorflow as tf

  values: dict[str, dict[int, float]] = collections.defaultdict(dict)
  for path in sorted(
    pathlib.Path(logdir).glob('events.out.tfevents.*'), key=lambda p: p.stat().st_mtime
  ):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        values[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
  return {tag: sorted(by_step.items()) for tag, by_step in values.items()}


def truncate_events(logdir: pathlib.Path, last_step: int) -> None:
  """Drops every event after `last_step` from the event files of `logdir`.

  A run killed after its last checkpoint has logged steps it will redo on resume;
  rewriting the files without them keeps every curve free of duplicated and
  reordered steps. Each file is rewritten to a temporary file and renamed over it.
  """
  import tensorflow as tf

  for path in pathlib.Path(logdir).glob('events.out.tfevents.*'):
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    kept = [r for r in records if tf.compat.v1.Event.FromString(r).step <= last_step]
    if len(kept) == len(records):
      continue
    partial = path.with_name(path.name + '.partial')
    with tf.io.TFRecordWriter(str(partial)) as writer:
      for record in kept:
        writer.write(record)
    partial.replace(path)
