"""What every table and summary file shares: cells, and the line naming the data."""

from bn_repro.data.transforms import PREPROCESSORS


def fmt(value: object, pattern: str = '{:.4f}') -> str:
  """A table cell: '—' for a missing value."""
  return '—' if value is None else pattern.format(value)


def mnist_data_description(preprocess: str) -> str:
  """The data line of a summary, naming the preprocessing the runs used."""
  return f'real MNIST (60k train, 10k test), {PREPROCESSORS.get(preprocess, preprocess)}'


MNIST_DATA = mnist_data_description('binary')  # configs/mnist.py's input.
FASHION_DATA = 'real Fashion-MNIST (60k train, 10k test), the small BN-Inception proxy'
