"""Weight normalization and mean-only BN against the formulas of Salimans & Kingma (2016)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro.nn.batch_norm import BatchNorm
from bn_repro.nn.weight_norm import WeightNormConv, WeightNormDense


def _dense_params(rng, n_in, n_out):
  return {
    'kernel': rng.normal(size=(n_in, n_out)).astype(np.float32),
    'scale': rng.uniform(0.5, 2.0, n_out).astype(np.float32),
    'bias': rng.normal(size=n_out).astype(np.float32),
  }


def test_gradients_follow_the_papers_formulas():
  """grad_g = grad_w . v/||v||; grad_v = (g/||v||) (I - w w^T/||w||^2) grad_w (per unit)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(12, 5)).astype(np.float32)
  r = rng.normal(size=(12, 3)).astype(np.float32)
  params = _dense_params(rng, 5, 3)
  layer = WeightNormDense(3, data_init=False)

  def loss(p):
    return jnp.sum(jnp.sin(layer.apply({'params': p}, x)) * r)

  grads = jax.grad(loss)(params)
  v, g = params['kernel'].astype(np.float64), params['scale'].astype(np.float64)
  v_norm = np.linalg.norm(v, axis=0)
  w = g * v / v_norm
  y = x @ w + params['bias']
  grad_w = x.T @ (np.cos(y) * r)  # The gradient with respect to the effective weights.
  grad_g = np.sum(grad_w * v / v_norm, axis=0)
  grad_v = np.stack(
    [
      g[j]
      / v_norm[j]
      * (np.eye(5) - np.outer(w[:, j], w[:, j]) / (w[:, j] @ w[:, j]))
      @ grad_w[:, j]
      for j in range(3)
    ],
    axis=1,
  )
  np.testing.assert_allclose(grads['scale'], grad_g, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grads['kernel'], grad_v, rtol=1e-4, atol=1e-5)
  # And grad_v is orthogonal to v: the update does not change ||v|| to first order.
  np.testing.assert_allclose(np.sum(grad_v * v, axis=0), 0.0, atol=1e-4)


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(6, 4))
  params = _dense_params(rng, 4, 2)
  layer = WeightNormDense(2, data_init=False)

  def loss_np(p):  # float64 reference of the same layer
    v = p['kernel']
    return np.sum(np.tanh(x @ (p['scale'] * v / np.linalg.norm(v, axis=0)) + p['bias']))

  x32 = x.astype(np.float32)
  grads = jax.grad(lambda p: jnp.sum(jnp.tanh(layer.apply({'params': p}, x32))))(params)
  h = 1e-5
  for name, index in [('kernel', (1, 0)), ('kernel', (3, 1)), ('scale', (1,)), ('bias', (0,))]:
    plus = {k: v.astype(np.float64).copy() for k, v in params.items()}
    minus = {k: v.astype(np.float64).copy() for k, v in params.items()}
    plus[name][index] += h
    minus[name][index] -= h
    numeric = (loss_np(plus) - loss_np(minus)) / (2 * h)
    np.testing.assert_allclose(grads[name][index], numeric, rtol=1e-3, atol=1e-4)


class _TwoLayers(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = WeightNormDense(16, name='first')(x)
    self.sow('intermediates', 'first_preactivation', h)
    return WeightNormDense(8, name='second')(nn.relu(h))


def test_data_dependent_init_standardizes_each_layer_on_the_init_batch():
  x = np.random.default_rng(2).normal(3.0, 2.0, size=(500, 20)).astype(np.float32)
  model = _TwoLayers()
  variables = model.init(jax.random.key(0), x)
  out, state = model.apply(variables, x, mutable=['intermediates'])
  for preactivation in (state['intermediates']['first_preactivation'][0], out):
    np.testing.assert_allclose(np.mean(preactivation, axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.std(preactivation, axis=0), 1.0, rtol=1e-4)


def test_conv_data_init_standardizes_each_feature_map():
  x = np.random.default_rng(3).uniform(size=(8, 6, 6, 3)).astype(np.float32)
  layer = WeightNormConv(4, kernel_size=(3, 3))
  y = layer.apply(layer.init(jax.random.key(0), x), x)
  assert y.shape == (8, 6, 6, 4)
  np.testing.assert_allclose(np.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.std(y, axis=(0, 1, 2)), 1.0, rtol=1e-4)


@pytest.mark.parametrize('shape', [(16, 3), (4, 3, 3, 2)])
def test_mean_only_batchnorm(shape):
  rng = np.random.default_rng(4)
  x = (rng.normal(size=shape) * 10 + 5).astype(np.float32)
  beta = rng.normal(size=shape[-1]).astype(np.float32)
  layer = BatchNorm(mean_only=True, use_scale=False, momentum=0.9)
  stats = layer.init(jax.random.key(0), x, use_running_average=False)['batch_stats']
  variables = {'params': {'bias': beta}, 'batch_stats': stats}
  y, updates = layer.apply(variables, x, use_running_average=False, mutable=['batch_stats'])
  mean = x.reshape(-1, shape[-1]).mean(axis=0)
  np.testing.assert_allclose(y, x - mean + beta, rtol=1e-5, atol=1e-4)  # Spread unchanged.
  np.testing.assert_allclose(updates['batch_stats']['mean'], 0.1 * mean, rtol=1e-5)
  # Inference subtracts the running mean instead.
  variables['batch_stats'] = updates['batch_stats']
  y_test = layer.apply(variables, x, use_running_average=True)
  np.testing.assert_allclose(y_test, x - 0.1 * mean + beta, rtol=1e-5, atol=1e-4)
