"""The run machinery's pieces: workdir lock, config guard, atomic writes, idempotent
checkpoints, event files with a torn tail."""

import json
import signal
import subprocess
import sys

import jax.numpy as jnp
import optax
import pytest

from bn_repro import records
from bn_repro.training import tensorboard, workdir
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.state import TrainState


def test_a_held_workdir_is_refused_naming_its_holder(tmp_path):
  with workdir.WorkdirLock(tmp_path):
    with pytest.raises(workdir.WorkdirError, match=r'in use by host .*, PID \d+, started 20'):
      workdir.WorkdirLock(tmp_path).acquire()
  workdir.WorkdirLock(tmp_path).acquire()  # Released: free again.


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import time; from bn_repro.training.workdir import WorkdirLock; '
      f'lock = WorkdirLock({str(tmp_path)!r}); lock.acquire(); '
      'print("held", flush=True); time.sleep(600)',
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == 'held'
  with pytest.raises(workdir.WorkdirError, match=f'PID {holder.pid}'):
    workdir.WorkdirLock(tmp_path).acquire()
  holder.send_signal(signal.SIGKILL)
  holder.wait(timeout=60)
  lock = workdir.WorkdirLock(tmp_path)
  lock.acquire()  # Taken over without any cleanup.
  lock.release()


def test_a_file_as_workdir_is_a_clear_error(tmp_path):
  path = tmp_path / 'file'
  path.write_text('x')
  with pytest.raises(workdir.WorkdirError, match='is a file, not a directory'):
    workdir.WorkdirLock(path).acquire()


def test_config_guard_allows_new_default_fields_and_evaluation_changes():
  batch = {'kind': 'batch'}
  saved = {'num_steps': 10, 'model': {'norm': batch}, 'eval': {'percentiles': [15]}}
  defaults = {**saved, 'model': {'norm': batch, 'new_field': 0}}
  current = {
    'num_steps': 20,
    'model': {'norm': batch, 'new_field': 0},
    'eval': {'percentiles': [5, 95]},
    'log_param_norms': True,
  }
  refused, allowed = workdir.config_changes(saved, current, defaults)
  assert refused == []
  assert allowed == [  # new_field: absent before, at its default: no change.
    'eval.percentiles: [15] -> [5, 95]',
    'log_param_norms: (absent) -> True',
    'num_steps: 10 -> 20',
  ]
  changed_default = {**current, 'model': {'norm': batch, 'new_field': 1}}
  refused, _ = workdir.config_changes(saved, changed_default, defaults)
  assert refused == ['model.new_field: (absent) -> 1']
  refused, _ = workdir.config_changes(saved, {**current, 'model': {'norm': {'kind': 'none'}}})
  assert refused == ["model.norm.kind: 'batch' -> 'none'"]


def test_config_guard_records_allowed_changes(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  records.write_atomically(tmp_path / 'config.json', json.dumps({'eval': {'crops': 1}}))
  changes = workdir.check_config(tmp_path, json.dumps({'eval': {'crops': 144}}))
  workdir.record_config_changes(tmp_path, changes, resume_step=30)
  record = json.loads((tmp_path / 'config_changes.jsonl').read_text())
  assert record['changes'] == ['eval.crops: 1 -> 144'] and record['resume_step'] == 30


def test_an_unreadable_saved_config_is_a_clear_error(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  (tmp_path / 'config.json').write_text('')
  with pytest.raises(workdir.WorkdirError, match='config.json is not valid JSON.*--overwrite'):
    workdir.check_config(tmp_path, '{}')


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'run_info.json'
  records.write_atomically(path, 'old')
  records.write_atomically(path, 'new')
  assert path.read_text() == 'new'
  assert [p.name for p in tmp_path.iterdir()] == ['run_info.json']


def _state(step, value):
  state = TrainState.create(
    apply_fn=None, params={'w': jnp.full((3,), value)}, batch_stats={}, tx=optax.sgd(0.1)
  )
  return state.replace(step=step)


def test_saving_a_step_again_replaces_it(tmp_path):
  checkpointer = Checkpointer(tmp_path, 2)
  checkpointer.save(_state(5, 1.0))
  checkpointer.save(_state(5, 2.0))  # A resumed run's replay saves step 5 again.
  restored = checkpointer.restore_latest(_state(0, 0.0))
  assert int(restored.step) == 5 and float(restored.params['w'][0]) == 2.0
  checkpointer.save(_state(9, 3.0))
  checkpointer.delete_after(5)
  assert checkpointer.latest_step() == 5
  checkpointer.close()


def _write_events(logdir, steps):
  writer = tensorboard.SummaryWriter(logdir)
  for step in steps:
    writer.write_scalars(step, {'a': float(step), 'b': -float(step)})
  writer.close()


@pytest.mark.parametrize('torn_bytes', [1, 5, 13])
def test_readers_keep_whole_records_and_drop_a_torn_tail(tmp_path, torn_bytes):
  _write_events(tmp_path, [1, 2, 3])
  (path,) = tensorboard.event_files(tmp_path)
  whole = tensorboard.read_scalars(tmp_path)
  assert whole == {'a': [(1, 1.0), (2, 2.0), (3, 3.0)], 'b': [(1, -1.0), (2, -2.0), (3, -3.0)]}
  size = path.stat().st_size
  with open(path, 'r+b') as f:
    f.truncate(size - torn_bytes)
  torn = tensorboard.read_scalars(tmp_path)
  assert torn['a'] == whole['a'] and torn['b'] == whole['b'][:2]  # The last record: b at 3.
  tensorboard.truncate_events(tmp_path, last_step=2)
  records, whole_size = tensorboard.read_records(path)
  assert whole_size == path.stat().st_size  # The rewrite holds whole records only.
  assert tensorboard.read_scalars(tmp_path) == {'a': whole['a'][:2], 'b': whole['b'][:2]}


def test_records_match_tensorflows_reader(tmp_path):
  """Our TFRecord parsing and checksums agree with TensorFlow's own reader."""
  import tensorflow as tf

  _write_events(tmp_path, range(1, 30))
  (path,) = tensorboard.event_files(tmp_path)
  ours, _ = tensorboard.read_records(path)
  assert ours == list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def test_leftover_rewrite_files_are_not_read_and_are_removed(tmp_path):
  _write_events(tmp_path, [1, 2])
  (path,) = tensorboard.event_files(tmp_path)
  rewrite = tensorboard.rewrite_path(path)
  assert 'tfevents' not in rewrite.name  # TensorBoard reads any '*tfevents*' file.
  rewrite.write_bytes(path.read_bytes())
  assert tensorboard.event_files(tmp_path) == [path]
  tensorboard.truncate_events(tmp_path, last_step=5)
  assert not rewrite.exists()
