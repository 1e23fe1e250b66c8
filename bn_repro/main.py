"""Entry point: `python -m bn_repro.main --config=configs/mnist.py:bn --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.1`;
an unknown field or variant stops the run before any compute, naming the valid ones.
"""

import logging as python_logging
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from bn_repro import train
from bn_repro.config_checks import validate_config
from bn_repro.config_files import load_config
from bn_repro.preemption import PreemptedError

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:variant].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
_OVERWRITE = flags.DEFINE_bool(
  'overwrite', False, 'Delete the checkpoints and logs in --workdir and start over.'
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address', None, 'host:port of process 0 of a multi-process job (jax.distributed).'
)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')
_DISTRIBUTED = flags.DEFINE_bool(
  'distributed',
  False,
  'Join a multi-process job found by jax.distributed auto-detection (SLURM, Cloud TPU, ...).',
)
flags.mark_flags_as_required(['config', 'workdir'])


def initialize_distributed() -> None:
  """Joins a multi-process JAX job when the flags or JAX's environment variables ask for one.

  `jax.distributed.initialize` reads `JAX_COORDINATOR_ADDRESS` and cluster variables
  (SLURM, Open MPI, Cloud TPU) for whatever the flags leave unset.
  """
  if not (_COORDINATOR.value or _DISTRIBUTED.value or os.environ.get('JAX_COORDINATOR_ADDRESS')):
    return
  # Collectives between CPU devices of different processes (tests, CPU clusters); GPU and
  # TPU backends ignore it. Must be set, like initialize(), before any computation.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
  )


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
  """absl's parser, with config errors reported in one line instead of a traceback.

  Unknown fields or variants and invalid values stop the run here, at parse time.
  """
  try:
    remaining = flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    sys.exit(f'FATAL: {_unknown_config_field(argv) or (lines[-1] if lines else repr(error))}')
  if _CONFIG.value is not None:
    try:  # Values checkable without devices are rejected now, before JAX starts.
      validate_config(_CONFIG.value, num_devices=None)
    except ValueError as error:
      sys.exit(f'FATAL: {error}')
  return remaining


class _QuietLibraryInfo(python_logging.Filter):
  """Drops orbax's per-save INFO chatter so the progress lines stay readable."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    return record.levelno > python_logging.INFO or '/orbax/' not in record.pathname


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraryInfo())
  initialize_distributed()
  logging.info('Config:\n%s', _CONFIG.value)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except PreemptedError as stopped:
    logging.warning('%s', stopped)
    sys.exit(128 + stopped.signum)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
