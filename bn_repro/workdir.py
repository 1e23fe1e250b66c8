"""Guarding a workdir: a run resumes only under the config that started it.

Fields that schedule a run rather than define it (how long, how often to log,
evaluate or save, on how many devices, where the data lies) may change on resume;
any other difference is refused, naming each field, unless the caller overwrites.
"""

import json
import pathlib
import shutil

# Dotted names of fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = frozenset(
  {
    'num_steps',
    'log_every',
    'eval_every',
    'checkpoint_every',
    'keep_checkpoints',
    'steps_per_call',
    'scan_unroll',
    'num_devices',
    'input.tfds_data_dir',
    'input.download_cache_dir',
    'eval.batch_size',
  }
)


def _flatten(tree: dict, prefix: str = '') -> dict[str, object]:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def config_differences(saved: dict, current: dict) -> list[str]:
  """'field: saved -> current' for every differing field outside RESUMABLE_CHANGES."""
  before, after = _flatten(saved), _flatten(current)
  return [
    f'{name}: {before.get(name)!r} -> {after.get(name)!r}'
    for name in sorted(set(before) | set(after))
    if name not in RESUMABLE_CHANGES and before.get(name) != after.get(name)
  ]


def prepare_workdir(workdir: pathlib.Path, config_json: str, overwrite: bool) -> None:
  """Refuses a workdir holding another experiment's checkpoints, or clears it if asked.

  Raises:
    ValueError: `workdir` has checkpoints of a run with a different config.
  """
  checkpoints = workdir / 'checkpoints'
  if overwrite:
    shutil.rmtree(checkpoints, ignore_errors=True)
    for events in workdir.glob('events.out.tfevents.*'):
      events.unlink()
    return
  saved_config = workdir / 'config.json'
  if not (checkpoints.exists() and saved_config.exists()):
    return
  differences = config_differences(json.loads(saved_config.read_text()), json.loads(config_json))
  if differences:
    raise ValueError(
      f'{workdir} holds a run with a different config ('
      + '; '.join(differences)
      + '). Resume it with its own config, choose another --workdir, or pass --overwrite '
      'to delete its checkpoints and logs and start over.'
    )
