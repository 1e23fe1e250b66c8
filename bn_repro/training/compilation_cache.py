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
  """Caches every compiled program in $BN_REPRO_COMPILATION_CACHE
  (default ~/.cache/bn_repro/jax); set it to '' to switch the cache off."""
  directory = os.environ.get(CACHE_ENV, str(pathlib.Path.home() / '.cache/bn_repro/jax'))
  if not directory:
    return
  jax.config.update('jax_compilation_cache_dir', directory)
  # All of them, the small ones too: Flax's `init` runs op by op, and the ~400 programs of
  # the small BN-Inception's init took 24 s to compile, every run (each well under a second).
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
