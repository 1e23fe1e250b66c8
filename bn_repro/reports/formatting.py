"""What every table and summary file shares: cells, and the line naming the data."""

from collections.abc import Sequence

import numpy as np

from bn_repro.data.transforms import PREPROCESSORS


def fmt(value: object, pattern: str = '{:.4f}') -> str:
  """A table cell: '—' for a missing value."""
  return '—' if value is None else pattern.format(value)


def fmt_seeds(values: Sequence[float] | None, pattern: str = '{:.4f}') -> str:
  """A table cell of per-seed values: 'mean (min to max)', the value for one seed, '—' for
  none."""
  if not values:
    return '—'
  if len(values) == 1:
    return pattern.format(values[0])
  low, high = (pattern.format(v) for v in (min(values), max(values)))
  return f'{pattern.format(float(np.mean(values)))} ({low} to {high})'


def seed_summary(values: Sequence[float] | None) -> dict[str, object] | None:
  """The summary.json entry of a number measured per seed: {'mean', 'min', 'max',
  'per_seed'}; None when it was not measured."""
  if not values:
    return None
  values = [float(v) for v in values]
  return {
    'mean': float(np.mean(values)),
    'min': min(values),
    'max': max(values),
    'per_seed': values,
  }


def mnist_data_description(preprocess: str) -> str:
  """The data line of a summary, naming the preprocessing the runs used."""
  return f'real MNIST (60k train, 10k test), {PREPROCESSORS.get(preprocess, preprocess)}'


MNIST_DATA = mnist_data_description('binary')  # configs/mnist.py's input.
FASHION_DATA = 'real Fashion-MNIST (60k train, 10k test), the small BN-Inception proxy'
