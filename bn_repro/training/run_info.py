"""What a run records about itself in its workdir: config, code version, software, hardware."""

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys

import jax

from bn_repro.configuration.files import REPO_ROOT
from bn_repro.nn import xla_cpu
from bn_repro.records import write_atomically

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
  """E.g. '1 x cpu (x86_64, 2 cores, Intel(R) Xeon(R) Processor)' or '8 x NVIDIA H100 80GB
  HBM3'. The CPU model matters: XLA:CPU compiles for the host's instruction set, and results
  can differ in their last digits from one CPU model to another."""
  devices = jax.devices()
  kind = devices[0].device_kind
  if devices[0].platform == 'cpu':
    model = _cpu_model()
    kind = f'cpu ({platform.machine()}, {os.cpu_count()} cores{", " + model if model else ""})'
  return f'{len(devices)} x {kind}'


def _cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo ('' where there is none)."""
  try:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
  except OSError:
    return ''
  return next(
    (line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')), ''
  )


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
    # The exact re-expressions of slow XLA:CPU paths this run used (bn_repro/nn/xla_cpu.py).
    'xla_cpu_kernels': {
      'pointwise_convolution_as_matmul': True,
      'stride_phase_max_pool_gradient': True,
      'chunked_kernel_gradient': xla_cpu.chunked_kernel_gradient_enabled(),
    },
  }


def write_run_info(
  workdir: pathlib.Path, config_json: str, start_step: int = 0, num_steps: int | None = None
) -> None:
  """Writes `config.json` and `run_info.json` into `workdir`, each whole or not at all.

  `run_info.json` holds this start's record (commit, hardware, versions, command) at its
  top level, the history of every start (`starts`: each with its step), and which commit
  trained which steps (`trained_by`: [{'from_step', 'to_step', 'commit'}], the last range
  open-ended while the run goes on); its `commit` names the commit(s) that trained the
  run's steps, not merely the latest start's, so a finished run resumed by newer code keeps
  the commit that produced its numbers. A start at or after `num_steps` trains nothing.
  """
  workdir.mkdir(parents=True, exist_ok=True)
  write_atomically(workdir / 'config.json', config_json)
  path = workdir / 'run_info.json'
  earlier = _read_json(path) if start_step else {}
  info = collect_run_info()
  started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
  start = {
    'step': start_step,
    'time': started,
    'commit': info['commit'],
    'command': info['command'],
  }
  starts = [*earlier.get('starts', []), start]
  # A record without history (an older version's) credits its commit with the steps so far.
  history = earlier.get('trained_by') or (
    [{'from_step': 0, 'to_step': None, 'commit': earlier.get('commit', 'unknown')}]
    if earlier
    else []
  )
  ranges = [r for r in history if r['from_step'] < start_step]
  if ranges and (ranges[-1]['to_step'] is None or ranges[-1]['to_step'] > start_step):
    ranges[-1] = {**ranges[-1], 'to_step': start_step}
  if num_steps is None or start_step < num_steps:
    if ranges and ranges[-1]['commit'] == info['commit']:  # The same code goes on training.
      ranges[-1] = {**ranges[-1], 'to_step': None}
    else:
      ranges.append({'from_step': start_step, 'to_step': None, 'commit': info['commit']})
  info |= {'commit': trained_by_text(ranges), 'starts': starts, 'trained_by': ranges}
  write_atomically(path, json.dumps(info, indent=2))


def trained_by_text(ranges: list[dict]) -> str:
  """'SHA' when one commit trained every step, else 'SHA1 (steps 0-5000), SHA2 (5000-)'."""
  commits = {r['commit'] for r in ranges}
  if len(commits) <= 1:
    return next(iter(commits), 'unknown')
  return ', '.join(
    f'{r["commit"]} (steps {r["from_step"]}-{"" if r["to_step"] is None else r["to_step"]})'
    for r in ranges
  )


def _read_json(path: pathlib.Path) -> dict:
  """The record a previous start wrote; {} if there is none or it is unreadable (written
  by a version that kept no history, or torn)."""
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError):
    return {}
