"""No silent stretch over 20 s: a line after HEARTBEAT_S without one while a long step runs.

A first compilation of BN-Inception's step, Flax's op-by-op `init` of it, an evaluation on
the whole test set or a dataset's conversion to TFDS print nothing of their own, for a
minute or more on a CPU; a researcher cannot tell that from a hang.

    with heartbeat('compiling the training step'):
      ...  # "... still compiling the training step (15 s)" after 15 s without a log line
           # ("... compiling the training step" where the silence began before the block).

Regions nest: the innermost one names what is going on. One daemon thread watches the
absl log (a filter on its logger notes the time of every record) and, while any region
is open, logs a line once HEARTBEAT_S have passed since the last one; a process whose
own lines come often (an MNIST run logs every evaluation) gets no extra line.
"""

import contextlib
import threading
import time
from collections.abc import Iterator

from absl import logging

HEARTBEAT_S = 15.0
_POLL_S = 0.5


class _Watcher:
  """The open regions `[(what, started)]` and the time of the last log record."""

  def __init__(self, every_s: float):
    self.every_s = every_s
    self.regions: list[tuple[str, float]] = []
    self.last_output = time.monotonic()
    self.lock = threading.Lock()

  def filter(self, record: object) -> bool:  # A logging filter: notes, never drops.
    del record
    self.last_output = time.monotonic()
    return True

  def watch(self) -> None:
    while True:
      time.sleep(min(_POLL_S, self.every_s / 4))
      with self.lock:
        now = time.monotonic()
        if not self.regions or now - self.last_output < self.every_s:
          continue
        what, started = self.regions[-1]
        self.last_output = now
      if now - started < self.every_s:  # Silence came before this step: name it.
        logging.info('... %s', what)
      else:
        logging.info('... still %s (%d s)', what, round(now - started))


_watcher: _Watcher | None = None
_start_lock = threading.Lock()


def _get_watcher(every_s: float) -> _Watcher:
  global _watcher
  with _start_lock:
    if _watcher is None:
      _watcher = _Watcher(every_s)
      logging.get_absl_logger().addFilter(_watcher)
      threading.Thread(target=_watcher.watch, name='heartbeat', daemon=True).start()
    _watcher.every_s = every_s
  return _watcher


@contextlib.contextmanager
def heartbeat(what: str, every_s: float = HEARTBEAT_S) -> Iterator[None]:
  """Within the block, logs `... still WHAT (N s since the block began)` whenever `every_s`
  seconds pass without a log line (module docstring)."""
  watcher = _get_watcher(every_s)
  region = (what, time.monotonic())
  with watcher.lock:
    watcher.regions.append(region)
  try:
    yield
  finally:
    with watcher.lock:
      watcher.regions.remove(region)
