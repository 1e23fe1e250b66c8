"""SIGTERM and SIGINT as a request to stop at the next step boundary, with a checkpoint.

Cluster schedulers preempt jobs with SIGTERM and a grace period; the training
loop checks `requested` between host calls, saves, and raises `PreemptedError`.
"""

import signal
import threading
import types


class PreemptedError(RuntimeError):
  """Training stopped on a signal after saving a checkpoint at `step`."""

  def __init__(self, step: int, signum: int):
    super().__init__(
      f'Stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved. '
      'Run the same command again to resume.'
    )
    self.step, self.signum = step, signum

  def __reduce__(self) -> tuple:  # Pickled (to a study's parent process) with its arguments.
    return type(self), (self.step, self.signum)


class StopRequest:
  """Context manager: while active, SIGTERM/SIGINT set `requested` (the signal number)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested: int | None = None
    self._previous: dict[int, object] = {}

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    self.requested = signum

  def __enter__(self) -> 'StopRequest':
    if threading.current_thread() is threading.main_thread():  # Handlers need the main thread.
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info: object) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
