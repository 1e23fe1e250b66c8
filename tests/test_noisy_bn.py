"""Noisy BN (Santurkar et al. 2018) against its definition: y' = y + m, m_ij ~ N(mu_j,
sigma_j^2), mu_j ~ U(-n_mu, n_mu) and sigma_j ~ U(0, n_sigma) redrawn per call (step); only
in training and only when the caller passes the noise stream."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro import models
from bn_repro.configuration.files import load_config
from bn_repro.nn.batch_norm import NOISE_STREAM, BatchNorm
from bn_repro.training.steps import model_rngs

N_MU, N_SIGMA = 0.7, 1.5


def _apply(module, x, key=None, use_running_average=False):
  variables = module.init(jax.random.key(0), x, use_running_average=False)
  rngs = {} if key is None else {NOISE_STREAM: key}
  y, _ = module.apply(
    variables, x, use_running_average=use_running_average, mutable=['batch_stats'], rngs=rngs
  )
  return np.asarray(y, np.float64)


def _input(shape=(4000, 5)):
  return jax.random.normal(jax.random.key(1), shape) * 3.0 + 2.0


def test_no_noise_without_the_stream_or_at_inference():
  x = _input((64, 5))
  plain = _apply(BatchNorm(), x)
  noisy = BatchNorm(noise_mean=N_MU, noise_std=N_SIGMA)
  np.testing.assert_array_equal(_apply(noisy, x), plain)
  inference = _apply(noisy, x, jax.random.key(2), use_running_average=True)
  np.testing.assert_array_equal(inference, _apply(BatchNorm(), x, use_running_average=True))
  assert not np.allclose(_apply(noisy, x, jax.random.key(2)), plain)


def test_shift_is_one_uniform_draw_per_feature_and_step():
  x = _input((256, 5))
  plain = _apply(BatchNorm(), x)
  shifts = []
  for step in range(300):
    m = _apply(BatchNorm(noise_mean=N_MU), x, jax.random.key(step)) - plain
    # noise_std = 0: the same shift for every example of a feature.
    np.testing.assert_allclose(m, np.broadcast_to(m[0], m.shape), atol=1e-5)
    shifts.append(m[0])
  shifts = np.array(shifts)  # (steps, features), U(-n_mu, n_mu): mean 0, std n_mu / sqrt(3).
  assert np.abs(shifts).max() <= N_MU + 1e-5
  assert abs(shifts.mean()) < 0.05
  assert shifts.std() == pytest.approx(N_MU / np.sqrt(3), rel=0.08)
  assert np.abs(np.diff(shifts, axis=0)).std() > 0.1  # Redrawn at every step.


def test_spread_is_gaussian_with_a_uniform_std_per_feature_and_step():
  x = _input((4000, 5))
  plain = _apply(BatchNorm(), x)
  stds = []
  for step in range(60):
    m = _apply(BatchNorm(noise_std=N_SIGMA), x, jax.random.key(step)) - plain
    assert np.abs(m.mean(0)).max() < 4 * N_SIGMA / np.sqrt(len(m))  # Mean 0 without n_mu.
    stds.append(m.std(0))
  stds = np.array(stds)  # U(0, n_sigma) per feature and step: mean n_sigma / 2.
  assert stds.max() <= N_SIGMA * 1.05
  assert stds.mean() == pytest.approx(N_SIGMA / 2, rel=0.1)
  assert stds.std() == pytest.approx(N_SIGMA / np.sqrt(12), rel=0.2)


def test_additive_noise_leaves_the_input_gradient_unchanged():
  x = _input((32, 5))
  w = jax.random.normal(jax.random.key(3), x.shape)
  noisy = BatchNorm(use_running_average=False, noise_mean=N_MU, noise_std=N_SIGMA)
  variables = noisy.init(jax.random.key(0), x)

  def objective(x, rngs):
    y, _ = noisy.apply(variables, x, mutable=['batch_stats'], rngs=rngs)
    return jnp.sum(w * y)

  with_noise = jax.grad(objective)(x, {NOISE_STREAM: jax.random.key(4)})
  without = jax.grad(objective)(x, {})
  np.testing.assert_allclose(with_noise, without, atol=1e-5)


def test_training_steps_feed_the_noise_to_the_bn_noisy_mlp():
  config = load_config('configs/mnist.py:bn_noisy,smoke')
  assert (config.model.norm.noise_mean, config.model.norm.noise_std) == (1.0, 1.0)
  model = models.create_model(config.model, 10)
  x = jax.random.uniform(jax.random.key(5), (8, 28, 28, 1))
  variables = model.init(jax.random.key(0), x, train=False)

  def logits(key):
    out, _ = model.apply(variables, x, train=True, mutable=['batch_stats'], rngs=model_rngs(key))
    return np.asarray(out)

  assert not np.allclose(logits(jax.random.key(6)), logits(jax.random.key(7)))
  clean = load_config('configs/mnist.py:bn,smoke')
  clean_model = models.create_model(clean.model, 10)
  clean_out = [
    clean_model.apply(variables, x, train=True, mutable=['batch_stats'], rngs=model_rngs(k))[0]
    for k in (jax.random.key(6), jax.random.key(7))
  ]
  np.testing.assert_array_equal(*clean_out)


def test_fixed_noise_draws_its_parameters_once_per_unit_at_initialization():
  """The control: the same mu_j and sigma_j at every step (kept in batch_stats), fresh
  per-example draws; different initialization keys give different parameters."""
  x = _input((4000, 3))
  module = BatchNorm(noise_mean=N_MU, noise_std=N_SIGMA, noise_redraw='fixed')
  variables = module.init(jax.random.key(0), x, use_running_average=False)
  fixed = np.asarray(variables['batch_stats']['fixed_noise'])
  assert fixed.shape == (2, 3)
  assert np.all(np.abs(fixed[0]) <= N_MU) and np.all((fixed[1] >= 0) & (fixed[1] <= N_SIGMA))
  plain = _apply(BatchNorm(), x)
  draws = []
  for step in range(3):
    y, updates = module.apply(
      variables,
      x,
      use_running_average=False,
      mutable=['batch_stats'],
      rngs={NOISE_STREAM: jax.random.key(step)},
    )
    np.testing.assert_array_equal(updates['batch_stats']['fixed_noise'], fixed)
    m = np.asarray(y, np.float64) - plain
    np.testing.assert_allclose(m.mean(0), fixed[0], atol=4 * N_SIGMA / np.sqrt(len(m)))
    np.testing.assert_allclose(m.std(0), fixed[1], rtol=0.08, atol=0.02)
    draws.append(m)
  assert not np.allclose(draws[0], draws[1])  # The per-example draws are fresh.
  other = module.init(jax.random.key(1), x, use_running_average=False)['batch_stats']
  assert not np.allclose(other['fixed_noise'], fixed)


def test_unknown_noise_redraw_is_refused_by_name():
  with pytest.raises(ValueError, match="noise_redraw='daily'"):
    _apply(BatchNorm(noise_mean=N_MU, noise_redraw='daily'), _input((8, 2)))
