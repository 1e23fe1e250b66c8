"""The training command's command line: its flags, and parsing that stops on a bad config
in one line (a missing file, an unknown field or variant, an invalid value, flags that
contradict each other) before JAX starts; `--list`; joining a `jax.distributed` job.

`bn_repro.main` runs `app.run(main, flags_parser=parse_flags)` and reads the parsed values
from here (`CONFIG.value`, `WORKDIR.value`, `OVERWRITE.value`, `config_defaults()`).
"""

import json
import os
import pathlib
import sys

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from bn_repro.configuration import docs
from bn_repro.configuration.checks import validate_config
from bn_repro.configuration.files import REPO_ROOT, load_config

CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:variant].', lock_config=True
)
WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
OVERWRITE = flags.DEFINE_bool(
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


def _joins_a_job() -> bool:
  return bool(_COORDINATOR.value or _DISTRIBUTED.value or os.environ.get('JAX_COORDINATOR_ADDRESS'))


def initialize_distributed() -> None:
  """Joins a multi-process JAX job when the flags or JAX's environment variables ask for one.

  `jax.distributed.initialize` reads `JAX_COORDINATOR_ADDRESS` and cluster variables
  (SLURM, Open MPI, Cloud TPU) for whatever the flags leave unset.
  """
  if not _joins_a_job():
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


def _config_spec(argv: list[str]) -> tuple[int, str] | None:
  """(index, 'PATH[:ARG]') of the `--config` argument in `argv`, or None."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return i, arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return i + 1, argv[i + 1]
  return None


def _resolve_config(argv: list[str]) -> list[str]:
  """Loads the `--config` file once, so a bad path or variant ends in one line naming it.

  Returns `argv` with the config path made absolute (a relative path is looked up in the
  working directory, then the repository, as `load_config` does), and keeps the file's
  own values as `_DEFAULTS` for the resume guard.
  """
  global _DEFAULTS
  found = _config_spec(argv)
  if found is None:
    return argv
  index, spec = found
  try:
    _DEFAULTS = load_config(spec)
  except (FileNotFoundError, ValueError) as error:
    sys.exit(f'FATAL: --config={spec}: {error}')
  path_text, colon, arg = spec.partition(':')
  path = pathlib.Path(path_text)
  if not path.is_absolute() and not path.exists():
    path = REPO_ROOT / path
  resolved = f'{path.resolve()}{colon}{arg}'
  argv = list(argv)
  argv[index] = f'--config={resolved}' if argv[index].startswith('--config=') else resolved
  return argv


_DEFAULTS: ml_collections.ConfigDict | None = None  # The --config file's own values.


def _print_list(argv: list[str]) -> None:
  """`--list`: the config files and variants, or with --config its fields (overrides
  applied), each with the comment written beside it in the config's source."""
  found = _config_spec(argv)
  if found is None:
    print(docs.describe_config_files())
    return
  flags.FLAGS([a for a in argv if a != '--list'] + ['--workdir=unused'])
  path = pathlib.Path(found[1].partition(':')[0])
  print(docs.describe_fields(CONFIG.value, path))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with config errors reported in one line instead of a traceback.

  A missing config file, unknown fields or variants, invalid values and flags that
  contradict each other stop the run here, at parse time.
  """
  argv = _resolve_config(argv)
  if '--list' in argv:
    _print_list(argv)
    sys.exit(0)
  try:
    remaining = flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, OSError) as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    sys.exit(f'FATAL: {_unknown_config_field(argv) or (lines[-1] if lines else repr(error))}')
  if CONFIG.value is not None:
    try:  # Values checkable without devices are rejected now, before JAX starts.
      validate_config(CONFIG.value, num_devices=None)
    except ValueError as error:
      sys.exit(f'FATAL: {error}')
  if (_NUM_PROCESSES.value is not None or _PROCESS_ID.value is not None) and not _joins_a_job():
    sys.exit(
      'FATAL: --num_processes/--process_id need --coordinator_address=HOST:PORT (or '
      '--distributed, or JAX_COORDINATOR_ADDRESS); without one each process would train '
      'alone into the same workdir.'
    )
  return remaining


def config_defaults() -> dict | None:
  """The `--config` file's own values (before overrides), for the resume guard."""
  return None if _DEFAULTS is None else json.loads(_DEFAULTS.to_json_best_effort())
