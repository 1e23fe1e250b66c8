"""Entry point: `python -m bn_repro.main --config=configs/mnist.py:bn --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.1`;
unknown fields are rejected with the valid names.
"""

import logging as python_logging

from absl import app, flags, logging
from ml_collections import config_flags

from bn_repro import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file[:variant].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraryInfo(python_logging.Filter):
  """Drops orbax's per-save INFO chatter so the progress lines stay readable."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    return record.levelno > python_logging.INFO or '/orbax/' not in record.pathname


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraryInfo())
  logging.info('Config:\n%s', _CONFIG.value)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
