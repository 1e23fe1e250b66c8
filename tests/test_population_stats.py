"""Population statistics: Algorithm 2 against a numpy re-derivation, the pooled estimator
against fvcore's PreciseBN."""

import jax
import numpy as np
import pytest

from bn_repro import models
from bn_repro.configuration.files import load_config
from bn_repro.nn.population_stats import compute_population_statistics
from bn_repro.training.state import create_train_state


def test_population_statistics_follow_algorithm_2():
  config = load_config('configs/mnist.py:bn,smoke')
  model = models.create_model(config.model, 10)
  state = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  rng = np.random.default_rng(0)
  batches = [rng.uniform(size=(20, 28, 28, 1)).astype(np.float32) for _ in range(5)]
  stats = compute_population_statistics(model, state.params, state.batch_stats, batches)

  # Layer 0 by hand: its BN input is x W (no bias before BN); m = 20 examples per batch.
  kernel = np.asarray(state.params['dense0']['kernel'], np.float64)
  inputs = [b.reshape(20, -1).astype(np.float64) @ kernel for b in batches]
  np.testing.assert_allclose(
    stats['bn0']['mean'], np.mean([u.mean(axis=0) for u in inputs], axis=0), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    stats['bn0']['var'], 20 / 19 * np.mean([u.var(axis=0) for u in inputs], axis=0), rtol=1e-4
  )
  # Every BN layer's statistics were replaced, and the parameters were left alone.
  for layer in ('bn0', 'bn1'):
    assert not np.allclose(stats[layer]['var'], state.batch_stats[layer]['var'])
  assert jax.tree.structure(stats) == jax.tree.structure(state.batch_stats)


def test_population_statistics_and_batch_accuracy_of_a_model_with_dropout():
  """bn_baseline keeps dropout 0.4 after the last BN layer: population statistics and
  batch-statistics accuracy must run without a dropout RNG and with dropout off, so they
  equal those of the same network with dropout_rate=0."""
  from bn_repro.configuration.files import override
  from bn_repro.training.evaluate import batch_statistics_accuracy

  config = load_config('configs/inception.py:bn_baseline,small')
  assert config.model.dropout_rate == 0.4
  no_dropout = override(config, model__dropout_rate=0.0)
  model, reference = (
    models.create_model(config.model, 10),
    models.create_model(no_dropout.model, 10),
  )
  state = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  rng = np.random.default_rng(0)
  batches = [rng.uniform(size=(32, 28, 28, 1)).astype(np.float32) for _ in range(2)]
  stats = compute_population_statistics(model, state.params, state.batch_stats, batches)
  expected = compute_population_statistics(reference, state.params, state.batch_stats, batches)
  jax.tree.map(np.testing.assert_array_equal, stats, expected)

  images, labels = np.concatenate(batches), rng.integers(0, 10, 64)
  accuracy = batch_statistics_accuracy(model, state.params, stats, images, labels, 32)
  assert accuracy == batch_statistics_accuracy(reference, state.params, stats, images, labels, 32)


def test_pooled_estimator_equals_fvcore_precise_bn():
  """The pooled estimator against fvcore's `update_bn_stats` (PreciseBN's default) on the same
  network (the MLP's first layer, BN, sigmoid, classifier, in torch) and the same batches."""
  import torch
  from fvcore.nn import update_bn_stats

  config = load_config('configs/mnist.py:bn,smoke')
  model = models.create_model(config.model, 10)
  state = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  rng = np.random.default_rng(1)
  # Small batches (m = 4) whose means spread: where the two estimators part.
  batches = [rng.uniform(high=1 + i % 3, size=(4, 28, 28, 1)).astype(np.float32) for i in range(6)]
  pooled = compute_population_statistics(
    model, state.params, state.batch_stats, batches, estimator='pooled'
  )

  kernel = np.asarray(state.params['dense0']['kernel'])
  torch_model = torch.nn.Sequential(
    torch.nn.Flatten(),
    torch.nn.Linear(kernel.shape[0], kernel.shape[1], bias=False),
    torch.nn.BatchNorm1d(kernel.shape[1]),
  )
  with torch.no_grad():
    torch_model[1].weight.copy_(torch.from_numpy(kernel.T.copy()))
  torch_model.train()
  update_bn_stats(torch_model, [torch.from_numpy(b) for b in batches], num_iters=len(batches))
  bn = torch_model[2]
  np.testing.assert_allclose(pooled['bn0']['mean'], bn.running_mean.numpy(), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(pooled['bn0']['var'], bn.running_var.numpy(), rtol=1e-4, atol=1e-7)
  # Algorithm 2 is another estimator: at m = 4 its variances differ.
  algorithm2 = compute_population_statistics(model, state.params, state.batch_stats, batches)
  np.testing.assert_allclose(algorithm2['bn0']['mean'], pooled['bn0']['mean'], rtol=1e-5)
  assert np.abs(algorithm2['bn0']['var'] / pooled['bn0']['var'] - 1).max() > 0.01


def test_pooled_estimator_refuses_statistics_groups():
  from bn_repro.configuration.files import override

  config = override(load_config('configs/mnist.py:bn,smoke'), model__norm__group_size=2)
  with pytest.raises(ValueError, match='group_size=2'):
    compute_population_statistics(
      models.create_model(config.model, 10), {}, {}, [np.zeros((4, 784))], estimator='pooled'
    )


def test_population_statistics_of_a_frozen_bn_model_replace_its_statistics_not_its_counter():
  """FrozenBN (`model.norm.freeze_from`) counts steps in batch_stats: population statistics
  are computed as for BN (not frozen) and the counter keeps its value and dtype."""
  from bn_repro.configuration.files import override

  config = override(load_config('configs/mnist.py:bn,smoke'), model__norm__freeze_from=0)
  frozen_model = models.create_model(config.model, 10)
  state = create_train_state(config, frozen_model, np.zeros((1, 28, 28, 1), np.float32))
  plain = models.create_model(load_config('configs/mnist.py:bn,smoke').model, 10)
  rng = np.random.default_rng(2)
  batches = [rng.uniform(size=(8, 28, 28, 1)).astype(np.float32) for _ in range(3)]
  stats = compute_population_statistics(frozen_model, state.params, state.batch_stats, batches)
  plain_stats = {k: {s: v for s, v in layer.items() if s != 'step'} for k, layer in stats.items()}
  expected = compute_population_statistics(
    plain, state.params, jax.tree.map(lambda a: a, plain_stats), batches
  )
  jax.tree.map(np.testing.assert_allclose, plain_stats, expected)
  assert stats['bn0']['step'].dtype == np.int32 and int(stats['bn0']['step']) == 0
