"""Algorithm 2's population statistics against a numpy re-derivation."""

import jax
import numpy as np

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
