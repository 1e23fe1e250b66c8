"""Fault injection for the kill-and-resume tests: SIGKILL this process at a named point.

A run started with the environment variable `BN_REPRO_KILL_AT=POINT@STEP` kills itself
with SIGKILL (no handler, no cleanup: what an OOM killer or a lost machine does) the
first time the training loop reaches POINT at a step >= STEP. Unset, `kill_point` is a
dictionary lookup. Points (`bn_repro.training.train`):
  'train_chunk'      a training chunk ended at the step; nothing of it logged or saved.
  'evaluation'       mid-evaluation: the metrics are computed, not yet logged.
  'best_checkpoint'  right after the best-accuracy checkpoint of the step was saved.
  'checkpoint'       right after the periodic checkpoint of the step was saved.
"""

import os
import signal

ENV_VAR = 'BN_REPRO_KILL_AT'
POINTS = ('train_chunk', 'evaluation', 'best_checkpoint', 'checkpoint')


def kill_point(point: str, step: int) -> None:
  """SIGKILLs this process if `BN_REPRO_KILL_AT` names `point` at or before `step`."""
  request = os.environ.get(ENV_VAR)
  if not request:
    return
  name, _, at = request.partition('@')
  if name not in POINTS:
    raise ValueError(f'{ENV_VAR}={request!r}: unknown point {name!r}; expected one of {POINTS}.')
  if name == point and step >= int(at):
    os.kill(os.getpid(), signal.SIGKILL)
