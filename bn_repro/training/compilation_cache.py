"""JAX's persistent compilation cache, for the command-line entry points.

Compiling the small BN-Inception's training step and its `init` takes one to two
minutes on 2 CPU cores, every run; the cache keeps compiled programs on disk, keyed by
the program, the JAX version and the backend, so the next run of the same config (the
next seed, a resume, a study's next arm) starts in seconds.
"""

import os
import pathlib

import jax

CACHE_ENV = 'BN_REPRO_COMPILATION_CACHE'


def enable_compilation_cache() -> None:
  """Caches programs that took over a second to compile in $BN_REPRO_COMPILATION_CACHE
  (default ~/.cache/bn_repro/jax); set it to '' to switch the cache off."""
  directory = os.environ.get(CACHE_ENV, str(pathlib.Path.home() / '.cache/bn_repro/jax'))
  if not directory:
    return
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
