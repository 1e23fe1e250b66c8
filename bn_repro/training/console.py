"""What the console shows: the trainer's own INFO lines and every library's warnings.

TensorFlow (the input pipeline and the event files only), TFDS, orbax and JAX log their
own progress at INFO (dataset info, checkpoint managers, `Unable to initialize backend
'tpu'`), and TensorFlow logs deprecation notices at WARNING; none of it is what a
researcher reads. The full config is in WORKDIR/config.json, not on the console.
"""

import logging
import os
import pathlib

_PACKAGE_DIR = str(pathlib.Path(__file__).parents[1])
_TENSORFLOW_DIR = f'{os.sep}tensorflow{os.sep}'


# Library warnings that say nothing to a researcher: TFDS's check of a dataset folder that
# the offline fetch is about to write (or has just written).
_NOTICES = ('has no dataset_info.json',)


class OwnInfoOnly(logging.Filter):
  """Passes bn_repro's records, other libraries' warnings and errors (but _NOTICES), and
  TensorFlow's errors only (its warnings are deprecation notices about its own internals)."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.pathname.startswith(_PACKAGE_DIR):
      return True
    if any(notice in record.getMessage() for notice in _NOTICES):
      return False
    if _TENSORFLOW_DIR in record.pathname:
      return record.levelno >= logging.ERROR
    return record.levelno >= logging.WARNING


def quiet_tensorflow() -> None:
  """Silences TensorFlow's C++ start-up lines (set before TensorFlow is imported; it is
  imported lazily by the input pipeline). oneDNN is switched off in TensorFlow only: it
  prints a notice and TensorFlow runs no float math of ours (JAX does)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
