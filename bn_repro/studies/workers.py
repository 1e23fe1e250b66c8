"""The worker processes a study's arms train in (`common.train_arms`): their cores, their
setup, and the order the arms start in.
"""

import collections
import ctypes
import os
import signal
import sys

import ml_collections

from bn_repro.configuration.files import override
from bn_repro.training import optim
from bn_repro.training.compilation_cache import enable_compilation_cache


def compile_once_order(arms: dict[str, ml_collections.ConfigDict]) -> list[str]:
  """The arms' names in the order `train_arms` starts them: the first arm of every program
  (`_program`) before any program's second, and so on, keeping `arms`' order within each
  round.

  Arms that differ only by seed, or by a constant learning rate, run one compiled program.
  Started side by side they would both miss the compilation cache and both compile (30-45
  s each for the Inception proxy on one core); started in this order, the later ones find
  it compiled.
  """
  started = collections.Counter()  # program -> arms of it placed so far
  rounds = {}
  for name, config in arms.items():
    program = _program(config)
    rounds[name] = started[program]
    started[program] += 1
  return sorted(arms, key=rounds.__getitem__)  # Stable: `arms`' order within a round.


def _program(config: ml_collections.ConfigDict) -> str:
  """The config up to what its compiled program takes as data: the seed and a constant
  learning rate (`optim.rate_is_state`)."""
  data = {'seed': 0}
  if optim.rate_is_state(config):
    data |= {'optimizer__learning_rate': 1.0, 'optimizer__lr_multiple': 1.0}
  return override(config, **data).to_json_best_effort(sort_keys=True)


# One core per program: XLA:CPU's second thread adds little to an MLP step, a second
# program on the other core nearly doubles the steps per second (measured in
# benchmarks/README.md). scripts/common.sh sets the same flags.
SINGLE_THREADED_XLA_FLAGS = '--xla_cpu_multi_thread_eigen=false'


def worker_cores(jobs: int) -> list[int | None]:
  """The core each of `jobs` workers is pinned to, or None (not pinned) for every worker
  where the platform cannot pin or there are fewer cores than workers.

  Unpinned, each process's helper threads and host work interrupt the other's XLA program
  (pinned against unpinned on the 2-core machine: benchmarks/README.md).
  """
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
  if len(cores) < jobs:
    return [None] * jobs
  return cores[:jobs]


def set_up_worker(core: int | None) -> None:
  """Worker setup: its own core (one of `worker_cores`; None: not pinned); the compilation
  cache; (Linux) SIGTERM when the study process dies, so a killed study leaves no orphan
  training: the trainer checkpoints and stops, resumable (`bn_repro.studies.pool`)."""
  if core is not None:
    os.sched_setaffinity(0, {core})
  enable_compilation_cache()
  if sys.platform.startswith('linux'):
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1
