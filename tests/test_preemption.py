"""SIGTERM mid-run: a checkpoint at the current step, exit code 128 + 15, and a clean resume.

Hard kills (SIGKILL at every phase of a run) are tested in `tests/test_run_safety.py`.

The run reads small synthetic (test-only) data stored as TFDS `mnist` (conftest fixture).
"""

import json
import signal
import subprocess
import sys
import time

from bn_repro.configuration.files import REPO_ROOT
from bn_repro.training.tensorboard import read_scalars


def _command(tmp_path, num_steps):
  return [
    sys.executable,
    '-m',
    'bn_repro.main',
    '--config=configs/mnist.py:bn,smoke',
    f'--workdir={tmp_path / "run"}',
    f'--config.input.tfds_data_dir={tmp_path / "tfds"}',
    '--config.num_devices=1',
    f'--config.num_steps={num_steps}',
    '--config.checkpoint_every=1000000',
    '--config.eval_every=1000000',
  ]


def _wait_until_training_logged(workdir, timeout_s):
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    if workdir.exists() and read_scalars(workdir).get('train/loss'):
      return
    time.sleep(0.5)
  raise AssertionError(f'no training step was logged in {workdir} within {timeout_s} s')


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, synthetic_mnist_tfds):
  process = subprocess.Popen(
    _command(tmp_path, 10_000_000), cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
  )
  events = tmp_path / 'run'
  _wait_until_training_logged(events, timeout_s=120)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  assert 'Stopped by SIGTERM at step' in stderr
  saved = [int(p.name) for p in (events / 'checkpoints').iterdir() if p.name.isdigit()]
  assert len(saved) == 1 and saved[0] > 0 and saved[0] % 5 == 0  # A log-chunk boundary.

  finished = subprocess.run(
    _command(tmp_path, saved[0] + 10), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
  )
  assert finished.returncode == 0, finished.stderr[-2000:]
  assert f'Resumed from the checkpoint at step {saved[0]}' in finished.stderr
  steps = [s for s, _ in read_scalars(events)['train/loss']]
  assert steps[-1] == saved[0] + 10
  assert json.loads((events / 'config.json').read_text())['num_steps'] == saved[0] + 10
