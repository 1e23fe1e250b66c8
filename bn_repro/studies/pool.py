"""The pool of worker processes a study's arms train in (`common.train_arms` with jobs > 1).

Each worker (spawned, pinned to a core, `workers.set_up_worker`) takes one arm at a time
over its own pipe, so no arm waits in a queue a worker could take after the study is
over. The study stops within seconds, with one line naming the arm, and leaves no process
behind, when:
- an arm fails (an error other than divergence, which is a result) or its worker dies:
  the arms not yet started are dropped, the running ones are stopped (SIGTERM: they save
  a checkpoint and stop; SIGKILL after `GRACE_S`);
- an arm is stopped by a signal (its trainer saved a checkpoint): the same;
- the study process gets SIGTERM: the same; if it is killed outright, each worker gets
  SIGTERM from the kernel (PR_SET_PDEATHSIG), saves its checkpoint, finds its pipe
  closed and exits.
Rerunning the study resumes every arm from its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import connection

import ml_collections

from bn_repro.studies import workers
from bn_repro.training.preemption import PreemptedError

# Seconds a stopped worker has to save its checkpoint and exit before it is killed.
GRACE_S = 10.0


class StudyStoppedError(RuntimeError):
  """The study stopped before all its arms trained: one line naming the arm and why."""


@dataclasses.dataclass(frozen=True)
class Task:
  """One arm to train: `train(label, config, workdir)` in a worker."""

  name: str
  label: str
  config: ml_collections.ConfigDict
  workdir: object


# train(label, config, workdir) -> the step it diverged at, or None.
TrainFn = Callable[[str, ml_collections.ConfigDict, object], int | None]


def _worker_main(
  conn: connection.Connection, core: int | None, parent_pid: int, train: TrainFn
) -> None:
  """A worker: trains the arms its pipe hands it, one at a time, and sends back
  ('done', diverged_at), ('preempted', message) or ('failed', message)."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us.
  workers.set_up_worker(core)
  if os.getppid() != parent_pid:  # The study died while this worker started.
    return
  while True:
    try:
      task = conn.recv()
    except (EOFError, OSError):  # The study process is gone.
      return
    if task is None:
      return
    try:
      outcome = ('done', train(task.label, task.config, task.workdir))
    except PreemptedError as error:
      outcome = ('preempted', str(error))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which stops the study.
      outcome = ('failed', f'{type(error).__name__}: {error}'.splitlines()[0])
    try:
      conn.send(outcome)
    except OSError:
      return
    if outcome[0] == 'preempted' or os.getppid() != parent_pid:
      return


@dataclasses.dataclass
class _Worker:
  process: multiprocessing.Process
  conn: connection.Connection
  task: Task | None = None


def run_tasks(
  tasks: list[Task],
  jobs: int,
  train: TrainFn,
  on_done: Callable[[str, int], None] = lambda name, done: None,
) -> dict[str, int | None]:
  """Trains every task in `jobs` workers, starting them in `tasks`' order.

  Returns:
    {name: the step its loss diverged at, or None}.

  Raises:
    StudyStoppedError: an arm failed, was stopped by a signal, or its worker died, or this
      process got SIGTERM; every worker is stopped before it is raised.
  """
  spawn = multiprocessing.get_context('spawn')
  pool = []
  for core in workers.worker_cores(jobs)[: len(tasks)]:
    parent_end, child_end = spawn.Pipe()
    process = spawn.Process(
      target=_worker_main, args=(child_end, core, os.getpid(), train), daemon=True
    )
    process.start()
    child_end.close()
    pool.append(_Worker(process, parent_end))
  waiting, diverged = list(tasks), {}
  with _sigterm_raises():
    try:
      for worker in pool:
        _hand_next(worker, waiting)
      while busy := [w for w in pool if w.task is not None]:
        ready = connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
        for worker in busy:
          if worker.conn in ready or worker.process.sentinel in ready:
            name, diverged_at = _outcome(worker)
            diverged[name] = diverged_at
            on_done(name, len(diverged))
            _hand_next(worker, waiting)
    finally:
      _stop(pool)
  return diverged


def _hand_next(worker: _Worker, waiting: list[Task]) -> None:
  worker.task = waiting.pop(0) if waiting else None
  if worker.task is not None:
    worker.conn.send(worker.task)


def _outcome(worker: _Worker) -> tuple[str, int | None]:
  """The finished arm's name and divergence step; raises StudyStoppedError for anything else."""
  name = worker.task.name
  try:
    kind, value = worker.conn.recv()
  except (EOFError, OSError):
    worker.process.join(1.0)
    raise StudyStoppedError(
      f'Arm {name!r}: its worker process died ({_exit_description(worker.process)}); the study '
      'stopped (rerun it to resume).'
    ) from None
  if kind == 'done':
    return name, value
  if kind == 'preempted':
    raise StudyStoppedError(f'Arm {name!r} was stopped: {value} The study stopped with it.')
  raise StudyStoppedError(f'Arm {name!r} failed: {value}')


def _exit_description(process: multiprocessing.Process) -> str:
  code = process.exitcode
  if code is None:
    return 'still running'
  return f'killed by {signal.Signals(-code).name}' if code < 0 else f'exit status {code}'


def _stop(pool: list[_Worker]) -> None:
  """Idle workers are told to exit; busy ones get SIGTERM (checkpoint and stop), then
  SIGKILL after GRACE_S; every one is joined."""
  for worker in pool:
    if not worker.process.is_alive():
      continue
    if worker.task is None:
      try:
        worker.conn.send(None)
      except OSError:
        worker.process.terminate()
    else:
      worker.process.terminate()
  deadline = time.monotonic() + GRACE_S
  for worker in pool:
    worker.process.join(max(0.0, deadline - time.monotonic()))
    if worker.process.is_alive():
      worker.process.kill()
      worker.process.join()
    worker.conn.close()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
  """While active (in the main thread), SIGTERM to this process raises StudyStoppedError."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def stop(signum: int, frame: object) -> None:
    del frame
    raise StudyStoppedError(
      f'The study was stopped by {signal.Signals(signum).name}; its running arms saved '
      'checkpoints (rerun it to resume).'
    )

  previous = signal.signal(signal.SIGTERM, stop)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)
