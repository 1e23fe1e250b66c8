"""Test setup: 8 fake CPU devices, a persistent compilation cache, quiet TensorFlow.

The environment variables must be set before jax is first imported.
"""

import os
import pathlib

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402

jax.config.update(
  'jax_compilation_cache_dir', str(pathlib.Path(__file__).resolve().parent.parent / '.jax_cache')
)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
