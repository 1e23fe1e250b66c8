"""A run's workdir: one live trainer at a time, resumed only under the config that started it.

- `WorkdirLock`: an exclusive `fcntl.flock` on `WORKDIR/lock`, taken at start by process 0
  of a job and held until it ends. The kernel drops the lock when its holder dies (exit,
  crash, SIGKILL), so a killed run never leaves a stale lock; a second launch while the
  holder lives is refused with one line naming it (host, PID, start time).
- `check_config`: the config guard. Fields that schedule a run rather than define it
  (how long, how often to log, evaluate or save, on how many devices, where the data
  lies) and fields that only change what is evaluated or logged may change on resume;
  the changes are recorded in `WORKDIR/config_changes.jsonl`. Any other difference is
  refused, naming each field, unless the caller overwrites, which deletes everything a
  run writes (`RUN_OUTPUTS`).
"""

import datetime
import fcntl
import json
import os
import pathlib
import shutil
import socket

from bn_repro import records
from bn_repro.analysis import unit_drift

# Dotted names (or prefixes ending in '.') of fields that may differ on resume: scheduling...
SCHEDULING_FIELDS = frozenset(
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
  }
)
# ...and evaluation or logging only (what is measured, not what is trained).
EVALUATION_FIELDS = frozenset({'eval.', 'population_stats.', 'log_param_norms'})
RESUMABLE_CHANGES = SCHEDULING_FIELDS | EVALUATION_FIELDS

# Everything a run writes into its workdir (deleted by --overwrite), besides the lock.
RUN_OUTPUTS = (
  'checkpoints',
  'best_checkpoint',
  'population_checkpoint',
  'config.json',
  'run_info.json',
  'config_changes.jsonl',
  unit_drift.RECORDS_FILE,
  records.METRICS_FILE,
  '.*.rewrite',
  'events.out.tfevents.*',
  '.rewrite.*',
  'seed[0-9]*',  # The per-seed TensorBoard runs of a multi-seed run (training/dashboards.py).
)
LOCK_FILE = 'lock'


class WorkdirError(RuntimeError):
  """An expected problem with `--workdir` (busy, not a directory, another config)."""


def _matches(name: str, fields: frozenset[str]) -> bool:
  """Whether dotted `name` is one of `fields` or under one of its prefixes ending in '.'."""
  return any(name == field or (field.endswith('.') and name.startswith(field)) for field in fields)


def _flatten(tree: dict, prefix: str = '') -> dict[str, object]:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


_MISSING = object()


def config_changes(
  saved: dict, current: dict, defaults: dict | None = None
) -> tuple[list[str], list[str]]:
  """Splits the differences between a saved and a current config (nested dicts).

  A field absent from `saved` (added to the code after the run started) counts as
  unchanged when its current value equals its value in `defaults` (the config file's
  own, before command-line overrides), or when no `defaults` are given.

  Returns:
    (refused, allowed): 'field: saved -> current' for the differences that change the
    experiment, and for those in RESUMABLE_CHANGES.
  """
  before, after = _flatten(saved), _flatten(current)
  known_defaults = _flatten(defaults) if defaults is not None else None
  refused, allowed = [], []
  for name in sorted(set(before) | set(after)):
    old, new = before.get(name, _MISSING), after.get(name, _MISSING)
    if old == new:
      continue
    if old is _MISSING and (known_defaults is None or known_defaults.get(name, _MISSING) == new):
      continue
    text = f'{name}: {"(absent)" if old is _MISSING else repr(old)} -> ' + (
      '(absent)' if new is _MISSING else repr(new)
    )
    (allowed if _matches(name, RESUMABLE_CHANGES) else refused).append(text)
  return refused, allowed


def ensure_directory(workdir: pathlib.Path) -> None:
  """Creates `workdir`; a clear WorkdirError if the path is a file."""
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory; choose another path.')
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise WorkdirError(_unwritable(workdir, error)) from None


def _unwritable(workdir: pathlib.Path, error: OSError) -> str:
  return (
    f'--workdir={workdir} cannot be written ({error.strerror or error}); choose a folder on '
    'a writable disk.'
  )


class WorkdirLock:
  """Exclusive ownership of a workdir for the life of this process (see the module docstring).

  Usable as a context manager; `acquire` raises WorkdirError naming the live holder.
  """

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / LOCK_FILE
    self._file = None

  def acquire(self) -> None:
    ensure_directory(self.path.parent)
    try:
      lock_file = open(self.path, 'a+')  # noqa: SIM115 - held open for the lock's lifetime.
    except OSError as error:
      raise WorkdirError(_unwritable(self.path.parent, error)) from None
    try:
      fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock_file.seek(0)
      holder = lock_file.read().strip() or 'another process (it has not yet written its name)'
      lock_file.close()
      raise WorkdirError(
        f'--workdir={self.path.parent} is in use by {holder}. Wait for that run to end or '
        'stop it (it resumes from its checkpoint), or choose another --workdir.'
      ) from None
    except OSError as error:
      lock_file.close()
      raise WorkdirError(
        f'Cannot lock {self.path}: its filesystem does not support file locks '
        f'({error.strerror}); choose a --workdir on a local disk.'
      ) from None
    started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f'host {socket.gethostname()}, PID {os.getpid()}, started {started}\n')
    lock_file.flush()
    self._file = lock_file

  def release(self) -> None:
    if self._file is not None:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
      self._file.close()
      self._file = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.release()


def clear_run_outputs(workdir: pathlib.Path) -> None:
  """Deletes everything a run writes in `workdir` (RUN_OUTPUTS); keeps the lock."""
  for pattern in RUN_OUTPUTS:
    for path in workdir.glob(pattern):
      if path.is_dir():
        shutil.rmtree(path)
      else:
        path.unlink(missing_ok=True)


def check_config(
  workdir: pathlib.Path, config_json: str, defaults: dict | None = None
) -> list[str]:
  """Refuses a workdir holding checkpoints of a run with another config.

  Args:
    workdir: the run's folder.
    config_json: the current config.
    defaults: the config file's own values, for fields the saved config lacks.

  Returns:
    The allowed changes ('field: saved -> current'); empty for a new run.

  Raises:
    WorkdirError: `workdir` has checkpoints of a run with a different config, or its
      saved config is unreadable.
  """
  saved_config = workdir / 'config.json'
  if not ((workdir / 'checkpoints').exists() and saved_config.exists()):
    return []
  try:
    saved = json.loads(saved_config.read_text())
  except json.JSONDecodeError as error:
    raise WorkdirError(
      f'{saved_config} is not valid JSON ({error}); restore it, or pass --overwrite to start over.'
    ) from None
  refused, allowed = config_changes(saved, json.loads(config_json), defaults)
  if refused:
    raise WorkdirError(
      f'{workdir} holds a run with a different config ('
      + '; '.join(refused)
      + '). Resume it with its own config, choose another --workdir, or pass --overwrite '
      'to delete its checkpoints and logs and start over.'
    )
  return allowed


# Fields that decide when a run evaluates: a finished run cannot evaluate its past again.
EVALUATION_SCHEDULE_FIELDS = ('eval_every', 'eval.extra_steps')


def reevaluate_finished_run(workdir: pathlib.Path, changes: list[str]) -> bool:
  """Whether a finished run resumed with the allowed `changes` ('field: saved -> current')
  must evaluate its final step again: yes when what is evaluated or logged changed.

  Raises:
    WorkdirError: a change of when the run evaluates, which past steps cannot honour,
      naming the field.
  """
  fields = [change.split(':', 1)[0] for change in changes]
  if schedule := [f for f in fields if f in EVALUATION_SCHEDULE_FIELDS]:
    raise WorkdirError(
      f'{workdir} holds a finished run; {", ".join(schedule)} changed '
      f'({"; ".join(c for c in changes if c.split(":", 1)[0] in schedule)}), but its past '
      'steps cannot be evaluated again. Keep its evaluation schedule, train into another '
      'workdir, or start this one again with --overwrite.'
    )
  return any(_matches(field, EVALUATION_FIELDS) for field in fields)


def record_config_changes(workdir: pathlib.Path, changes: list[str], resume_step: int) -> None:
  """Appends the allowed changes of a resume to `WORKDIR/config_changes.jsonl`."""
  if not changes:
    return
  record = {
    'time': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
    'resume_step': resume_step,
    'changes': changes,
  }
  with open(workdir / 'config_changes.jsonl', 'a') as f:
    f.write(json.dumps(record) + '\n')
