"""Two processes on 127.0.0.1 form one JAX job (jax.distributed, CPU collectives over gloo).

Each process has 2 CPU devices; together they train a few MNIST steps on small
SYNTHETIC data (test-only) with BN statistics over the global batch. The processes
must agree on the parameters, which must equal a single-process 4-device run's.
"""

import os
import re
import socket
import subprocess
import sys

import pytest

from bn_repro import train
from bn_repro.config_files import REPO_ROOT, load_config, override

FINGERPRINT = re.compile(r'parameter fingerprint \(sum of \|params\|\) (\S+)')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_process_job_matches_single_process(tmp_path, synthetic_mnist_tfds):
  port = _free_port()
  flags = '--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0'
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu')
  processes = [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'bn_repro.main',
        '--config=configs/mnist.py:bn,smoke',
        f'--workdir={tmp_path / "job"}',
        f'--config.input.tfds_data_dir={synthetic_mnist_tfds}',
        '--config.num_steps=10',
        f'--coordinator_address=127.0.0.1:{port}',
        '--num_processes=2',
        f'--process_id={i}',
      ],
      cwd=REPO_ROOT,
      env=env,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=90)[1])
  finally:
    for process in processes:
      process.kill()
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
  from bn_repro.checkpointing import Checkpointer

  model = models.create_model(config.model, 10, axis_name='batch')
  state = train.create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  state = Checkpointer(workdir / 'checkpoints', 2).restore_latest(state)
  return float(sum(np.sum(np.abs(np.asarray(x))) for x in jax.tree.leaves(state.params)))
