"""Runs survive hard kills at every phase, torn event records and concurrent launches.

Each test drives `python -m bn_repro.main` in real subprocesses on small SYNTHETIC
(test-only) data stored as TFDS `mnist` (conftest fixture). Kills are SIGKILLs that the
trainer sends itself at a named point (`bn_repro.training.faults`), so each lands in its phase.
Nothing here reads a file another process is still writing except through readers that
tolerate a torn tail.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bn_repro.configuration.files import REPO_ROOT
from bn_repro.training import tensorboard
from bn_repro.training.faults import ENV_VAR

TIMEOUT_S = 600  # Generous: CI machines may be loaded.
TOTAL_STEPS = 24


def _inception_command(workdir, data_dir, *extra):
  """The small BN-Inception with everything a resume must restore: momentum (0.9),
  dropout (0.4, bn_baseline keeps it), photometric distortion (strength 1.0), a decaying
  learning rate and BN moving averages; evaluation and a best checkpoint every 4 steps,
  a checkpoint every 8."""
  return [
    sys.executable,
    '-m',
    'bn_repro.main',
    '--config=configs/inception.py:bn_baseline,small',
    f'--workdir={workdir}',
    '--config.input.dataset=mnist',
    '--config.input.train_subset_size=100',  # The proxy's subset, of the synthetic data.
    f'--config.input.tfds_data_dir={data_dir}',
    '--config.num_devices=1',
    '--config.batch_size=8',
    '--config.model.norm.group_size=4',
    '--config.model.width=0.0625',
    f'--config.num_steps={TOTAL_STEPS}',
    '--config.log_every=2',
    '--config.steps_per_call=1',
    '--config.eval_every=4',
    '--config.checkpoint_every=8',
    '--config.eval.batch_size=50',
    '--config.schedule.decay_steps=6',
    '--config.eval.extra_steps=()',
    *extra,
  ]


def _run(command, kill_at=None):
  env = dict(os.environ)
  env.pop(ENV_VAR, None)
  # Compiled programs persist across the runs (each is a fresh process).
  env.setdefault('JAX_COMPILATION_CACHE_DIR', str(REPO_ROOT / '.jax_cache'))
  env.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
  if kill_at:
    env[ENV_VAR] = kill_at
  return subprocess.run(
    command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
  )


def _tear_last_record(workdir, num_bytes=5):
  path = tensorboard.event_files(workdir)[-1]
  size = path.stat().st_size
  with open(path, 'r+b') as f:
    f.truncate(size - num_bytes)


def _curves(workdir):
  scalars = tensorboard.read_scalars(workdir)
  return {tag: scalars[tag] for tag in ('train/loss', 'train/learning_rate', 'eval/accuracy')}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """(workdir, data dir) of a run of TOTAL_STEPS steps without interruption."""
  from tests.conftest import store_synthetic_mnist

  root = tmp_path_factory.mktemp('uninterrupted')
  data_dir = store_synthetic_mnist(root / 'tfds')
  finished = _run(_inception_command(root / 'run', data_dir))
  assert finished.returncode == 0, finished.stderr[-3000:]
  return root / 'run', data_dir


def test_killed_at_every_phase_then_resumed_equals_an_uninterrupted_run(uninterrupted, tmp_path):
  straight, data_dir = uninterrupted
  workdir = tmp_path / 'killed'
  command = _inception_command(workdir, data_dir)
  # Each kill lands in a later phase; every rerun resumes from the last whole checkpoint.
  for kill_at in (
    'best_checkpoint@4',  # After the first best save (step 4), before any checkpoint.
    'train_chunk@6',  # Mid-training, before the first checkpoint (8): restarts at 0.
    'evaluation@12',  # Mid-evaluation: computed, not logged; resumes from 8.
    'checkpoint@16',  # Right after a checkpoint: nothing to replay.
  ):
    killed = _run(command, kill_at)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-3000:])
  # A kill mid-checkpoint-write leaves orbax's temporary folder, never a whole step.
  shutil.copytree(
    workdir / 'checkpoints' / '16', workdir / 'checkpoints' / '24.orbax-checkpoint-tmp-1'
  )
  _tear_last_record(workdir)  # A kill mid-event-write leaves a torn last record.
  finished = _run(command)
  assert finished.returncode == 0, finished.stderr[-3000:]
  assert 'Resumed from the checkpoint at step 16' in finished.stderr

  assert _curves(workdir) == _curves(straight)  # Bitwise on CPU: same state, RNG, data order.
  steps = [s for s, _ in tensorboard.read_scalars(workdir)['train/loss']]
  assert steps == list(range(2, TOTAL_STEPS + 1, 2))
  best = sorted(p.name for p in (workdir / 'best_checkpoint').iterdir() if p.name.isdigit())
  straight_best = sorted(
    p.name for p in (straight / 'best_checkpoint').iterdir() if p.name.isdigit()
  )
  assert best == straight_best


def _wait_for_log(workdir, timeout_s):
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    if workdir.exists() and tensorboard.read_scalars(workdir).get('train/loss'):
      return
    time.sleep(0.2)
  raise AssertionError(f'nothing logged in {workdir} within {timeout_s} s')


def test_a_second_launch_is_refused_while_the_first_trains(synthetic_mnist_tfds, tmp_path):
  workdir = tmp_path / 'run'
  command = [
    sys.executable,
    '-m',
    'bn_repro.main',
    '--config=configs/mnist.py:bn,smoke',
    f'--workdir={workdir}',
    f'--config.input.tfds_data_dir={synthetic_mnist_tfds}',
    '--config.num_devices=1',
    '--config.num_steps=10000000',
  ]
  first = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_log(workdir, TIMEOUT_S)
    for extra in ((), ('--overwrite',)):
      second = _run(command + list(extra))
      assert second.returncode != 0
      last_line = second.stderr.strip().splitlines()[-1]
      assert last_line.startswith('FATAL: ') and f'PID {first.pid}' in last_line, second.stderr
      assert 'Traceback' not in second.stderr
  finally:
    first.send_signal(signal.SIGTERM)  # Stops at the next step boundary with a checkpoint.
    _, stderr = first.communicate(timeout=TIMEOUT_S)
  assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  stopped_at = int(stderr.split('Stopped by SIGTERM at step ')[1].split(';')[0])
  steps = [s for s, _ in tensorboard.read_scalars(workdir)['train/loss']]
  assert steps == list(range(5, stopped_at + 1, 5))  # The first run lost no logged point.
