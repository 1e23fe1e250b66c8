"""What a run records about itself in its workdir: config, code version, software, hardware."""

import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys

import jax

from bn_repro.models import xla_cpu
from bn_repro.training.config_files import REPO_ROOT
from bn_repro.training.workdir import write_atomically

PACKAGES = (
  'jax',
  'jaxlib',
  'flax',
  'optax',
  'orbax-checkpoint',
  'tensorflow-cpu',
  'tensorflow-datasets',
  'ml-collections',
  'numpy',
)


def git_commit() -> str:
  """The commit of the bn_repro checkout, with '-dirty' if it has local changes.

  Changes under `results/` do not count: the scripts that write results change them.
  """
  repo = REPO_ROOT
  try:
    sha = subprocess.run(
      ['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ['git', 'status', '--porcelain', '--untracked-files=no', '--', '.', ':!results'],
      cwd=repo,
      capture_output=True,
      text=True,
      check=True,
    ).stdout
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return sha + ('-dirty' if dirty.strip() else '')


def hardware_description() -> str:
  """E.g. '2 x cpu (x86_64, 2 cores)' or '8 x NVIDIA H100 80GB HBM3'."""
  devices = jax.devices()
  kind = devices[0].device_kind
  if devices[0].platform == 'cpu':
    kind = f'cpu ({platform.machine()}, {os.cpu_count()} cores)'
  return f'{len(devices)} x {kind}'


def pasteable_command() -> str:
  """The command line that started this process, as one can paste it back."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  program = f'python -m {spec.name}' if spec and spec.name else f'python {sys.argv[0]}'
  return ' '.join([program, *(shlex.quote(arg) for arg in sys.argv[1:])])


def collect_run_info() -> dict[str, object]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
    'commit': git_commit(),
    'hardware': hardware_description(),
    'python': sys.version.split()[0],
    'packages': versions,
    'command': pasteable_command(),
    'backend': jax.default_backend(),
    # The exact re-expressions of slow XLA:CPU paths this run used (bn_repro/models/xla_cpu.py).
    'xla_cpu_kernels': {
      'pointwise_convolution_as_matmul': True,
      'stride_phase_max_pool_gradient': True,
      'chunked_kernel_gradient': xla_cpu.chunked_kernel_gradient_enabled(),
    },
  }


def write_run_info(workdir: pathlib.Path, config_json: str) -> None:
  """Writes `config.json` and `run_info.json` into `workdir`, each whole or not at all."""
  workdir.mkdir(parents=True, exist_ok=True)
  write_atomically(workdir / 'config.json', config_json)
  write_atomically(workdir / 'run_info.json', json.dumps(collect_run_info(), indent=2))
