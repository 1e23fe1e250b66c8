"""Test setup: 8 fake CPU devices, fast compiles and a persistent cache, quiet TensorFlow.

The environment variables must be set before jax is first imported.
"""

import os
import pathlib

# 8 fake CPU devices; the lowest backend optimization halves compile times, which dominate
# these few-step tests (every comparison in the suite runs under the same flags).
TEST_XLA_FLAGS = '--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0'
os.environ.setdefault('XLA_FLAGS', TEST_XLA_FLAGS)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# The suite's compilation cache, also for the `python -m bn_repro.main` subprocesses.
JAX_CACHE = str(pathlib.Path(__file__).resolve().parent.parent / '.jax_cache')
os.environ.setdefault('BN_REPRO_COMPILATION_CACHE', JAX_CACHE)

import jax  # noqa: E402

jax.config.update('jax_compilation_cache_dir', JAX_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The end-to-end tier (`scripts/test.sh` runs it after the unit tier; `--fast` skips it):
# modules whose tests train in subprocesses, kill and resume runs, start servers or run
# studies. Everything else is the unit tier.
END_TO_END_MODULES = frozenset(
  {
    'test_device_check',
    'test_ensemble',
    'test_first_hour',
    'test_machinery',
    'test_multiprocess',
    'test_preemption',
    'test_run_safety',
    'test_setup_and_fetch',
    'test_studies',
    'test_study_smoke',
    'test_tensorboard_server',
    'test_train',
  }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  for item in items:
    if item.module.__name__.rsplit('.', 1)[-1] in END_TO_END_MODULES:
      item.add_marker(pytest.mark.e2e)


def store_synthetic_mnist(data_dir: pathlib.Path) -> pathlib.Path:
  """Stores small SYNTHETIC data (test-only) as TFDS `mnist` 3.0.1 in `data_dir`."""
  from bn_repro.data import offline

  rng = np.random.default_rng(0)
  splits = {
    'train': (rng.integers(0, 256, (300, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 300)),
    'test': (rng.integers(0, 256, (50, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 50)),
  }
  offline.store_as_tfds('mnist', '3.0.1', splits, 10, data_dir)
  return data_dir


@pytest.fixture
def synthetic_mnist_tfds(tmp_path):
  """A TFDS data dir holding small SYNTHETIC data (test-only) as `mnist` 3.0.1.

  For tests that train in a subprocess, where tfds.testing.mock_data cannot reach.
  """
  return store_synthetic_mnist(tmp_path / 'tfds')


@pytest.fixture
def mock_mnist(tmp_path):
  """tfds.testing.mock_data (SYNTHETIC MNIST-shaped data, 240 examples) for in-process runs."""
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=240, data_dir=str(tmp_path / 'no_real_data')):
    yield
