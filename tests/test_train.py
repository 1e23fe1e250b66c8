"""End-to-end tests of the training loop on tfds.testing.mock_data (synthetic MNIST-shaped data)."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from bn_repro import data as data_lib
from bn_repro import models, train
from bn_repro.checkpointing import Checkpointer
from bn_repro.config_files import load_config, override
from bn_repro.evaluate import Evaluator, preactivation_percentiles
from bn_repro.steps import create_mesh, make_eval_fn
from bn_repro.tensorboard import read_scalars


@pytest.fixture(autouse=True)
def mock_mnist(tmp_path):
  with tfds.testing.mock_data(num_examples=240, data_dir=str(tmp_path / 'no_real_data')):
    yield


def _config(variant='bn', **fields):
  fields.setdefault('num_devices', 4)
  return override(load_config(f'configs/mnist.py:{variant},smoke'), **fields)


def _restore(config, workdir):
  dataset = data_lib.load_dataset(config.input)
  model = models.create_model(config.model, dataset.num_classes, axis_name='batch')
  state = train.create_train_state(config, model, dataset.train_images.shape[1:])
  return Checkpointer(workdir / 'checkpoints', 5).restore_latest(state), model, dataset


@pytest.mark.parametrize('variant', ['baseline', 'bn'])
def test_smoke_run_logs_evaluates_and_checkpoints(tmp_path, variant):
  config = _config(variant)
  metrics = train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  assert [s for s, _ in scalars['train/loss']] == [5, 10, 15, 20]
  assert [s for s, _ in scalars['eval/accuracy']] == [10, 20]
  assert [s for s, _ in scalars['bn/layer1/unit_p85']] == [10, 20]
  assert scalars['eval/accuracy'][-1][1] == pytest.approx(metrics['accuracy'])
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()) == [
    10,
    20,
  ]
  assert (tmp_path / 'config.json').exists() and (tmp_path / 'run_info.json').exists()
  # The first logged loss is near chance level, log(10), for a freshly initialized net.
  assert abs(scalars['train/loss'][0][1] - np.log(10)) < 0.3


def test_evaluation_is_exact_with_padding_on_many_devices(tmp_path):
  config = _config('bn')
  train.train_and_evaluate(config, tmp_path)
  state, model, dataset = _restore(config, tmp_path)
  images, labels = dataset.test_images[:100], dataset.test_labels[:100]
  mesh = create_mesh(8)
  preprocess = data_lib.get_preprocessor(config.input.preprocess)
  evaluate = Evaluator(make_eval_fn(model, preprocess, mesh), images, labels, 24, mesh)
  metrics, preactivations = evaluate(state)
  # Reference: one un-sharded forward pass over all 100 examples.
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  logits, inter = model.clone(axis_name=None).apply(
    variables, preprocess(images), train=False, mutable=['intermediates']
  )
  assert metrics['accuracy'] == pytest.approx(np.mean(np.argmax(logits, -1) == labels))
  reference = {k: np.asarray(v[0]) for k, v in inter['intermediates'].items()}
  for name in reference:
    np.testing.assert_allclose(preactivations[name], reference[name], rtol=1e-5, atol=1e-5)
  got = preactivation_percentiles(preactivations, 3, (15, 50, 85))
  assert got['bn/layer1/unit_p50'] == pytest.approx(np.median(reference['preactivation1'][:, 3]))
  assert got['bn/layer0/all_p15'] == pytest.approx(np.percentile(reference['preactivation0'], 15))


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  train.train_and_evaluate(_config('bn'), tmp_path / 'straight')
  train.train_and_evaluate(_config('bn', num_steps=10), tmp_path / 'resumed')
  train.train_and_evaluate(_config('bn'), tmp_path / 'resumed')
  straight, _, _ = _restore(_config('bn'), tmp_path / 'straight')
  resumed, _, _ = _restore(_config('bn'), tmp_path / 'resumed')
  assert int(resumed.step) == 20
  jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)
  jax.tree.map(np.testing.assert_array_equal, resumed.batch_stats, straight.batch_stats)
  assert (
    read_scalars(tmp_path / 'resumed')['train/loss']
    == read_scalars(tmp_path / 'straight')['train/loss']
  )


@pytest.mark.parametrize('group_size', [None, 5])
def test_training_does_not_depend_on_device_count(tmp_path, group_size):
  states = []
  for devices in (1, 4):
    config = _config('bn', num_devices=devices, model__bn__group_size=group_size, num_steps=10)
    train.train_and_evaluate(config, tmp_path / str(devices))
    states.append(_restore(config, tmp_path / str(devices))[0])
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
    states[0].params,
    states[1].params,
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
    states[0].batch_stats,
    states[1].batch_stats,
  )


def test_nonfinite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  train.train_and_evaluate(_config('baseline', num_steps=10), tmp_path)
  with pytest.raises(FloatingPointError, match=r'at step 1[1-5]; stopping.*step 10'):
    train.train_and_evaluate(_config('baseline', optimizer__learning_rate=1e38), tmp_path)
  assert Checkpointer(tmp_path / 'checkpoints', 5).latest_step() == 10
  state, _, _ = _restore(_config('baseline'), tmp_path)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.params))
