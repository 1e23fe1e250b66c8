"""Training speed and ETA for the console."""

import time


class Progress:
  """Training speed for the console: the first logging period (which holds the
  compilation) is left out of the rate and the ETA once a later period has run."""

  def __init__(self, start_step: int, num_steps: int):
    self._num_steps = num_steps
    self._start = (time.perf_counter(), start_step)
    self._steady: tuple[float, int] | None = None

  def update(self, step: int) -> None:
    if self._steady is None:
      self._steady = (time.perf_counter(), step)

  def rate(self, step: int) -> float:
    """Steps per second since the first logging period, or since the start before then."""
    start_time, start_step = (
      self._steady if self._steady and step > self._steady[1] else self._start
    )
    return (step - start_step) / max(time.perf_counter() - start_time, 1e-9)

  def describe(self, step: int) -> str:
    rate = self.rate(step)
    return f'{rate:.3g} steps/s | ETA {format_eta((self._num_steps - step) / max(rate, 1e-9))}'


def format_eta(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'
