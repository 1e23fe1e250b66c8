"""Entry point: `python -m bn_repro.main --config=configs/mnist.py:bn --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.1`;
an unknown field or variant stops the run before any compute, naming the valid ones.
"""

import logging as python_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bn_repro import train
from bn_repro.config_files import load_config

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:variant].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
flags.mark_flags_as_required(['config', 'workdir'])


def _unknown_config_field(argv: list[str]) -> str | None:
  """Names the first `--config.a.b=...` override that the config does not have, if any."""
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    return None
  try:
    config = load_config(spec)
  except Exception:  # noqa: BLE001 - the variant error itself is reported instead.
    return None
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg.removeprefix('--config.').split('=', 1)[0].split('.')
    node = config
    for depth, name in enumerate(path):
      if not hasattr(node, 'keys') or name not in node:
        return (
          f'Unknown config field {".".join(path[: depth + 1])!r}; valid fields '
          f'{"of " + repr(".".join(path[:depth])) if depth else "at the top"}: '
          f'{sorted(node.keys()) if hasattr(node, "keys") else "none (a leaf)"}.'
        )
      node = node[name]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with config errors reported in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    sys.exit(f'FATAL: {_unknown_config_field(argv) or (lines[-1] if lines else repr(error))}')


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
  app.run(main, flags_parser=parse_flags)
