"""The trainer's study features and the study scripts, on tfds.testing.mock_data."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro.configuration.files import load_config, override
from bn_repro.data import datasets, ordering
from bn_repro.studies import common, santurkar_arms, workers
from bn_repro.studies.common import StudyContext, restore
from bn_repro.training import train
from bn_repro.training.evaluate import batch_statistics_accuracy
from bn_repro.training.tensorboard import read_scalars

pytestmark = pytest.mark.usefixtures('mock_mnist')


def _config(variant='bn', **fields):
  fields.setdefault('num_devices', 2)
  return override(load_config(f'configs/mnist.py:{variant},smoke'), **fields)


def test_trainer_population_statistics_follow_algorithm_2(tmp_path):
  config = _config(population_stats__num_batches=3, population_stats__every_eval=True)
  train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  assert [s for s, _ in scalars['eval_population/accuracy']] == [10, 20]

  population = restore(
    config, tmp_path / 'checkpoints'
  )  # The moving-average checkpoint's params...
  final = restore(config, tmp_path / 'population_checkpoint')  # ...and the population one's.
  jax.tree.map(np.testing.assert_array_equal, final.params, population.params)
  # Layer 0 by hand over the first 3 training batches: x W, m = 60 examples per batch.
  dataset = datasets.load_dataset(config.input)
  indices = ordering.batch_indices(len(dataset.train_labels), 60, config.seed, 0, 3)
  kernel = np.asarray(final.params['dense0']['kernel'], np.float64)
  inputs = [
    (dataset.train_images[i].reshape(60, -1) > 127).astype(np.float64) @ kernel for i in indices
  ]
  np.testing.assert_allclose(
    final.batch_stats['bn0']['mean'], np.mean([u.mean(0) for u in inputs], 0), atol=1e-5
  )
  np.testing.assert_allclose(
    final.batch_stats['bn0']['var'], 60 / 59 * np.mean([u.var(0) for u in inputs], 0), rtol=1e-4
  )


def test_parameter_norms_are_logged(tmp_path):
  config = _config(log_param_norms=True)
  train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  params = restore(config, tmp_path / 'checkpoints').params
  assert scalars['params/dense1/kernel'][-1] == (
    20,
    pytest.approx(float(np.linalg.norm(params['dense1']['kernel'])), rel=1e-5),
  )
  assert not any(tag.startswith('params_seed') for tag in scalars)


def test_parameter_norms_are_logged_per_seed(tmp_path):
  """Each seed's norms: in metrics.jsonl as params_seedI/, in TensorBoard in its seed's run."""
  from bn_repro.records import read_metrics

  config = _config(log_param_norms=True, num_seeds=3, num_devices=1)
  train.train_and_evaluate(config, tmp_path)
  scalars, logged = read_scalars(tmp_path), read_metrics(tmp_path)
  kernels = restore(config, tmp_path / 'checkpoints').params['dense1']['kernel']  # (3, ...)
  norms = [float(np.linalg.norm(k)) for k in kernels]
  assert len(set(norms)) == 3  # Three different runs.
  for seed, norm in enumerate(norms):
    assert logged[f'params_seed{seed}/dense1/kernel'][-1] == (20, pytest.approx(norm, rel=1e-5))
    seed_run = read_scalars(tmp_path / f'seed{seed}')
    assert seed_run['params/dense1/kernel'][-1] == (20, pytest.approx(norm, rel=1e-5))
  assert not any(tag.startswith('params_seed') for tag in scalars)
  assert 'params/bn0/scale' in scalars and 'params/dense0/bias' not in scalars


def test_pre_bn_bias_does_not_change_training(tmp_path):
  """Study 4 as a test: BN(Wu + b) trains exactly like BN(Wu) (Sec. 3.2)."""
  losses = {}
  for variant in ('bn', 'bn_bias'):
    train.train_and_evaluate(_config(variant, num_steps=40), tmp_path / variant)
    losses[variant] = [v for _, v in read_scalars(tmp_path / variant)['train/loss']]
  np.testing.assert_allclose(losses['bn'], losses['bn_bias'], rtol=1e-5)
  assert losses['bn'][-1] < losses['bn'][0]  # It trained.


def _numpy_mlp_logits_with_batch_statistics(params, x, epsilon):
  """The smoke MLP (sigmoid, BN on Wu, no pre-BN bias) in float64 numpy, each hidden
  layer normalized with this batch's own mean and biased variance (Algorithm 1)."""
  h = np.asarray(x, np.float64).reshape(len(x), -1)
  layer = 0
  while f'dense{layer}' in params:
    u = h @ np.asarray(params[f'dense{layer}']['kernel'], np.float64)
    bn = params[f'bn{layer}']
    u_hat = (u - u.mean(axis=0)) / np.sqrt(u.var(axis=0) + epsilon)
    h = 1 / (1 + np.exp(-(np.asarray(bn['scale']) * u_hat + np.asarray(bn['bias']))))
    layer += 1
  return h @ np.asarray(params['logits']['kernel']) + np.asarray(params['logits']['bias'])


def test_batch_statistics_accuracy_normalizes_each_test_batch_on_its_own(tmp_path):
  config = _config()
  train.train_and_evaluate(config, tmp_path)
  network = restore(config, tmp_path / 'checkpoints')
  images, labels = network.test_inputs()
  for batch_size in (4, 10):
    correct = 0
    for start in range(0, len(labels) - len(labels) % batch_size, batch_size):
      logits = _numpy_mlp_logits_with_batch_statistics(
        network.params, images[start : start + batch_size], config.model.norm.epsilon
      )
      correct += int(np.sum(np.argmax(logits, -1) == labels[start : start + batch_size]))
    expected = correct / (len(labels) - len(labels) % batch_size)
    accuracy = batch_statistics_accuracy(
      network.model, network.params, network.batch_stats, images, labels, batch_size
    )
    assert accuracy == pytest.approx(expected)


def test_probes_run_on_the_initialization_and_every_checkpoint(tmp_path):
  context = StudyContext('probe_check', tmp_path / 'runs', tmp_path / 'out', smoke=True)
  ((config, arm),) = santurkar_arms.train(context, mlp=[('bn', 0.5)]).mlp.values()

  def probe(value_and_grad, params):
    return {'loss': value_and_grad(params)[0], 'kernel_sum': jnp.sum(params['dense0']['kernel'])}

  trajectory = santurkar_arms.probe_trajectories(config, arm, probe)
  np.testing.assert_array_equal(trajectory['steps'], [0, 10, 20])
  assert trajectory['loss'].shape == (3, santurkar_arms.NUM_SEEDS)
  # Each probe point sees its own saved state: the parameters move between checkpoints,
  # and each seed's differ.
  kernel_sums = trajectory['kernel_sum']
  assert len(np.unique(kernel_sums[:, 0])) == 3 and len(np.unique(kernel_sums[0])) == 3
  assert np.all(np.isfinite(trajectory['loss']))


def test_worker_cores_are_distinct_allowed_cores_or_none(monkeypatch):
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {5, 2, 7}, raising=False)
  assert workers.worker_cores(2) == [2, 5]
  assert workers.worker_cores(3) == [2, 5, 7]
  assert workers.worker_cores(4) == [None] * 4  # More workers than cores: none pinned.


def _arm(scalars, diverged_at=None):
  return common.Arm(scalars, diverged_at, workdir=None)


def test_seed_arms_side_by_side_or_one_arm_per_seed():
  config = _config()
  together = common.seed_arms('mlp', config, side_by_side=True)
  assert list(together) == ['mlp'] and together['mlp'].num_seeds == common.NUM_SEEDS
  apart = common.seed_arms('proxy', config, side_by_side=False)
  assert list(apart) == [f'proxy_seed{i}' for i in range(common.NUM_SEEDS)]
  assert [c.seed for c in apart.values()] == [config.seed + i for i in range(common.NUM_SEEDS)]
  assert all(c.num_seeds == 1 for c in apart.values())


def test_arms_of_one_program_start_one_per_round_so_later_ones_find_it_compiled():
  bn, baseline = _config(), _config('baseline')
  arms = common.seed_arms('bn', bn, side_by_side=False)
  # A constant rate is data of the program (the optimizer's state): same program as 'bn'.
  arms |= common.seed_arms('bn_fast', override(bn, optimizer__learning_rate=8.0), False)
  arms |= common.seed_arms('baseline', baseline, side_by_side=False)
  assert workers.compile_once_order(arms) == [
    'bn_seed0',
    'baseline_seed0',
    'bn_seed1',
    'baseline_seed1',
    'bn_seed2',
    'baseline_seed2',
    'bn_fast_seed0',
    'bn_fast_seed1',
    'bn_fast_seed2',
  ]


def test_seeded_arm_reads_every_seed_whichever_way_they_trained():
  side_by_side = {
    f'eval_seed{i}/accuracy': [(10, 0.1 * i), (20, 0.2 + i)] for i in range(common.NUM_SEEDS)
  }
  seeds = common.SeededArm.collect({'a': _arm(side_by_side)}, 'a')
  assert seeds.finals('eval/accuracy') == [0.2 + i for i in range(common.NUM_SEEDS)]
  assert seeds.curves('eval/accuracy')[1] == [(10, 0.1), (20, 1.2)]
  assert seeds.diverged_at is None
  separate = {
    f'b_seed{i}': _arm({'eval/accuracy': [(10, 0.5 + i)]}, diverged_at=7 if i == 1 else None)
    for i in range(common.NUM_SEEDS)
  }
  seeds = common.SeededArm.collect(separate, 'b')
  assert seeds.finals('eval/accuracy') == [0.5, None, 2.5]  # Seed 1 diverged.
  assert seeds.diverged_at == 7
  diverged = common.SeededArm.collect({'c': _arm(side_by_side, diverged_at=3)}, 'c')
  assert diverged.finals('eval/accuracy') == [None] * common.NUM_SEEDS
