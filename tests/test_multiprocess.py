"""Two processes on 127.0.0.1 form one JAX job (jax.distributed, CPU collectives over gloo).

Each process has 2 CPU devices; together they train a few MNIST steps on small
SYNTHETIC data (test-only) with BN statistics over the global batch. The processes
must agree on the parameters, which must equal a single-process 4-device run's.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from bn_repro.configuration.files import REPO_ROOT, load_config, override
from bn_repro.training import train
from bn_repro.training.state import create_train_state

TIMEOUT_S = 300  # Generous: CI machines may be loaded.
FINGERPRINT = re.compile(r'parameter fingerprint \(sum of \|params\|\) (\S+)')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch_job(workdir, data_dir, *extra):
  """Starts the 2 processes of one job (2 CPU devices each); returns the Popen objects."""
  port = _free_port()
  flags = '--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0'
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu')
  return [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'bn_repro.main',
        '--config=configs/mnist.py:bn,smoke',
        f'--workdir={workdir}',
        f'--config.input.tfds_data_dir={data_dir}',
        f'--coordinator_address=127.0.0.1:{port}',
        '--num_processes=2',
        f'--process_id={i}',
        *extra,
      ],
      cwd=REPO_ROOT,
      env=env,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]


def _finish(processes, timeout_s=TIMEOUT_S):
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=timeout_s)[1])
  finally:
    for process in processes:
      process.kill()
  return outputs


def test_two_process_job_matches_single_process(tmp_path, synthetic_mnist_tfds):
  processes = _launch_job(tmp_path / 'job', synthetic_mnist_tfds, '--config.num_steps=10')
  outputs = _finish(processes)
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 0, output[-3000:]
  fingerprints = [float(FINGERPRINT.search(output)[1]) for output in outputs]
  assert fingerprints[0] == fingerprints[1]  # The processes agree.

  config = override(
    load_config('configs/mnist.py:bn,smoke'),
    num_devices=4,
    num_steps=10,
    input__tfds_data_dir=str(synthetic_mnist_tfds),
  )
  train.train_and_evaluate(config, tmp_path / 'single')
  state_fingerprint = _fingerprint_of_last_run(tmp_path / 'single', config)
  assert fingerprints[0] == pytest.approx(state_fingerprint, rel=1e-5)


def _fingerprint_of_last_run(workdir, config):
  import jax
  import numpy as np

  from bn_repro import models
  from bn_repro.training.checkpointing import Checkpointer

  model = models.create_model(config.model, 10, axis_name='batch')
  state = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  state = Checkpointer(workdir / 'checkpoints', 2).restore_latest(state)
  return float(sum(np.sum(np.abs(np.asarray(x))) for x in jax.tree.leaves(state.params)))


def test_overwrite_with_another_config_in_a_two_process_job(tmp_path, synthetic_mnist_tfds):
  """Process 0 clears the workdir before any process checks the saved config."""
  workdir = tmp_path / 'job'
  for extra in ((), ('--config.model.norm.momentum=0.9', '--overwrite')):
    processes = _launch_job(workdir, synthetic_mnist_tfds, '--config.num_steps=10', *extra)
    outputs = _finish(processes)
    for process, output in zip(processes, outputs, strict=True):
      assert process.returncode == 0, output[-3000:]
  assert json.loads((workdir / 'config.json').read_text())['model']['norm']['momentum'] == 0.9


def test_a_signal_to_one_process_stops_the_whole_job_at_one_step(tmp_path, synthetic_mnist_tfds):
  """SIGTERM reaches process 1 only: both agree on the stop, save one checkpoint, exit."""
  from bn_repro.training.tensorboard import read_scalars

  workdir = tmp_path / 'job'
  processes = _launch_job(workdir, synthetic_mnist_tfds, '--config.num_steps=10000000')
  deadline = time.time() + TIMEOUT_S
  while time.time() < deadline and not (
    workdir.exists() and read_scalars(workdir).get('train/loss')
  ):
    time.sleep(0.5)
  processes[1].send_signal(signal.SIGTERM)
  outputs = _finish(processes)
  steps = []
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    steps.append(int(re.search(r'Stopped by SIGTERM at step (\d+)', output)[1]))
  assert steps[0] == steps[1]
  saved = [int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit()]
  assert steps[0] in saved
