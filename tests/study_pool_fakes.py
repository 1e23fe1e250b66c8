"""Fake arms for the study pool's tests (`tests/test_machinery.py`): importable by the
spawned workers. An arm writes its process id into its workdir (a file), then behaves as
its config says, stopping on SIGTERM/SIGINT as the trainer does (a checkpoint, then
PreemptedError)."""

import os
import pathlib
import time

from bn_repro.training.preemption import PreemptedError, StopRequest
from bn_repro.training.workdir import WorkdirError


def fake_train(label: str, config: dict, workdir: pathlib.Path) -> int | None:
  """config: {'behaviour': 'train' | 'fail' | 'diverge' | 'affinity', 'seconds': how long it
  trains}. 'affinity' writes the worker's cores after its process id."""
  del label
  cores = ' ' + ' '.join(map(str, sorted(os.sched_getaffinity(0))))
  pathlib.Path(workdir).write_text(
    str(os.getpid()) + (cores if config['behaviour'] == 'affinity' else '')
  )
  if config['behaviour'] == 'affinity':
    return None
  if config['behaviour'] == 'fail':
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory; choose another path.')
  if config['behaviour'] == 'diverge':
    return 7
  with StopRequest() as stop:
    deadline = time.monotonic() + config['seconds']
    step = 0
    while time.monotonic() < deadline:
      if stop.requested:
        raise PreemptedError(step, stop.requested)
      time.sleep(0.02)
      step += 1
  return None


def run_study(workdir: str, jobs: int) -> None:
  """A study of four long arms (the process the kill test kills)."""
  from bn_repro.studies import pool

  tasks = [
    pool.Task(f'arm{i}', f'arm{i}', {'behaviour': 'train', 'seconds': 120}, f'{workdir}/arm{i}')
    for i in range(4)
  ]
  pool.run_tasks(tasks, jobs, fake_train)


if __name__ == '__main__':
  import sys

  run_study(sys.argv[1], int(sys.argv[2]))
